//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd || solaris || windows)

package disk

import "os"

// lockImage fails: this system has neither flock(2) nor LockFileEx, and
// two Applies could interleave their writes to one image file.
func lockImage(*os.File) error { return unsupported("locking an image file") }
