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

// Without -dedup, trees are streamed (initrd.PlanStream); with it, they go
// through Tree, Plan and Dedup. On trees without duplicate files (Dedup
// then changes nothing) both must write the same bytes.
func TestStreamedEqualsPlanned(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	write := func(p, data string) {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, p), []byte(data), 0o644))
	}
	write("ucode/kernel/x86/microcode/AuthenticAMD.bin", "ucode")
	for i, n := range []string{"root/a-", "root/a-b", "root/a.c", "root/a/b", "root/a/b-c/d", "root/a0", "root/usr/lib/x", "root/usr-lib"} {
		write(n, strings.Repeat("x", i+1))
	}
	write("other/b/c", "other\n")
	write("other/b-c", "other2\n")
	require.NoError(t, os.Symlink("a/b", filepath.Join(dir, "root/link")))
	require.NoError(t, os.Link(filepath.Join(dir, "root/a/b"), filepath.Join(dir, "root/usr/lib/b")))
	write("m/hostname", "nbi-2\n")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "m.list"), []byte("dir /etc 0755 0 0\nfile /etc/hostname m/hostname 0644 0 0 /etc/hostname2\nslink /a/sh busybox 0777 0 0\n"), 0o644))
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")

	build := func(extra ...string) []byte {
		var o options
		fs := newFlagSet(&o)
		out := filepath.Join(t.TempDir(), "initrd.img")
		args := append([]string{"-o", out, "-root-owner",
			"-segment", "none", "-tree", filepath.Join(dir, "ucode"),
			"-segment", "zstd", "-tree", filepath.Join(dir, "root"), "-tree", filepath.Join(dir, "other") + ":opt/a",
			"-file", filepath.Join(dir, "m/hostname") + ":a-z", "-manifest", filepath.Join(dir, "m.list")}, extra...)
		require.NoError(t, fs.Parse(args))
		require.NoError(t, run(ctx, slog.New(slog.DiscardHandler), io.Discard, io.Discard, o))
		b, err := os.ReadFile(out)
		require.NoError(t, err)
		return b
	}
	streamed, planned := build(), build("-dedup")
	require.True(t, bytes.Equal(streamed, planned), "streamed %d bytes, planned %d", len(streamed), len(planned))
}
