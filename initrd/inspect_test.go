package initrd_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/initrd"
)

// rawRecord encodes one newc record by hand, so tests can build archives
// our Writer refuses to write.
type rawRecord struct {
	magic      string // "" means 070701
	ino, mode  uint32
	nlink      uint32
	size       uint32 // filesize field; data may be shorter (truncation tests)
	name       string
	data       []byte
	rmaj, rmin uint32
}

func (r rawRecord) bytes() []byte {
	magic := r.magic
	if magic == "" {
		magic = "070701"
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X", magic,
		r.ino, r.mode, 0, 0, max(r.nlink, 1), 0, r.size, 0, 0, r.rmaj, r.rmin, len(r.name)+1, 0)
	b.WriteString(r.name)
	b.WriteByte(0)
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
	b.Write(r.data)
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
	return b.Bytes()
}

func rawArchive(recs ...rawRecord) []byte {
	var b bytes.Buffer
	for _, r := range recs {
		b.Write(r.bytes())
	}
	b.Write(rawRecord{name: "TRAILER!!!"}.bytes())
	return b.Bytes()
}

func rawFile(ino uint32, name, data string) rawRecord {
	return rawRecord{ino: ino, mode: 0o100644, size: uint32(len(data)), name: name, data: []byte(data)}
}

func rawDir(ino uint32, name string) rawRecord {
	return rawRecord{ino: ino, mode: 0o040755, nlink: 2, name: name}
}

// Inspect reports what the kernel would drop or overwrite, naming segment,
// offset and entry.
func TestInspectFindings(t *testing.T) {
	ctx := context.Background()
	long := strings.Repeat("d/", 2048) + "f" // 4097 bytes: the kernel skips it
	seg0 := rawArchive(
		rawDir(1, "etc"),
		rawFile(2, "etc/hostname", "a\n"),
		rawFile(3, "missing/child", "x"), // no "missing" directory
		rawRecord{ino: 4, mode: 0o100644, name: long},
		rawRecord{ino: 5, mode: 0o100644, nlink: 2, size: 1, name: "etc/l1", data: []byte("1")},
		rawRecord{ino: 5, mode: 0o100644, nlink: 2, size: 1, name: "etc/l2", data: []byte("2")}, // data twice
		rawRecord{magic: "070702", ino: 6, mode: 0o100644, name: "etc/crc"},
		rawRecord{ino: 7, mode: 0o170644, name: "etc/weird"}, // unknown type bits
		rawFile(8, "dev/ok", "built-in dev exists"),
	)
	seg1 := rawArchive(rawFile(9, "etc/hostname", "b\n")) // replaces the first
	in := append(append([]byte(nil), seg0...), seg1...)
	rep, err := initrd.Inspect(ctx, bytes.NewReader(in), initrd.InspectOptions{Entries: true})
	require.NoError(t, err)
	require.Len(t, rep.Segments, 2)
	assert.Equal(t, int64(len(seg0)), rep.Segments[1].Offset)
	assert.Equal(t, int64(len(seg1)), rep.Segments[1].Size)
	assert.Equal(t, int64(len(in)), rep.Size)

	problems := func(fs []initrd.Finding) map[string]string {
		m := map[string]string{}
		for _, f := range fs {
			m[f.Name] = fmt.Sprintf("%d@%d %s", f.Segment, f.Offset, f.Problem)
		}
		return m
	}
	dropped := problems(rep.Dropped)
	require.Len(t, dropped, 3, "%v", rep.Dropped)
	off := int64(len(rawArchive(rawDir(1, "etc"), rawFile(2, "etc/hostname", "a\n")))) - int64(len(rawRecord{name: "TRAILER!!!"}.bytes()))
	assert.Equal(t, fmt.Sprintf("0@%d parent directory \"missing\" does not exist", off), dropped["missing/child"])
	assert.Contains(t, dropped[long], "over PATH_MAX")
	assert.Contains(t, dropped["etc/weird"], "unknown file type")

	clashes := problems(rep.Clashes)
	require.Len(t, clashes, 2, "%v", rep.Clashes)
	assert.Contains(t, clashes["etc/l2"], `hard link to "etc/l1" (inode 5) carries data too`)
	assert.Equal(t, fmt.Sprintf("1@%d duplicate path: this file replaces an earlier file", len(seg0)), clashes["etc/hostname"])
	require.Len(t, rep.Warnings, 1)
	assert.Contains(t, rep.Warnings[0], "070702")
	assert.Equal(t, uint32(9), rep.MaxInode)
	assert.Equal(t, int64(2+1+1+19+2), rep.Files)
}

// Malformed input: a *FormatError naming the segment, the offset and, when
// known, the entry.
func TestInspectErrors(t *testing.T) {
	ctx := context.Background()
	good := rawArchive(rawDir(1, "etc"))
	truncated := rawRecord{ino: 2, mode: 0o100644, size: 100, name: "etc/cut", data: []byte("short")}.bytes()
	badHex := rawFile(2, "etc/x", "x").bytes()
	copy(badHex[6+8:], "0001G644") // mode field
	for _, tc := range []struct {
		name   string
		in     []byte
		seg    int
		off    int64
		entry  string
		substr string
	}{
		{"truncated data", append(append([]byte(nil), good...), truncated...), 1, int64(len(good)), "etc/cut", "truncated data"},
		{"bad hex", append(append([]byte(nil), good...), badHex...), 1, int64(len(good)), "", "mode field"},
		{"bad magic", append(append([]byte(nil), good...), []byte("hello world")...), 1, int64(len(good)), "", "invalid magic"},
		{"unaligned", append(append(append([]byte(nil), good...), 0, 0), rawFile(3, "etc/y", "").bytes()...), 1, int64(len(good)) + 2, "", "not 4-byte aligned"},
		{"bzip2", append(append([]byte(nil), good...), []byte("BZh91AY&SY")...), 1, int64(len(good)), "", "bzip2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := initrd.Inspect(ctx, bytes.NewReader(tc.in), initrd.InspectOptions{})
			require.NotNil(t, rep)
			var fe *initrd.FormatError
			require.ErrorAs(t, err, &fe)
			assert.Equal(t, tc.seg, fe.Segment)
			assert.Equal(t, tc.off, fe.Offset)
			assert.Equal(t, tc.entry, fe.Entry)
			assert.Contains(t, err.Error(), tc.substr)
			want := 1 // the good segment before the damage is reported
			if tc.entry != "" {
				want = 2 // and the record whose data is cut short
			}
			assert.Equal(t, want, rep.Records)
		})
	}
}

// Per-segment sizes from Inspect match what Write reported, for every
// compression, and each segment's entries are counted.
func TestInspectSegmentSizes(t *testing.T) {
	ctx := context.Background()
	var segs []initrd.Segment
	next := 0
	for _, c := range []initrd.Compression{initrd.None, initrd.Gzip, initrd.Zstd, initrd.XZ, initrd.None, initrd.LZ4} {
		p, err := initrd.Plan([]initrd.Entry{reg(fmt.Sprintf("s%d/file", next), strings.Repeat("data ", 1000+next))}, initrd.PlanOptions{})
		require.NoError(t, err)
		segs = append(segs, initrd.Segment{Compression: c, Entries: p})
		next++
	}
	var buf bytes.Buffer
	infos, err := initrd.Write(ctx, &buf, segs, initrd.WriteOptions{})
	require.NoError(t, err)
	rep, err := initrd.Inspect(ctx, bytes.NewReader(buf.Bytes()), initrd.InspectOptions{})
	require.NoError(t, err)
	require.Len(t, rep.Segments, len(infos))
	for i := range infos {
		assert.Equal(t, infos[i].Compression, rep.Segments[i].Compression, "segment %d", i)
		assert.Equal(t, infos[i].Offset, rep.Segments[i].Offset, "segment %d", i)
		assert.Equal(t, infos[i].Size, rep.Segments[i].Size, "segment %d", i)
		assert.Equal(t, infos[i].Unpacked, rep.Segments[i].Unpacked, "segment %d", i)
		assert.Equal(t, 2, rep.Segments[i].Entries, "segment %d", i)
	}
	assert.Empty(t, rep.Warnings)
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// Past 2 GiB Inspect warns that iPXE may fail to load the initrd. The
// input is streamed: nothing of that size is held in memory.
func TestInspectIPXEWarning(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 2 GiB")
	}
	size := uint32(initrd.IPXEWarnSize + 4096)
	hdr := rawRecord{ino: 1, mode: 0o100644, size: size, name: "big"}.bytes()
	trailer := rawRecord{name: "TRAILER!!!"}.bytes()
	in := io.MultiReader(bytes.NewReader(hdr), io.LimitReader(zeros{}, int64(size)), bytes.NewReader(trailer))
	rep, err := initrd.Inspect(context.Background(), in, initrd.InspectOptions{})
	require.NoError(t, err)
	require.Len(t, rep.Warnings, 1)
	assert.Contains(t, rep.Warnings[0], "over 2 GiB")
	assert.Equal(t, int64(size), rep.Files)

	small, err := initrd.Inspect(context.Background(), bytes.NewReader(rawArchive(rawFile(1, "f", "x"))), initrd.InspectOptions{})
	require.NoError(t, err)
	assert.Empty(t, small.Warnings)
}

// Write refuses, before writing a byte, an entry whose parent directory is
// neither written before it, nor in WriteOptions.Existing, nor the
// kernel's built-in dev or root; AppendFile checks against the existing
// initrd and leaves it unchanged.
func TestMissingParent(t *testing.T) {
	ctx := context.Background()
	orphan := []initrd.Entry{reg("etc/hostname", "x\n")} // not planned: no "etc"
	var buf bytes.Buffer
	_, err := initrd.Write(ctx, &buf, []initrd.Segment{{Entries: orphan}}, initrd.WriteOptions{})
	require.ErrorIs(t, err, initrd.ErrMissingParent)
	var ee *initrd.EntryError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, "etc/hostname", ee.Name)
	assert.Zero(t, buf.Len())

	// The same entry after a segment that creates etc, or with etc
	// declared existing, or under the built-in dev, is fine.
	etc, err := initrd.Plan([]initrd.Entry{{Header: initrd.Header{Name: "etc", Type: initrd.TypeDir, Mode: 0o755}}}, initrd.PlanOptions{})
	require.NoError(t, err)
	_, err = initrd.Write(ctx, io.Discard, []initrd.Segment{{Entries: etc}, {Compression: initrd.Zstd, Entries: orphan}}, initrd.WriteOptions{})
	require.NoError(t, err)
	_, err = initrd.Write(ctx, io.Discard, []initrd.Segment{{Entries: orphan}}, initrd.WriteOptions{Existing: []string{"/etc/"}})
	require.NoError(t, err)
	_, err = initrd.Write(ctx, io.Discard, []initrd.Segment{{Entries: []initrd.Entry{reg("dev/x", "")}}}, initrd.WriteOptions{})
	require.NoError(t, err)

	out := filepath.Join(t.TempDir(), "initrd")
	_, err = initrd.WriteFile(ctx, out, []initrd.Segment{{Compression: initrd.Gzip, Entries: etc}}, initrd.WriteOptions{})
	require.NoError(t, err)
	orig, err := os.ReadFile(out)
	require.NoError(t, err)
	_, err = initrd.AppendFile(ctx, out, initrd.Segment{Entries: []initrd.Entry{reg("var/x", "1")}}, initrd.WriteOptions{})
	require.ErrorIs(t, err, initrd.ErrMissingParent)
	after, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, orig, after)
	_, err = initrd.AppendFile(ctx, out, initrd.Segment{Entries: orphan}, initrd.WriteOptions{})
	require.NoError(t, err, "etc comes from the existing initrd")
}

// The xz segments use CRC32, the check the kernel's decoder verifies.
func TestXZCheckIsCRC32(t *testing.T) {
	p, err := initrd.Plan([]initrd.Entry{reg("f", "x")}, initrd.PlanOptions{ClampTime: time.Unix(1, 0)})
	require.NoError(t, err)
	var buf bytes.Buffer
	_, err = initrd.Write(context.Background(), &buf, []initrd.Segment{{Compression: initrd.XZ, Entries: p}}, initrd.WriteOptions{})
	require.NoError(t, err)
	b := buf.Bytes()
	require.Equal(t, "\xfd7zXZ\x00", string(b[:6]))
	assert.Equal(t, []byte{0x00, 0x01}, b[6:8], "stream flags: check type 1 (CRC32)")
}
