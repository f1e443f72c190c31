package netboot

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// setStallTimeout makes the kernel drop c when data sent on it stays
// unacknowledged for d (TCP_USER_TIMEOUT). Connections that are not TCP
// are left alone.
func setStallTimeout(c net.Conn, d time.Duration) error {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(max(d.Milliseconds(), 1)))
	}); err != nil {
		return err
	}
	return serr
}
