//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd || solaris

package disk

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// lockImage takes an exclusive flock(2) on an image file without waiting;
// it is released when f is closed. A lock held elsewhere is EBUSY.
func lockImage(f *os.File) error {
	err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		err = unix.EBUSY
	}
	return err
}
