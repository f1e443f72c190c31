package disk

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctlPtr issues an ioctl whose argument is a pointer to a uint64.
func ioctlPtr(fd int, req uint, v *uint64) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(unsafe.Pointer(v)))
	if e != 0 {
		return e
	}
	return nil
}

// blkZeroOut is BLKZEROOUT (_IO(0x12, 127)), missing from x/sys/unix.
const blkZeroOut = 0x127f

// zeroRange asks a block device to zero bytes [off, off+n).
func zeroRange(fd int, off, n uint64) error {
	r := [2]uint64{off, n}
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), blkZeroOut, uintptr(unsafe.Pointer(&r)))
	if e != 0 {
		return e
	}
	return nil
}
