package initrd_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/initrd"
	"github.com/nixboot/nixboot/internal/leaktest"
)

// readAheads are the WriteOptions.ReadAhead values the write tests run
// with: none, one reader, and more readers than this machine may have.
var readAheads = []int{-1, 1, 3}

// makeManyFilesTree writes n files over a few directories, most of them
// small, some just under and over the largest size read ahead (256 KiB),
// some of a MiB: together several times the read-ahead ring (4 MiB), and
// more files than it queues (512).
func makeManyFilesTree(t *testing.T, n int) string {
	t.Helper()
	root := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		size := rng.IntN(8 << 10)
		switch {
		case i%97 == 0:
			size = 300<<10 + rng.IntN(700<<10)
		case i%50 == 0:
			size = 200<<10 + rng.IntN(64<<10) // 256 KiB and a little over
		case i%13 == 0:
			size = 0
		}
		data := make([]byte, size)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		dir := filepath.Join(root, fmt.Sprintf("d%02d", i%7), fmt.Sprintf("e%d", i%3))
		require.NoError(t, os.MkdirAll(dir, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%04d", i)), data, 0o644))
	}
	// Exactly at the limit, and one byte over.
	require.NoError(t, os.WriteFile(filepath.Join(root, "limit"), bytes.Repeat([]byte("L"), 256<<10), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, "limit1"), bytes.Repeat([]byte("M"), 256<<10+1), 0o644))
	return root
}

// Reading ahead changes nothing in the output, from a planned list (with
// in-memory files among the tree's) or from a stream, compressed or not.
func TestReadAheadSameBytes(t *testing.T) {
	root := makeManyFilesTree(t, 800)
	entries, err := initrd.Tree(root, "")
	require.NoError(t, err)
	entries = append(entries, reg("d03/in-memory", "in memory\n"), reg("zz/in-memory", string(bytes.Repeat([]byte("z"), 70000))))
	planned, err := initrd.Plan(entries, initrd.PlanOptions{})
	require.NoError(t, err)
	var ahead int64 // bytes of the files read ahead
	for _, e := range planned {
		if e.Size <= 256<<10 {
			ahead += e.Size
		}
	}
	require.Greater(t, ahead, int64(6<<20), "the tree must wrap the ring")

	write := func(seg initrd.Segment, ahead int) []byte {
		var buf bytes.Buffer
		_, err := initrd.Write(context.Background(), &buf, []initrd.Segment{seg}, initrd.WriteOptions{ReadAhead: ahead})
		require.NoError(t, err)
		return buf.Bytes()
	}
	for _, c := range []initrd.Compression{initrd.None, initrd.Zstd} {
		want := write(initrd.Segment{Compression: c, Entries: planned}, -1)
		for _, ahead := range readAheads[1:] {
			got := write(initrd.Segment{Compression: c, Entries: planned}, ahead)
			require.True(t, bytes.Equal(want, got), "%s, entries, read-ahead %d: %d bytes, want %d", c, ahead, len(got), len(want))
		}
		st, err := initrd.PlanStream([]initrd.Input{initrd.TreeInput(root, "")}, initrd.PlanOptions{})
		require.NoError(t, err)
		want = write(initrd.Segment{Compression: c, Stream: st}, -1)
		for _, ahead := range readAheads[1:] {
			got := write(initrd.Segment{Compression: c, Stream: st}, ahead)
			require.True(t, bytes.Equal(want, got), "%s, stream, read-ahead %d: %d bytes, want %d", c, ahead, len(got), len(want))
		}
	}
	// And the data is the files': spot-check the two at the limit.
	recs, err := readAll(write(initrd.Segment{Entries: planned}, 3))
	require.NoError(t, err)
	got := map[string][]byte{}
	for _, r := range recs {
		got[r.rec.Name] = r.data
	}
	assert.Equal(t, bytes.Repeat([]byte("L"), 256<<10), got["limit"])
	assert.Equal(t, bytes.Repeat([]byte("M"), 256<<10+1), got["limit1"])
}

var errFull = errors.New("device full")

// A write with read-ahead that ends early (cancelled, or its output
// failing) returns that error and leaves no goroutine behind.
func TestReadAheadStops(t *testing.T) {
	root := makeManyFilesTree(t, 600)
	before := runtime.NumGoroutine()
	for _, tc := range []struct {
		name string
		run  func(seg initrd.Segment) error
		want error
	}{
		{"cancelled", func(seg initrd.Segment) error {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			_, err := initrd.Write(ctx, &bytes.Buffer{}, []initrd.Segment{seg}, initrd.WriteOptions{ReadAhead: 3, Progress: func(done, total int64) {
				if done > total/3 {
					cancel()
				}
			}})
			return err
		}, context.Canceled},
		{"output fails", func(seg initrd.Segment) error {
			_, err := initrd.Write(context.Background(), &failAfter{n: 1 << 20, err: errFull}, []initrd.Segment{seg}, initrd.WriteOptions{ReadAhead: 3})
			return err
		}, errFull},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entries, err := initrd.Tree(root, "")
			require.NoError(t, err)
			planned, err := initrd.Plan(entries, initrd.PlanOptions{})
			require.NoError(t, err)
			require.ErrorIs(t, tc.run(initrd.Segment{Entries: planned}), tc.want)
			st, err := initrd.PlanStream([]initrd.Input{initrd.TreeInput(root, "")}, initrd.PlanOptions{})
			require.NoError(t, err)
			require.ErrorIs(t, tc.run(initrd.Segment{Stream: st}), tc.want)
		})
	}
	leaktest.Wait(t, before)
}
