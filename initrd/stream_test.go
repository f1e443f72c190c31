//go:build linux

package initrd_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/nixboot/nixboot/initrd"
)

// makeVariedTree writes a tree whose archive order differs from a
// per-directory walk: names with '-' and '.' sort before '/' ("a", "a-c",
// "a.d", "a/b"), hard links whose first name in walk order is not the
// first in archive order, symlinks, fifos, empty and deep directories,
// and device nodes when running as root.
func makeVariedTree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tree")
	mk := func(p string) { require.NoError(t, os.MkdirAll(filepath.Join(dir, p), 0o755)) }
	wr := func(p, data string) { require.NoError(t, os.WriteFile(filepath.Join(dir, p), []byte(data), 0o644)) }
	for _, d := range []string{"a/b/c/d/e/f/g/h", "a-c", "a.d/x", "a0", "empty", "z/y-", "z/y/w", "z/y.", "dir-with-file"} {
		mk(d)
	}
	wr("a/f", "hard-linked content\n")
	require.NoError(t, os.Link(filepath.Join(dir, "a/f"), filepath.Join(dir, "a-c/g")))   // first in archive order
	require.NoError(t, os.Link(filepath.Join(dir, "a/f"), filepath.Join(dir, "z/y/w/l"))) // third name
	wr("a-c/y", "y\n")
	wr("a-", "dash\n")
	wr("a/b/c/d/e/f/g/h/deep", "deep\n")
	wr("a/b c", "space\n")
	wr("z/y-/q", strings.Repeat("q", 70000))
	wr("z/y./r", "")
	wr("dir-with-file/x", "x")
	wr("solo", "solo\n")
	require.NoError(t, os.Link(filepath.Join(dir, "solo"), filepath.Join(t.TempDir(), "outside-link"))) // nlink 2, one name inside
	require.NoError(t, os.Symlink("../a/f", filepath.Join(dir, "a.d/s")))
	require.NoError(t, os.Symlink("/etc/passwd", filepath.Join(dir, "a.d/abs")))
	require.NoError(t, os.Symlink("../../outside", filepath.Join(dir, "z/escape")))
	require.NoError(t, unix.Mkfifo(filepath.Join(dir, "a/b/fifo"), 0o640))
	require.NoError(t, os.Chmod(filepath.Join(dir, "a0"), 0o1777))
	if os.Geteuid() == 0 {
		require.NoError(t, unix.Mknod(filepath.Join(dir, "a/console"), unix.S_IFCHR|0o600, int(unix.Mkdev(5, 1))))
		require.NoError(t, unix.Mknod(filepath.Join(dir, "a.d/sda"), unix.S_IFBLK|0o660, int(unix.Mkdev(8, 0))))
		require.NoError(t, os.Lchown(filepath.Join(dir, "a-"), 1234, 5678))
	}
	old := time.Unix(1500000000, 0)
	require.NoError(t, os.Chtimes(filepath.Join(dir, "a-"), old, old))
	return dir
}

// sliceAndStream builds the same segment through Tree/Closure + Plan and
// through PlanStream.
type streamCase struct {
	name   string
	slice  func(t *testing.T) []initrd.Entry
	inputs func(t *testing.T) []initrd.Input
	opt    initrd.PlanOptions
}

func streamCases(t *testing.T, tree string) []streamCase {
	mem := []initrd.Entry{
		reg("/a-c/y", "replaced by the manifest\n"), // LastWins over the tree's file
		reg("etc/motd", "hi\n"),
		{Header: initrd.Header{Name: "etc/x/link-forward", Type: initrd.TypeLink, Linkname: "etc/z-target"}},
		reg("etc/z-target", "target\n"),
		{Header: initrd.Header{Name: "etc/zz-back", Type: initrd.TypeLink, Linkname: "etc/motd"}},
		{Header: initrd.Header{Name: "usr/dev/console", Type: initrd.TypeChar, Mode: 0o600, Devmajor: 5, Devminor: 1}},
		{Header: initrd.Header{Name: "./x-file", Type: initrd.TypeReg, Mode: 0o644}}, // sorts between created "x" and "x/y/..."
		{Header: initrd.Header{Name: "empty", Type: initrd.TypeDir, Mode: 0o700}},    // merged with the tree's
	}
	mustTree := func(t *testing.T, dir, prefix string) []initrd.Entry {
		es, err := initrd.Tree(dir, prefix)
		require.NoError(t, err)
		return es
	}
	return []streamCase{
		{
			name:   "tree",
			slice:  func(t *testing.T) []initrd.Entry { return mustTree(t, tree, "") },
			inputs: func(*testing.T) []initrd.Input { return []initrd.Input{initrd.TreeInput(tree, "")} },
		},
		{
			name:   "tree clamped and root-owned",
			slice:  func(t *testing.T) []initrd.Entry { return mustTree(t, tree, "") },
			inputs: func(*testing.T) []initrd.Input { return []initrd.Input{initrd.TreeInput(tree, "")} },
			opt:    initrd.PlanOptions{ClampTime: time.Unix(1600000000, 0), RootOwner: true},
		},
		{
			name: "trees, prefixes and memory, last wins",
			slice: func(t *testing.T) []initrd.Entry {
				es := mustTree(t, tree, "")
				es = append(es, mustTree(t, filepath.Join(tree, "a"), "/x/y")...)
				es = append(es, mem...)
				return append(es, mustTree(t, filepath.Join(tree, "z"), "a.d")...)
			},
			inputs: func(*testing.T) []initrd.Input {
				return []initrd.Input{initrd.TreeInput(tree, ""), initrd.TreeInput(filepath.Join(tree, "a"), "/x/y"),
					initrd.EntriesInput(mem...), initrd.TreeInput(filepath.Join(tree, "z"), "a.d")}
			},
			opt: initrd.PlanOptions{LastWins: true, ClampTime: time.Unix(1600000000, 0), Existing: []string{"usr", "x"}, ParentMode: 0o711},
		},
	}
}

// writeTwoSegments writes an uncompressed first segment and seg after it.
func writeTwoSegments(t *testing.T, seg initrd.Segment, readAhead int) []byte {
	t.Helper()
	first, err := initrd.Plan([]initrd.Entry{reg("usr/first", "first\n"), {Header: initrd.Header{Name: "x", Type: initrd.TypeDir, Mode: 0o755}}}, initrd.PlanOptions{})
	require.NoError(t, err)
	var buf bytes.Buffer
	_, err = initrd.Write(context.Background(), &buf, []initrd.Segment{{Compression: initrd.None, Entries: first}, seg}, initrd.WriteOptions{ReadAhead: readAhead})
	require.NoError(t, err)
	return buf.Bytes()
}

// The streaming path writes the same bytes as Tree + Plan + Write, for
// every compression, and All yields Plan's entries.
func TestStreamMatchesPlan(t *testing.T) {
	tree := makeVariedTree(t)
	for _, tc := range streamCases(t, tree) {
		t.Run(tc.name, func(t *testing.T) {
			planned, err := initrd.Plan(tc.slice(t), tc.opt)
			require.NoError(t, err)
			st, err := initrd.PlanStream(tc.inputs(t), tc.opt)
			require.NoError(t, err)

			var got []initrd.Header
			for e, err := range st.All() {
				require.NoError(t, err)
				got = append(got, e.Header)
			}
			var want []initrd.Header
			var size int64
			dirs := map[string]bool{}
			for _, e := range planned {
				want = append(want, e.Header)
				if e.Type == initrd.TypeReg {
					size += e.Size
				}
				if e.Type == initrd.TypeDir {
					dirs[e.Name] = true
				}
			}
			require.Equal(t, want, got)
			assert.Equal(t, len(planned), st.Len())
			assert.Equal(t, size, st.Size())
			gotDirs := map[string]bool{}
			for _, d := range st.Dirs() {
				gotDirs[d] = true
			}
			assert.Equal(t, dirs, gotDirs)

			for _, c := range []initrd.Compression{initrd.None, initrd.Gzip, initrd.Zstd} {
				old := writeTwoSegments(t, initrd.Segment{Compression: c, Entries: planned}, -1)
				for _, ahead := range readAheads {
					streamed := writeTwoSegments(t, initrd.Segment{Compression: c, Stream: st}, ahead)
					require.True(t, bytes.Equal(old, streamed), "%s, read-ahead %d: streamed output differs (%d and %d bytes)", c, ahead, len(old), len(streamed))
					ahead := writeTwoSegments(t, initrd.Segment{Compression: c, Entries: planned}, ahead)
					require.True(t, bytes.Equal(old, ahead), "%s: output with read-ahead differs (%d and %d bytes)", c, len(old), len(ahead))
				}
			}
		})
	}
}

// A closure streamed gives Closure + Plan's bytes.
func TestStreamClosureMatchesPlan(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	tree := makeVariedTree(t)
	require.NoError(t, os.MkdirAll(store, 0o755))
	require.NoError(t, os.Rename(tree, filepath.Join(store, "aaaa-pkg")))
	require.NoError(t, os.MkdirAll(filepath.Join(store, "aaaa-pkg-dev", "lib"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(store, "aaaa-pkg-dev", "lib", "x.a"), []byte("archive"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(store, "bbbb-file"), []byte("a store path that is a file"), 0o644))
	require.NoError(t, os.Symlink("aaaa-pkg", filepath.Join(store, "cccc-link")))
	// A store path whose last entry is the second name of a file, and
	// one whose files have names in another store path only (as
	// nix-store --optimise leaves them): not links in the archive.
	require.NoError(t, os.MkdirAll(filepath.Join(store, "eeee-pair"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(store, "eeee-pair", "a"), []byte("pair"), 0o644))
	require.NoError(t, os.Link(filepath.Join(store, "eeee-pair", "a"), filepath.Join(store, "eeee-pair", "b")))
	require.NoError(t, os.MkdirAll(filepath.Join(store, "ffff-other"), 0o755))
	require.NoError(t, os.Link(filepath.Join(store, "eeee-pair", "a"), filepath.Join(store, "ffff-other", "c")))
	paths := []string{"/nix/store/cccc-link", "/nix/store/aaaa-pkg-dev", "/nix/store/aaaa-pkg", "/nix/store/bbbb-file", "/nix/store/aaaa-pkg",
		"/nix/store/ffff-other", "/nix/store/eeee-pair"}
	reg := []byte("registration\n")
	opt := initrd.PlanOptions{ClampTime: time.Unix(1600000000, 0), RootOwner: true}

	es, err := initrd.Closure(store, paths, reg)
	require.NoError(t, err)
	planned, err := initrd.Plan(es, opt)
	require.NoError(t, err)
	st, err := initrd.PlanStream([]initrd.Input{initrd.ClosureInput(store, paths, reg)}, opt)
	require.NoError(t, err)
	old := writeTwoSegments(t, initrd.Segment{Compression: initrd.None, Entries: planned}, -1)
	streamed := writeTwoSegments(t, initrd.Segment{Compression: initrd.None, Stream: st}, 3)
	require.True(t, bytes.Equal(old, streamed), "streamed closure differs (%d and %d bytes)", len(old), len(streamed))

	_, err = initrd.PlanStream([]initrd.Input{initrd.ClosureInput(store, []string{"/nix/store/aaaa-pkg/lib"}, nil)}, opt)
	require.Error(t, err)
	_, err = initrd.PlanStream([]initrd.Input{initrd.ClosureInput(store, []string{"/nix/store/dddd-missing"}, nil)}, opt)
	require.ErrorIs(t, err, os.ErrNotExist)
}

// PlanStream refuses what Plan refuses, with the same errors.
func TestStreamErrors(t *testing.T) {
	tree := makeVariedTree(t)
	long := strings.Repeat("n", 4096)
	for _, tc := range []struct {
		name  string
		mem   []initrd.Entry
		opt   initrd.PlanOptions
		want  error
		entry string
	}{
		{name: "duplicate", mem: []initrd.Entry{reg("a/f", "again")}, want: initrd.ErrDuplicate, entry: "a/f"},
		{name: "parent is a file", mem: []initrd.Entry{reg("a-/x", "x")}, want: initrd.ErrInvalidHeader, entry: "a-/x"},
		{name: "parent is a file, last wins", mem: []initrd.Entry{reg("a", "x")}, opt: initrd.PlanOptions{LastWins: true}, want: initrd.ErrInvalidHeader, entry: "a/b"},
		{name: "long name", mem: []initrd.Entry{reg(long, "x")}, want: initrd.ErrTooLarge, entry: long},
		{name: "too big", mem: []initrd.Entry{{Header: initrd.Header{Name: "big", Type: initrd.TypeReg, Size: 1 << 32}, Source: initrd.Source{Path: "/dev/zero"}}}, want: initrd.ErrTooLarge, entry: "big"},
		{name: "link without target", mem: []initrd.Entry{{Header: initrd.Header{Name: "l", Type: initrd.TypeLink, Linkname: "nothing"}}}, want: initrd.ErrLink, entry: "l"},
		{name: "link to a directory", mem: []initrd.Entry{{Header: initrd.Header{Name: "l", Type: initrd.TypeLink, Linkname: "a"}}}, want: initrd.ErrLink, entry: "l"},
		{name: "climbs out", mem: []initrd.Entry{reg("../x", "x")}, want: initrd.ErrInvalidHeader, entry: "../x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			es, err := initrd.Tree(tree, "")
			require.NoError(t, err)
			_, planErr := initrd.Plan(append(es, tc.mem...), tc.opt)
			require.ErrorIs(t, planErr, tc.want)
			_, err = initrd.PlanStream([]initrd.Input{initrd.TreeInput(tree, ""), initrd.EntriesInput(tc.mem...)}, tc.opt)
			require.ErrorIs(t, err, tc.want)
			var ee *initrd.EntryError
			require.ErrorAs(t, err, &ee)
			assert.Equal(t, tc.entry, ee.Name)
		})
	}
	_, err := initrd.PlanStream([]initrd.Input{initrd.TreeInput(filepath.Join(tree, "missing"), "")}, initrd.PlanOptions{})
	require.ErrorIs(t, err, os.ErrNotExist)

	// A directory expected from an earlier segment must be there.
	st, err := initrd.PlanStream([]initrd.Input{initrd.TreeInput(tree, "opt/app")}, initrd.PlanOptions{Existing: []string{"opt"}})
	require.NoError(t, err)
	_, err = initrd.Write(context.Background(), &bytes.Buffer{}, []initrd.Segment{{Stream: st}}, initrd.WriteOptions{})
	require.ErrorIs(t, err, initrd.ErrMissingParent)
	var ee *initrd.EntryError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, "opt/app", ee.Name)
	_, err = initrd.Write(context.Background(), &bytes.Buffer{}, []initrd.Segment{{Stream: st}}, initrd.WriteOptions{Existing: []string{"opt"}})
	require.NoError(t, err)
}

// A tree that changes between PlanStream and the write fails the write
// with ErrChanged naming the directory or file, and nothing outside the
// tree is read.
func TestStreamSourceChanged(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 32768)
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, root string)
		want   error // nil: any error
		entry  string
		ok     bool
	}{
		{name: "unchanged", ok: true, change: func(*testing.T, string) {}},
		{name: "small grew", want: initrd.ErrChanged, entry: "d/e", change: func(t *testing.T, root string) {
			require.NoError(t, os.WriteFile(filepath.Join(root, "d/e/small"), []byte("hello, world"), 0o644))
		}},
		{name: "big shrank", want: initrd.ErrChanged, entry: "d/e", change: func(t *testing.T, root string) {
			require.NoError(t, os.WriteFile(filepath.Join(root, "d/e/big"), []byte(big[:len(big)-1]), 0o644))
		}},
		{name: "removed", want: initrd.ErrChanged, entry: "d/e", change: func(t *testing.T, root string) {
			require.NoError(t, os.Remove(filepath.Join(root, "d/e/small")))
		}},
		{name: "added", want: initrd.ErrChanged, entry: "d/e", change: func(t *testing.T, root string) {
			require.NoError(t, os.WriteFile(filepath.Join(root, "d/e/new"), nil, 0o644))
		}},
		{name: "now a directory", want: initrd.ErrChanged, entry: "d" /* d/e's link count changed */, change: func(t *testing.T, root string) {
			require.NoError(t, os.Remove(filepath.Join(root, "d/e/small")))
			require.NoError(t, os.Mkdir(filepath.Join(root, "d/e/small"), 0o755))
		}},
		{name: "symlink out of the root", want: initrd.ErrChanged, entry: "d/e", change: func(t *testing.T, root string) {
			require.NoError(t, os.Remove(filepath.Join(root, "d/e/small")))
			require.NoError(t, os.Symlink("../../../outside/secret", filepath.Join(root, "d/e/small")))
		}},
		{name: "directory replaced by a symlink out", want: initrd.ErrChanged, entry: "." /* d changed, in the root */, change: func(t *testing.T, root string) {
			require.NoError(t, os.RemoveAll(filepath.Join(root, "d/e")))
			require.NoError(t, os.Symlink("../../outside", filepath.Join(root, "d/e")))
		}},
		{name: "hard link added", want: initrd.ErrChanged, entry: "d/e", change: func(t *testing.T, root string) {
			require.NoError(t, os.Link(filepath.Join(root, "d/e/small"), filepath.Join(root, "d/e/small2")))
		}},
	} {
		for _, ahead := range readAheads {
			t.Run(fmt.Sprintf("%s/read-ahead %d", tc.name, ahead), func(t *testing.T) {
				root := changedSourceTree(t, big)
				st, err := initrd.PlanStream([]initrd.Input{initrd.TreeInput(root, "")}, initrd.PlanOptions{})
				require.NoError(t, err)
				tc.change(t, root)
				var buf bytes.Buffer
				_, err = initrd.Write(context.Background(), &buf, []initrd.Segment{{Stream: st}}, initrd.WriteOptions{ReadAhead: ahead})
				if tc.ok {
					require.NoError(t, err)
					assertSmallAndBig(t, buf.Bytes(), big)
					return
				}
				require.ErrorIs(t, err, tc.want)
				var ee *initrd.EntryError
				require.ErrorAs(t, err, &ee)
				assert.Equal(t, tc.entry, ee.Name)
				assert.NotContains(t, buf.String(), "secret")
			})
		}
	}
}

// fuzzNames are names that sort in the ways that matter: next to '/'
// boundaries, unclean forms of the same path, and names that climb out.
var fuzzNames = []string{"a", "a-", "a-c", "a.d", "a/b", "a/b/c", "a-c/d", "a.d/e", "b", "a/b-", "a/b.c/d",
	"x/y/z", "./a", "/a/b", "a//b", "a/b/", "..", "a/../b", "a0", "a0/x", "usr/lib", "usr-lib"}

// entriesFromBytes decodes b, three bytes an entry, into entries of every
// type with names from fuzzNames.
func entriesFromBytes(b []byte) []initrd.Entry {
	var es []initrd.Entry
	for i := 0; i+2 < len(b) && len(es) < 24; i += 3 {
		name := fuzzNames[int(b[i+1])%len(fuzzNames)]
		other := fuzzNames[int(b[i+2])%len(fuzzNames)]
		h := initrd.Header{Name: name, Mode: 0o644 | uint32(b[i+2]&1)<<6, Uid: uint32(b[i] >> 4), ModTime: time.Unix(int64(b[i+2])*1000, 0)}
		e := initrd.Entry{}
		switch b[i] % 6 {
		case 0:
			h.Type, h.Size = initrd.TypeReg, int64(b[i+2]%3)
			e.Data = bytes.Repeat([]byte{b[i]}, int(h.Size))
		case 1:
			h.Type = initrd.TypeDir
		case 2:
			h.Type, h.Linkname = initrd.TypeSymlink, other
		case 3:
			h.Type, h.Linkname = initrd.TypeLink, other
		case 4:
			h.Type, h.Devmajor, h.Devminor = initrd.TypeChar, 5, uint32(b[i+2])
		case 5:
			h.Type = initrd.TypeFifo
		}
		e.Header = h
		es = append(es, e)
	}
	return es
}

// FuzzPlanStream: for in-memory entries, PlanStream accepts exactly what
// Plan accepts and yields the same entries, with or without last-wins,
// split into one or two inputs at any point.
func FuzzPlanStream(f *testing.F) {
	f.Add([]byte{0, 4, 1, 3, 1, 4, 1, 2, 0}, uint8(0))
	f.Add([]byte{0, 0, 0, 0, 5, 0, 3, 2, 1, 1, 19, 0, 0, 20, 1}, uint8(3))
	f.Add([]byte{1, 0, 0, 0, 0, 2, 3, 8, 0, 3, 4, 0}, uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, split uint8) {
		es := entriesFromBytes(b)
		cut := 0
		if len(es) > 0 {
			cut = int(split>>1) % (len(es) + 1)
		}
		opt := initrd.PlanOptions{LastWins: split&1 == 1, ClampTime: time.Unix(100000, 0), Existing: []string{"usr"}}
		planned, planErr := initrd.Plan(es, opt)
		st, err := initrd.PlanStream([]initrd.Input{initrd.EntriesInput(es[:cut]...), initrd.EntriesInput(es[cut:]...)}, opt)
		if planErr != nil {
			require.Error(t, err, "Plan: %v", planErr)
			return
		}
		require.NoError(t, err)
		var got []initrd.Entry
		for e, err := range st.All() {
			require.NoError(t, err)
			got = append(got, e)
		}
		if len(planned) == 0 {
			require.Empty(t, got)
			return
		}
		require.Equal(t, planned, got)
	})
}
