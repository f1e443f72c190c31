package pxe

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// listenPacket is ListenPacket on Linux: a socket(2) of its own, so that
// it can ask for SO_RCVBUFFORCE and SO_BINDTODEVICE before bind(2).
func listenPacket(ifname string, port int) (*net.UDPConn, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("pxe: UDP socket for %s:%d: %w", ifname, port, err)
	}
	// FilePacketConn dups fd, so this file is closed in every case.
	f := os.NewFile(uintptr(fd), fmt.Sprintf("udp:%s:%d", ifname, port))
	defer f.Close()
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BROADCAST, 1); err != nil {
		return nil, fmt.Errorf("pxe: SO_BROADCAST on %s:%d: %w", ifname, port, err)
	}
	// A larger receive buffer absorbs the bursts of a boot storm while the
	// workers catch up (about a thousand DISCOVERs; at 10 000/s that is
	// 0.1 s, well inside any client's retry timer). SO_RCVBUFFORCE passes
	// net.core.rmem_max as root; otherwise the kernel caps SO_RCVBUF.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, recvBuffer); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, recvBuffer)
	}
	if ifname != "" {
		if err := unix.BindToDevice(fd, ifname); err != nil {
			return nil, fmt.Errorf("pxe: bind to device %s: %w", ifname, err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: port}); err != nil {
		return nil, fmt.Errorf("pxe: bind 0.0.0.0:%d on %q: %w", port, ifname, err)
	}
	pc, err := net.FilePacketConn(f)
	if err != nil {
		return nil, fmt.Errorf("pxe: socket for %s:%d: %w", ifname, port, err)
	}
	return pc.(*net.UDPConn), nil
}

// listenPacket6 is ListenPacket6 on Linux.
func listenPacket6(ifi *net.Interface) (*net.UDPConn, error) {
	const port = 547
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("pxe: UDP6 socket for %s: %w", ifi.Name, err)
	}
	f := os.NewFile(uintptr(fd), fmt.Sprintf("udp6:%s:%d", ifi.Name, port))
	defer f.Close()
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
		return nil, fmt.Errorf("pxe: IPV6_V6ONLY on %s: %w", ifi.Name, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, recvBuffer); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, recvBuffer)
	}
	if err := unix.BindToDevice(fd, ifi.Name); err != nil {
		return nil, fmt.Errorf("pxe: bind to device %s: %w", ifi.Name, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet6{Port: port}); err != nil {
		return nil, fmt.Errorf("pxe: bind [::]:%d on %q: %w", port, ifi.Name, err)
	}
	mreq := &unix.IPv6Mreq{Interface: uint32(ifi.Index)}
	copy(mreq.Multiaddr[:], AllDHCPRelayAgentsAndServers.To16())
	if err := unix.SetsockoptIPv6Mreq(fd, unix.IPPROTO_IPV6, unix.IPV6_JOIN_GROUP, mreq); err != nil {
		return nil, fmt.Errorf("pxe: join ff02::1:2 on %s: %w", ifi.Name, err)
	}
	pc, err := net.FilePacketConn(f)
	if err != nil {
		return nil, fmt.Errorf("pxe: socket for %s: %w", ifi.Name, err)
	}
	return pc.(*net.UDPConn), nil
}
