package disk

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/windows"
)

// lockImage takes an exclusive LockFileEx lock on an image file's first
// byte without waiting; it is released when f is closed. A lock held
// elsewhere is syscall.EBUSY, as on Unix.
func lockImage(f *os.File) error {
	err := windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, new(windows.Overlapped))
	if errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
		err = syscall.EBUSY
	}
	return err
}
