package netboot

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// blockingUDP is a transfer socket in blocking mode, connected to the
// client. The goroutine serving a transfer sleeps in the kernel on it while
// it waits for an acknowledgement, with SO_RCVTIMEO as the timeout: one
// system call per send and per receive, and a wake-up straight into the
// waiting thread. Go's netpoller (park, epoll, unpark) costs more than the
// whole exchange of one block on loopback. The price is a thread per
// transfer in flight, which MaxTransfers bounds.
type blockingUDP struct {
	fd      int
	rcvtimo time.Duration // SO_RCVTIMEO as last set
}

// ownSender reports whether this platform runs the data phase itself.
const ownSender = true

// dialTransfer opens a transfer socket to remote from local's address (any
// port; the kernel picks the source address when local is unspecified). It
// must run on a thread in the listening socket's network namespace. A
// blocking socket is one thread per transfer that holds a scheduler P
// whenever it enters its receive; with more such transfers than Ps,
// transfers wait for each other's wake-ups (bench/serve: responses over a
// second late with 200 clients on 2 CPUs). So blocking is false past a few
// transfers, and the socket goes through Go's netpoller instead.
func dialTransfer(local net.Addr, remote netip.AddrPort, blocking bool) (transferConn, error) {
	ra := remote.Addr().Unmap()
	family := unix.AF_INET6
	if ra.Is4() {
		family = unix.AF_INET
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("tftp: transfer socket: %w", err)
	}
	c := &blockingUDP{fd: fd}
	if ua, ok := local.(*net.UDPAddr); ok {
		if la, ok := netip.AddrFromSlice(ua.IP); ok && !la.Unmap().IsUnspecified() && la.Unmap().Is4() == ra.Is4() {
			if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(la.Unmap(), 0), ua.Zone)); err != nil {
				c.close()
				return nil, fmt.Errorf("tftp: bind transfer socket to %s: %w", la, err)
			}
		}
	}
	if err := unix.Connect(fd, sockaddr(netip.AddrPortFrom(ra, remote.Port()), remote.Addr().Zone())); err != nil {
		c.close()
		return nil, fmt.Errorf("tftp: connect transfer socket to %s: %w", remote, err)
	}
	if blocking {
		return c, nil
	}
	// net.FilePacketConn duplicates the descriptor, sets it non-blocking
	// and registers it with the netpoller; ours is closed either way.
	f := os.NewFile(uintptr(fd), "tftp-transfer")
	pc, err := net.FilePacketConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("tftp: transfer socket to %s: %w", remote, err)
	}
	return &polledUDP{c: pc.(*net.UDPConn)}, nil
}

// polledUDP is a connected transfer socket served by Go's netpoller: a
// transfer waiting for an acknowledgement is a parked goroutine, not a
// thread.
type polledUDP struct{ c *net.UDPConn }

func (p *polledUDP) send(b []byte) error {
	_, err := p.c.Write(b)
	return wrapSockErr("send", err)
}

func (p *polledUDP) recv(b []byte, d time.Duration) (int, error) {
	if err := p.c.SetReadDeadline(time.Now().Add(max(d, time.Microsecond))); err != nil {
		return 0, fmt.Errorf("tftp: set receive deadline: %w", err)
	}
	n, err := p.c.Read(b)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, errRecvTimeout
		}
		return 0, wrapSockErr("receive", err)
	}
	return n, nil
}

func (p *polledUDP) close() error { return p.c.Close() }

func sockaddr(ap netip.AddrPort, zone string) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	}
	sa := &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
	if zone != "" {
		if ifi, err := net.InterfaceByName(zone); err == nil {
			sa.ZoneId = uint32(ifi.Index)
		}
	}
	return sa
}

func (c *blockingUDP) send(p []byte) error {
	for {
		_, err := unix.Write(c.fd, p)
		if err != unix.EINTR {
			return wrapSockErr("send", err)
		}
	}
}

func (c *blockingUDP) recv(p []byte, d time.Duration) (int, error) {
	// A zero SO_RCVTIMEO would mean no timeout at all.
	d = max(d, time.Microsecond)
	if d != c.rcvtimo {
		tv := unix.NsecToTimeval(d.Nanoseconds())
		if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return 0, fmt.Errorf("tftp: set receive timeout: %w", err)
		}
		c.rcvtimo = d
	}
	n, err := unix.Read(c.fd, p)
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, unix.EAGAIN):
		return 0, errRecvTimeout
	case errors.Is(err, unix.EINTR):
		return 0, errRecvInterrupted
	}
	return 0, wrapSockErr("receive", err)
}

// wrapSockErr names what failed; ECONNREFUSED means the client's port is
// gone (the kernel saw an ICMP port unreachable for an earlier block).
func wrapSockErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, unix.ECONNREFUSED) {
		return fmt.Errorf("%w: %s: client port unreachable: %w", ErrAborted, op, err)
	}
	return fmt.Errorf("tftp: %s: %w", op, err)
}

func (c *blockingUDP) close() error { return unix.Close(c.fd) }
