//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd || solaris || windows)

package pxe

import (
	"errors"
	"fmt"
	"os"
	"runtime"
)

// lockFile fails: this system has neither flock(2) nor LockFileEx, and a
// lease file without a lock could be shared by two servers.
func lockFile(*os.File) error {
	return fmt.Errorf("locking the lease file on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
