package initrd_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/ulikunitz/xz"

	"github.com/nixboot/nixboot/initrd"
	"github.com/nixboot/nixboot/internal/leaktest"
	"github.com/nixboot/nixboot/internal/testenv"
)

// mixedData returns n bytes that compress like an initrd: runs of text made
// of a few hundred words, with stretches of random bytes.
func mixedData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	words := make([]string, 300)
	for i := range words {
		w := make([]byte, 2+r.IntN(8))
		for j := range w {
			w[j] = byte('a' + r.IntN(26))
		}
		words[i] = string(w)
	}
	b := make([]byte, 0, n+64)
	for len(b) < n {
		if r.IntN(1000) == 0 {
			k := r.IntN(4096)
			for range k {
				b = append(b, byte(r.Uint32()))
			}
			continue
		}
		b = append(b, words[r.IntN(len(words))]...)
		b = append(b, " \n"[r.IntN(2)])
	}
	return b[:n]
}

// compressXZ compresses data with NewCompressor, in writes of random sizes.
func compressXZ(t *testing.T, data []byte, opt initrd.CompressOptions, seed uint64) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := initrd.NewCompressor(&out, initrd.XZ, opt)
	require.NoError(t, err)
	r := rand.New(rand.NewPCG(seed, 2))
	for p := data; len(p) > 0; {
		k := min(len(p), 1+r.IntN(300_000))
		n, err := w.Write(p[:k])
		require.NoError(t, err)
		require.Equal(t, k, n)
		p = p[k:]
	}
	require.NoError(t, w.Close())
	return out.Bytes()
}

// The parallel xz compressor writes, byte for byte, what ulikunitz/xz's
// sequential writer writes with the same block size, dictionary and check,
// whatever the number of workers and however the input is cut into
// writes; and its output decodes to the input.
func TestXZMatchesSequentialWriter(t *testing.T) {
	for _, tc := range []struct {
		name        string
		size, chunk int
	}{
		{"empty", 0, 64 << 10},
		{"one byte", 1, 64 << 10},
		{"exactly one block", 64 << 10, 64 << 10},
		{"one block and a byte", 64<<10 + 1, 64 << 10},
		{"several blocks of an odd size", 1_234_567, 100_000},
		{"default block size", 2*initrd.DefaultXZBlockSize + 5, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := mixedData(tc.size, uint64(tc.size))
			block := tc.chunk
			if block == 0 {
				block = initrd.DefaultXZBlockSize
			}
			var want bytes.Buffer
			xw, err := xz.WriterConfig{BlockSize: int64(block), DictCap: min(block, 8<<20), CheckSum: xz.CRC32}.NewWriter(&want)
			require.NoError(t, err)
			_, err = xw.Write(data)
			require.NoError(t, err)
			require.NoError(t, xw.Close())

			for _, workers := range []int{1, 2, 8} {
				got := compressXZ(t, data, initrd.CompressOptions{ChunkSize: tc.chunk, Workers: workers}, uint64(workers))
				require.True(t, bytes.Equal(want.Bytes(), got),
					"%d workers: %d bytes, sequential writer %d bytes", workers, len(got), want.Len())
			}
			r, err := xz.NewReader(bytes.NewReader(want.Bytes()))
			require.NoError(t, err)
			back, err := io.ReadAll(r)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(data, back), "round trip")
		})
	}
}

// xz-utils accepts a multi-block stream: xz -t, xz -dc, and xz --list sees
// every block with a CRC32 check.
func TestXZMultiBlockXZUtils(t *testing.T) {
	xzCmd := testenv.Command(t, "xz")
	const chunk, blocks = 256 << 10, 6
	data := mixedData(blocks*chunk-1000, 7)
	file := filepath.Join(t.TempDir(), "seg.xz")
	require.NoError(t, os.WriteFile(file, compressXZ(t, data, initrd.CompressOptions{ChunkSize: chunk, Workers: 3}, 1), 0o644))

	out, err := exec.Command(xzCmd, "-t", file).CombinedOutput()
	require.NoError(t, err, "xz -t: %s", out)
	got, err := exec.Command(xzCmd, "-dc", file).Output()
	require.NoError(t, err)
	assert.True(t, bytes.Equal(data, got), "xz -dc gives back the input")
	assertXZBlocks(t, xzCmd, file, blocks)
}

// assertXZBlocks checks with xz --robot --list -vv that the xz stream in
// file has n blocks, each with a CRC32 check, and no other stream.
func assertXZBlocks(t *testing.T, xzCmd, file string, n int) {
	t.Helper()
	out, err := exec.Command(xzCmd, "--robot", "--list", "-vv", file).Output()
	require.NoError(t, err)
	var streams, blocks int
	for line := range strings.Lines(string(out)) {
		f := strings.Split(strings.TrimSuffix(line, "\n"), "\t")
		switch f[0] {
		case "stream":
			streams++
			assert.Equal(t, "CRC32", f[8], "stream check: %s", line)
		case "block":
			blocks++
			assert.Equal(t, "CRC32", f[9], "block check: %s", line)
		}
	}
	assert.Equal(t, 1, streams, "xz --list:\n%s", out)
	assert.Equal(t, n, blocks, "xz --list:\n%s", out)
}

// failAfter accepts n bytes, then fails.
type failAfter struct {
	n   int
	err error
}

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		k := f.n
		f.n = 0
		return k, f.err
	}
	f.n -= len(p)
	return len(p), nil
}

// A failing writer stops the compression: Write and Close return its
// error, and no goroutine is left running. The failure may come while
// blocks are written or at the index and footer Close writes last.
func TestCompressorFailingWriter(t *testing.T) {
	boom := errors.New("disk full")
	const chunk = 64 << 10
	data := mixedData(40*chunk, 3)
	for _, comp := range []initrd.Compression{initrd.XZ, initrd.LZ4} {
		opt := initrd.CompressOptions{ChunkSize: chunk, Workers: 4}
		var full bytes.Buffer
		w, err := initrd.NewCompressor(&full, comp, opt)
		require.NoError(t, err)
		_, err = w.Write(data)
		require.NoError(t, err)
		require.NoError(t, w.Close())

		for _, tc := range []struct {
			name      string
			limit     int
			failWrite bool // Write sees the error (else only Close)
		}{
			{"at the header", 0, true},
			{"after a few blocks", full.Len() / 10, true},
			{"at the end", full.Len() - 3, false},
		} {
			t.Run(comp.String()+"/"+tc.name, func(t *testing.T) {
				before := runtime.NumGoroutine()
				w, err := initrd.NewCompressor(&failAfter{n: tc.limit, err: boom}, comp, opt)
				require.NoError(t, err)
				var werr error
				for p := data; len(p) > 0 && werr == nil; p = p[min(len(p), 10_000):] {
					_, werr = w.Write(p[:min(len(p), 10_000)])
				}
				if tc.failWrite {
					require.ErrorIs(t, werr, boom)
				} else {
					require.NoError(t, werr)
				}
				require.ErrorIs(t, w.Close(), boom)
				require.ErrorIs(t, w.Close(), boom, "a second Close")
				_, err = w.Write([]byte("x"))
				require.ErrorIs(t, err, initrd.ErrClosed)
				leaktest.Wait(t, before)
			})
		}
	}
}

// A build cancelled in the middle of an xz segment stops its workers at
// once, writes no index, and leaves no goroutine running.
func TestXZCancelledBuild(t *testing.T) {
	var entries []initrd.Entry
	for i := range 600 { // the build checks its context every 256 entries
		d := mixedData(8<<10, uint64(i))
		entries = append(entries, initrd.Entry{Header: initrd.Header{
			Name: fmt.Sprintf("f%03d", i), Type: initrd.TypeReg, Mode: 0o644, Size: int64(len(d)),
		}, Data: d})
	}
	planned, err := initrd.Plan(entries, initrd.PlanOptions{})
	require.NoError(t, err)
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out bytes.Buffer
	_, err = initrd.WriteSegment(ctx, &out, initrd.Segment{
		Compression: initrd.XZ, Compress: initrd.CompressOptions{ChunkSize: 64 << 10, Workers: 2}, Entries: planned,
	}, initrd.WriteOptions{Progress: func(done, total int64) {
		if done > total/4 {
			cancel()
		}
	}})
	require.ErrorIs(t, err, context.Canceled)
	assert.False(t, bytes.HasSuffix(out.Bytes(), []byte("YZ")), "no stream footer after a cancelled build")
	leaktest.Wait(t, before)
}

// FuzzXZMatchesSequentialWriter: for any input, block size and worker
// count, the parallel xz compressor writes what ulikunitz/xz's sequential
// writer writes with the same block size, dictionary and check, and the
// result decodes to the input.
func FuzzXZMatchesSequentialWriter(f *testing.F) {
	f.Add([]byte{}, uint16(0), uint8(1))
	f.Add([]byte("hello, hello, hello"), uint16(1), uint8(2))
	f.Add(mixedData(3000, 5), uint16(700), uint8(3)) // small: the engine minimizes new inputs byte by byte
	f.Fuzz(func(t *testing.T, data []byte, chunk uint16, workers uint8) {
		block := 256 + int(chunk) // 256 B to 64 KiB: many blocks from small inputs
		var want bytes.Buffer
		xw, err := xz.WriterConfig{BlockSize: int64(block), DictCap: min(max(block, 4096), 8<<20), CheckSum: xz.CRC32}.NewWriter(&want)
		require.NoError(t, err)
		_, err = xw.Write(data)
		require.NoError(t, err)
		require.NoError(t, xw.Close())

		var got bytes.Buffer
		w, err := initrd.NewCompressor(&got, initrd.XZ, initrd.CompressOptions{ChunkSize: block, Workers: 1 + int(workers%8)})
		require.NoError(t, err)
		_, err = w.Write(data)
		require.NoError(t, err)
		require.NoError(t, w.Close())
		require.True(t, bytes.Equal(want.Bytes(), got.Bytes()), "%d bytes in %d-byte blocks", len(data), block)

		r, err := xz.NewReader(&got)
		require.NoError(t, err)
		back, err := io.ReadAll(r)
		require.NoError(t, err)
		require.True(t, bytes.Equal(data, back), "round trip")
	})
}
