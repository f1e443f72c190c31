package netboot

import (
	"net"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// siocgsknetns is SIOCGSKNETNS from linux/sockios.h (Linux 5.6 and later):
// it returns a file descriptor of the network namespace a socket lives in.
const siocgsknetns = 0x894C

// inSocketNetns runs fn on an OS thread inside the network namespace conn
// was created in, when that differs from the calling thread's.
//
// pin/tftp opens each transfer's socket from the goroutine running Serve;
// a socket is created in the namespace of the thread that creates it. A
// caller that made Conn inside a network namespace (setns on one thread,
// as tests and VM harnesses do) would otherwise get transfer sockets in the
// process's own namespace, and every reply would go astray.
func inSocketNetns(conn net.PacketConn, fn func()) {
	nsfd := socketNetns(conn)
	if nsfd < 0 {
		fn()
		return
	}
	defer unix.Close(nsfd)
	var want, have unix.Stat_t
	if unix.Fstat(nsfd, &want) != nil || unix.Stat("/proc/thread-self/ns/net", &have) != nil ||
		(want.Dev == have.Dev && want.Ino == have.Ino) {
		fn()
		return
	}
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		fn()
		return
	}
	defer self.Close()
	if unix.Setns(nsfd, unix.CLONE_NEWNET) != nil {
		runtime.UnlockOSThread()
		fn()
		return
	}
	fn()
	// A thread that cannot return to its namespace is not given back to the
	// scheduler: it ends with this goroutine.
	if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
		runtime.UnlockOSThread()
	}
}

// socketNetns returns a new descriptor of conn's network namespace, or -1.
func socketNetns(conn net.PacketConn) int {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return -1
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	nsfd := -1
	_ = raw.Control(func(fd uintptr) {
		r, err := unix.IoctlRetInt(int(fd), siocgsknetns)
		if err == nil {
			nsfd = r
		}
	})
	return nsfd
}
