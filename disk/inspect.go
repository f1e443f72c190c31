package disk

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// Disk is what Inspect found on a disk. It is a plain value: Plan takes it
// and never touches the disk itself.
type Disk struct {
	Path        string `json:"path"`
	BlockDevice bool   `json:"blockDevice"`
	// Size is the disk's size in bytes, a whole number of sectors.
	Size int64 `json:"size"`
	// SectorSize is the logical sector size: 512 or 4096.
	SectorSize int `json:"sectorSize"`
	// Table is "gpt", "mbr" or "" (no partition table).
	Table string `json:"table"`
	// GUID is the GPT disk GUID.
	GUID string `json:"guid,omitempty"`
	// FirstUsableLBA and LastUsableLBA bound GPT partitions.
	FirstUsableLBA uint64 `json:"firstUsableLBA,omitempty"`
	LastUsableLBA  uint64 `json:"lastUsableLBA,omitempty"`
	// Partitions in table order.
	Partitions []PartitionInfo `json:"partitions"`
	// Filesystem is a filesystem found on the whole disk (no table).
	Filesystem *FSInfo `json:"filesystem,omitempty"`
	// Blank is true when the disk has no table, no filesystem and its first
	// MiB is all zeros.
	Blank bool `json:"blank"`
	// Problems are defects that rewriting the table repairs without data
	// loss: a damaged or stale backup GPT, a missing protective MBR, a
	// backup header that is not at the end of a grown disk.
	Problems []string `json:"problems,omitempty"`
}

// PartitionInfo is one partition found on a disk.
type PartitionInfo struct {
	Number   int    `json:"number"`
	FirstLBA uint64 `json:"firstLBA"`
	LastLBA  uint64 `json:"lastLBA"` // inclusive
	// Start and Size are in bytes.
	Start ByteSize `json:"start"`
	Size  ByteSize `json:"size"`
	// Type is the type GUID (GPT) or "0xNN" (MBR); TypeName its symbolic name if known.
	Type       string     `json:"type"`
	TypeName   string     `json:"typeName,omitempty"`
	GUID       string     `json:"guid,omitempty"`
	Name       string     `json:"name,omitempty"`
	Attributes Attributes `json:"attributes,omitempty"`
	Filesystem *FSInfo    `json:"filesystem,omitempty"`
	// Blank is true when the partition has no filesystem signature and its
	// first MiB is all zeros: formatting it loses nothing.
	Blank bool `json:"blank"`
}

// InspectOptions tune Inspect. The zero value is ready to use.
type InspectOptions struct {
	// SectorSize forces the logical sector size of an image file (512 or
	// 4096). 0 = a block device's own, or for an image the one its GPT was
	// written with (512 when there is none).
	SectorSize int
}

// Inspect reads the partition table and filesystem signatures of a disk
// image or block device. It opens path read-only and writes nothing.
// Unreadable tables give an error wrapping ErrCorruptTable. Block devices
// are Linux-only (their geometry comes from ioctls): elsewhere inspecting
// one fails with an error wrapping errors.ErrUnsupported.
func Inspect(ctx context.Context, path string, opt InspectOptions) (Disk, error) {
	if err := ctx.Err(); err != nil {
		return Disk{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return Disk{}, fmt.Errorf("disk: %w", err)
	}
	defer f.Close()
	size, sector, block, err := geometry(f, opt.SectorSize)
	if err != nil {
		return Disk{}, fmt.Errorf("disk: %s: %w", path, err)
	}
	d, err := readDisk(f, size, sector)
	d.Path, d.BlockDevice = path, block
	if err != nil {
		return d, fmt.Errorf("disk: %s: %w", path, err)
	}
	return d, nil
}

// geometry returns a disk's size, logical sector size and whether it is a
// block device. For image files with no forced size it detects 4096-byte
// GPTs by their header position.
func geometry(f *os.File, forced int) (size int64, sector int, block bool, err error) {
	st, err := f.Stat()
	if err != nil {
		return 0, 0, false, err
	}
	if forced != 0 && forced != 512 && forced != 4096 {
		return 0, 0, false, fmt.Errorf("sector size %d is not 512 or 4096", forced)
	}
	if st.Mode()&os.ModeDevice != 0 {
		sz, ss, err := blockGeometry(f)
		if err != nil {
			return 0, 0, true, err
		}
		if forced != 0 && forced != ss {
			return 0, 0, true, fmt.Errorf("device has %d-byte sectors, not %d", ss, forced)
		}
		return sz, ss, true, nil
	}
	if !st.Mode().IsRegular() {
		return 0, 0, false, fmt.Errorf("neither a block device nor a regular file")
	}
	size = st.Size()
	sector = forced
	if sector == 0 {
		sector = 512
		sig := make([]byte, 8)
		if _, err := f.ReadAt(sig, 512); err != nil || string(sig) != gptSignature {
			if _, err := f.ReadAt(sig, 4096); err == nil && string(sig) == gptSignature {
				sector = 4096
			}
		}
	}
	return size - size%int64(sector), sector, false, nil
}

// readDisk decodes whatever table r holds. It is pure apart from reading r.
func readDisk(r io.ReaderAt, size int64, sector int) (Disk, error) {
	d := Disk{Size: size, SectorSize: sector, Partitions: []PartitionInfo{}}
	sectors := uint64(size) / uint64(sector)
	if sectors < 6 {
		// Too small for any GPT: report a filesystem signature if any.
		d.Filesystem = probeFS(r, 0, size)
		return d, nil
	}
	readAt := func(lba uint64, n int) ([]byte, error) {
		b := make([]byte, n)
		if _, err := r.ReadAt(b, int64(lba)*int64(sector)); err != nil {
			return nil, fmt.Errorf("reading LBA %d: %w", lba, err)
		}
		return b, nil
	}
	mbr, err := readAt(0, sector)
	if err != nil {
		return d, err
	}
	hasSig := mbr[510] == mbrSignatureLo && mbr[511] == mbrSignatureHi
	protective := hasSig && mbr[446+4] == 0xEE

	readCopy := func(at uint64) (gptHeader, []gptEntry, error) {
		hb, err := readAt(at, sector)
		if err != nil {
			return gptHeader{}, nil, err
		}
		h, err := decodeHeader(hb, at, sectors)
		if err != nil {
			return h, nil, err
		}
		n := int(h.NumEntries) * int(h.EntrySize)
		arrayEnd := h.EntriesLBA + uint64((n+sector-1)/sector) // exclusive
		if arrayEnd > sectors {
			return h, nil, fmt.Errorf("GPT header at LBA %d: entry array runs past the disk end", at)
		}
		if h.EntriesLBA <= h.LastUsable && arrayEnd > h.FirstUsable {
			return h, nil, fmt.Errorf("GPT header at LBA %d: entry array (LBA %d-%d) overlaps the usable LBAs %d-%d", at, h.EntriesLBA, arrayEnd-1, h.FirstUsable, h.LastUsable)
		}
		eb, err := readAt(h.EntriesLBA, n)
		if err != nil {
			return h, nil, err
		}
		ents, err := decodeEntries(h, eb)
		return h, ents, err
	}
	ph, pents, perr := readCopy(1)
	backupAt := sectors - 1
	if perr == nil && ph.Backup != 0 && ph.Backup < sectors {
		backupAt = ph.Backup
	}
	bh, bents, berr := readCopy(backupAt)
	if berr != nil && backupAt != sectors-1 {
		bh, bents, berr = readCopy(sectors - 1)
	}
	switch {
	case perr == nil:
		fillGPT(&d, ph, pents, sector)
		if berr != nil {
			d.Problems = append(d.Problems, "backup GPT unusable: "+berr.Error())
		} else if !sameGPT(ph, pents, bh, bents) {
			d.Problems = append(d.Problems, "primary and backup GPT differ")
		}
		if ph.Backup != sectors-1 {
			d.Problems = append(d.Problems, fmt.Sprintf("backup GPT header at LBA %d, not at the last LBA %d", ph.Backup, sectors-1))
		}
	case berr == nil:
		fillGPT(&d, bh, bents, sector)
		d.Problems = append(d.Problems, "primary GPT unusable: "+perr.Error())
	case protective || !errors.Is(perr, errNoGPT) || !errors.Is(berr, errNoGPT):
		return d, fmt.Errorf("%w: primary: %v; backup: %v", ErrCorruptTable, perr, berr)
	}
	if d.Table == TableGPT {
		if !protective {
			d.Problems = append(d.Problems, "no protective MBR")
		}
		for i := range d.Partitions {
			p := &d.Partitions[i]
			p.Filesystem = probeFS(r, int64(p.Start), int64(p.Size))
			p.Blank = p.Filesystem == nil && isZero(r, int64(p.Start), int64(p.Size))
		}
		return d, nil
	}
	// No GPT. A filesystem on the whole disk (FAT also ends in 0x55AA)?
	if fs := probeFS(r, 0, size); fs != nil {
		d.Filesystem = fs
		return d, nil
	}
	if hasSig {
		parts, err := decodeMBR(mbr, sectors)
		if err != nil {
			return d, fmt.Errorf("%w: %v", ErrCorruptTable, err)
		}
		d.Table = TableMBR
		for _, p := range parts {
			p.Start = ByteSize(p.FirstLBA * uint64(sector))
			p.Size = ByteSize((p.LastLBA - p.FirstLBA + 1) * uint64(sector))
			p.Filesystem = probeFS(r, int64(p.Start), int64(p.Size))
			p.Blank = p.Filesystem == nil && isZero(r, int64(p.Start), int64(p.Size))
			d.Partitions = append(d.Partitions, p)
		}
		return d, nil
	}
	d.Blank = isZero(r, 0, size)
	return d, nil
}

func fillGPT(d *Disk, h gptHeader, ents []gptEntry, sector int) {
	d.Table = TableGPT
	d.GUID = h.DiskGUID
	d.FirstUsableLBA, d.LastUsableLBA = h.FirstUsable, h.LastUsable
	for _, e := range ents {
		d.Partitions = append(d.Partitions, PartitionInfo{
			Number: e.Number, FirstLBA: e.First, LastLBA: e.Last,
			Start:    ByteSize(e.First * uint64(sector)),
			Size:     ByteSize((e.Last - e.First + 1) * uint64(sector)),
			Type:     e.Type,
			TypeName: typeNameOrEmpty(e.Type),
			GUID:     e.GUID, Name: e.Name, Attributes: Attributes(e.Attributes),
		})
	}
}

func typeNameOrEmpty(g string) string {
	if n := TypeName(g); n != g {
		return n
	}
	return ""
}

func sameGPT(a gptHeader, ae []gptEntry, b gptHeader, be []gptEntry) bool {
	if a.DiskGUID != b.DiskGUID || a.FirstUsable != b.FirstUsable || a.LastUsable != b.LastUsable || len(ae) != len(be) {
		return false
	}
	for i := range ae {
		if ae[i] != be[i] {
			return false
		}
	}
	return true
}

// decodeMBR decodes the four primary entries of a DOS partition table.
func decodeMBR(b []byte, sectors uint64) ([]PartitionInfo, error) {
	var out []PartitionInfo
	for i := 0; i < 4; i++ {
		e := b[446+16*i:][:16]
		if e[0] != 0 && e[0] != 0x80 {
			return nil, fmt.Errorf("MBR entry %d: invalid boot flag 0x%02x", i+1, e[0])
		}
		typ := e[4]
		start := uint64(binary.LittleEndian.Uint32(e[8:]))
		n := uint64(binary.LittleEndian.Uint32(e[12:]))
		if typ == 0 || n == 0 {
			continue
		}
		if start == 0 || start+n > sectors {
			return nil, fmt.Errorf("MBR entry %d: sectors %d+%d outside the disk", i+1, start, n)
		}
		out = append(out, PartitionInfo{Number: i + 1, FirstLBA: start, LastLBA: start + n - 1, Type: fmt.Sprintf("0x%02x", typ)})
	}
	if len(out) == 0 && !bytes.Equal(b[446:510], make([]byte, 64)) {
		return nil, errors.New("MBR signature with no usable entries")
	}
	return out, nil
}

// isZero reports whether the first MiB of the n bytes at off reads as zeros.
func isZero(r io.ReaderAt, off, n int64) bool {
	b := make([]byte, min(n, 1<<20))
	if _, err := r.ReadAt(b, off); err != nil {
		return false
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
