//go:build !linux

package pxe

import (
	"net"
	"net/netip"
)

// batchConn is, where recvmmsg(2) and sendmmsg(2) do not exist, a UDP
// socket read and written one datagram per call: a batch of one. The
// server's batched reader loop then runs unchanged.
//
// A batchConn is used by one goroutine at a time.
type batchConn struct {
	c *net.UDPConn

	size0 int
	from0 netip.AddrPort
}

// newBatchConn returns a batchConn for c; n, the Linux batch size, is
// not used.
func newBatchConn(c *net.UDPConn, n int) (*batchConn, error) {
	return &batchConn{c: c}, nil
}

// read receives one datagram into bufs[0] and returns 1, waiting until
// there is one. A closed socket gives an error that matches net.ErrClosed.
func (b *batchConn) read(bufs [][]byte) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	n, from, err := b.c.ReadFromUDPAddrPort(bufs[0])
	if err != nil {
		return 0, err
	}
	b.size0, b.from0 = n, from
	return 1, nil
}

// size is the length of the datagram of the last read; i is 0.
func (b *batchConn) size(i int) int { return b.size0 }

// from sets *addr to the sender of the datagram of the last read, with an
// IPv4 address in ip's memory; i is 0.
func (b *batchConn) from(i int, addr *net.UDPAddr, ip *[4]byte) {
	a := b.from0.Addr().Unmap()
	if !a.Is4() {
		*addr = *net.UDPAddrFromAddrPort(b.from0)
		return
	}
	*ip = a.As4()
	*addr = net.UDPAddr{IP: ip[:], Port: int(b.from0.Port())}
}

// write sends bufs[0] to to[0] and returns 1, or 0 and the error.
func (b *batchConn) write(bufs [][]byte, to []*net.UDPAddr) (int, error) {
	if len(bufs) == 0 || len(to) == 0 {
		return 0, nil
	}
	if _, err := b.c.WriteToUDP(bufs[0], to[0]); err != nil {
		return 0, err
	}
	return 1, nil
}
