// Package filelock takes exclusive advisory locks on open files, with the
// same meaning on every system that has them: pxe locks its lease file and
// disk an image file being written, so that a second server or a second
// Apply fails at once instead of sharing the file.
package filelock

// TryLock takes an exclusive lock on f without waiting. Closing f releases
// it. A lock held through another open file, in this process or another,
// makes TryLock fail with an error wrapping syscall.EBUSY. On systems with
// neither flock(2) nor LockFileEx the error wraps errors.ErrUnsupported.
//
// The lock is advisory: it keeps out only those who ask for it.
func TryLock(f interface{ Fd() uintptr }) error { return tryLock(f) }
