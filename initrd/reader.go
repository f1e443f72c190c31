package initrd

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
)

// Record is one cpio record as stored in an initrd, read by Reader.
// Hard links appear as TypeReg records sharing an Inode with Nlink >= 2,
// as in the archive; symlink targets are in Linkname.
type Record struct {
	Header
	Inode uint32
	Nlink uint32
	// RawMode is the whole mode field; Type is 0 if its type bits are not
	// a known file type.
	RawMode uint32
	// FSMajor and FSMinor are the record's devmajor/devminor fields (the
	// filesystem it came from), part of the kernel's hard-link key.
	FSMajor, FSMinor uint32
	// NameSize is the stored name length including the NUL.
	NameSize uint32
	// Checksum is true for "070702" records, which old kernels reject and
	// new ones verify.
	Checksum bool
	Segment  int   // 0-based index of the segment holding the record
	Offset   int64 // offset of the header: in the file for uncompressed segments, else in the segment's unpacked data
	// Archive counts the cpio archives (trailers) within the segment.
	Archive int
}

// Reader reads the records of every segment of an initrd in order,
// detecting and decompressing each segment (none, gzip, zstd, xz, legacy
// lz4). Like archive/tar's Reader: Next, then Read for a regular file's
// data. Errors are *FormatError values naming the offset and entry.
//
// Reader never buffers more than a record's name and symlink target (at
// most 1 MiB) plus the decompressors' windows.
type Reader struct {
	// MaxUnpacked, when positive, limits the unpacked bytes of each
	// compressed segment: past it, reading fails with ErrTooLarge. It
	// guards against decompression bombs; set it before the first Next.
	MaxUnpacked int64

	in       *inbuf
	seg      *segReader
	segs     []SegmentInfo
	cur      *Record
	left     int64 // data bytes of cur not yet read
	pad      int64
	err      error
	nseg     int
	trailerd bool // the last record read was a trailer
}

// NewReader returns a Reader reading the initrd from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{in: &inbuf{br: bufio.NewReaderSize(r, 64<<10)}}
}

// Segments returns what has been read of each segment so far; after Next
// returned io.EOF it describes the whole initrd.
func (r *Reader) Segments() []SegmentInfo { return r.segs }

// maxNameSize bounds the names Reader reads; the kernel itself skips
// anything past PATH_MAX.
const maxNameSize = 1 << 20

type segReader struct {
	index   int
	comp    Compression
	start   int64
	data    *inbuf // decompressed (or raw) cpio stream
	raw     bool
	chain   *memberChain
	archive int
}

func (r *Reader) ferr(off int64, entry string, err error) error {
	seg := r.nseg - 1
	if r.seg != nil {
		seg = r.seg.index
	}
	return &FormatError{Offset: off, Segment: max(seg, 0), Entry: entry, Err: err}
}

// Next advances to the next record, across segment boundaries. It returns
// io.EOF after the last one. Trailers are consumed, not returned.
func (r *Reader) Next() (*Record, error) {
	if r.err != nil {
		return nil, r.err
	}
	rec, err := r.next()
	if err != nil {
		r.err = err
		r.finishSeg()
	}
	return rec, err
}

func (r *Reader) next() (*Record, error) {
	if r.cur != nil {
		if _, err := io.CopyN(io.Discard, r.seg.data, r.left+r.pad); err != nil {
			return nil, r.ferr(r.cur.Offset, r.cur.Name, fmt.Errorf("%w: truncated data: %w", ErrFormat, noEOF(err)))
		}
		r.cur, r.left, r.pad = nil, 0, 0
	}
	for {
		if r.seg == nil {
			if err := r.startSeg(); err != nil {
				return nil, err
			}
		}
		s := r.seg
		if r.trailerd {
			// After a trailer: NUL padding, then more archives or the end.
			// An uncompressed segment ends at its trailer; what follows
			// is the next segment.
			if s.raw {
				r.finishSeg()
				continue
			}
			if err := s.data.skipZeros(); err != nil {
				return nil, r.ferr(s.data.off, "", err)
			}
			b, err := s.data.Peek(1)
			if len(b) == 0 {
				if err != nil && err != io.EOF {
					return nil, r.ferr(s.data.off, "", err)
				}
				r.finishSeg()
				continue
			}
			r.trailerd = false
			s.archive++
		}
		hdrOff := s.data.off
		if s.raw && hdrOff%4 != 0 {
			return nil, r.ferr(hdrOff, "", fmt.Errorf("%w: uncompressed archive not 4-byte aligned (the kernel reports broken padding)", ErrFormat))
		}
		rec, err := r.readHeader(s)
		if err == io.EOF && !s.raw {
			// A compressed stream may end without a trailer.
			r.finishSeg()
			continue
		}
		if err != nil {
			return nil, err
		}
		if rec == nil { // trailer
			r.trailerd = true
			continue
		}
		rec.Offset = hdrOff
		r.segs[len(r.segs)-1].Entries++
		return rec, nil
	}
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func parseHex(b []byte) (uint32, bool) {
	var v uint32
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint32(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | uint32(c-'a'+10)
		case c >= 'A' && c <= 'F':
			v = v<<4 | uint32(c-'A'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

var fieldNames = [...]string{"ino", "mode", "uid", "gid", "nlink", "mtime", "filesize", "devmajor", "devminor", "rdevmajor", "rdevminor", "namesize", "check"}

// readHeader reads one record header, name and (for symlinks) target. It
// returns (nil, nil) for a trailer and io.EOF when the stream ends cleanly
// before a header.
func (r *Reader) readHeader(s *segReader) (*Record, error) {
	off := s.data.off
	var h [110]byte
	n, err := io.ReadFull(s.data, h[:])
	if n == 0 && err == io.EOF {
		return nil, io.EOF
	}
	if err != nil {
		return nil, r.ferr(off, "", fmt.Errorf("%w: truncated header: %w", ErrFormat, noEOF(err)))
	}
	if !bytes.HasPrefix(h[:], []byte("07070")) || (h[5] != '1' && h[5] != '2') {
		return nil, r.ferr(off, "", fmt.Errorf("%w: bad magic %q (want 070701)", ErrFormat, h[:6]))
	}
	var f [13]uint32
	for i := range f {
		v, ok := parseHex(h[6+8*i : 14+8*i])
		if !ok {
			return nil, r.ferr(off, "", fmt.Errorf("%w: %s field %q is not hex (the kernel reports a damaged header)", ErrFormat, fieldNames[i], h[6+8*i:14+8*i]))
		}
		f[i] = v
	}
	rec := &Record{Inode: f[0], RawMode: f[1], Nlink: f[4], FSMajor: f[7], FSMinor: f[8], NameSize: f[11],
		Checksum: h[5] == '2', Segment: s.index, Archive: s.archive}
	rec.Mode = f[1] & 0o7777
	rec.Type = typeFromMode(f[1])
	rec.Uid, rec.Gid = f[2], f[3]
	rec.ModTime = time.Unix(int64(f[5]), 0)
	rec.Size = int64(f[6])
	rec.Devmajor, rec.Devminor = f[9], f[10]
	if rec.NameSize == 0 {
		return nil, r.ferr(off, "", fmt.Errorf("%w: namesize 0", ErrFormat))
	}
	if rec.NameSize > maxNameSize {
		return nil, r.ferr(off, "", fmt.Errorf("%w: namesize %d", ErrTooLarge, rec.NameSize))
	}
	name := make([]byte, rec.NameSize)
	if _, err := io.ReadFull(s.data, name); err != nil {
		return nil, r.ferr(off, "", fmt.Errorf("%w: truncated name: %w", ErrFormat, noEOF(err)))
	}
	if name[len(name)-1] != 0 {
		return nil, r.ferr(off, string(name[:min(len(name), 80)]), fmt.Errorf("%w: name not NUL-terminated", ErrFormat))
	}
	rec.Name = string(name[:len(name)-1])
	if pad := (4 - (110+int64(rec.NameSize))%4) % 4; pad > 0 {
		if _, err := io.CopyN(io.Discard, s.data, pad); err != nil {
			return nil, r.ferr(off, rec.Name, fmt.Errorf("%w: truncated name padding: %w", ErrFormat, noEOF(err)))
		}
	}
	if rec.Name == "TRAILER!!!" {
		if rec.Size != 0 {
			return nil, r.ferr(off, rec.Name, fmt.Errorf("%w: trailer with data", ErrFormat))
		}
		return nil, nil
	}
	r.cur, r.left, r.pad = rec, rec.Size, (4-rec.Size%4)%4
	if rec.Type == TypeSymlink && rec.Size <= maxNameSize {
		t := make([]byte, rec.Size)
		if _, err := io.ReadFull(s.data, t); err != nil {
			return nil, r.ferr(off, rec.Name, fmt.Errorf("%w: truncated symlink target: %w", ErrFormat, noEOF(err)))
		}
		rec.Linkname = string(t)
		r.left = 0
		rec.Size = 0
	}
	return rec, nil
}

// Read reads the current record's data (a regular file's content).
func (r *Reader) Read(p []byte) (int, error) {
	if r.cur == nil || r.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.seg.data.Read(p)
	r.left -= int64(n)
	if err == io.EOF && r.left > 0 {
		err = r.ferr(r.cur.Offset, r.cur.Name, fmt.Errorf("%w: truncated data", ErrFormat))
		r.err = err
	}
	if err == io.EOF {
		err = nil
	}
	return n, err
}

// startSeg finds the next segment in the input, skipping NUL padding.
func (r *Reader) startSeg() error {
	if err := r.in.skipZeros(); err != nil {
		return r.ferr(r.in.off, "", err)
	}
	off := r.in.off
	magic, err := r.in.Peek(6)
	if len(magic) == 0 {
		if err == io.EOF || err == nil {
			return io.EOF
		}
		return r.ferr(off, "", err)
	}
	s := &segReader{index: r.nseg, start: off}
	r.nseg++
	r.trailerd = false
	comp, known := detect(magic)
	switch {
	case comp == None && known:
		s.raw, s.data = true, r.in
	case known:
		chain, err := newMemberChain(r.in, comp, r.MaxUnpacked)
		if err != nil {
			return r.ferr(off, "", err)
		}
		s.chain = chain
		s.data = &inbuf{br: bufio.NewReaderSize(chain, 64<<10)}
	default:
		name := compressionName(magic)
		if name != "" {
			return r.ferr(off, "", fmt.Errorf("%w: %s compression is not supported by this reader", ErrCompression, name))
		}
		return r.ferr(off, "", fmt.Errorf("%w: unknown data %q at the start of a segment (the kernel reports invalid magic)", ErrFormat, magic))
	}
	s.comp = comp
	r.seg = s
	r.segs = append(r.segs, SegmentInfo{Compression: comp, Offset: off})
	return nil
}

func (r *Reader) finishSeg() {
	s := r.seg
	if s == nil {
		return
	}
	info := &r.segs[len(r.segs)-1]
	info.Size = r.in.off - s.start
	info.Unpacked = s.data.off
	if s.raw {
		info.Unpacked = r.in.off - s.start
	}
	if s.chain != nil {
		s.chain.close()
	}
	r.seg = nil
	r.trailerd = false
}

func detect(m []byte) (Compression, bool) {
	switch {
	case len(m) >= 5 && string(m[:5]) == "07070":
		return None, true
	case len(m) >= 2 && m[0] == 0x1f && (m[1] == 0x8b || m[1] == 0x9e):
		return Gzip, true
	case len(m) >= 4 && string(m[:4]) == "\x28\xb5\x2f\xfd":
		return Zstd, true
	case len(m) >= 6 && string(m[:6]) == "\xfd7zXZ\x00":
		return XZ, true
	case len(m) >= 4 && string(m[:4]) == "\x02\x21\x4c\x18":
		return LZ4, true
	}
	return 0, false
}

func compressionName(m []byte) string {
	switch {
	case len(m) >= 3 && string(m[:3]) == "BZh":
		return "bzip2"
	case len(m) >= 3 && string(m[:3]) == "\x5d\x00\x00":
		return "lzma"
	case len(m) >= 3 && string(m[:3]) == "\x89LZ":
		return "lzo"
	}
	return ""
}

// inbuf is a bufio.Reader that counts what it hands out.
type inbuf struct {
	br  *bufio.Reader
	off int64
}

func (b *inbuf) Read(p []byte) (int, error) {
	n, err := b.br.Read(p)
	b.off += int64(n)
	return n, err
}

func (b *inbuf) ReadByte() (byte, error) {
	c, err := b.br.ReadByte()
	if err == nil {
		b.off++
	}
	return c, err
}

func (b *inbuf) UnreadByte() error {
	err := b.br.UnreadByte()
	if err == nil {
		b.off--
	}
	return err
}

func (b *inbuf) Peek(n int) ([]byte, error) { return b.br.Peek(n) }

func (b *inbuf) Discard(n int) (int, error) {
	k, err := b.br.Discard(n)
	b.off += int64(k)
	return k, err
}

// skipZeros consumes NUL bytes; running out of input is not an error.
func (b *inbuf) skipZeros() error {
	for {
		p, err := b.br.Peek(1)
		if len(p) == 0 {
			if err == io.EOF {
				return nil
			}
			return err
		}
		if p[0] != 0 {
			return nil
		}
		buf, _ := b.br.Peek(b.br.Buffered())
		k := 0
		for k < len(buf) && buf[k] == 0 {
			k++
		}
		b.Discard(k)
	}
}

// memberChain decompresses consecutive members (gzip members, zstd frames,
// xz streams, lz4 legacy streams) of one compression as one stream,
// consuming exactly their bytes from in so the next segment can follow.
type memberChain struct {
	in   *inbuf
	comp Compression
	cur  io.Reader
	gz   *gzip.Reader
	zd   *zstd.Decoder
	done bool
	// limit caps the bytes produced (0: no cap); n counts them.
	limit, n int64
}

func newMemberChain(in *inbuf, comp Compression, limit int64) (*memberChain, error) {
	c := &memberChain{in: in, comp: comp, limit: limit}
	if err := c.nextMember(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *memberChain) nextMember() error {
	switch c.comp {
	case Gzip:
		if c.gz == nil {
			gz, err := gzip.NewReader(c.in)
			if err != nil {
				return fmt.Errorf("%w: gzip: %w", ErrFormat, err)
			}
			c.gz = gz
		} else if err := c.gz.Reset(c.in); err != nil {
			return fmt.Errorf("%w: gzip: %w", ErrFormat, err)
		}
		c.gz.Multistream(false)
		c.cur = c.gz
	case Zstd:
		fr := &zstdFrame{in: c.in}
		if c.zd == nil {
			zd, err := zstd.NewReader(fr, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(c.maxWindow()))
			if err != nil {
				return fmt.Errorf("%w: zstd: %w", ErrFormat, err)
			}
			c.zd = zd
		} else if err := c.zd.Reset(fr); err != nil {
			return fmt.Errorf("%w: zstd: %w", ErrFormat, err)
		}
		c.cur = c.zd
	case XZ:
		xr, err := xz.ReaderConfig{SingleStream: true}.NewReader(c.in)
		if err != nil {
			return fmt.Errorf("%w: xz: %w", ErrFormat, err)
		}
		c.cur = &xzStream{r: xr, in: c.in}
	case LZ4:
		c.cur = &lz4Legacy{in: c.in}
	}
	return nil
}

func (c *memberChain) Read(p []byte) (int, error) {
	n, err := c.read(p)
	c.n += int64(n)
	if c.limit > 0 && c.n > c.limit {
		return n, fmt.Errorf("%w: segment unpacks to more than %d bytes", ErrTooLarge, c.limit)
	}
	return n, err
}

func (c *memberChain) read(p []byte) (int, error) {
	for {
		if c.done {
			return 0, io.EOF
		}
		n, err := c.cur.Read(p)
		if err == io.EOF {
			// Another member of the same kind directly after this one?
			m, _ := c.in.Peek(6)
			if comp, ok := detect(m); ok && comp == c.comp && comp != None {
				if err := c.nextMember(); err != nil {
					return n, err
				}
				if n > 0 {
					return n, nil
				}
				continue
			}
			c.done = true
			if n > 0 {
				return n, nil
			}
			return 0, io.EOF
		}
		if err != nil {
			return n, fmt.Errorf("%w: %s: %w", ErrFormat, c.comp, err)
		}
		return n, nil
	}
}

// maxWindow is the largest zstd window accepted: 128 MiB (zstd --long=27),
// or less when the output is limited anyway.
func (c *memberChain) maxWindow() uint64 {
	if c.limit > 0 && c.limit < 1<<27 {
		return uint64(max(c.limit, 1<<20))
	}
	return 1 << 27
}

func (c *memberChain) close() {
	if c.zd != nil {
		c.zd.Close()
	}
}

// zstdFrame hands the zstd decoder exactly one frame's bytes, found by
// walking the frame and block headers, so the decoder cannot read past it.
type zstdFrame struct {
	in    *inbuf
	state int   // 0 header, 1 block header, 2 block body, 3 checksum, 4 done
	left  int64 // bytes left in the current part
	last  bool
	check bool
	buf   []byte // pending header bytes to hand out
}

func (z *zstdFrame) Read(p []byte) (int, error) {
	for {
		if len(z.buf) > 0 {
			n := copy(p, z.buf)
			z.buf = z.buf[n:]
			return n, nil
		}
		switch z.state {
		case 0:
			h, err := z.in.Peek(6)
			if len(h) < 5 {
				return 0, fmt.Errorf("truncated zstd frame header: %w", noEOF(err))
			}
			magic := binary.LittleEndian.Uint32(h)
			if magic&0xFFFFFFF0 == 0x184D2A50 { // skippable frame
				if len(h) < 8 {
					h, _ = z.in.Peek(8)
					if len(h) < 8 {
						return 0, io.ErrUnexpectedEOF
					}
				}
				size := binary.LittleEndian.Uint32(h[4:8])
				z.buf = make([]byte, 8)
				io.ReadFull(z.in, z.buf)
				z.left, z.state = int64(size), 2
				z.last = true
				continue
			}
			if magic != 0xFD2FB528 {
				return 0, fmt.Errorf("bad zstd magic %#x", magic)
			}
			fhd := h[4]
			fcsFlag, single, did := fhd>>6, fhd&0x20 != 0, fhd&3
			n := 5
			if !single {
				n++
			}
			n += [...]int{0, 1, 2, 4}[did]
			switch fcsFlag {
			case 0:
				if single {
					n++
				}
			case 1:
				n += 2
			case 2:
				n += 4
			case 3:
				n += 8
			}
			z.check = fhd&4 != 0
			z.buf = make([]byte, n)
			if _, err := io.ReadFull(z.in, z.buf); err != nil {
				return 0, fmt.Errorf("truncated zstd frame header: %w", noEOF(err))
			}
			z.state = 1
		case 1:
			z.buf = make([]byte, 3)
			if _, err := io.ReadFull(z.in, z.buf); err != nil {
				return 0, fmt.Errorf("truncated zstd block header: %w", noEOF(err))
			}
			bh := uint32(z.buf[0]) | uint32(z.buf[1])<<8 | uint32(z.buf[2])<<16
			z.last = bh&1 != 0
			size := int64(bh >> 3)
			switch (bh >> 1) & 3 {
			case 1:
				size = 1 // RLE: one byte repeated
			case 3:
				return 0, errors.New("reserved zstd block type")
			}
			z.left, z.state = size, 2
		case 2:
			if z.left == 0 {
				switch {
				case !z.last:
					z.state = 1
				case z.check:
					z.left, z.state = 4, 3
				default:
					z.state = 4
				}
				continue
			}
			k := min(int64(len(p)), z.left)
			n, err := z.in.Read(p[:k])
			z.left -= int64(n)
			if n == 0 && err != nil {
				return 0, fmt.Errorf("truncated zstd block: %w", noEOF(err))
			}
			return n, nil
		case 3:
			if z.left == 0 {
				z.state = 4
				continue
			}
			n, err := z.in.Read(p[:min(int64(len(p)), z.left)])
			z.left -= int64(n)
			if n == 0 && err != nil {
				return 0, fmt.Errorf("truncated zstd checksum: %w", noEOF(err))
			}
			return n, nil
		default:
			return 0, io.EOF
		}
	}
}

// xzStream ends one xz stream where it ends. ulikunitz/xz in single-stream
// mode reads one byte past the stream to check for EOF; that byte is put
// back for whatever follows.
type xzStream struct {
	r  *xz.Reader
	in *inbuf
}

func (x *xzStream) Read(p []byte) (int, error) {
	n, err := x.r.Read(p)
	if err != nil && err.Error() == "xz: unexpected data after stream" {
		if uerr := x.in.UnreadByte(); uerr != nil {
			return n, uerr
		}
		err = io.EOF
	}
	return n, err
}

// lz4Legacy reads the kernel's legacy lz4 format: blocks of at most 8 MiB
// until the input ends (the format has no end marker).
type lz4Legacy struct {
	in     *inbuf
	header bool
	out    []byte
	pos    int
	cbuf   []byte
}

func (l *lz4Legacy) Read(p []byte) (int, error) {
	if !l.header {
		var m [4]byte
		if _, err := io.ReadFull(l.in, m[:]); err != nil {
			return 0, noEOF(err)
		}
		l.header = true
	}
	for l.pos == len(l.out) {
		h, _ := l.in.Peek(4)
		if len(h) < 4 {
			l.in.Discard(len(h))
			return 0, io.EOF
		}
		size := binary.LittleEndian.Uint32(h)
		l.in.Discard(4)
		if size == 0x184C2102 { // a concatenated legacy stream
			continue
		}
		if size > uint32(lz4.CompressBlockBound(lz4LegacyBlock)) {
			return 0, fmt.Errorf("lz4 block size %d too large", size)
		}
		if cap(l.cbuf) < int(size) {
			l.cbuf = make([]byte, size)
		}
		l.cbuf = l.cbuf[:size]
		if _, err := io.ReadFull(l.in, l.cbuf); err != nil {
			return 0, fmt.Errorf("truncated lz4 block: %w", noEOF(err))
		}
		if l.out == nil {
			l.out = make([]byte, lz4LegacyBlock)
		}
		n, err := lz4.UncompressBlock(l.cbuf, l.out[:lz4LegacyBlock])
		if err != nil {
			return 0, err
		}
		l.out, l.pos = l.out[:n], 0
	}
	n := copy(p, l.out[l.pos:])
	l.pos += n
	return n, nil
}
