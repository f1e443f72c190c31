package initrd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
)

// Segment is one member of an initrd: entries written as one cpio archive,
// compressed as a whole.
type Segment struct {
	Compression Compression
	Compress    CompressOptions
	// Entries are written in this order; pass them through Plan first.
	Entries []Entry
	// Stream, when not nil, supplies the entries instead, read from its
	// inputs while the segment is written (see PlanStream); Entries must
	// then be empty.
	Stream *Stream
}

// WriteOptions control writing. The zero value is usable.
type WriteOptions struct {
	// FirstInode is the inode number of the first entry; 0 means 1.
	// Write and WriteFile continue numbering across segments; AppendFile
	// starts after the highest number in the existing initrd.
	FirstInode uint32
	// Progress, when set, is called from the writing goroutine after
	// each file's data with the data bytes written so far and the total
	// planned for the segment.
	Progress func(done, total int64)
	// Logger receives Debug records per segment; nil discards.
	Logger *slog.Logger
	// ReadAhead is how many goroutines read small files ahead of the
	// writing one, while another walks the inputs; 0 picks a number from
	// GOMAXPROCS and the segment's compression (for a compressed segment,
	// none below 4 CPUs: the compressor keeps them busy), below 0 means
	// none. Only the speed changes: the bytes written and the errors are
	// the same.
	ReadAhead int
	// Existing lists directories present before the first segment is
	// unpacked, besides the kernel's built-in dev and root (see
	// PlanOptions.Existing). Write checks every entry's parent against
	// them and the directories written before it.
	Existing []string
}

// SegmentInfo describes a written or read segment.
type SegmentInfo struct {
	Compression Compression
	Offset      int64  // where the segment starts in the initrd
	Size        int64  // bytes in the initrd, after compression
	Unpacked    int64  // bytes of cpio archive
	Entries     int    // records, not counting the trailer
	FirstInode  uint32 // inode number of the first entry
	NextInode   uint32 // one past the last inode number used
}

// WriteSegment writes seg as one cpio archive, compressed as seg says, to
// w. Memory stays bounded whatever the size of the files: data is streamed
// from each source in turn. It returns ctx's error if ctx ends first.
//
// WriteSegment does not check that parents come before children (it does
// not know the earlier segments); Write and AppendFile do.
func WriteSegment(ctx context.Context, w io.Writer, seg Segment, opt WriteOptions) (SegmentInfo, error) {
	info := SegmentInfo{Compression: seg.Compression, FirstInode: max(opt.FirstInode, 1)}
	cout := &countWriter{w: w}
	comp, err := NewCompressor(cout, seg.Compression, seg.Compress)
	if err != nil {
		return info, err
	}
	bw := bufio.NewWriterSize(comp, 256<<10)
	cw := NewWriter(bw)
	cw.SetNextInode(info.FirstInode)
	src := newSourceOpener()
	n, err := writeEntries(ctx, cw, seg, src, opt.Progress, readAhead(opt.ReadAhead, seg.Compression))
	src.close()
	if err == nil {
		err = cw.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if a, ok := comp.(interface{ abort(error) }); ok && err != nil {
		a.abort(err) // drop the queued chunks, write no trailer
	}
	if cerr := comp.Close(); err == nil {
		err = cerr
	}
	info.Size, info.Unpacked, info.Entries, info.NextInode = cout.n, cw.Written(), n, cw.NextInode()
	if err != nil {
		return info, err
	}
	if opt.Logger != nil {
		opt.Logger.Debug("initrd segment written", "compression", seg.Compression.String(),
			"entries", info.Entries, "bytes", info.Size, "unpacked", info.Unpacked)
	}
	return info, nil
}

// writeEntries writes seg's entries and returns how many it wrote, with
// readers goroutines reading ahead (none when 0).
func writeEntries(ctx context.Context, cw *Writer, seg Segment, src *sourceOpener, progress func(done, total int64), readers int) (int, error) {
	ew := entryWriter{ctx: ctx, cw: cw, src: src, progress: progress, buf: make([]byte, 256<<10)}
	var each func(yield func(*Entry, error) bool)
	if seg.Stream == nil {
		for i := range seg.Entries {
			if seg.Entries[i].Type == TypeReg {
				ew.total += seg.Entries[i].Size
			}
		}
		each = func(yield func(*Entry, error) bool) {
			for i := range seg.Entries {
				if !yield(&seg.Entries[i], nil) {
					return
				}
			}
		}
	} else {
		if len(seg.Entries) > 0 {
			return 0, fmt.Errorf("%w: segment has both Entries and a Stream", ErrInvalidHeader)
		}
		ew.total = seg.Stream.Size()
		each = func(yield func(*Entry, error) bool) {
			for e, err := range seg.Stream.All() {
				if !yield(&e, err) {
					return
				}
			}
		}
	}
	if readers > 0 {
		return ew.writeAhead(each, readers)
	}
	for e, err := range each {
		if err == nil {
			err = ew.write(e, nil)
		}
		if err != nil {
			return ew.n, err
		}
	}
	return ew.n, nil
}

// writeAhead writes the entries of each as they come out of a
// prefetcher.
func (ew *entryWriter) writeAhead(each func(yield func(*Entry, error) bool), readers int) (int, error) {
	p := startPrefetch(ew.ctx, each, readers)
	defer p.finish()
	for i := range p.order {
		s := &p.slots[i]
		if s.err != nil {
			return ew.n, s.err
		}
		var ahead *prefetchSlot
		if s.read {
			ahead = s
		}
		if err := ew.write(&s.entry, ahead); err != nil {
			return ew.n, err
		}
		if s.read {
			p.release(s.end)
		}
		p.free <- i
	}
	return ew.n, nil
}

// entryWriter writes entries and their data, counting them.
type entryWriter struct {
	ctx         context.Context
	cw          *Writer
	src         *sourceOpener
	progress    func(done, total int64)
	buf         []byte
	n           int
	done, total int64
}

// write writes e, with its data from ahead when that is not nil.
func (ew *entryWriter) write(e *Entry, ahead *prefetchSlot) error {
	if ew.n%256 == 0 {
		if err := ew.ctx.Err(); err != nil {
			return err
		}
	}
	if err := ew.cw.WriteHeader(&e.Header); err != nil {
		return err
	}
	ew.n++
	if e.Type != TypeReg || e.Size == 0 {
		return nil
	}
	if ahead != nil {
		<-ahead.done
		if ahead.readErr != nil {
			return ahead.readErr
		}
		if _, err := ew.cw.Write(ahead.data); err != nil {
			return entryErr(e.Name, err)
		}
	} else if e.Data != nil {
		if _, err := ew.cw.Write(e.Data); err != nil {
			return entryErr(e.Name, err)
		}
	} else if err := copySource(ew.ctx, ew.cw, e, ew.src, ew.buf); err != nil {
		return err
	}
	ew.done += e.Size
	if ew.progress != nil {
		ew.progress(ew.done, ew.total)
	}
	return nil
}

// copySource copies e's source to w, failing with ErrChanged, the entry
// named, if the file is no longer e.Size bytes.
func copySource(ctx context.Context, w io.Writer, e *Entry, src *sourceOpener, buf []byte) error {
	if e.Source.IsZero() {
		return entryErr(e.Name, fmt.Errorf("%w: regular file of %d bytes has neither Data nor Source", ErrInvalidHeader, e.Size))
	}
	f, err := src.open(e.Source)
	if err != nil {
		return entryErr(e.Name, err)
	}
	defer f.Close()
	left := e.Size
	atEOF := false
	for left > 0 {
		if left > 1<<20 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		// Ask for one byte more than is left when the buffer allows: a
		// short read of a regular file is its end, so most files take
		// one read and no second one to check they did not grow.
		want := min(int64(len(buf)), left+1)
		n, err := f.Read(buf[:want])
		if int64(n) > left {
			return entryErr(e.Name, fmt.Errorf("%w: %s grew beyond %d bytes", ErrChanged, e.Source.Path, e.Size))
		}
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return entryErr(e.Name, werr)
			}
			left -= int64(n)
			atEOF = left == 0 && int64(n) < want && err == nil
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return entryErr(e.Name, fmt.Errorf("reading %s: %w", e.Source.Path, err))
		}
	}
	if left > 0 {
		return entryErr(e.Name, fmt.Errorf("%w: %s is %d bytes short", ErrChanged, e.Source.Path, left))
	}
	if !atEOF {
		if n, _ := f.Read(buf[:1]); n > 0 {
			return entryErr(e.Name, fmt.Errorf("%w: %s grew beyond %d bytes", ErrChanged, e.Source.Path, e.Size))
		}
	}
	return nil
}

// sourceRoots keeps each confining os.Root open, by directory, while a
// segment is written.
type sourceRoots map[string]*os.Root

// get returns the os.Root of dir, opening it the first time.
func (rs sourceRoots) get(dir string) (*os.Root, error) {
	r, ok := rs[dir]
	if !ok {
		var err error
		if r, err = os.OpenRoot(dir); err != nil {
			return nil, err
		}
		rs[dir] = r
	}
	return r, nil
}

func (rs sourceRoots) close() {
	for _, r := range rs {
		r.Close()
	}
}

// openSource opens src through r, the os.Root of src.Root, or, with r nil
// (src.Root is ""), at its path, and fails unless it is a regular file.
// Sources are opened with openFlags (O_NONBLOCK where there is one) and
// checked: one replaced by a FIFO after planning would otherwise block the
// open until a writer came, and a device could be read without end.
func openSource(r *os.Root, src Source) (*os.File, error) {
	var f *os.File
	var err error
	if r == nil {
		f, err = os.OpenFile(src.Path, os.O_RDONLY|openFlags, 0)
	} else {
		f, err = r.OpenFile(src.Path, os.O_RDONLY|openFlags, 0)
	}
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		var t Type
		if st, ok := lstatOfInfo(fi); ok {
			t = typeFromMode(st.mode)
		}
		return nil, notRegular(src.Path, t)
	}
	return f, nil
}

func notRegular(name string, t Type) error {
	return fmt.Errorf("%w: %s is a %s now, not a regular file", ErrChanged, name, t)
}

// Write writes the segments one after the other to w, as the kernel reads
// them: each starts 4-byte aligned (NUL padding in between), inode numbers
// never repeat, and only the last may be LZ4. It returns what it wrote of
// each segment.
//
// Before writing anything it checks that every entry's parent directory is
// written before it (in its segment or an earlier one), is in
// opt.Existing, or is one of the kernel's built-in dev and root; otherwise
// it fails with ErrMissingParent naming the entry, as the kernel would
// silently drop it.
//
// On Linux, sources of one directory are opened relative to it with
// openat(2) and read with read(2); elsewhere each is opened through its
// os.Root as an *os.File. The bytes written are the same.
func Write(ctx context.Context, w io.Writer, segs []Segment, opt WriteOptions) ([]SegmentInfo, error) {
	for i, s := range segs {
		if s.Compression == LZ4 && i != len(segs)-1 {
			return nil, fmt.Errorf("%w: lz4 segment %d is not the last (legacy lz4 has no end marker)", ErrCompression, i)
		}
	}
	dirs := builtinDirs()
	for _, d := range opt.Existing {
		if n, err := normName(d); err == nil && n != "" {
			dirs[n] = true
		}
	}
	for _, s := range segs {
		if err := checkSegmentParents(s, dirs); err != nil {
			return nil, err
		}
	}
	var infos []SegmentInfo
	var off int64
	next := max(opt.FirstInode, 1)
	for _, s := range segs {
		if pad := (4 - off%4) % 4; pad > 0 {
			if _, err := w.Write(make([]byte, pad)); err != nil {
				return infos, err
			}
			off += pad
		}
		o := opt
		o.FirstInode = next
		info, err := WriteSegment(ctx, w, s, o)
		info.Offset = off
		if err != nil {
			return infos, err
		}
		infos = append(infos, info)
		off += info.Size
		next = info.NextInode
	}
	return infos, nil
}

// builtinDirs returns the directories of the kernel's built-in initramfs
// (usr/default_cpio_list), unpacked before any initrd.
func builtinDirs() map[string]bool { return map[string]bool{"dev": true, "root": true} }

// checkSegmentParents is checkParents for a segment of entries or a
// Stream; a Stream's own parents were checked by PlanStream, which
// recorded the directories it expects from earlier segments.
func checkSegmentParents(seg Segment, dirs map[string]bool) error {
	if seg.Stream == nil {
		return checkParents(seg.Entries, dirs)
	}
	// Report the first entry in archive order, as checkParents does.
	missing := ""
	for d, name := range seg.Stream.needs {
		if !dirs[d] && (missing == "" || name < seg.Stream.needs[missing]) {
			missing = d
		}
	}
	if missing != "" {
		return entryErr(seg.Stream.needs[missing], fmt.Errorf("%w: %q is not written before it (use PlanOptions.Existing for directories of earlier segments)", ErrMissingParent, missing))
	}
	for _, d := range seg.Stream.dirs {
		dirs[d] = true
	}
	return nil
}

// checkParents checks that each entry's parent is in dirs or a directory
// entry before it, adding the segment's directories to dirs.
func checkParents(entries []Entry, dirs map[string]bool) error {
	for i := range entries {
		e := &entries[i]
		if dir := path.Dir(e.Name); dir != "." && !dirs[dir] {
			return entryErr(e.Name, fmt.Errorf("%w: %q is not written before it (use Plan, or PlanOptions.Existing for directories of earlier segments)", ErrMissingParent, dir))
		}
		if e.Type == TypeDir {
			dirs[e.Name] = true
		}
	}
	return nil
}

// WriteFile writes the initrd to the file name atomically: into a
// temporary file in the same directory, synced and renamed over name only
// on success. On any error nothing is left at name (an existing file there
// is untouched) and the temporary file is removed.
func WriteFile(ctx context.Context, name string, segs []Segment, opt WriteOptions) ([]SegmentInfo, error) {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("initrd: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	infos, err := Write(ctx, f, segs, opt)
	if err != nil {
		return nil, fmt.Errorf("initrd: writing %s: %w", name, err)
	}
	if err := f.Chmod(0o644); err != nil {
		return nil, fmt.Errorf("initrd: %w", err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("initrd: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("initrd: %w", err)
	}
	if err := os.Rename(f.Name(), name); err != nil {
		return nil, fmt.Errorf("initrd: %w", err)
	}
	ok = true
	return infos, nil
}

// AppendFile appends seg to the existing initrd at name without rewriting
// it: typically a small per-machine segment (keys, host name, network
// configuration) after a shared image. The existing initrd is read first
// to check that it can be extended (its last segment must not be LZ4), that
// every new entry's parent exists (ErrMissingParent otherwise, as for
// Write) and to number the new inodes after its highest one, unless
// opt.FirstInode is set. On failure the file is truncated back to its
// original size.
func AppendFile(ctx context.Context, name string, seg Segment, opt WriteOptions) (SegmentInfo, error) {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return SegmentInfo{}, fmt.Errorf("initrd: append: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return SegmentInfo{}, fmt.Errorf("initrd: append: %w", err)
	}
	size := st.Size()
	{
		// Read the existing initrd: its segments, highest inode and
		// directories (for the parent check).
		rd := NewReader(io.NewSectionReader(f, 0, size))
		dirs := builtinDirs()
		for _, d := range opt.Existing {
			if n, err := normName(d); err == nil && n != "" {
				dirs[n] = true
			}
		}
		var maxIno uint32
		for i := 0; ; i++ {
			if i%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return SegmentInfo{}, err
				}
			}
			rec, err := rd.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return SegmentInfo{}, fmt.Errorf("initrd: append to %s: %w", name, err)
			}
			maxIno = max(maxIno, rec.Inode)
			if rec.Type == TypeDir {
				if n, err := normName(rec.Name); err == nil && n != "" {
					dirs[n] = true
				}
			}
		}
		segs := rd.Segments()
		if n := len(segs); n > 0 && segs[n-1].Compression == LZ4 {
			return SegmentInfo{}, fmt.Errorf("%w: %s ends with an lz4 segment, nothing can follow it", ErrCompression, name)
		}
		if err := checkSegmentParents(seg, dirs); err != nil {
			return SegmentInfo{}, fmt.Errorf("initrd: append to %s: %w", name, err)
		}
		if opt.FirstInode == 0 {
			opt.FirstInode = maxIno + 1
		}
	}
	fail := func(err error) (SegmentInfo, error) {
		if terr := f.Truncate(size); terr != nil {
			err = errors.Join(err, fmt.Errorf("initrd: restoring %s to %d bytes: %w", name, size, terr))
		}
		return SegmentInfo{}, fmt.Errorf("initrd: append to %s: %w", name, err)
	}
	if _, err := f.Seek(size, io.SeekStart); err != nil {
		return fail(err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	pad := (4 - size%4) % 4
	if _, err := bw.Write(make([]byte, pad)); err != nil {
		return fail(err)
	}
	info, err := WriteSegment(ctx, bw, seg, opt)
	if err != nil {
		return fail(err)
	}
	if err := bw.Flush(); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	info.Offset = size + pad
	return info, nil
}
