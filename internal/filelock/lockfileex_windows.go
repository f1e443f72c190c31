package filelock

import (
	"errors"
	"syscall"

	"golang.org/x/sys/windows"
)

// tryLock locks f's first byte, the usual stand-in for a whole-file lock.
func tryLock(f interface{ Fd() uintptr }) error {
	err := windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, new(windows.Overlapped))
	if errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
		err = syscall.EBUSY
	}
	return err
}
