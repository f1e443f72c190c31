package initrd

import (
	"fmt"
	"strings"
	"time"
)

// Kernel limits for newc records (see doc.go).
const (
	// MaxFileSize is the largest regular file a newc record can hold: its
	// size field is 32 bits wide.
	MaxFileSize = 1<<32 - 1
	// MaxNameLen is the longest entry name, in bytes without the NUL. The
	// kernel silently skips names of PATH_MAX (4096) bytes or more
	// including the terminating NUL.
	MaxNameLen = 4095
	// MaxLinkLen is the longest symlink target, in bytes.
	MaxLinkLen = 4095
	// MaxTime is the latest modification time a record can hold.
	MaxTime = 1<<32 - 1
)

// Type is the kind of an entry.
type Type uint8

// Entry types. TypeLink is a hard link: a further name for a regular file
// written earlier in the same segment.
const (
	TypeReg Type = iota + 1
	TypeDir
	TypeSymlink
	TypeLink
	TypeChar
	TypeBlock
	TypeFifo
	TypeSocket
)

var typeNames = [...]string{"", "file", "dir", "slink", "link", "char", "block", "pipe", "sock"}

// String returns the type's manifest keyword ("file", "dir", "slink",
// "link", "char", "block", "pipe", "sock").
func (t Type) String() string {
	if int(t) < len(typeNames) && t != 0 {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// modeBits returns the S_IF* bits of the type in a newc mode field.
func (t Type) modeBits() uint32 {
	switch t {
	case TypeReg, TypeLink:
		return 0o100000
	case TypeDir:
		return 0o040000
	case TypeSymlink:
		return 0o120000
	case TypeChar:
		return 0o020000
	case TypeBlock:
		return 0o060000
	case TypeFifo:
		return 0o010000
	case TypeSocket:
		return 0o140000
	}
	return 0
}

// typeFromMode returns the Type for the S_IF* bits of a newc mode.
func typeFromMode(mode uint32) Type {
	switch mode & 0o170000 {
	case 0o100000:
		return TypeReg
	case 0o040000:
		return TypeDir
	case 0o120000:
		return TypeSymlink
	case 0o020000:
		return TypeChar
	case 0o060000:
		return TypeBlock
	case 0o010000:
		return TypeFifo
	case 0o140000:
		return TypeSocket
	}
	return 0
}

// Header describes one entry of an initramfs. The zero value is not valid:
// Name and Type are required.
type Header struct {
	// Name is the slash-separated path inside the archive, relative to the
	// root: "dev/console", not "/dev/console" or "./dev/console" (Plan
	// cleans those forms; Writer rejects them).
	Name string
	Type Type
	// Mode holds the Unix permission bits, including setuid (0o4000),
	// setgid (0o2000) and sticky (0o1000). Type bits are not allowed here.
	Mode uint32
	Uid  uint32
	Gid  uint32
	// ModTime is the modification time; the zero Time means 1970-01-01.
	// It must lie in [1970, 2106): the field is 32 bits wide.
	ModTime time.Time
	// Size is the length of a regular file's data; 0 for other types.
	Size int64
	// Linkname is a symlink's target, or for TypeLink the Name of the
	// regular file this is another name for.
	Linkname string
	// Devmajor and Devminor are a device node's number (TypeChar, TypeBlock).
	Devmajor uint32
	Devminor uint32
	// Links is, for a regular file, how many names it will have in the
	// segment: itself plus the TypeLink headers that follow naming it. Zero
	// means 1. The kernel only joins links to files written with Links >= 2.
	Links int
}

// validName reports why name is not a clean relative archive path, or nil.
func validName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty name", ErrInvalidHeader)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: name is %d bytes, the kernel skips names over %d", ErrTooLarge, len(name), MaxNameLen)
	case strings.IndexByte(name, 0) >= 0:
		return fmt.Errorf("%w: name contains NUL", ErrInvalidHeader)
	case name == "TRAILER!!!":
		return fmt.Errorf("%w: name is the archive trailer", ErrInvalidHeader)
	case name[0] == '/':
		return fmt.Errorf("%w: absolute name", ErrInvalidHeader)
	}
	for el := range strings.SplitSeq(name, "/") {
		if el == "" || el == "." || el == ".." {
			return fmt.Errorf("%w: name is not a clean relative path", ErrInvalidHeader)
		}
	}
	return nil
}

// validate checks everything about h that does not depend on other entries.
func (h *Header) validate() error {
	if err := validName(h.Name); err != nil {
		return err
	}
	if h.Type < TypeReg || h.Type > TypeSocket {
		return fmt.Errorf("%w: unknown type %d", ErrInvalidHeader, h.Type)
	}
	if h.Mode&^0o7777 != 0 {
		return fmt.Errorf("%w: mode %#o has bits beyond 07777", ErrInvalidHeader, h.Mode)
	}
	if !h.ModTime.IsZero() {
		if s := h.ModTime.Unix(); s < 0 || s > MaxTime {
			return fmt.Errorf("%w: modification time %s outside 1970..2106", ErrInvalidHeader, h.ModTime.UTC().Format(time.RFC3339))
		}
	}
	if h.Size != 0 && h.Type != TypeReg {
		return fmt.Errorf("%w: size %d on a %s", ErrInvalidHeader, h.Size, h.Type)
	}
	if h.Size < 0 {
		return fmt.Errorf("%w: negative size", ErrInvalidHeader)
	}
	if h.Size > MaxFileSize {
		return fmt.Errorf("%w: file is %d bytes, newc holds at most %d (4 GiB - 1)", ErrTooLarge, h.Size, int64(MaxFileSize))
	}
	if (h.Devmajor != 0 || h.Devminor != 0) && h.Type != TypeChar && h.Type != TypeBlock {
		return fmt.Errorf("%w: device number on a %s", ErrInvalidHeader, h.Type)
	}
	if h.Links < 0 || (h.Links > 1 && h.Type != TypeReg) {
		return fmt.Errorf("%w: link count %d on a %s", ErrInvalidHeader, h.Links, h.Type)
	}
	switch h.Type {
	case TypeSymlink:
		switch {
		case h.Linkname == "":
			return fmt.Errorf("%w: symlink without target", ErrInvalidHeader)
		case len(h.Linkname) > MaxLinkLen:
			return fmt.Errorf("%w: symlink target is %d bytes, at most %d", ErrTooLarge, len(h.Linkname), MaxLinkLen)
		case strings.IndexByte(h.Linkname, 0) >= 0:
			return fmt.Errorf("%w: symlink target contains NUL", ErrInvalidHeader)
		}
	case TypeLink:
		if err := validName(h.Linkname); err != nil {
			return fmt.Errorf("%w: hard link target: %w", ErrLink, err)
		}
	default:
		if h.Linkname != "" {
			return fmt.Errorf("%w: link target on a %s", ErrInvalidHeader, h.Type)
		}
	}
	return nil
}
