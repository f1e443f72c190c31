//go:build !linux

package pxe

import (
	"errors"
	"fmt"
	"net"
	"runtime"
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
