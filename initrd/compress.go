package initrd

import (
	"encoding/binary"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	"github.com/pierrec/lz4/v4"
)

// Compression is how one segment of an initrd is compressed.
type Compression uint8

// Compressions the kernel can unpack (each needs its CONFIG_RD_* option).
const (
	None Compression = iota
	Gzip
	Zstd
	// XZ writes a single xz stream with CRC32 checks, the only check
	// besides none that the kernel's xz decoder verifies. The stream is a
	// sequence of independent blocks (each starts with a dictionary
	// reset, as xz -T0 writes them), compressed in parallel.
	XZ
	// LZ4 writes the legacy lz4 format (lz4 -l), the only one the kernel
	// reads. It has no end marker, so an LZ4 segment must be the last.
	LZ4
)

var compressionNames = [...]string{"none", "gzip", "zstd", "xz", "lz4"}

// String returns "none", "gzip", "zstd", "xz" or "lz4".
func (c Compression) String() string {
	if int(c) < len(compressionNames) {
		return compressionNames[c]
	}
	return fmt.Sprintf("Compression(%d)", uint8(c))
}

// ParseCompression parses the names String returns (and "" as none).
func ParseCompression(s string) (Compression, error) {
	s = strings.ToLower(s)
	if s == "" {
		return None, nil
	}
	for i, n := range compressionNames {
		if s == n {
			return Compression(i), nil
		}
	}
	return 0, fmt.Errorf("%w: %q (want none, gzip, zstd, xz or lz4)", ErrCompression, s)
}

// DefaultChunkSize is the amount of archive data compressed as one job
// (zstd, gzip) or one independent block (lz4). xz has its own default,
// DefaultXZBlockSize.
const DefaultChunkSize = 2 << 20

// CompressOptions tune a compressor. The zero value is a good default.
//
// Output depends only on the compression, Level and ChunkSize, never on
// Workers, so builds are byte-identical on any machine.
type CompressOptions struct {
	// Level is the compressor's level in its command-line tool's scale
	// (zstd 1-22, gzip 1-9, xz 0-9, lz4 1-12); 0 picks the tool's default.
	// github.com/ulikunitz/xz has no levels: an xz Level is checked and
	// does not change the output.
	Level int
	// Workers is how many chunks are compressed at once; 0 means
	// runtime.GOMAXPROCS(0).
	Workers int
	// ChunkSize is the uncompressed size of each parallel job; 0 means
	// DefaultChunkSize (DefaultXZBlockSize for xz). It bounds memory:
	// about 3*Workers+2 chunks are held at once. For zstd it also sets the
	// window (a quarter of it, at least 64 KiB; a larger window compresses
	// a little better, zstd -3 uses 2 MiB). LZ4 caps it at 8 MiB, the
	// kernel's block size. For xz it is the block size, and the dictionary
	// is as large, up to 8 MiB; each worker's encoder then takes about
	// nine times the block size on top of the chunks.
	ChunkSize int
}

// NewCompressor returns a writer that compresses what is written to it as
// one initrd segment and writes the result to w. Close flushes it; it does
// not close w. Memory use is bounded by about 3*Workers+2 chunks.
//
// Each segment is a single zstd frame, gzip member or xz stream: the kernel
// decompresses one per member and then requires the cpio state to be at a
// record boundary. zstd and gzip still compress in parallel (jobs of a
// fixed size within the frame); xz blocks and legacy lz4 blocks are
// independent, so they are compressed as chunks in parallel and written in
// order. The xz stream is byte for byte what ulikunitz/xz's sequential
// writer gives with the same block size, dictionary and CRC32 check.
//
// If a write to w fails, later Writes and Close return that error and the
// workers stop compressing; Close always waits for every goroutine the
// compressor started, so call it on every path.
func NewCompressor(w io.Writer, c Compression, opt CompressOptions) (io.WriteCloser, error) {
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	chunk := opt.ChunkSize
	if chunk <= 0 {
		chunk = DefaultChunkSize
	}
	switch c {
	case None:
		return nopCloser{w}, nil
	case XZ:
		if opt.Level < 0 || opt.Level > 9 {
			return nil, fmt.Errorf("%w: xz level %d (0-9)", ErrCompression, opt.Level)
		}
		block := opt.ChunkSize
		if block <= 0 {
			block = DefaultXZBlockSize
		}
		return newXZ(w, block, workers)
	case Zstd:
		lvl := opt.Level
		if lvl == 0 {
			lvl = 3
		}
		if lvl < 1 || lvl > 22 {
			return nil, fmt.Errorf("%w: zstd level %d (1-22)", ErrCompression, opt.Level)
		}
		// One frame: the kernel's unzstd reads a single frame per member
		// and rejects a member that stops short of a trailer. Concurrent
		// blocks split the input into jobs of four windows (one chunk), so
		// the frame does not depend on the worker count as long as it is at
		// least 2 (1 disables the job mode). The library keeps about three
		// jobs per worker in flight: the window bounds memory.
		zw, err := zstd.NewWriter(w,
			zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(lvl)),
			zstd.WithEncoderConcurrency(max(workers, 2)),
			zstd.WithConcurrentBlocks(true),
			zstd.WithEncoderCRC(true),
			zstd.WithWindowSize(zstdWindow(chunk)))
		if err != nil {
			return nil, fmt.Errorf("initrd: zstd: %w", err)
		}
		return zw, nil
	case Gzip:
		lvl := opt.Level
		if lvl == 0 {
			lvl = 6
		}
		if lvl < 1 || lvl > 9 {
			return nil, fmt.Errorf("%w: gzip level %d (1-9)", ErrCompression, opt.Level)
		}
		// One member, as the kernel's gunzip needs; pgzip compresses
		// fixed-size blocks in parallel with the previous block as
		// dictionary, so the output depends on the block size only.
		gw, err := pgzip.NewWriterLevel(w, lvl)
		if err != nil {
			return nil, fmt.Errorf("initrd: gzip: %w", err)
		}
		if err := gw.SetConcurrency(max(chunk, 1<<20), max(workers, 2)); err != nil {
			return nil, fmt.Errorf("initrd: gzip: %w", err)
		}
		return gw, nil
	case LZ4:
		if chunk > lz4LegacyBlock {
			chunk = lz4LegacyBlock
		}
		lvl := opt.Level
		if lvl < 0 || lvl > 12 {
			return nil, fmt.Errorf("%w: lz4 level %d (1-12)", ErrCompression, opt.Level)
		}
		return newChunker(w, chunk, workers, chunkCodec{
			header: []byte{0x02, 0x21, 0x4c, 0x18},
			compress: func(dst, src []byte) ([]byte, int64, error) {
				bound := lz4.CompressBlockBound(len(src))
				if cap(dst) < 4+bound {
					dst = make([]byte, 0, 4+bound)
				}
				dst = dst[:4+bound]
				var n int
				var err error
				if lvl > 2 {
					c := lz4.CompressorHC{Level: lz4.CompressionLevel(1 << (8 + min(lvl, 9)))}
					n, err = c.CompressBlock(src, dst[4:])
				} else {
					var c lz4.Compressor
					n, err = c.CompressBlock(src, dst[4:])
				}
				if err != nil {
					return nil, 0, err
				}
				binary.LittleEndian.PutUint32(dst, uint32(n))
				return dst[:4+n], 0, nil
			},
		}), nil
	}
	return nil, fmt.Errorf("%w: %v", ErrCompression, c)
}

const lz4LegacyBlock = 8 << 20

// zstdWindow returns the zstd window for a chunk size: a power of two, a
// quarter of the chunk, clamped to 64 KiB..8 MiB.
func zstdWindow(chunk int) int {
	w := 64 << 10
	for w < 8<<20 && w*2 <= chunk/4 {
		w *= 2
	}
	return w
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// chunkCodec is what a chunker does with its chunks.
type chunkCodec struct {
	// header is written before the first chunk.
	header []byte
	// compress turns one chunk into its output, reusing dst's storage. It
	// runs on the worker goroutines. The int64 is passed on to written.
	compress func(dst, src []byte) ([]byte, int64, error)
	// written, if set, is called on the output goroutine, in input order,
	// after a chunk's output was written, with the chunk's input length
	// and compress's int64.
	written func(in int, meta int64)
	// finish, if set, is called by Close after the last chunk was
	// written, unless something failed before.
	finish func() error
	// emptyChunk makes an empty input give one empty chunk, not none.
	emptyChunk bool
}

// chunker cuts its input into fixed-size chunks, compresses them on worker
// goroutines and writes the results in input order. It owns its goroutines:
// Close waits for all of them. After a failure (of the writer, of a chunk's
// compression, or abort) the workers stop compressing and only drain what
// is queued, so Close returns quickly.
type chunker struct {
	w     io.Writer
	size  int
	codec chunkCodec

	cur     []byte
	chunks  int64          // chunks submitted
	jobs    chan *chunkJob // to workers
	order   chan *chunkJob // to the output goroutine, in input order
	free    chan []byte    // recycled input buffers; bounds memory
	done    chan struct{}  // closed when the output goroutine ends
	wg      sync.WaitGroup
	mu      sync.Mutex
	err     error
	closed  bool
	outFree chan []byte
}

type chunkJob struct {
	in, out []byte
	meta    int64
	err     error
	ready   chan struct{}
}

func newChunker(w io.Writer, size, workers int, codec chunkCodec) *chunker {
	inflight := 2*workers + 1
	c := &chunker{
		w: w, size: size, codec: codec,
		jobs:    make(chan *chunkJob, inflight),
		order:   make(chan *chunkJob, inflight),
		free:    make(chan []byte, inflight+1),
		outFree: make(chan []byte, inflight+1),
		done:    make(chan struct{}),
	}
	for range inflight + 1 {
		c.free <- nil
		c.outFree <- nil
	}
	if len(codec.header) > 0 {
		if _, err := w.Write(codec.header); err != nil {
			c.setErr(err)
		}
	}
	for range workers {
		c.wg.Add(1)
		go c.work()
	}
	go c.output()
	c.cur = c.getBuf()
	return c
}

func (c *chunker) getBuf() []byte {
	b := <-c.free
	if cap(b) < c.size {
		b = make([]byte, 0, c.size)
	}
	return b[:0]
}

func (c *chunker) work() {
	defer c.wg.Done()
	for j := range c.jobs {
		out := <-c.outFree
		if c.getErr() != nil {
			j.out = out[:0] // failed already: nothing more is written
		} else {
			j.out, j.meta, j.err = c.codec.compress(out[:0], j.in)
		}
		close(j.ready)
	}
}

func (c *chunker) output() {
	defer close(c.done)
	for j := range c.order {
		<-j.ready
		err := j.err
		if err == nil && c.getErr() == nil {
			if _, err = c.w.Write(j.out); err == nil && c.codec.written != nil {
				c.codec.written(len(j.in), j.meta)
			}
		}
		if err != nil {
			c.setErr(err)
		}
		c.free <- j.in
		c.outFree <- j.out
	}
}

func (c *chunker) setErr(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
}

func (c *chunker) getErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *chunker) submit() {
	j := &chunkJob{in: c.cur, ready: make(chan struct{})}
	c.order <- j
	c.jobs <- j
	c.cur = nil
	c.chunks++
}

func (c *chunker) Write(p []byte) (int, error) {
	if c.closed {
		return 0, ErrClosed
	}
	if err := c.getErr(); err != nil {
		return 0, err
	}
	n := 0
	for len(p) > 0 {
		if c.cur == nil {
			c.cur = c.getBuf()
		}
		k := min(len(p), c.size-len(c.cur))
		c.cur = append(c.cur, p[:k]...)
		p = p[k:]
		n += k
		if len(c.cur) == c.size {
			c.submit()
			if err := c.getErr(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// abort makes the chunker fail with err (unless it failed before): what is
// queued is dropped, and Close returns at once with the first error.
func (c *chunker) abort(err error) { c.setErr(err) }

// Close compresses what is buffered, waits for every chunk to be written
// and stops the goroutines. It returns the first error.
func (c *chunker) Close() error {
	if c.closed {
		return c.getErr()
	}
	c.closed = true
	if c.getErr() == nil && (len(c.cur) > 0 || c.chunks == 0 && c.codec.emptyChunk) {
		if c.cur == nil {
			c.cur = c.getBuf()
		}
		c.submit()
	}
	close(c.jobs)
	close(c.order)
	c.wg.Wait()
	<-c.done
	if c.getErr() == nil && c.codec.finish != nil {
		if err := c.codec.finish(); err != nil {
			c.setErr(err)
		}
	}
	return c.getErr()
}
