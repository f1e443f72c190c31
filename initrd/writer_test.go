package initrd_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/initrd"
)

func reg(name string, data string) initrd.Entry {
	return initrd.Entry{Header: initrd.Header{Name: name, Type: initrd.TypeReg, Mode: 0o644, Size: int64(len(data))}, Data: []byte(data)}
}

func TestWriterRejects(t *testing.T) {
	long := strings.Repeat("a/", 2047) + "bc" // 4096 bytes
	for _, tc := range []struct {
		name string
		hdr  initrd.Header
		want error
	}{
		{"empty name", initrd.Header{Type: initrd.TypeDir}, initrd.ErrInvalidHeader},
		{"absolute", initrd.Header{Name: "/etc", Type: initrd.TypeDir}, initrd.ErrInvalidHeader},
		{"dotdot", initrd.Header{Name: "a/../b", Type: initrd.TypeDir}, initrd.ErrInvalidHeader},
		{"name 4096", initrd.Header{Name: long, Type: initrd.TypeDir}, initrd.ErrTooLarge},
		{"4 GiB file", initrd.Header{Name: "big", Type: initrd.TypeReg, Size: 1 << 32}, initrd.ErrTooLarge},
		{"symlink without target", initrd.Header{Name: "l", Type: initrd.TypeSymlink}, initrd.ErrInvalidHeader},
		{"symlink target 4096", initrd.Header{Name: "l", Type: initrd.TypeSymlink, Linkname: long}, initrd.ErrTooLarge},
		{"size on dir", initrd.Header{Name: "d", Type: initrd.TypeDir, Size: 1}, initrd.ErrInvalidHeader},
		{"device number on file", initrd.Header{Name: "f", Type: initrd.TypeReg, Devmajor: 1}, initrd.ErrInvalidHeader},
		{"type bits in mode", initrd.Header{Name: "f", Type: initrd.TypeReg, Mode: 0o100644}, initrd.ErrInvalidHeader},
		{"before 1970", initrd.Header{Name: "f", Type: initrd.TypeReg, ModTime: time.Unix(-5, 0)}, initrd.ErrInvalidHeader},
		{"after 2106", initrd.Header{Name: "f", Type: initrd.TypeReg, ModTime: time.Unix(1<<32, 0)}, initrd.ErrInvalidHeader},
		{"hard link to nothing", initrd.Header{Name: "l", Type: initrd.TypeLink, Linkname: "f"}, initrd.ErrLink},
		{"unknown type", initrd.Header{Name: "x", Type: 99}, initrd.ErrInvalidHeader},
		{"trailer name", initrd.Header{Name: "TRAILER!!!", Type: initrd.TypeReg}, initrd.ErrInvalidHeader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			w := initrd.NewWriter(&buf)
			err := w.WriteHeader(&tc.hdr)
			require.ErrorIs(t, err, tc.want)
			var ee *initrd.EntryError
			require.ErrorAs(t, err, &ee)
			assert.Equal(t, tc.hdr.Name, ee.Name)
			assert.Zero(t, buf.Len(), "nothing written for a rejected entry")
		})
	}
}

func TestWriterDataLength(t *testing.T) {
	var buf bytes.Buffer
	w := initrd.NewWriter(&buf)
	require.NoError(t, w.WriteHeader(&initrd.Header{Name: "f", Type: initrd.TypeReg, Size: 3}))
	_, err := w.Write([]byte("abcd"))
	require.ErrorIs(t, err, initrd.ErrWriteTooLong)

	w = initrd.NewWriter(&buf)
	require.NoError(t, w.WriteHeader(&initrd.Header{Name: "f", Type: initrd.TypeReg, Size: 3}))
	_, err = w.Write([]byte("ab"))
	require.NoError(t, err)
	require.ErrorIs(t, w.Close(), initrd.ErrWriteTooLong)
}

// The cpio library switches every later header in the process to
// "070702" once any header carried a checksum. Our headers stay 070701.
func TestWriterSurvivesLibraryChecksumBug(t *testing.T) {
	var poisoned bytes.Buffer
	lw := cpio.NewWriter(&poisoned)
	require.NoError(t, lw.WriteHeader(&cpio.Header{Name: "x", Mode: cpio.TypeReg, Checksum: 1}))
	require.NoError(t, lw.Close())
	var probe bytes.Buffer
	fresh := cpio.NewWriter(&probe)
	require.NoError(t, fresh.WriteHeader(&cpio.Header{Name: "y", Mode: cpio.TypeReg}))
	if !bytes.HasPrefix(probe.Bytes(), []byte("070702")) {
		t.Log("library no longer has the global magic bug")
	}

	var buf bytes.Buffer
	w := initrd.NewWriter(&buf)
	require.NoError(t, w.WriteHeader(&initrd.Header{Name: "dev", Type: initrd.TypeDir, Mode: 0o755}))
	require.NoError(t, w.WriteHeader(&initrd.Header{Name: "dev/console", Type: initrd.TypeChar, Mode: 0o600, Devmajor: 5, Devminor: 1}))
	require.NoError(t, w.Close())
	assert.Equal(t, 3, bytes.Count(buf.Bytes(), []byte("070701")))
	assert.Zero(t, bytes.Count(buf.Bytes(), []byte("070702")))
	r := initrd.NewReader(&buf)
	_, err := r.Next()
	require.NoError(t, err)
	rec, err := r.Next()
	require.NoError(t, err)
	assert.Equal(t, uint32(5), rec.Devmajor)
	assert.Equal(t, uint32(1), rec.Devminor)
	assert.False(t, rec.Checksum)
}

func TestPlan(t *testing.T) {
	t.Run("parents and order", func(t *testing.T) {
		got, err := initrd.Plan([]initrd.Entry{reg("/b/c/d", "x"), reg("./a", "y"), reg("b-c", "z")}, initrd.PlanOptions{})
		require.NoError(t, err)
		var names []string
		for _, e := range got {
			names = append(names, e.Name)
		}
		assert.Equal(t, []string{"a", "b", "b-c", "b/c", "b/c/d"}, names)
	})
	t.Run("existing parents not recreated", func(t *testing.T) {
		got, err := initrd.Plan([]initrd.Entry{reg("etc/hostname", "x")}, initrd.PlanOptions{Existing: []string{"etc"}})
		require.NoError(t, err)
		require.Len(t, got, 1)
	})
	t.Run("duplicate", func(t *testing.T) {
		_, err := initrd.Plan([]initrd.Entry{reg("a", "1"), reg("a", "2")}, initrd.PlanOptions{})
		require.ErrorIs(t, err, initrd.ErrDuplicate)
		got, err := initrd.Plan([]initrd.Entry{reg("a", "1"), reg("a", "2")}, initrd.PlanOptions{LastWins: true})
		require.NoError(t, err)
		require.Len(t, got, 1)
		assert.Equal(t, "2", string(got[0].Data))
	})
	t.Run("dirs merge", func(t *testing.T) {
		d := func(m uint32) initrd.Entry {
			return initrd.Entry{Header: initrd.Header{Name: "d", Type: initrd.TypeDir, Mode: m}}
		}
		got, err := initrd.Plan([]initrd.Entry{d(0o700), d(0o755)}, initrd.PlanOptions{})
		require.NoError(t, err)
		require.Len(t, got, 1)
		assert.Equal(t, uint32(0o755), got[0].Mode)
	})
	t.Run("parent is a file", func(t *testing.T) {
		_, err := initrd.Plan([]initrd.Entry{reg("a", "1"), reg("a/b", "2")}, initrd.PlanOptions{})
		require.ErrorIs(t, err, initrd.ErrInvalidHeader)
	})
	t.Run("hard link before its target in order", func(t *testing.T) {
		got, err := initrd.Plan([]initrd.Entry{
			reg("z", "data"),
			{Header: initrd.Header{Name: "a", Type: initrd.TypeLink, Linkname: "z"}},
		}, initrd.PlanOptions{})
		require.NoError(t, err)
		require.Len(t, got, 2)
		assert.Equal(t, initrd.TypeReg, got[0].Type)
		assert.Equal(t, "a", got[0].Name)
		assert.Equal(t, "data", string(got[0].Data))
		assert.Equal(t, 2, got[0].Links)
		assert.Equal(t, initrd.TypeLink, got[1].Type)
		assert.Equal(t, "a", got[1].Linkname)
	})
	t.Run("link to missing", func(t *testing.T) {
		_, err := initrd.Plan([]initrd.Entry{{Header: initrd.Header{Name: "a", Type: initrd.TypeLink, Linkname: "z"}}}, initrd.PlanOptions{})
		require.ErrorIs(t, err, initrd.ErrLink)
	})
	t.Run("data size mismatch", func(t *testing.T) {
		e := reg("a", "abc")
		e.Size = 5
		_, err := initrd.Plan([]initrd.Entry{e}, initrd.PlanOptions{})
		require.ErrorIs(t, err, initrd.ErrInvalidHeader)
	})
	t.Run("oversized file rejected before writing", func(t *testing.T) {
		_, err := initrd.Plan([]initrd.Entry{{Header: initrd.Header{Name: "huge", Type: initrd.TypeReg, Size: 5 << 30}, Source: initrd.Source{Path: "/dev/zero"}}}, initrd.PlanOptions{})
		require.ErrorIs(t, err, initrd.ErrTooLarge)
	})
}

func TestEpochFromEnv(t *testing.T) {
	env := func(v string) func(string) string { return func(string) string { return v } }
	got, err := initrd.EpochFromEnv(env("1700000000"))
	require.NoError(t, err)
	assert.Equal(t, int64(1700000000), got.Unix())
	got, err = initrd.EpochFromEnv(env(""))
	require.NoError(t, err)
	assert.True(t, got.IsZero())
	_, err = initrd.EpochFromEnv(env("yesterday"))
	require.ErrorIs(t, err, initrd.ErrInvalidHeader)
}

// A failed build leaves nothing at the output path, and an existing file
// there is untouched.
func TestWriteFileNothingPartial(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "initrd.img")
	src := filepath.Join(dir, "grows")
	require.NoError(t, os.WriteFile(src, []byte("12345"), 0o644))
	e, err := initrd.File(src, "f")
	require.NoError(t, err)
	planned, err := initrd.Plan([]initrd.Entry{reg("a", strings.Repeat("x", 1<<20)), e}, initrd.PlanOptions{})
	require.NoError(t, err)
	// The file grows after planning: the build must fail.
	require.NoError(t, os.WriteFile(src, []byte("1234567890"), 0o644))
	_, err = initrd.WriteFile(context.Background(), out, []initrd.Segment{{Compression: initrd.Zstd, Entries: planned}}, initrd.WriteOptions{})
	require.ErrorIs(t, err, initrd.ErrChanged)
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, ents, 1, "only the source file remains")

	require.NoError(t, os.WriteFile(out, []byte("old"), 0o644))
	_, err = initrd.WriteFile(context.Background(), out, []initrd.Segment{{Compression: initrd.Gzip, Entries: planned}}, initrd.WriteOptions{})
	require.Error(t, err)
	old, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, "old", string(old))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = initrd.WriteFile(ctx, filepath.Join(dir, "other"), []initrd.Segment{{Entries: planned}}, initrd.WriteOptions{})
	require.ErrorIs(t, err, context.Canceled)
	_, err = os.Stat(filepath.Join(dir, "other"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestLZ4MustBeLast(t *testing.T) {
	p, err := initrd.Plan([]initrd.Entry{reg("a", "1")}, initrd.PlanOptions{})
	require.NoError(t, err)
	_, err = initrd.Write(context.Background(), io.Discard, []initrd.Segment{{Compression: initrd.LZ4, Entries: p}, {Entries: p}}, initrd.WriteOptions{})
	require.ErrorIs(t, err, initrd.ErrCompression)
}

// Append a per-machine segment to a shared image: the original bytes are
// untouched, the new segment follows 4-byte aligned with fresh inodes, and
// everything reads back.
func TestAppendFile(t *testing.T) {
	for _, comp := range []initrd.Compression{initrd.None, initrd.Gzip, initrd.Zstd, initrd.XZ} {
		for _, extra := range []initrd.Compression{initrd.None, initrd.Zstd, initrd.LZ4} {
			t.Run(comp.String()+"+"+extra.String(), func(t *testing.T) {
				ctx := context.Background()
				out := filepath.Join(t.TempDir(), "initrd")
				base, err := initrd.Plan([]initrd.Entry{reg("etc/os-release", "NixOS\n"), reg("init", "#!/bin/sh\n")}, initrd.PlanOptions{})
				require.NoError(t, err)
				_, err = initrd.WriteFile(ctx, out, []initrd.Segment{{Compression: comp, Entries: base}}, initrd.WriteOptions{})
				require.NoError(t, err)
				orig, err := os.ReadFile(out)
				require.NoError(t, err)

				machine, err := initrd.Plan([]initrd.Entry{reg("etc/hostname", "nbi-1\n")}, initrd.PlanOptions{Existing: []string{"etc"}})
				require.NoError(t, err)
				info, err := initrd.AppendFile(ctx, out, initrd.Segment{Compression: extra, Entries: machine}, initrd.WriteOptions{})
				require.NoError(t, err)
				assert.Zero(t, info.Offset%4)
				assert.Equal(t, uint32(4), info.FirstInode, "after inodes 1..3 of the base")

				all, err := os.ReadFile(out)
				require.NoError(t, err)
				assert.Equal(t, orig, all[:len(orig)])
				rep, err := initrd.Inspect(ctx, bytes.NewReader(all), initrd.InspectOptions{Entries: true})
				require.NoError(t, err)
				require.Len(t, rep.Segments, 2)
				assert.Equal(t, extra, rep.Segments[1].Compression)
				assert.Equal(t, info.Offset, rep.Segments[1].Offset)
				assert.Empty(t, rep.Dropped)
				assert.Empty(t, rep.Clashes)
				last := rep.Entries[len(rep.Entries)-1]
				assert.Equal(t, "etc/hostname", last.Name)
				assert.Equal(t, uint32(4), last.Inode)

				if extra == initrd.LZ4 {
					_, err = initrd.AppendFile(ctx, out, initrd.Segment{Entries: machine}, initrd.WriteOptions{})
					require.ErrorIs(t, err, initrd.ErrCompression)
					again, err := os.ReadFile(out)
					require.NoError(t, err)
					assert.Equal(t, all, again)
				}
			})
		}
	}
}

func TestAppendFailureRestores(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	out := filepath.Join(dir, "initrd")
	base, err := initrd.Plan([]initrd.Entry{reg("a", "1")}, initrd.PlanOptions{})
	require.NoError(t, err)
	_, err = initrd.WriteFile(ctx, out, []initrd.Segment{{Compression: initrd.Gzip, Entries: base}}, initrd.WriteOptions{})
	require.NoError(t, err)
	orig, err := os.ReadFile(out)
	require.NoError(t, err)
	// A source that vanished after planning fails the append mid-way.
	seg := []initrd.Entry{reg("b", strings.Repeat("y", 3<<20)), {Header: initrd.Header{Name: "c", Type: initrd.TypeReg, Size: 10}, Source: initrd.Source{Path: filepath.Join(dir, "gone")}}}
	_, err = initrd.AppendFile(ctx, out, initrd.Segment{Compression: initrd.None, Entries: seg}, initrd.WriteOptions{})
	require.Error(t, err)
	var ee *initrd.EntryError
	require.True(t, errors.As(err, &ee))
	assert.Equal(t, "c", ee.Name)
	after, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, orig, after)
}
