//go:build !linux

package pxe

import (
	"errors"
	"fmt"
	"net"
	"runtime"

	"golang.org/x/net/ipv6"
)

// listenPacket is ListenPacket where SO_BINDTODEVICE does not exist: a
// "udp4" socket on 0.0.0.0:port from the net package, which sets
// SO_BROADCAST on every UDP socket and SO_REUSEADDR on none.
func listenPacket(ifname string, port int) (*net.UDPConn, error) {
	if ifname != "" {
		return nil, fmt.Errorf("pxe: bind to device %s: SO_BINDTODEVICE on %s: %w", ifname, runtime.GOOS, errors.ErrUnsupported)
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero, Port: port})
	if err != nil {
		return nil, fmt.Errorf("pxe: bind 0.0.0.0:%d: %w", port, err)
	}
	// As on Linux, a receive buffer too large for the system is not an
	// error: the system caps it.
	_ = c.SetReadBuffer(recvBuffer)
	return c, nil
}

// listenPacket6 is ListenPacket6 where SO_BINDTODEVICE does not exist:
// [::]:547 from the net package, joined to ff02::1:2 on ifi.
func listenPacket6(ifi *net.Interface) (*net.UDPConn, error) {
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6unspecified, Port: 547})
	if err != nil {
		return nil, fmt.Errorf("pxe: bind [::]:547: %w", err)
	}
	if err := ipv6.NewPacketConn(c).JoinGroup(ifi, &net.UDPAddr{IP: AllDHCPRelayAgentsAndServers}); err != nil {
		c.Close()
		return nil, fmt.Errorf("pxe: join ff02::1:2 on %s: %w", ifi.Name, err)
	}
	_ = c.SetReadBuffer(recvBuffer)
	return c, nil
}
