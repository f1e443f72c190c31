//go:build !linux

package disk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"
)

// unsupported is the error for a feature this system does not offer.
func unsupported(what string) error {
	return fmt.Errorf("%s on %s: %w", what, runtime.GOOS, errors.ErrUnsupported)
}

// blockGeometry fails: block devices are read with Linux ioctls
// (BLKSSZGET, BLKGETSIZE64).
func blockGeometry(*os.File) (int64, int, error) {
	return 0, 0, unsupported("block devices (BLKSSZGET, BLKGETSIZE64)")
}

// openBlock fails: writing a block device relies on Linux's exclusive
// open (O_EXCL) and partition re-read (BLKRRPART, BLKPG).
func openBlock(string) (*os.File, error) {
	return nil, unsupported("writing block devices (O_EXCL, BLKRRPART, BLKPG)")
}

// syncKernel is never reached: openBlock fails first.
func syncKernel(context.Context, *os.File, Plan, time.Duration) error {
	return unsupported("re-reading a partition table (BLKRRPART, BLKPG)")
}

// clearFast offers nothing: zeros are written.
func clearFast(*os.File, bool, int64, int64) (bool, error) { return false, nil }

// dataExtent treats the rest of f up to end as data: without SEEK_DATA the
// copy includes the image's holes, as zeros.
func dataExtent(_ *os.File, pos, end int64) (data, hole int64, ok bool) {
	return pos, end, pos < end
}
