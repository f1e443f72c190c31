package disk

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
)

// mkfsProgram names the program that makes a filesystem type, or "" when
// it is made in Go (vfat).
func mkfsProgram(fsType string) string {
	switch fsType {
	case FSExt4:
		return "mkfs.ext4"
	case FSXFS:
		return "mkfs.xfs"
	case FSBtrfs:
		return "mkfs.btrfs"
	case FSSwap:
		return "mkswap"
	}
	return ""
}

// buildFS makes filesystem fs in a fresh sparse file of `size` bytes in
// workDir and returns its path. tool is the path of its mkfsProgram ("" =
// look it up). Building aside and copying in afterwards keeps the disk
// untouched until the filesystem is complete.
func buildFS(ctx context.Context, fs Filesystem, size int64, sector int, workDir, tool string) (string, error) {
	f, err := os.CreateTemp(workDir, "nixboot-disk-fs-*")
	if err != nil {
		return "", fmt.Errorf("disk: temporary filesystem image: %w", err)
	}
	name := f.Name()
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(name)
		return "", err
	}
	if err := f.Truncate(size); err != nil {
		return fail(fmt.Errorf("disk: sizing %s: %w", name, err))
	}
	switch fs.Type {
	case FSVFAT:
		if err := makeFAT32(f, size, sector, fs); err != nil {
			return fail(err)
		}
		if err := f.Close(); err != nil {
			return fail(err)
		}
		return name, nil
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	var args []string
	switch fs.Type {
	case FSExt4:
		args = []string{"-q", "-F", "-b", "4096", "-U", fs.UUID, "-L", fs.Label, name}
	case FSXFS:
		args = []string{"-q", "-f", "-s", "size=" + strconv.Itoa(sector), "-m", "uuid=" + fs.UUID, "-L", fs.Label, name}
	case FSBtrfs:
		args = []string{"-q", "-f", "-U", fs.UUID, "-L", fs.Label, name}
	case FSSwap:
		args = []string{"-U", fs.UUID, "-L", fs.Label, name}
		if sector > 4096 {
			args = append([]string{"-p", strconv.Itoa(sector)}, args...)
		}
	default:
		return fail(fmt.Errorf("%w: filesystem type %q", ErrLayout, fs.Type))
	}
	prog := mkfsProgram(fs.Type)
	path := tool
	if path == "" {
		if path, err = lookTool(prog); err != nil {
			return fail(err)
		}
	}
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		return fail(fmt.Errorf("disk: %s: %w: %s", prog, err, strings.TrimSpace(string(out))))
	}
	return name, nil
}

// lookTool finds a program on PATH or in the sbin directories that
// non-root PATHs (and some initrds) lack.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/run/current-system/sw/bin"} {
		p := dir + "/" + name
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %s (install it to make this filesystem)", ErrNoTool, name)
}

// makeFAT32 writes a FAT32 filesystem with go-diskfs and checks its
// geometry: go-diskfs v1.9.4 produces, for some sizes, more clusters than
// its FATs can index, which fsck.fat rejects and firmware may misread. We
// then shrink the filesystem a sector at a time (bounded) until the
// geometry holds; the few unused sectors at the end are harmless.
func makeFAT32(f *os.File, size int64, sector int, fs Filesystem) error {
	var serial uint32
	if fs.UUID != "" {
		v, err := strconv.ParseUint(strings.ReplaceAll(fs.UUID, "-", ""), 16, 32)
		if err != nil {
			return fmt.Errorf("%w: FAT serial %q", ErrLayout, fs.UUID)
		}
		serial = uint32(v)
	}
	label := fs.Label
	var lastErr error
	for try := 0; try < 64; try++ {
		fsSize := size - int64(try)*int64(sector)
		if _, err := fat32.Create(file.New(f, false), fsSize, 0, int64(sector), label, true); err != nil {
			return fmt.Errorf("disk: making FAT32 of %d bytes: %w", fsSize, err)
		}
		bs := make([]byte, sector)
		if _, err := f.ReadAt(bs, 0); err != nil {
			return fmt.Errorf("disk: reading back the FAT32 boot sector: %w", err)
		}
		if lastErr = checkFAT32(bs); lastErr != nil {
			continue
		}
		// Volume serial at 0x43 of the boot sector and of its backup
		// (sector 6); fsck.fat compares the two.
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], serial)
		backup := int64(binary.LittleEndian.Uint16(bs[50:])) * int64(sector)
		for _, off := range []int64{0x43, backup + 0x43} {
			if _, err := f.WriteAt(b[:], off); err != nil {
				return fmt.Errorf("disk: writing the FAT32 serial: %w", err)
			}
		}
		return nil
	}
	return fmt.Errorf("disk: no valid FAT32 geometry for %d bytes: %w", size, lastErr)
}

// checkFAT32 checks that a FAT32 boot sector's cluster count fits its FAT.
func checkFAT32(bs []byte) error {
	bps := uint64(binary.LittleEndian.Uint16(bs[11:]))
	spc := uint64(bs[13])
	reserved := uint64(binary.LittleEndian.Uint16(bs[14:]))
	nfats := uint64(bs[16])
	total := uint64(binary.LittleEndian.Uint32(bs[32:]))
	fatSize := uint64(binary.LittleEndian.Uint32(bs[36:]))
	if bps == 0 || spc == 0 || nfats == 0 || total <= reserved+nfats*fatSize {
		return errors.New("FAT32 boot sector geometry is inconsistent")
	}
	clusters := (total - reserved - nfats*fatSize) / spc
	entries := fatSize * bps / 4
	if clusters+2 > entries {
		return fmt.Errorf("FAT32 has %d clusters but its FAT holds only %d entries", clusters, entries-2)
	}
	if clusters < 65525 {
		return fmt.Errorf("FAT32 has %d clusters, below the FAT32 minimum 65525", clusters)
	}
	return nil
}

// copyFSImage clears [off, off+size) of the disk and copies the data
// extents of the built image there, skipping holes.
func copyFSImage(ctx context.Context, dst *os.File, block bool, off, size int64, img string) error {
	src, err := os.Open(img)
	if err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	defer src.Close()
	if err := clearRange(ctx, dst, block, off, size); err != nil {
		return err
	}
	buf := make([]byte, 4<<20)
	var pos int64
	for pos < size {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, hole, ok := dataExtent(src, pos, size)
		if !ok {
			break
		}
		r := io.NewSectionReader(src, data, hole-data)
		w := io.NewOffsetWriter(dst, off+data)
		if _, err := io.CopyBuffer(w, r, buf); err != nil {
			return fmt.Errorf("disk: copying filesystem image: %w", err)
		}
		pos = hole
	}
	return nil
}

// clearRange zeroes [off, off+size) of the disk: BLKZEROOUT on a block
// device, a punched hole in an image file (both on Linux, see clearFast),
// and written zeros where the kernel or the file's filesystem offers
// neither.
func clearRange(ctx context.Context, dst *os.File, block bool, off, size int64) error {
	ok, err := clearFast(dst, block, off, size)
	if err != nil {
		return fmt.Errorf("disk: clearing %d bytes at %d: %w", size, off, err)
	}
	if ok {
		return nil
	}
	zeros := make([]byte, min(size, 4<<20))
	for done := int64(0); done < size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(int64(len(zeros)), size-done)
		if _, err := dst.WriteAt(zeros[:n], off+done); err != nil {
			return fmt.Errorf("disk: clearing %d bytes at %d: %w", size, off, err)
		}
		done += n
	}
	return nil
}

// signatureArea is how much of each end of a new partition without a
// filesystem Apply clears, so that no old signature (filesystem, swap,
// LUKS, LVM, RAID, ZFS) in the reused space shows through.
const signatureArea = int64(MiB)
