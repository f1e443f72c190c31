//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	dhcpnetboot "github.com/insomniacslk/dhcp/netboot"
)

// pickInterface chooses the NIC to configure: the named one, the one with
// the boot MAC, or the first non-loopback NIC.
func pickInterface(name string, mac net.HardwareAddr) (string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	var first string
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 || len(i.HardwareAddr) == 0 {
			continue
		}
		switch {
		case name != "" && i.Name == name:
			return i.Name, nil
		case name == "" && mac != nil && bytes.Equal(i.HardwareAddr, mac):
			return i.Name, nil
		case first == "":
			first = i.Name
		}
	}
	switch {
	case name != "":
		return "", fmt.Errorf("no network interface named %s", name)
	case mac != nil:
		return "", fmt.Errorf("no network interface with MAC %s", mac)
	case first == "":
		return "", fmt.Errorf("no network interface found (is the NIC driver loaded?)")
	}
	return first, nil
}

// configureNetwork brings the interface up and configures it by DHCP.
func configureNetwork(ctx context.Context, ifname string, timeout time.Duration) (net.IP, error) {
	if _, err := dhcpnetboot.IfUp(ifname, timeout); err != nil {
		return nil, fmt.Errorf("bringing up %s: %w", ifname, err)
	}
	client, err := nclient4.New(ifname, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(3))
	if err != nil {
		return nil, fmt.Errorf("DHCP client on %s: %w", ifname, err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	lease, err := client.Request(ctx)
	if err != nil {
		return nil, fmt.Errorf("DHCP on %s: %w", ifname, err)
	}
	nc, err := dhcpnetboot.GetNetConfFromPacketv4(lease.ACK)
	if err != nil {
		return nil, fmt.Errorf("DHCP on %s: %w", ifname, err)
	}
	if err := dhcpnetboot.ConfigureInterface(ifname, nc); err != nil {
		return nil, fmt.Errorf("configuring %s: %w", ifname, err)
	}
	return lease.ACK.YourIPAddr, nil
}
