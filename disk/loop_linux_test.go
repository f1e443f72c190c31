package disk

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nixboot/nixboot/internal/testenv"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// loop attaches a loop device (root only) over the given byte range of
// img (size 0 = to the end), with the given logical sector size and, when
// partscan is set, partition scanning. We only ever touch loop devices
// made here.
//
// The device is detached however the test ends: Cleanup detaches it and
// checks that it is gone, and because it is configured with
// LO_FLAGS_AUTOCLEAR while this process holds it open, the kernel
// detaches it by itself when the process dies without running Cleanup (a
// go test -timeout panic, SIGKILL). A leaked device would keep the
// image's filesystems visible to the machine (mkfs.btrfs, for one, then
// refuses their UUIDs).
func loop(t *testing.T, img string, off, size int64, sector int, partscan bool) string {
	t.Helper()
	testenv.Root(t)
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		testenv.Unavailable(t, "no loop devices: "+err.Error())
	}
	defer ctl.Close()
	backing, err := os.OpenFile(img, os.O_RDWR, 0)
	require.NoError(t, err)
	defer backing.Close() // the loop device holds its own reference
	cfg := unix.LoopConfig{Fd: uint32(backing.Fd()), Info: unix.LoopInfo64{
		Offset: uint64(off), Sizelimit: uint64(size), Flags: unix.LO_FLAGS_AUTOCLEAR}}
	if sector != 0 && sector != 512 {
		cfg.Size = uint32(sector)
	}
	if partscan {
		cfg.Info.Flags |= unix.LO_FLAGS_PARTSCAN
	}
	copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], img)
	// Another process may take the free device between our two calls:
	// then ask again (bounded).
	for try := 0; ; try++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		require.NoError(t, err, "LOOP_CTL_GET_FREE")
		dev := "/dev/loop" + strconv.Itoa(n)
		f, err := os.OpenFile(dev, os.O_RDWR, 0)
		require.NoError(t, err)
		err = unix.IoctlLoopConfigure(int(f.Fd()), &cfg)
		if errors.Is(err, unix.EBUSY) && try < 20 {
			f.Close()
			continue
		}
		if err != nil {
			f.Close()
			require.NoError(t, err, "LOOP_CONFIGURE %s", dev)
		}
		t.Cleanup(func() { detachLoop(t, f, n, img) })
		return dev
	}
}

// detachLoop detaches loop device n, which f holds open, and waits (up to
// 10 s) until the kernel has let go of img.
func detachLoop(t *testing.T, f *os.File, n int, img string) {
	t.Helper()
	// With other openers left (udev probing, say) LOOP_CLR_FD only marks
	// the device for detaching on their last close.
	if err := unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0); err != nil && !errors.Is(err, unix.ENXIO) {
		t.Errorf("LOOP_CLR_FD /dev/loop%d: %v", n, err)
	}
	f.Close()
	backing := fmt.Sprintf("/sys/block/loop%d/loop/backing_file", n)
	for i := 0; i < 500; i++ {
		b, err := os.ReadFile(backing)
		if errors.Is(err, fs.ErrNotExist) || err == nil && !strings.HasPrefix(string(b), img) {
			return // detached (and perhaps reused by someone else)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("/dev/loop%d is still attached 10s after the test detached it", n)
}

// partLoop attaches a loop device over one partition of an image.
func partLoop(t *testing.T, img string, d Disk, n int) string {
	t.Helper()
	for _, p := range d.Partitions {
		if p.Number == n {
			return loop(t, img, int64(p.Start), int64(p.Size), d.SectorSize, false)
		}
	}
	t.Fatalf("no partition %d", n)
	return ""
}
