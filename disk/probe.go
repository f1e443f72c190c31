package disk

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// FSInfo is what a filesystem signature says about a partition.
type FSInfo struct {
	Type  string `json:"type"`            // vfat, ext2, ext3, ext4, xfs, btrfs, swap
	Label string `json:"label,omitempty"` // as stored, trailing blanks removed
	UUID  string `json:"uuid,omitempty"`  // vfat: volume serial XXXX-XXXX; others: lower-case UUID
}

// probeFS looks for a filesystem signature in the `size` bytes at `off`.
// It reads at most a few sectors and never fails: unreadable or unknown
// content is reported as nil (no filesystem).
func probeFS(r io.ReaderAt, off, size int64) *FSInfo {
	read := func(at, n int64) []byte {
		if at < 0 || at+n > size {
			return nil
		}
		b := make([]byte, n)
		if _, err := r.ReadAt(b, off+at); err != nil {
			return nil
		}
		return b
	}
	// ext2/3/4: superblock at 1024, magic 0xEF53 at 56.
	if sb := read(1024, 1024); sb != nil && binary.LittleEndian.Uint16(sb[56:]) == 0xEF53 {
		t := "ext2"
		compat := binary.LittleEndian.Uint32(sb[92:])
		incompat := binary.LittleEndian.Uint32(sb[96:])
		if compat&0x4 != 0 {
			t = "ext3"
		}
		if incompat&(0x40|0x80|0x200) != 0 { // extents, 64bit, flex_bg
			t = "ext4"
		}
		return &FSInfo{Type: t, UUID: uuidString(sb[104:120]), Label: cString(sb[120:136])}
	}
	// xfs: "XFSB" at 0, uuid at 32, fname at 108.
	if sb := read(0, 512); sb != nil && string(sb[:4]) == "XFSB" {
		return &FSInfo{Type: FSXFS, UUID: uuidString(sb[32:48]), Label: cString(sb[108:120])}
	}
	// btrfs: superblock at 64 KiB, magic at 64, fsid at 32, label at 0x12b.
	if sb := read(65536, 4096); sb != nil && string(sb[64:72]) == "_BHRfS_M" {
		return &FSInfo{Type: FSBtrfs, UUID: uuidString(sb[32:48]), Label: cString(sb[0x12b : 0x12b+256])}
	}
	// swap: "SWAPSPACE2" at the end of the first page (4 KiB pages here).
	for _, page := range []int64{4096, 8192, 16384, 65536} {
		if b := read(page-10, 10); b != nil && string(b) == "SWAPSPACE2" {
			h := read(1024, 64)
			if h == nil {
				return &FSInfo{Type: FSSwap}
			}
			return &FSInfo{Type: FSSwap, UUID: uuidString(h[12:28]), Label: cString(h[28:44])}
		}
	}
	// FAT: boot sector with 0x55AA and a FAT type string.
	if bs := read(0, 512); bs != nil && bs[510] == 0x55 && bs[511] == 0xAA {
		switch {
		case string(bs[82:90]) == "FAT32   ":
			return &FSInfo{Type: FSVFAT, UUID: fatSerial(bs[67:71]), Label: fatLabel(bs[71:82])}
		case string(bs[54:59]) == "FAT16" || string(bs[54:59]) == "FAT12":
			return &FSInfo{Type: FSVFAT, UUID: fatSerial(bs[39:43]), Label: fatLabel(bs[43:54])}
		}
	}
	return nil
}

func uuidString(b []byte) string {
	if bytes.Equal(b, make([]byte, 16)) {
		return ""
	}
	return strings.ToLower(formatGUIDBytes(b))
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func fatSerial(b []byte) string {
	v := binary.LittleEndian.Uint32(b)
	return fmt.Sprintf("%04X-%04X", v>>16, v&0xffff)
}

func fatLabel(b []byte) string {
	l := strings.TrimRight(string(b), " \x00")
	if l == "NO NAME" {
		return ""
	}
	return l
}
