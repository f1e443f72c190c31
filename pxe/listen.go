package pxe

import (
	"fmt"
	"net"
)

// recvBuffer is the receive buffer ListenPacket asks for.
const recvBuffer = 1 << 20

// ListenPacket opens the UDP socket a DHCP or PXE boot server needs:
// 0.0.0.0:port with SO_BROADCAST, bound to the device ifname with
// SO_BINDTODEVICE (needs CAP_NET_RAW) when ifname is not "".
//
// Unlike dhcpv4/server4's socket it sets neither SO_REUSEADDR nor
// SO_REUSEPORT, so a second server on the same port and device fails with
// "address already in use" instead of silently splitting the traffic. Two
// sockets bound to different devices may share a port, which is how one
// process serves several interfaces.
//
// Binding to 0.0.0.0 rather than the interface's address is deliberate:
// Linux delivers broadcast DISCOVERs only to sockets bound to the wildcard
// address. The socket is created in the caller's network namespace.
//
// Binding to a device is Linux-only: on other systems ifname must be "",
// and anything else is an error wrapping [errors.ErrUnsupported]. There
// the socket is a plain [net.ListenUDP] "udp4" socket on 0.0.0.0:port
// (which Go opens with SO_BROADCAST) asking for the same receive buffer
// with SO_RCVBUF, capped by the system.
func ListenPacket(ifname string, port int) (*net.UDPConn, error) {
	return listenPacket(ifname, port)
}

// AllDHCPRelayAgentsAndServers is ff02::1:2, where DHCPv6 clients send
// (RFC 8415 section 7.1).
var AllDHCPRelayAgentsAndServers = net.ParseIP("ff02::1:2")

// ListenPacket6 opens the socket a DHCPv6 server needs on the device
// ifname: [::]:547 (IPv6 only), bound to the device with SO_BINDTODEVICE
// (Linux, needs CAP_NET_RAW), joined to ff02::1:2 there. As with
// ListenPacket, no SO_REUSEADDR: a second server on the same device fails
// with "address already in use". On other systems the socket is not bound
// to the device but still joins the group on it. The socket is created in
// the caller's network namespace.
func ListenPacket6(ifname string) (*net.UDPConn, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("pxe: DHCPv6 socket: %w", err)
	}
	return listenPacket6(ifi)
}
