package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/initrd"
)

// Flags in order build segments: an uncompressed first one, then a zstd
// one with two sources and deduplication; -list and -verify read it back;
// -append adds a segment.
func TestSegmentsListVerifyAppend(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	write := func(p, data string) {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, p), []byte(data), 0o644))
	}
	write("ucode/kernel/x86/microcode/GenuineIntel.bin", "ucode")
	write("root/etc/a", strings.Repeat("same\n", 100))
	write("root/etc/b", strings.Repeat("same\n", 100))
	write("extra/hello", "hi\n")
	write("machine/hostname", "nbi-1\n")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "machine.list"), []byte("dir /etc/nbi 0755 0 0\nfile /etc/nbi/hostname machine/hostname 0644 0 0\n"), 0o644))

	var o options
	fs := newFlagSet(&o)
	out := filepath.Join(dir, "initrd.img")
	require.NoError(t, fs.Parse([]string{"-o", out, "-dedup", "-root-owner",
		"-segment", "none", "-tree", filepath.Join(dir, "ucode"),
		"-segment", "zstd", "-tree", filepath.Join(dir, "root"), "-tree", filepath.Join(dir, "extra") + ":opt/extra",
		"-file", filepath.Join(dir, "extra/hello") + ":bin/hello"}))
	log := slog.New(slog.DiscardHandler)
	var stderr bytes.Buffer
	require.NoError(t, run(ctx, log, io.Discard, &stderr, o))
	assert.Contains(t, stderr.String(), "100% of")

	f, err := os.Open(out)
	require.NoError(t, err)
	rep, err := initrd.Inspect(ctx, f, initrd.InspectOptions{Entries: true})
	f.Close()
	require.NoError(t, err)
	require.Len(t, rep.Segments, 2)
	assert.Equal(t, initrd.None, rep.Segments[0].Compression)
	assert.Equal(t, initrd.Zstd, rep.Segments[1].Compression)
	ino := map[string]uint32{}
	for _, e := range rep.Entries {
		ino[e.Name] = e.Inode
	}
	assert.Equal(t, ino["etc/a"], ino["etc/b"], "deduplicated into one inode")
	assert.Contains(t, ino, "opt/extra/hello")
	assert.Contains(t, ino, "bin/hello")
	assert.Contains(t, ino, "kernel/x86/microcode/GenuineIntel.bin")

	var listing bytes.Buffer
	require.NoError(t, run(ctx, log, &listing, io.Discard, options{list: out}))
	assert.Contains(t, listing.String(), "kernel/x86/microcode/GenuineIntel.bin")
	assert.Contains(t, listing.String(), "segment 1: zstd")
	require.NoError(t, run(ctx, log, io.Discard, io.Discard, options{verify: out}))

	o = options{}
	fs = newFlagSet(&o)
	require.NoError(t, fs.Parse([]string{"-append", out, "-compress", "gzip", "-manifest", filepath.Join(dir, "machine.list")}))
	require.NoError(t, run(ctx, log, io.Discard, io.Discard, o))
	f, err = os.Open(out)
	require.NoError(t, err)
	rep, err = initrd.Inspect(ctx, f, initrd.InspectOptions{Entries: true})
	f.Close()
	require.NoError(t, err)
	require.Len(t, rep.Segments, 3)
	assert.Equal(t, initrd.Gzip, rep.Segments[2].Compression)
	assert.Equal(t, "etc/nbi/hostname", rep.Entries[len(rep.Entries)-1].Name)
	assert.Empty(t, rep.Dropped)
	assert.Empty(t, rep.Clashes)

	// A broken initrd fails -verify.
	require.NoError(t, os.WriteFile(out, []byte("070701garbage"), 0o644))
	require.Error(t, run(ctx, log, io.Discard, io.Discard, options{verify: out}))
}
