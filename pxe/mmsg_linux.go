package pxe

import (
	"errors"
	"net"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batchConn reads and writes an IPv4 UDP socket in batches, with
// recvmmsg(2) and sendmmsg(2) issued as raw system calls on its
// non-blocking descriptor, waiting in the runtime's network poller when
// the socket has nothing to read (or no room to write).
//
// Raw means without the runtime's syscall bookkeeping, which is what
// golang.org/x/net/ipv4's ReadBatch and WriteBatch go through: when the
// process was idle (all Ps idle, as between packets), each such call wakes
// the runtime's monitor thread (sysmon), which sleeps again at once, two
// context switches per packet on a lightly loaded server. These calls
// never block and return in microseconds, which is what raw system calls
// are for.
//
// A batchConn is used by one goroutine at a time.
type batchConn struct {
	rc syscall.RawConn

	rhdrs  []mmsghdr
	riovs  []unix.Iovec
	rnames []unix.RawSockaddrInet4

	whdrs  []mmsghdr
	wiovs  []unix.Iovec
	wnames []unix.RawSockaddrInet4
}

// mmsghdr is struct mmsghdr of <sys/socket.h>; Go lays it out as C does
// on 32- and 64-bit platforms alike.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// newBatchConn returns a batchConn for c reading and writing up to n
// datagrams at once, or an error when c is not an AF_INET socket (a
// dual-stack "udp" socket, say, whose addresses are IPv6).
func newBatchConn(c *net.UDPConn, n int) (*batchConn, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	domain := -1
	if err := rc.Control(func(fd uintptr) {
		domain, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
	}); err != nil {
		return nil, err
	}
	if domain != unix.AF_INET {
		return nil, errNotIPv4
	}
	return &batchConn{
		rc:     rc,
		rhdrs:  make([]mmsghdr, n),
		riovs:  make([]unix.Iovec, n),
		rnames: make([]unix.RawSockaddrInet4, n),
		whdrs:  make([]mmsghdr, n),
		wiovs:  make([]unix.Iovec, n),
		wnames: make([]unix.RawSockaddrInet4, n),
	}, nil
}

// read receives up to len(bufs) datagrams, datagram i into bufs[i], and
// returns how many it received, waiting until there is at least one.
// size and from then describe datagram i. A closed socket gives an error
// that matches net.ErrClosed.
func (b *batchConn) read(bufs [][]byte) (int, error) {
	k := min(len(bufs), len(b.rhdrs))
	for i := range k {
		b.rnames[i] = unix.RawSockaddrInet4{}
		setMsg(&b.rhdrs[i], &b.riovs[i], &b.rnames[i], bufs[i])
	}
	n, err := mmsg(b.rc.Read, unix.SYS_RECVMMSG, "recvmmsg", b.rhdrs[:k])
	runtime.KeepAlive(bufs)
	return n, err
}

// setMsg points h at one datagram buffer and its IPv4 address.
func setMsg(h *mmsghdr, iov *unix.Iovec, name *unix.RawSockaddrInet4, buf []byte) {
	*iov = unix.Iovec{Base: unsafe.SliceData(buf)}
	iov.SetLen(len(buf))
	*h = mmsghdr{}
	h.hdr.Name = (*byte)(unsafe.Pointer(name))
	h.hdr.Namelen = unix.SizeofSockaddrInet4
	h.hdr.Iov = iov
	h.hdr.SetIovlen(1)
}

// mmsg runs recvmmsg or sendmmsg (sysno) on hdrs through wait (the raw
// connection's Read or Write), which parks in the network poller while
// the call would block, and returns how many datagrams it moved.
func mmsg(wait func(func(fd uintptr) bool) error, sysno uintptr, name string, hdrs []mmsghdr) (int, error) {
	if len(hdrs) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	err := wait(func(fd uintptr) bool {
		for {
			r, _, e := unix.RawSyscall6(sysno, fd, uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), 0, 0, 0)
			switch e {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false
			}
			n, errno = int(r), e
			return true
		}
	})
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, os.NewSyscallError(name, errno)
	}
	return n, nil
}

// size is the length of datagram i of the last read.
func (b *batchConn) size(i int) int { return int(b.rhdrs[i].len) }

// from sets *addr to the sender of datagram i of the last read, with
// its IP in ip's memory; to the zero address if that is not IPv4.
func (b *batchConn) from(i int, addr *net.UDPAddr, ip *[4]byte) {
	sa := &b.rnames[i]
	if b.rhdrs[i].hdr.Namelen < unix.SizeofSockaddrInet4 || sa.Family != unix.AF_INET {
		*addr = net.UDPAddr{}
		return
	}
	*ip = sa.Addr
	port := (*[2]byte)(unsafe.Pointer(&sa.Port))
	*addr = net.UDPAddr{IP: ip[:], Port: int(port[0])<<8 | int(port[1])}
}

// errNotIPv4 is the error for a socket that is not UDP over IPv4 and for
// a reply to an address such a socket cannot send to.
var errNotIPv4 = errors.New("pxe: not an IPv4 address")

// write sends bufs[i] to to[i] with one sendmmsg, waiting while the
// socket buffer is full, and returns how many datagrams the kernel took.
// When the first datagram fails, it returns 0 and that datagram's error.
func (b *batchConn) write(bufs [][]byte, to []*net.UDPAddr) (int, error) {
	k := min(len(bufs), len(to), len(b.whdrs))
	for i := range k {
		ip := to[i].IP.To4()
		if ip == nil {
			if i == 0 {
				return 0, errNotIPv4
			}
			k = i
			break
		}
		sa := &b.wnames[i]
		*sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: [4]byte(ip)}
		port := (*[2]byte)(unsafe.Pointer(&sa.Port))
		port[0], port[1] = byte(to[i].Port>>8), byte(to[i].Port)
		setMsg(&b.whdrs[i], &b.wiovs[i], sa, bufs[i])
	}
	n, err := mmsg(b.rc.Write, unix.SYS_SENDMMSG, "sendmmsg", b.whdrs[:k])
	runtime.KeepAlive(bufs)
	return n, err
}
