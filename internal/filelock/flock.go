//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd || solaris

package filelock

import (
	"errors"

	"golang.org/x/sys/unix"
)

func tryLock(f interface{ Fd() uintptr }) error {
	err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		err = unix.EBUSY
	}
	return err
}
