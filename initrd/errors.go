package initrd

import (
	"errors"
	"fmt"
)

// Errors returned by this package. Returned errors wrap one of these, so
// callers can test with errors.Is.
var (
	// ErrInvalidHeader means an entry cannot be represented in a newc
	// archive the kernel accepts: a bad name, type, mode, owner or time.
	ErrInvalidHeader = errors.New("initrd: invalid entry")
	// ErrTooLarge means a file is 4 GiB or larger (newc sizes are 32-bit),
	// a name or symlink target is 4096 bytes or longer (PATH_MAX), or an
	// inode number ran out.
	ErrTooLarge = errors.New("initrd: too large")
	// ErrDuplicate means two entries have the same path and the caller did
	// not choose last-wins.
	ErrDuplicate = errors.New("initrd: duplicate path")
	// ErrMissingParent means an entry's parent directory is not written
	// before it (nor present from an earlier segment or the kernel's
	// built-in initramfs): the kernel would silently drop the entry.
	ErrMissingParent = errors.New("initrd: missing parent directory")
	// ErrLink means a hard link names no regular file of the same segment.
	ErrLink = errors.New("initrd: bad hard link")
	// ErrChanged means a source file's size differs from what was planned:
	// it changed while the archive was being written.
	ErrChanged = errors.New("initrd: source changed during build")
	// ErrWriteTooLong means more data was written than the header's Size,
	// or less before the next header.
	ErrWriteTooLong = errors.New("initrd: data does not match header size")
	// ErrClosed means a Writer was used after Close.
	ErrClosed = errors.New("initrd: writer closed")
	// ErrCompression means an unknown or unusable compression setting,
	// such as an lz4 segment that is not the last one.
	ErrCompression = errors.New("initrd: unsupported compression")
	// ErrFormat means input is not a well-formed initrd (bad magic,
	// damaged header, truncated member).
	ErrFormat = errors.New("initrd: malformed archive")
	// ErrManifest means a manifest line cannot be parsed.
	ErrManifest = errors.New("initrd: manifest syntax error")
	// ErrOutsideRoot means a source path leaves the directory it is
	// confined to.
	ErrOutsideRoot = errors.New("initrd: path outside source root")
)

// EntryError names the entry an error is about.
type EntryError struct {
	Name string // the entry's path inside the archive
	Err  error
}

func (e *EntryError) Error() string { return fmt.Sprintf("initrd: entry %q: %v", e.Name, e.Err) }

func (e *EntryError) Unwrap() error { return e.Err }

func entryErr(name string, err error) error { return &EntryError{Name: name, Err: err} }

// FormatError reports where in an initrd reading failed.
type FormatError struct {
	Offset  int64  // byte offset in the initrd file of the segment or record involved
	Segment int    // 0-based segment index
	Entry   string // name of the record, if known
	Err     error  // wraps ErrFormat, ErrTooLarge or an I/O error
}

func (e *FormatError) Error() string {
	if e.Entry != "" {
		return fmt.Sprintf("initrd: segment %d at offset %d, entry %q: %v", e.Segment, e.Offset, e.Entry, e.Err)
	}
	return fmt.Sprintf("initrd: segment %d at offset %d: %v", e.Segment, e.Offset, e.Err)
}

func (e *FormatError) Unwrap() error { return e.Err }

// LineError reports which manifest line failed to parse.
type LineError struct {
	Line int    // 1-based
	Text string // the line, truncated to 80 bytes
	Err  error  // wraps ErrManifest or ErrInvalidHeader
}

func (e *LineError) Error() string {
	return fmt.Sprintf("initrd: manifest line %d: %v (%q)", e.Line, e.Err, e.Text)
}

func (e *LineError) Unwrap() error { return e.Err }
