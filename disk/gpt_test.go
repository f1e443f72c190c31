package disk

import (
	"bytes"
	"hash/crc32"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// smallGPT renders a whole small disk image holding t.
func smallGPT(t testing.TB, sectors uint64, sector int, parts ...gptEntry) []byte {
	first, last := usableRange(sectors, sector)
	primary, backup, off, err := gptImages(gptTable{DiskGUID: "11111111-2222-4333-8444-555555555555",
		FirstUsable: first, LastUsable: last, Entries: parts}, sectors, sector)
	require.NoError(t, err)
	img := make([]byte, sectors*uint64(sector))
	copy(img, primary)
	copy(img[off:], backup)
	return img
}

func TestGUIDBytesRoundTrip(t *testing.T) {
	g := "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	b, err := guidToBytes(g)
	require.NoError(t, err)
	// The ESP type GUID as stored on disk (UEFI 2.10 mixed endian).
	assert.Equal(t, []byte{0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b}, b[:])
	assert.Equal(t, g, guidFromBytes(b[:]))
}

func TestReadDiskTables(t *testing.T) {
	esp := gptEntry{Number: 1, Type: PartitionTypes["esp"], GUID: "AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE", First: 40, Last: 49, Attributes: 1, Name: "ESP ü"}
	root := gptEntry{Number: 3, Type: PartitionTypes["linux"], GUID: "AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEF", First: 50, Last: 59, Name: "root"}
	good := smallGPT(t, 100, 512, esp, root)

	corrupt := func(f func(b []byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return b
	}
	for _, tc := range []struct {
		name     string
		img      []byte
		problems []string
		err      string
	}{
		{name: "good", img: good},
		{name: "primary header crc", img: corrupt(func(b []byte) { b[512+40]++ }),
			problems: []string{"primary GPT unusable: GPT header at LBA 1: bad header CRC"}},
		{name: "primary array crc", img: corrupt(func(b []byte) { b[1024+60]++ }),
			problems: []string{"primary GPT unusable: bad partition entry array CRC"}},
		{name: "backup gone", img: corrupt(func(b []byte) { copy(b[99*512:], make([]byte, 512)) }),
			problems: []string{"backup GPT unusable: no GPT signature at LBA 99"}},
		{name: "both headers bad", img: corrupt(func(b []byte) { b[512+40]++; b[99*512+40]++ }),
			err: "corrupt partition table: primary: GPT header at LBA 1: bad header CRC; backup: GPT header at LBA 99: bad header CRC"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := readDisk(bytes.NewReader(tc.img), int64(len(tc.img)), 512)
			if tc.err != "" {
				require.ErrorIs(t, err, ErrCorruptTable)
				assert.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.problems, d.Problems)
			require.Equal(t, TableGPT, d.Table)
			assert.Equal(t, "11111111-2222-4333-8444-555555555555", d.GUID)
			require.Len(t, d.Partitions, 2)
			assert.Equal(t, "ESP ü", d.Partitions[0].Name)
			assert.Equal(t, 3, d.Partitions[1].Number)
			assert.Equal(t, ByteSize(50*512), d.Partitions[1].Start)
			assert.Equal(t, "esp", d.Partitions[0].TypeName)
		})
	}
}

// tinyGPT renders a 16-sector disk whose GPT has only 4 entries, small
// enough for the fuzzer to mutate quickly.
func tinyGPT(t testing.TB, parts ...gptEntry) []byte {
	const sectors = 16
	ents, err := encodeEntries(gptTable{Entries: parts})
	require.NoError(t, err)
	ents = ents[:4*gptEntrySize]
	h := gptHeader{Current: 1, Backup: sectors - 1, FirstUsable: 3, LastUsable: sectors - 3,
		DiskGUID: "11111111-2222-4333-8444-555555555555", EntriesLBA: 2, NumEntries: 4, EntrySize: gptEntrySize,
		EntriesCRC: crc32.ChecksumIEEE(ents)}
	img := make([]byte, sectors*512)
	copy(img, protectiveMBR(sectors, 512))
	copy(img[512:], encodeHeader(h, 512))
	copy(img[1024:], ents)
	h.Current, h.Backup, h.EntriesLBA = sectors-1, 1, sectors-2
	copy(img[(sectors-2)*512:], ents)
	copy(img[(sectors-1)*512:], encodeHeader(h, 512))
	return img
}

// FuzzReadDisk feeds corrupted disk images to the table reader: it must
// never panic, must report damage as ErrCorruptTable, and whatever it
// accepts must be a sane table that survives being written and read again.
// The fuzzer mutates the primary (LBA 0-2) and backup (LBA 14-15) regions
// of a 16-sector disk separately; small inputs keep it fast.
func FuzzReadDisk(f *testing.F) {
	esp := gptEntry{Number: 1, Type: PartitionTypes["esp"], GUID: "AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE", First: 3, Last: 5, Name: "ESP"}
	root := gptEntry{Number: 2, Type: PartitionTypes["linux"], GUID: "AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEF", First: 6, Last: 13, Name: "root"}
	img := tinyGPT(f, esp, root)
	f.Add(img[:3*512], img[14*512:])
	f.Add(img[:3*512], []byte{})
	mbr := make([]byte, 512)
	copy(mbr[446:], []byte{0x80, 0, 0, 0, 0x83, 0, 0, 0, 2, 0, 0, 0, 10, 0, 0, 0})
	mbr[510], mbr[511] = 0x55, 0xAA
	f.Add(mbr, []byte{})
	f.Fuzz(func(t *testing.T, primary, backup []byte) {
		img := make([]byte, 16*512)
		copy(img[:3*512], primary)
		copy(img[14*512:], backup)
		for _, sector := range []int{512, 4096} {
			size := int64(len(img)) - int64(len(img))%int64(sector)
			d, err := readDisk(bytes.NewReader(img), size, sector)
			if err != nil {
				require.ErrorIs(t, err, ErrCorruptTable)
				continue
			}
			if d.Table != TableGPT {
				continue
			}
			sectors := uint64(size) / uint64(sector)
			tb := gptTable{DiskGUID: d.GUID, FirstUsable: d.FirstUsableLBA, LastUsable: d.LastUsableLBA}
			for i, p := range d.Partitions {
				require.True(t, p.FirstLBA >= d.FirstUsableLBA && p.LastLBA <= d.LastUsableLBA && p.FirstLBA <= p.LastLBA)
				require.Less(t, d.LastUsableLBA, sectors)
				for _, q := range d.Partitions[:i] {
					require.False(t, p.FirstLBA <= q.LastLBA && q.FirstLBA <= p.LastLBA, "overlap")
				}
				tb.Entries = append(tb.Entries, gptEntry{Number: p.Number, Type: p.Type, GUID: p.GUID, First: p.FirstLBA,
					Last: p.LastLBA, Attributes: uint64(p.Attributes), Name: p.Name})
			}
			// Written back in standard form, it reads the same.
			if tb.FirstUsable < 2+arraySectors(sector) || tb.LastUsable >= sectors-1-arraySectors(sector) {
				continue
			}
			primary, backup, off, err := gptImages(tb, sectors, sector)
			require.NoError(t, err)
			out := make([]byte, size)
			copy(out, primary)
			copy(out[off:], backup)
			d2, err := readDisk(bytes.NewReader(out), size, sector)
			require.NoError(t, err)
			assert.Empty(t, d2.Problems)
			for i := range d.Partitions {
				d.Partitions[i].Filesystem, d.Partitions[i].Blank = nil, false
			}
			for i := range d2.Partitions {
				d2.Partitions[i].Filesystem, d2.Partitions[i].Blank = nil, false
			}
			assert.Equal(t, d.Partitions, d2.Partitions)
		}
	})
}
