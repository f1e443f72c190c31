package initrd

import (
	"bytes"
	"fmt"
	"io"
	"time"

	"github.com/cavaliergopher/cpio"
)

// Writer writes one uncompressed newc cpio archive (one initrd segment), in
// the manner of archive/tar's Writer: WriteHeader, then Write the data of a
// regular file, and Close to write the TRAILER!!! record.
//
// It refuses anything the kernel would drop or misread before writing a
// byte of the entry: bad names, names or symlink targets of 4096 bytes or
// more, files of 4 GiB or more, hard links to files it has not seen.
// Inode numbers are assigned in order, starting at 1 or at
// SetNextInode's value, so archives are reproducible and segments can use
// disjoint numbers. Hard-link groups are limited to one segment, because the
// kernel forgets links at each trailer.
//
// Writer is not safe for concurrent use. It does not check that parents
// come before children; Plan does.
type Writer struct {
	cw     *cpio.Writer
	ch     cpio.Header // the library's header, rebuilt for every entry
	pw     *headerPatcher
	next   uint32
	links  map[string]linkState // regular files with Links >= 2
	err    error
	closed bool
}

type linkState struct {
	inode     uint32
	links     int
	remaining int
	size      int64
}

// NewWriter returns a Writer writing to w. Wrap w in a bufio.Writer when it
// is a file: records are written in several small pieces.
func NewWriter(w io.Writer) *Writer {
	cw := &countWriter{w: w}
	pw := &headerPatcher{w: cw}
	return &Writer{cw: cpio.NewWriter(pw), pw: pw, next: 1, links: map[string]linkState{}}
}

// SetNextInode sets the inode number given to the next entry. Use it to
// keep numbers unique across the segments of one initrd.
func (w *Writer) SetNextInode(n uint32) {
	if n == 0 {
		n = 1
	}
	w.next = n
}

// NextInode returns the inode number the next entry would get.
func (w *Writer) NextInode() uint32 { return w.next }

// WriteHeader writes hdr and prepares to accept a regular file's Size bytes
// of data. It returns an error naming the entry, wrapping ErrInvalidHeader,
// ErrTooLarge or ErrLink, without writing anything, if hdr is not valid; and
// ErrWriteTooLong if the previous file's data was not completely written.
// hdr is not modified.
func (w *Writer) WriteHeader(hdr *Header) error {
	if w.closed {
		return ErrClosed
	}
	if w.err != nil {
		return w.err
	}
	if err := hdr.validate(); err != nil {
		return entryErr(hdr.Name, err)
	}
	if w.next == 0 {
		return entryErr(hdr.Name, fmt.Errorf("%w: inode numbers exhausted", ErrTooLarge))
	}
	// A fresh library header for every entry (cpio.Writer mutates it),
	// kept in w so that it is not allocated each time.
	ch := &w.ch
	*ch = cpio.Header{
		Name: hdr.Name,
		Mode: cpio.FileMode(hdr.Type.modeBits() | hdr.Mode),
		Uid:  int(hdr.Uid),
		// Guid is the library's spelling.
		Guid:  int(hdr.Gid),
		Links: 1,
	}
	if !hdr.ModTime.IsZero() {
		ch.ModTime = time.Unix(hdr.ModTime.Unix(), 0)
	}
	var body []byte
	switch hdr.Type {
	case TypeReg:
		ch.Size = hdr.Size
		ch.Inode = int64(w.next)
		if hdr.Links > 1 {
			if _, dup := w.links[hdr.Name]; dup {
				return entryErr(hdr.Name, fmt.Errorf("%w: hard-linked file written twice", ErrLink))
			}
			ch.Links = hdr.Links
			w.links[hdr.Name] = linkState{inode: w.next, links: hdr.Links, remaining: hdr.Links - 1, size: hdr.Size}
		}
		w.next++
	case TypeLink:
		ls, ok := w.links[hdr.Linkname]
		if !ok {
			return entryErr(hdr.Name, fmt.Errorf("%w: %q is not a regular file with Links >= 2 earlier in this segment", ErrLink, hdr.Linkname))
		}
		if ls.remaining == 0 {
			return entryErr(hdr.Name, fmt.Errorf("%w: more links to %q than its Links (%d)", ErrLink, hdr.Linkname, ls.links))
		}
		ls.remaining--
		w.links[hdr.Linkname] = ls
		// Data goes with the first name; later names carry none. The
		// kernel, GNU cpio and libarchive all accept that order.
		ch.Inode = int64(ls.inode)
		ch.Links = ls.links
		ch.Mode = cpio.FileMode(TypeReg.modeBits() | hdr.Mode)
	case TypeSymlink:
		// The library ignores Linkname: the target is the record's data.
		body = []byte(hdr.Linkname)
		ch.Size = int64(len(body))
		ch.Inode = int64(w.next)
		w.next++
	case TypeDir:
		ch.Links = 2
		ch.Inode = int64(w.next)
		w.next++
	default:
		ch.Inode = int64(w.next)
		w.next++
	}
	if hdr.Type == TypeChar || hdr.Type == TypeBlock {
		w.pw.rdev(hdr.Devmajor, hdr.Devminor)
	} else {
		w.pw.rdev(0, 0)
	}
	if err := w.cw.WriteHeader(ch); err != nil {
		w.err = w.wrapErr(hdr.Name, err)
		return w.err
	}
	if body != nil {
		if _, err := w.cw.Write(body); err != nil {
			w.err = w.wrapErr(hdr.Name, err)
			return w.err
		}
	}
	return nil
}

func (w *Writer) wrapErr(name string, err error) error {
	if err != nil && bytes.HasPrefix([]byte(err.Error()), []byte("cpio: missed writing")) {
		return fmt.Errorf("%w: %v", ErrWriteTooLong, err)
	}
	return entryErr(name, err)
}

// Write writes data of the current regular file. Writing more than its Size
// returns ErrWriteTooLong.
func (w *Writer) Write(p []byte) (int, error) {
	if w.closed {
		return 0, ErrClosed
	}
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.cw.Write(p)
	if err == cpio.ErrWriteTooLong {
		return n, ErrWriteTooLong
	}
	if err != nil {
		w.err = err
	}
	return n, err
}

// ReadFrom copies a regular file's data from r, for io.Copy.
func (w *Writer) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(struct{ io.Writer }{w}, r)
}

// Close writes the trailer. It does not close the underlying writer. It
// returns ErrWriteTooLong if the last file's data is incomplete.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	if w.err != nil {
		return w.err
	}
	w.pw.rdev(0, 0)
	if err := w.cw.Close(); err != nil {
		w.err = w.wrapErr("TRAILER!!!", err)
		return w.err
	}
	w.closed = true
	return nil
}

// Written returns the number of archive bytes written so far.
func (w *Writer) Written() int64 { return w.pw.w.(*countWriter).n }

// headerPatcher sits between cpio.Writer and the output. The library writes
// each 110-byte header in one Write call but never fills in rdevmajor and
// rdevminor, and after any header with a checksum it writes the "070702"
// magic for every later header in the process (a package-level slice is
// mutated). The patcher rewrites each header it is told to expect: magic
// 070701, check 0, rdev from the entry.
type headerPatcher struct {
	w          io.Writer
	armed      bool
	rmaj, rmin uint32
	buf        [110]byte
}

func (p *headerPatcher) rdev(maj, min uint32) {
	p.armed, p.rmaj, p.rmin = true, maj, min
}

func (p *headerPatcher) Write(b []byte) (int, error) {
	// Before the header comes the previous file's padding (0-3 NULs,
	// possibly an empty write).
	if !p.armed || (len(b) < 4 && bytes.Count(b, []byte{0}) == len(b)) {
		return p.w.Write(b)
	}
	p.armed = false
	if len(b) != len(p.buf) || !bytes.HasPrefix(b, []byte("07070")) {
		return 0, fmt.Errorf("initrd: cpio library wrote an unexpected header chunk (%d bytes); refusing to continue", len(b))
	}
	copy(p.buf[:], b)
	p.buf[5] = '1'
	putHex(p.buf[78:86], p.rmaj)
	putHex(p.buf[86:94], p.rmin)
	putHex(p.buf[102:110], 0)
	return p.w.Write(p.buf[:])
}

// WriteString passes names on without the []byte copy io.WriteString
// would make. A header is never written as a string.
func (p *headerPatcher) WriteString(s string) (int, error) {
	if sw, ok := p.w.(io.StringWriter); ok && !p.armed {
		return sw.WriteString(s)
	}
	return p.Write([]byte(s))
}

const hexDigits = "0123456789ABCDEF"

func putHex(b []byte, v uint32) {
	for i := 7; i >= 0; i-- {
		b[i] = hexDigits[v&0xF]
		v >>= 4
	}
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countWriter) WriteString(s string) (int, error) {
	n, err := io.WriteString(c.w, s)
	c.n += int64(n)
	return n, err
}
