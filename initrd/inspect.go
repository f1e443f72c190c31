package initrd

import (
	"context"
	"fmt"
	"io"
	"path"
	"strings"
)

// IPXEWarnSize is the initrd size past which some firmware and iPXE builds
// fail to load it (they place images below 4 GiB and need room for the
// kernel and the unpacked data).
const IPXEWarnSize = 2 << 30

// Finding is something the kernel would do differently from what the
// archive seems to say.
type Finding struct {
	Name    string // entry name as stored
	Segment int
	Offset  int64 // as in Record.Offset
	Problem string
}

func (f Finding) String() string {
	return fmt.Sprintf("segment %d offset %d %q: %s", f.Segment, f.Offset, f.Name, f.Problem)
}

// Report is what Inspect learned about an initrd.
type Report struct {
	Segments []SegmentInfo
	Size     int64 // total bytes read
	Unpacked int64 // sum of the segments' cpio bytes
	Files    int64 // data bytes of regular files (what lands in RAM)
	Records  int
	MaxInode uint32
	// Entries holds every record when InspectOptions.Entries is set.
	Entries []Record
	// Dropped lists records the kernel would skip: missing parent,
	// overlong name or symlink target, unknown type.
	Dropped []Finding
	// Clashes lists duplicate paths (the later entry wins) and hard-link
	// groups whose data overwrites each other.
	Clashes []Finding
	// Warnings: size past IPXEWarnSize, "070702" records, data on
	// non-files, empty segments.
	Warnings []string
}

// InspectOptions control Inspect.
type InspectOptions struct {
	// Entries keeps every record in Report.Entries (memory grows with the
	// number of records, not their data).
	Entries bool
	// MaxUnpacked, when positive, fails inspection with ErrTooLarge once
	// a compressed segment unpacks to more bytes (see Reader.MaxUnpacked).
	MaxUnpacked int64
}

// Inspect reads a whole initrd and reports what the kernel would do with
// it. The kernel's own built-in initramfs (dev, dev/console, root) counts as
// present. It returns the report so far together with a *FormatError when
// the input is malformed.
func Inspect(ctx context.Context, r io.Reader, opt InspectOptions) (*Report, error) {
	rep := &Report{}
	nodes := map[string]Type{}
	// The kernel's built-in initramfs, unpacked before any initrd.
	builtin := map[string]bool{"dev": true, "root": true}
	type linkKey struct {
		maj, min, ino, mode uint32
		seg, archive        int
	}
	type linkVal struct {
		name    string
		hasData bool
	}
	links := map[linkKey]linkVal{}
	cr := &countReader{r: r}
	rd := NewReader(cr)
	rd.MaxUnpacked = opt.MaxUnpacked
	var err error
	for i := 0; ; i++ {
		if i%1024 == 0 {
			if err = ctx.Err(); err != nil {
				break
			}
		}
		var rec *Record
		rec, err = rd.Next()
		if err != nil {
			break
		}
		rep.Records++
		rep.MaxInode = max(rep.MaxInode, rec.Inode)
		if opt.Entries {
			rep.Entries = append(rep.Entries, *rec)
		}
		find := func(list *[]Finding, format string, a ...any) {
			*list = append(*list, Finding{Name: rec.Name, Segment: rec.Segment, Offset: rec.Offset, Problem: fmt.Sprintf(format, a...)})
		}
		if rec.Checksum {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("segment %d %q: 070702 (checksum) record: old kernels reject it", rec.Segment, rec.Name))
		}
		name := strings.TrimPrefix(path.Clean("/"+rec.Name), "/")
		switch {
		case rec.NameSize > 4096:
			find(&rep.Dropped, "name is %d bytes, over PATH_MAX", rec.NameSize)
			continue
		case rec.Type == 0:
			find(&rep.Dropped, "unknown file type in mode %#o", rec.RawMode)
			continue
		case rec.Type == TypeSymlink && (rec.Linkname == "" || len(rec.Linkname) > MaxLinkLen+1):
			find(&rep.Dropped, "symlink target empty or over PATH_MAX")
			continue
		case rec.Type != TypeReg && rec.Type != TypeSymlink && rec.Size != 0:
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("segment %d %q: %s with %d bytes of data", rec.Segment, rec.Name, rec.Type, rec.Size))
		case name == "":
			continue
		}
		if dir := path.Dir(name); dir != "." && nodes[dir] != TypeDir && !builtin[dir] {
			find(&rep.Dropped, "parent directory %q does not exist", dir)
			continue
		}
		if rec.Type == TypeReg {
			rep.Files += rec.Size
		}
		if rec.Type != TypeDir && rec.Nlink >= 2 {
			k := linkKey{rec.FSMajor, rec.FSMinor, rec.Inode, rec.RawMode, rec.Segment, rec.Archive}
			if v, ok := links[k]; ok {
				if v.hasData && rec.Size > 0 {
					find(&rep.Clashes, "hard link to %q (inode %d) carries data too: it overwrites that file", v.name, rec.Inode)
				}
				v.hasData = v.hasData || rec.Size > 0
				links[k] = v
			} else {
				links[k] = linkVal{name: name, hasData: rec.Size > 0}
			}
		}
		if old, ok := nodes[name]; ok {
			if !(old == TypeDir && rec.Type == TypeDir) {
				find(&rep.Clashes, "duplicate path: this %s replaces an earlier %s", rec.Type, old)
			}
		}
		nodes[name] = rec.Type
	}
	rep.Segments = rd.Segments()
	rep.Size = cr.n
	for i, s := range rep.Segments {
		rep.Unpacked += s.Unpacked
		if s.Entries == 0 {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("segment %d at offset %d holds no entries", i, s.Offset))
		}
	}
	if rep.Size > IPXEWarnSize {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("initrd is %d bytes: over 2 GiB, iPXE and some firmware fail to load it", rep.Size))
	}
	if err == io.EOF {
		err = nil
	}
	return rep, err
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
