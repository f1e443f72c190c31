//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd || solaris || windows)

package filelock

import (
	"errors"
	"fmt"
	"runtime"
)

func tryLock(interface{ Fd() uintptr }) error {
	return fmt.Errorf("file locks on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
