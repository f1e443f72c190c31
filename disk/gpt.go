package disk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"unicode/utf16"
)

// GPT on-disk format (UEFI 2.10, section 5.3). Everything here is pure:
// it turns sectors into values and values into sectors.

const (
	gptSignature   = "EFI PART"
	gptRevision    = 0x00010000
	gptHeaderSize  = 92
	gptEntrySize   = 128
	gptEntries     = 128
	maxEntryBytes  = 1 << 20 // bound on the entry array we are willing to read
	mbrSignatureLo = 0x55
	mbrSignatureHi = 0xAA
)

// errNoGPT means a sector holds no GPT header signature at all (as opposed
// to a damaged header).
var errNoGPT = errors.New("no GPT signature")

// gptHeader is one decoded GPT header.
type gptHeader struct {
	Current, Backup         uint64
	FirstUsable, LastUsable uint64
	DiskGUID                string
	EntriesLBA              uint64
	NumEntries, EntrySize   uint32
	EntriesCRC              uint32
}

// gptEntry is one used partition entry. Number is its 1-based slot.
type gptEntry struct {
	Number     int
	Type, GUID string
	First      uint64 // first LBA
	Last       uint64 // last LBA, inclusive
	Attributes uint64
	Name       string
}

// gptTable is a whole table as written to both copies.
type gptTable struct {
	DiskGUID                string
	FirstUsable, LastUsable uint64
	Entries                 []gptEntry // sorted by Number
}

// guidToBytes encodes a textual GUID in the mixed-endian GPT layout.
func guidToBytes(s string) ([16]byte, error) {
	var out [16]byte
	if err := checkGUID(s); err != nil {
		return out, err
	}
	var raw [16]byte
	hexs := strings.ReplaceAll(s, "-", "")
	for i := 0; i < 16; i++ {
		var v byte
		for _, c := range hexs[2*i : 2*i+2] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= byte(c - '0')
			case c >= 'a' && c <= 'f':
				v |= byte(c-'a') + 10
			default:
				v |= byte(c-'A') + 10
			}
		}
		raw[i] = v
	}
	out = raw
	out[0], out[1], out[2], out[3] = raw[3], raw[2], raw[1], raw[0]
	out[4], out[5] = raw[5], raw[4]
	out[6], out[7] = raw[7], raw[6]
	return out, nil
}

// guidFromBytes decodes a mixed-endian GPT GUID.
func guidFromBytes(b []byte) string {
	raw := make([]byte, 16)
	copy(raw, b[:16])
	raw[0], raw[1], raw[2], raw[3] = b[3], b[2], b[1], b[0]
	raw[4], raw[5] = b[5], b[4]
	raw[6], raw[7] = b[7], b[6]
	return formatGUIDBytes(raw)
}

// encodeEntries renders the 128-entry array.
func encodeEntries(t gptTable) ([]byte, error) {
	buf := make([]byte, gptEntries*gptEntrySize)
	for _, e := range t.Entries {
		if e.Number < 1 || e.Number > gptEntries {
			return nil, fmt.Errorf("partition number %d out of range 1-%d", e.Number, gptEntries)
		}
		b := buf[(e.Number-1)*gptEntrySize:][:gptEntrySize]
		tg, err := guidToBytes(e.Type)
		if err != nil {
			return nil, fmt.Errorf("partition %d type: %w", e.Number, err)
		}
		ug, err := guidToBytes(e.GUID)
		if err != nil {
			return nil, fmt.Errorf("partition %d guid: %w", e.Number, err)
		}
		copy(b[0:16], tg[:])
		copy(b[16:32], ug[:])
		binary.LittleEndian.PutUint64(b[32:], e.First)
		binary.LittleEndian.PutUint64(b[40:], e.Last)
		binary.LittleEndian.PutUint64(b[48:], e.Attributes)
		u := utf16.Encode([]rune(e.Name))
		if len(u) > 36 {
			return nil, fmt.Errorf("partition %d name %q longer than 36 UTF-16 units", e.Number, e.Name)
		}
		for i, c := range u {
			binary.LittleEndian.PutUint16(b[56+2*i:], c)
		}
	}
	return buf, nil
}

// encodeHeader renders one header sector.
func encodeHeader(h gptHeader, sector int) []byte {
	b := make([]byte, sector)
	copy(b, gptSignature)
	binary.LittleEndian.PutUint32(b[8:], gptRevision)
	binary.LittleEndian.PutUint32(b[12:], gptHeaderSize)
	binary.LittleEndian.PutUint64(b[24:], h.Current)
	binary.LittleEndian.PutUint64(b[32:], h.Backup)
	binary.LittleEndian.PutUint64(b[40:], h.FirstUsable)
	binary.LittleEndian.PutUint64(b[48:], h.LastUsable)
	g, _ := guidToBytes(h.DiskGUID) // checked by the caller
	copy(b[56:72], g[:])
	binary.LittleEndian.PutUint64(b[72:], h.EntriesLBA)
	binary.LittleEndian.PutUint32(b[80:], h.NumEntries)
	binary.LittleEndian.PutUint32(b[84:], h.EntrySize)
	binary.LittleEndian.PutUint32(b[88:], h.EntriesCRC)
	binary.LittleEndian.PutUint32(b[16:], crc32.ChecksumIEEE(b[:gptHeaderSize]))
	return b
}

// protectiveMBR renders LBA 0 for a GPT disk of the given size in sectors
// (UEFI 2.10 section 5.2.3).
func protectiveMBR(sectors uint64, sector int) []byte {
	b := make([]byte, sector)
	e := b[446:462]
	e[1], e[2], e[3] = 0x00, 0x02, 0x00 // CHS of LBA 1
	e[4] = 0xEE
	e[5], e[6], e[7] = 0xFF, 0xFF, 0xFF
	binary.LittleEndian.PutUint32(e[8:], 1)
	n := sectors - 1
	if n > 0xFFFFFFFF {
		n = 0xFFFFFFFF
	}
	binary.LittleEndian.PutUint32(e[12:], uint32(n))
	b[510], b[511] = mbrSignatureLo, mbrSignatureHi
	return b
}

// arraySectors is how many sectors a 128-entry array takes.
func arraySectors(sector int) uint64 {
	return uint64((gptEntries*gptEntrySize + sector - 1) / sector)
}

// gptImages renders the two contiguous regions of a table on a disk of
// `sectors` sectors: the primary (LBA 0 protective MBR, LBA 1 header,
// LBA 2.. entries) and the backup (entries, then the header in the last
// LBA). Each region is written with one write call.
func gptImages(t gptTable, sectors uint64, sector int) (primary, backup []byte, backupOff int64, err error) {
	entries, err := encodeEntries(t)
	if err != nil {
		return nil, nil, 0, err
	}
	as := arraySectors(sector)
	padded := make([]byte, int(as)*sector)
	copy(padded, entries)
	h := gptHeader{
		Current: 1, Backup: sectors - 1,
		FirstUsable: t.FirstUsable, LastUsable: t.LastUsable,
		DiskGUID: t.DiskGUID, EntriesLBA: 2,
		NumEntries: gptEntries, EntrySize: gptEntrySize,
		EntriesCRC: crc32.ChecksumIEEE(entries),
	}
	if _, err := guidToBytes(t.DiskGUID); err != nil {
		return nil, nil, 0, fmt.Errorf("disk guid: %w", err)
	}
	primary = append(append(protectiveMBR(sectors, sector), encodeHeader(h, sector)...), padded...)
	hb := h
	hb.Current, hb.Backup = sectors-1, 1
	hb.EntriesLBA = sectors - 1 - as
	backup = append(append([]byte{}, padded...), encodeHeader(hb, sector)...)
	return primary, backup, int64(hb.EntriesLBA) * int64(sector), nil
}

// usableRange is the first and last usable LBA for a standard 128-entry
// table on a disk of `sectors` sectors.
func usableRange(sectors uint64, sector int) (first, last uint64) {
	as := arraySectors(sector)
	return 2 + as, sectors - 2 - as
}

// decodeHeader checks and decodes a header sector read from LBA `at`.
func decodeHeader(b []byte, at uint64, sectors uint64) (gptHeader, error) {
	var h gptHeader
	if len(b) < gptHeaderSize || string(b[:8]) != gptSignature {
		return h, fmt.Errorf("%w at LBA %d", errNoGPT, at)
	}
	size := binary.LittleEndian.Uint32(b[12:])
	if size < gptHeaderSize || int(size) > len(b) {
		return h, fmt.Errorf("GPT header at LBA %d: header size %d out of range", at, size)
	}
	hdr := append([]byte{}, b[:size]...)
	want := binary.LittleEndian.Uint32(hdr[16:])
	binary.LittleEndian.PutUint32(hdr[16:], 0)
	if crc32.ChecksumIEEE(hdr) != want {
		return h, fmt.Errorf("GPT header at LBA %d: bad header CRC", at)
	}
	h = gptHeader{
		Current:     binary.LittleEndian.Uint64(b[24:]),
		Backup:      binary.LittleEndian.Uint64(b[32:]),
		FirstUsable: binary.LittleEndian.Uint64(b[40:]),
		LastUsable:  binary.LittleEndian.Uint64(b[48:]),
		DiskGUID:    guidFromBytes(b[56:72]),
		EntriesLBA:  binary.LittleEndian.Uint64(b[72:]),
		NumEntries:  binary.LittleEndian.Uint32(b[80:]),
		EntrySize:   binary.LittleEndian.Uint32(b[84:]),
		EntriesCRC:  binary.LittleEndian.Uint32(b[88:]),
	}
	switch {
	case h.Current != at:
		return h, fmt.Errorf("GPT header at LBA %d says it is at LBA %d", at, h.Current)
	case h.EntrySize < gptEntrySize || h.EntrySize%8 != 0 || h.EntrySize > 4096:
		return h, fmt.Errorf("GPT header at LBA %d: entry size %d invalid", at, h.EntrySize)
	case h.NumEntries == 0 || uint64(h.NumEntries)*uint64(h.EntrySize) > maxEntryBytes:
		return h, fmt.Errorf("GPT header at LBA %d: %d entries of %d bytes is out of range", at, h.NumEntries, h.EntrySize)
	case h.FirstUsable > h.LastUsable || h.LastUsable >= sectors:
		return h, fmt.Errorf("GPT header at LBA %d: usable LBAs %d-%d do not fit the disk (%d sectors)", at, h.FirstUsable, h.LastUsable, sectors)
	case h.EntriesLBA < 2 || h.EntriesLBA >= sectors:
		return h, fmt.Errorf("GPT header at LBA %d: entry array LBA %d out of range", at, h.EntriesLBA)
	case h.Backup >= sectors:
		return h, fmt.Errorf("GPT header at LBA %d: alternate header LBA %d beyond the disk", at, h.Backup)
	}
	return h, nil
}

// decodeEntries checks an entry array against its header and returns the
// used entries. Entries must lie within the usable range and not overlap.
func decodeEntries(h gptHeader, b []byte) ([]gptEntry, error) {
	n := int(h.NumEntries) * int(h.EntrySize)
	if len(b) < n {
		return nil, fmt.Errorf("partition entry array truncated")
	}
	if crc32.ChecksumIEEE(b[:n]) != h.EntriesCRC {
		return nil, fmt.Errorf("bad partition entry array CRC")
	}
	var out []gptEntry
	for i := 0; i < int(h.NumEntries); i++ {
		e := b[i*int(h.EntrySize):][:gptEntrySize]
		if bytes.Equal(e[0:16], make([]byte, 16)) {
			continue
		}
		u := make([]uint16, 0, 36)
		for j := 0; j < 36; j++ {
			c := binary.LittleEndian.Uint16(e[56+2*j:])
			if c == 0 {
				break
			}
			u = append(u, c)
		}
		ent := gptEntry{
			Number:     i + 1,
			Type:       guidFromBytes(e[0:16]),
			GUID:       guidFromBytes(e[16:32]),
			First:      binary.LittleEndian.Uint64(e[32:]),
			Last:       binary.LittleEndian.Uint64(e[40:]),
			Attributes: binary.LittleEndian.Uint64(e[48:]),
			Name:       string(utf16.Decode(u)),
		}
		if ent.First > ent.Last || ent.First < h.FirstUsable || ent.Last > h.LastUsable {
			return nil, fmt.Errorf("partition %d spans LBA %d-%d, outside the usable %d-%d", ent.Number, ent.First, ent.Last, h.FirstUsable, h.LastUsable)
		}
		for _, o := range out {
			if ent.First <= o.Last && o.First <= ent.Last {
				return nil, fmt.Errorf("partitions %d and %d overlap", o.Number, ent.Number)
			}
		}
		out = append(out, ent)
	}
	return out, nil
}
