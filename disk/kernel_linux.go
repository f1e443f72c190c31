package disk

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// kernelPart is a partition as the kernel knows it, in 512-byte units.
type kernelPart struct{ start, size int64 }

// kernelParts reads the kernel's partitions of a whole-disk device from sysfs.
func kernelParts(base string) (map[int]kernelPart, error) {
	dir := filepath.Join("/sys/class/block", base)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[int]kernelPart{}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), base) {
			continue
		}
		read := func(f string) (int64, bool) {
			b, err := os.ReadFile(filepath.Join(dir, e.Name(), f))
			if err != nil {
				return 0, false
			}
			v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			return v, err == nil
		}
		n, ok1 := read("partition")
		s, ok2 := read("start")
		z, ok3 := read("size")
		if ok1 && ok2 && ok3 {
			out[int(n)] = kernelPart{s, z}
		}
	}
	return out, nil
}

// blkpg adds, deletes or resizes one partition of the open whole disk.
func blkpg(f *os.File, op int32, pno int, start, length int64) error {
	p := unix.BlkpgPartition{Start: start, Length: length, Pno: int32(pno)}
	arg := unix.BlkpgIoctlArg{Op: op, Datalen: int32(unsafe.Sizeof(p)), Data: (*byte)(unsafe.Pointer(&p))}
	_, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKPG, uintptr(unsafe.Pointer(&arg)))
	if e != 0 {
		return e
	}
	return nil
}

// syncKernel makes the kernel's partitions of a block device match the
// plan's table and waits for their device nodes. It asks for a full
// re-read first (BLKRRPART); when that is refused (a partition is in use)
// or does not produce the plan's partitions (some kernels lack the GPT
// parser), it adds, resizes and deletes partitions one by one with BLKPG,
// which works while other partitions are mounted.
func syncKernel(ctx context.Context, f *os.File, p Plan, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	dev, err := filepath.EvalSymlinks(p.Device)
	if err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	base := filepath.Base(dev)
	want := map[int]kernelPart{}
	ss := int64(p.SectorSize) / 512
	for _, pp := range p.Partitions {
		want[pp.Number] = kernelPart{int64(pp.FirstLBA) * ss, int64(pp.LastLBA-pp.FirstLBA+1) * ss}
	}
	matches := func() bool {
		have, err := kernelParts(base)
		if err != nil || len(have) != len(want) {
			return false
		}
		for n, w := range want {
			if have[n] != w {
				return false
			}
		}
		return true
	}
	rrErr := unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0)
	if rrErr != nil || !waitFor(ctx, 500*time.Millisecond, matches) {
		have, err := kernelParts(base)
		if err != nil {
			return fmt.Errorf("disk: reading the kernel's partitions of %s: %w", base, err)
		}
		for n, h := range have {
			w, ok := want[n]
			switch {
			case ok && w == h:
			case ok && w.start == h.start && w.size > h.size:
				if err := blkpg(f, unix.BLKPG_RESIZE_PARTITION, n, w.start*512, w.size*512); err != nil {
					return fmt.Errorf("disk: kernel: growing %s partition %d: %w", base, n, err)
				}
			default:
				if err := blkpg(f, unix.BLKPG_DEL_PARTITION, n, 0, 0); err != nil {
					return fmt.Errorf("disk: kernel: removing %s partition %d (in use? reboot to use the new table): %w", base, n, err)
				}
				delete(have, n)
			}
		}
		for n, w := range want {
			if _, ok := have[n]; ok {
				continue
			}
			if err := blkpg(f, unix.BLKPG_ADD_PARTITION, n, w.start*512, w.size*512); err != nil {
				return fmt.Errorf("disk: kernel: adding %s partition %d: %w", base, n, err)
			}
		}
	}
	sep := ""
	if c := base[len(base)-1]; c >= '0' && c <= '9' {
		sep = "p" // nvme0n1p1, loop0p1, mmcblk0p1
	}
	nodes := func() bool {
		if !matches() {
			return false
		}
		for n := range want {
			if _, err := os.Stat(filepath.Join(filepath.Dir(dev), base+sep+strconv.Itoa(n))); err != nil {
				return false
			}
		}
		return true
	}
	if !waitFor(ctx, timeout, nodes) {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fmt.Errorf("disk: partition device nodes of %s did not appear within %s", dev, timeout)
	}
	return nil
}

// waitFor polls cond every 20 ms until it holds, ctx ends or d passes.
func waitFor(ctx context.Context, d time.Duration, cond func() bool) bool {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if cond() {
			return true
		}
		select {
		case <-ctx.Done():
			return cond()
		case <-t.C:
		}
	}
}
