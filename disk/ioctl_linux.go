package disk

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// blockGeometry returns a block device's size and logical sector size.
func blockGeometry(f *os.File) (size int64, sector int, err error) {
	fd := int(f.Fd())
	ss, err := unix.IoctlGetInt(fd, unix.BLKSSZGET)
	if err != nil {
		return 0, 0, fmt.Errorf("BLKSSZGET: %w", err)
	}
	var sz uint64
	if err := ioctlPtr(fd, unix.BLKGETSIZE64, &sz); err != nil {
		return 0, 0, fmt.Errorf("BLKGETSIZE64: %w", err)
	}
	return int64(sz), ss, nil
}

// openBlock opens a block device for writing, exclusively (O_EXCL): the
// open fails with EBUSY while the device or one of its partitions is
// mounted or open exclusively elsewhere.
func openBlock(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|unix.O_EXCL, 0)
}

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

// clearFast zeroes [off, off+size) of the disk with BLKZEROOUT on a block
// device or a punched hole in an image file. It reports false, and no
// error, when the kernel or the file's filesystem offers neither.
func clearFast(dst *os.File, block bool, off, size int64) (bool, error) {
	var err error
	if block {
		err = zeroRange(int(dst.Fd()), uint64(off), uint64(size))
	} else {
		err = unix.Fallocate(int(dst.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, size)
	}
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOTTY) && !errors.Is(err, unix.EINVAL) {
		return false, err
	}
	return false, nil
}

// dataExtent returns the first data extent [data, hole) of f at or after
// pos, cut at end, found with SEEK_DATA and SEEK_HOLE; ok is false when
// there is none before end.
func dataExtent(f *os.File, pos, end int64) (data, hole int64, ok bool) {
	data, err := unix.Seek(int(f.Fd()), pos, unix.SEEK_DATA)
	if err != nil || data >= end {
		return 0, 0, false // ENXIO: no more data
	}
	hole, err = unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
	if err != nil || hole > end {
		hole = end
	}
	return data, hole, true
}
