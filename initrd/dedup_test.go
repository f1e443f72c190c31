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

	"github.com/nixboot/nixboot/initrd"
)

// Identical files become one inode: the first in archive order keeps the
// data, the others (and links to them) become hard links to it. Files that
// differ in content or metadata are left alone.
func TestDedup(t *testing.T) {
	ctx := context.Background()
	same := strings.Repeat("same content\n", 1000)
	other := strings.Repeat("SAME CONTENT\n", 1000) // same size, other bytes
	private := reg("d/private", same)
	private.Mode = 0o600 // a link would change its mode: not merged
	planned, err := initrd.Plan([]initrd.Entry{
		reg("c/z", same),
		reg("a/x", same),
		reg("b/y", same),
		{Header: initrd.Header{Name: "f", Type: initrd.TypeLink, Linkname: "b/y"}},
		private,
		reg("e", other),
		reg("empty1", ""),
		reg("empty2", ""),
	}, initrd.PlanOptions{})
	require.NoError(t, err)
	for _, workers := range []int{1, 3} {
		deduped, stats, err := initrd.Dedup(ctx, planned, initrd.DedupOptions{Workers: workers})
		require.NoError(t, err)
		assert.Equal(t, initrd.DedupStats{Files: 2, Bytes: int64(2 * len(same))}, stats)
		byName := map[string]initrd.Entry{}
		for _, e := range deduped {
			byName[e.Name] = e
		}
		assert.Equal(t, initrd.TypeReg, byName["a/x"].Type)
		assert.Equal(t, 4, byName["a/x"].Links)
		for _, n := range []string{"b/y", "c/z", "f"} {
			assert.Equal(t, initrd.TypeLink, byName[n].Type, n)
			assert.Equal(t, "a/x", byName[n].Linkname, n)
		}
		for _, n := range []string{"d/private", "e", "empty1", "empty2"} {
			assert.Equal(t, initrd.TypeReg, byName[n].Type, n)
			assert.Zero(t, byName[n].Links, n)
		}
		assert.Equal(t, initrd.TypeReg, planned[1].Type, "input not modified")

		var plain, small bytes.Buffer
		_, err = initrd.Write(ctx, &plain, []initrd.Segment{{Entries: planned}}, initrd.WriteOptions{})
		require.NoError(t, err)
		_, err = initrd.Write(ctx, &small, []initrd.Segment{{Entries: deduped}}, initrd.WriteOptions{})
		require.NoError(t, err)
		assert.Less(t, small.Len(), plain.Len()-len(same), "one copy of the data saved at least")

		// Read back: all four names share an inode, nlink 4, one data copy.
		recs, err := readAll(small.Bytes())
		require.NoError(t, err)
		inodes := map[string]uint32{}
		var withData int
		for _, r := range recs {
			inodes[r.rec.Name] = r.rec.Inode
			if r.rec.Name == "a/x" || r.rec.Name == "b/y" || r.rec.Name == "c/z" || r.rec.Name == "f" {
				assert.Equal(t, uint32(4), r.rec.Nlink, r.rec.Name)
				if len(r.data) > 0 {
					withData++
					assert.Equal(t, same, string(r.data))
				}
			}
		}
		assert.Equal(t, 1, withData)
		assert.Equal(t, inodes["a/x"], inodes["b/y"])
		assert.Equal(t, inodes["a/x"], inodes["c/z"])
		assert.Equal(t, inodes["a/x"], inodes["f"])
		assert.NotEqual(t, inodes["a/x"], inodes["d/private"])
		rep, err := initrd.Inspect(ctx, bytes.NewReader(small.Bytes()), initrd.InspectOptions{})
		require.NoError(t, err)
		assert.Empty(t, rep.Clashes)
		assert.Empty(t, rep.Dropped)
	}
}

// Dedup reads host files (only those with a same-size partner) and notices
// a file that changed since it was planned.
func TestDedupSources(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	data := strings.Repeat("x", 100<<10)
	for _, n := range []string{"one", "two", "three"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, n), []byte(data), 0o644))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "three"), []byte(strings.Repeat("y", len(data))), 0o644))
	// Dedup compares only files with the same modification time: writes
	// that straddle a second boundary (a loaded machine) must not make the
	// test find nothing to merge.
	mtime := time.Unix(1700000000, 0)
	for _, n := range []string{"one", "two", "three"} {
		require.NoError(t, os.Chtimes(filepath.Join(dir, n), mtime, mtime))
	}
	entries, err := initrd.Tree(dir, "d")
	require.NoError(t, err)
	planned, err := initrd.Plan(entries, initrd.PlanOptions{})
	require.NoError(t, err)
	deduped, stats, err := initrd.Dedup(ctx, planned, initrd.DedupOptions{})
	require.NoError(t, err)
	assert.Equal(t, 1, stats.Files)
	var buf bytes.Buffer
	_, err = initrd.Write(ctx, &buf, []initrd.Segment{{Compression: initrd.Gzip, Entries: deduped}}, initrd.WriteOptions{})
	require.NoError(t, err)
	recs, err := readAll(buf.Bytes())
	require.NoError(t, err)
	got := map[string]readRec{}
	for _, r := range recs {
		got[r.rec.Name] = r
	}
	// "one" < "three" < "two": one keeps the data, two links to it.
	assert.Equal(t, data, string(got["d/one"].data))
	assert.Empty(t, got["d/two"].data)
	assert.Equal(t, got["d/one"].rec.Inode, got["d/two"].rec.Inode)
	assert.NotEqual(t, got["d/one"].rec.Inode, got["d/three"].rec.Inode)

	require.NoError(t, os.WriteFile(filepath.Join(dir, "two"), []byte(data+"more"), 0o644))
	_, _, err = initrd.Dedup(ctx, planned, initrd.DedupOptions{})
	require.ErrorIs(t, err, initrd.ErrChanged)
	var ee *initrd.EntryError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, "d/two", ee.Name)
}

// Tree stays inside its root: a symlink to a directory outside is stored
// as a symlink and not descended into, and a file swapped for a symlink
// leading outside after planning is refused when the segment is written.
func TestTreeConfined(t *testing.T) {
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	root := filepath.Join(base, "root")
	require.NoError(t, os.MkdirAll(outside, 0o755))
	require.NoError(t, os.MkdirAll(root, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o600))
	require.NoError(t, os.Symlink("../outside", filepath.Join(root, "escape")))
	require.NoError(t, os.WriteFile(filepath.Join(root, "file"), []byte("public"), 0o644))

	entries, err := initrd.Tree(root, "")
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name+":"+e.Type.String()+":"+e.Linkname)
	}
	assert.ElementsMatch(t, []string{"escape:slink:../outside", "file:file:"}, names)

	planned, err := initrd.Plan(entries, initrd.PlanOptions{})
	require.NoError(t, err)
	require.NoError(t, os.Remove(filepath.Join(root, "file")))
	require.NoError(t, os.Symlink("../outside/secret", filepath.Join(root, "file")))
	var buf bytes.Buffer
	_, err = initrd.Write(context.Background(), &buf, []initrd.Segment{{Entries: planned}}, initrd.WriteOptions{})
	require.Error(t, err)
	var ee *initrd.EntryError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, "file", ee.Name)
	assert.NotContains(t, buf.String(), "secret")
	_, _, err = initrd.Dedup(context.Background(), append(planned, planned[1]), initrd.DedupOptions{})
	require.Error(t, err, "Dedup reads through the same confinement")
}

// Files of a tree are read relative to their directory, without following
// symlinks: a file that changed size, vanished or was swapped for a
// directory or for a symlink after planning fails the build and names the
// entry, and nothing outside the root is read. Unchanged files, small and
// larger than one read buffer, come through intact.
func TestTreeSourceChanged(t *testing.T) {
	// 512 KiB: two full reads of the writer's 256 KiB buffer, so growth by
	// one byte is only seen by the extra read after the last one.
	big := strings.Repeat("0123456789abcdef", 32768)
	for _, tc := range []struct {
		name   string
		file   string // "small" or "big"
		change func(t *testing.T, root, file string)
		want   error // nil: any error; ignored when ok
		ok     bool
	}{
		{name: "unchanged small", file: "small", ok: true, change: func(*testing.T, string, string) {}},
		{name: "unchanged big", file: "big", ok: true, change: func(*testing.T, string, string) {}},
		{name: "small grew", file: "small", want: initrd.ErrChanged, change: func(t *testing.T, _, f string) {
			require.NoError(t, os.WriteFile(f, []byte("hello, world"), 0o644))
		}},
		{name: "small shrank", file: "small", want: initrd.ErrChanged, change: func(t *testing.T, _, f string) {
			require.NoError(t, os.WriteFile(f, []byte("hel"), 0o644))
		}},
		{name: "big grew by one byte", file: "big", want: initrd.ErrChanged, change: func(t *testing.T, _, f string) {
			require.NoError(t, os.WriteFile(f, []byte(big+"!"), 0o644))
		}},
		{name: "big shrank", file: "big", want: initrd.ErrChanged, change: func(t *testing.T, _, f string) {
			require.NoError(t, os.WriteFile(f, []byte(big[:len(big)-1]), 0o644))
		}},
		{name: "removed", file: "small", want: os.ErrNotExist, change: func(t *testing.T, _, f string) {
			require.NoError(t, os.Remove(f))
		}},
		{name: "now a directory", file: "small", change: func(t *testing.T, _, f string) {
			require.NoError(t, os.Remove(f))
			require.NoError(t, os.Mkdir(f, 0o755))
		}},
		{name: "symlink out of the root", file: "small", change: func(t *testing.T, root, f string) {
			require.NoError(t, os.Remove(f))
			require.NoError(t, os.Symlink("../../../outside/secret", f)) // from root/d/e to base/outside
		}},
	} {
		for _, ahead := range readAheads {
			t.Run(fmt.Sprintf("%s/read-ahead %d", tc.name, ahead), func(t *testing.T) {
				root := changedSourceTree(t, big)
				entries, err := initrd.Tree(root, "")
				require.NoError(t, err)
				planned, err := initrd.Plan(entries, initrd.PlanOptions{})
				require.NoError(t, err)
				tc.change(t, root, filepath.Join(root, "d", "e", tc.file))
				var buf bytes.Buffer
				_, err = initrd.Write(context.Background(), &buf, []initrd.Segment{{Entries: planned}}, initrd.WriteOptions{ReadAhead: ahead})
				if tc.ok {
					require.NoError(t, err)
					assertSmallAndBig(t, buf.Bytes(), big)
					return
				}
				require.Error(t, err)
				if tc.want != nil {
					require.ErrorIs(t, err, tc.want)
				}
				var ee *initrd.EntryError
				require.ErrorAs(t, err, &ee)
				assert.Equal(t, "d/e/"+tc.file, ee.Name)
				assert.NotContains(t, buf.String(), "secret")
			})
		}
	}
}

// changedSourceTree makes the tree of the changed-source tests and returns
// its root: d/e/small ("hello") and d/e/big (big), beside ../outside/secret,
// which no archive may contain.
func changedSourceTree(t *testing.T, big string) string {
	t.Helper()
	base := t.TempDir()
	root := filepath.Join(base, "root")
	require.NoError(t, os.MkdirAll(filepath.Join(base, "outside"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(base, "outside", "secret"), []byte("secret"), 0o600))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "d", "e"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "d", "e", "small"), []byte("hello"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, "d", "e", "big"), []byte(big), 0o644))
	return root
}

// assertSmallAndBig checks the files of the changed-source tests in an
// uncompressed archive: d/e/small holds "hello", d/e/big holds big.
func assertSmallAndBig(t *testing.T, archive []byte, big string) {
	t.Helper()
	recs, err := readAll(archive)
	require.NoError(t, err)
	got := map[string]string{}
	for _, r := range recs {
		got[r.rec.Name] = string(r.data)
	}
	assert.Equal(t, "hello", got["d/e/small"])
	assert.Equal(t, big, got["d/e/big"])
}
