package initrd

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// MaxManifestSize bounds the manifests ParseManifest accepts.
const MaxManifestSize = 16 << 20

// ParseManifest parses a file list in the spirit of the kernel's
// usr/gen_init_cpio, one entry per line, '#' starting a comment:
//
//	file  <name> <location> <mode> <uid> <gid> [<hard link name> ...]
//	dir   <name> <mode> <uid> <gid>
//	nod   <name> <mode> <uid> <gid> <b|c> <major> <minor>
//	slink <name> <target> <mode> <uid> <gid>
//	pipe  <name> <mode> <uid> <gid>
//	sock  <name> <mode> <uid> <gid>
//
// Modes are octal. A file's location is a host path; ParseManifest does no
// I/O, so file entries come back with Source.Path set and Size -1 until
// ResolveManifest stats them. Errors are *LineError values.
func ParseManifest(text []byte) ([]Entry, error) {
	if len(text) > MaxManifestSize {
		return nil, fmt.Errorf("%w: manifest over %d bytes", ErrTooLarge, MaxManifestSize)
	}
	var out []Entry
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 2*MaxNameLen+4*64)
	line := 0
	for sc.Scan() {
		line++
		raw := sc.Text()
		s := raw
		if i := strings.IndexByte(s, '#'); i >= 0 {
			s = s[:i]
		}
		f := strings.Fields(s)
		if len(f) == 0 {
			continue
		}
		es, err := parseManifestLine(f)
		if err != nil {
			if len(raw) > 80 {
				raw = raw[:80]
			}
			return nil, &LineError{Line: line, Text: raw, Err: err}
		}
		out = append(out, es...)
	}
	if err := sc.Err(); err != nil {
		return nil, &LineError{Line: line + 1, Err: fmt.Errorf("%w: %w", ErrManifest, err)}
	}
	return out, nil
}

func parseManifestLine(f []string) ([]Entry, error) {
	want := map[string]int{"file": 6, "dir": 5, "nod": 8, "slink": 6, "pipe": 5, "sock": 5}
	n, ok := want[f[0]]
	if !ok {
		return nil, fmt.Errorf("%w: unknown keyword %q", ErrManifest, f[0])
	}
	if len(f) < n || (len(f) > n && f[0] != "file") {
		return nil, fmt.Errorf("%w: %s takes %d fields, got %d", ErrManifest, f[0], n-1, len(f)-1)
	}
	num := func(s string, base int, what string) (uint32, error) {
		v, err := strconv.ParseUint(s, base, 32)
		if err != nil {
			return 0, fmt.Errorf("%w: bad %s %q", ErrManifest, what, s)
		}
		return uint32(v), nil
	}
	owner := func(i int) (h Header, err error) {
		if h.Mode, err = num(f[i], 8, "mode"); err != nil {
			return h, err
		}
		if h.Mode > 0o7777 {
			return h, fmt.Errorf("%w: mode %q beyond 07777", ErrManifest, f[i])
		}
		if h.Uid, err = num(f[i+1], 10, "uid"); err != nil {
			return h, err
		}
		h.Gid, err = num(f[i+2], 10, "gid")
		return h, err
	}
	for _, fld := range f {
		for _, c := range fld {
			if c < 0x20 || c == 0x7f {
				return nil, fmt.Errorf("%w: control character in %q", ErrManifest, fld)
			}
		}
	}
	var h Header
	var err error
	e := Entry{}
	switch f[0] {
	case "file":
		h, err = owner(3)
		h.Type, h.Size = TypeReg, -1
		e.Source = Source{Path: f[2]}
	case "dir":
		h, err = owner(2)
		h.Type = TypeDir
	case "nod":
		h, err = owner(2)
		if err == nil {
			switch f[5] {
			case "c":
				h.Type = TypeChar
			case "b":
				h.Type = TypeBlock
			default:
				return nil, fmt.Errorf("%w: device type %q (want b or c)", ErrManifest, f[5])
			}
			if h.Devmajor, err = num(f[6], 10, "major"); err == nil {
				h.Devminor, err = num(f[7], 10, "minor")
			}
		}
	case "slink":
		h, err = owner(3)
		h.Type, h.Linkname = TypeSymlink, f[2]
	case "pipe":
		h, err = owner(2)
		h.Type = TypeFifo
	case "sock":
		h, err = owner(2)
		h.Type = TypeSocket
	}
	if err != nil {
		return nil, err
	}
	name, err := normName(f[1])
	if err != nil || name == "" {
		return nil, fmt.Errorf("%w: bad name %q", ErrManifest, f[1])
	}
	h.Name = name
	e.Header = h
	check := e.Header
	check.Size = 0
	if err := check.validate(); err != nil {
		return nil, err
	}
	out := []Entry{e}
	for _, l := range f[n:] {
		ln, err := normName(l)
		if err != nil || ln == "" {
			return nil, fmt.Errorf("%w: bad hard link name %q", ErrManifest, l)
		}
		if err := validName(ln); err != nil {
			return nil, err
		}
		out = append(out, Entry{Header: Header{Name: ln, Type: TypeLink, Linkname: name}})
	}
	return out, nil
}

// FormatManifest renders entries in ParseManifest's format. A hard link
// becomes an extra name on the line of the nearest file before it with the
// name it links to (as ParseManifest produces them, and Plan orders them);
// a link with no such file, or names or targets containing whitespace or
// '#', cannot be written and give ErrManifest.
func FormatManifest(entries []Entry) ([]byte, error) {
	links := map[int][]string{} // file entry index -> its link names
	lastFile := map[string]int{}
	for i, e := range entries {
		switch e.Type {
		case TypeReg:
			lastFile[e.Name] = i
		case TypeLink:
			f, ok := lastFile[e.Linkname]
			if !ok {
				return nil, fmt.Errorf("%w: hard link %q comes before any file %q", ErrManifest, e.Name, e.Linkname)
			}
			links[f] = append(links[f], e.Name)
		}
	}
	var b bytes.Buffer
	bad := func(s string) bool {
		return s == "" || strings.ContainsAny(s, " \t\n\r\v\f#") || strings.IndexByte(s, 0) >= 0
	}
	for i, e := range entries {
		if bad(e.Name) || (e.Type == TypeSymlink && bad(e.Linkname)) || (e.Type == TypeReg && bad(e.Source.Path)) {
			return nil, fmt.Errorf("%w: %q cannot be written as a manifest line", ErrManifest, e.Name)
		}
		own := fmt.Sprintf("%o %d %d", e.Mode, e.Uid, e.Gid)
		switch e.Type {
		case TypeReg:
			fmt.Fprintf(&b, "file %s %s %s", e.Name, e.Source.Path, own)
			for _, l := range links[i] {
				if bad(l) {
					return nil, fmt.Errorf("%w: %q cannot be written as a manifest line", ErrManifest, l)
				}
				b.WriteString(" " + l)
			}
			b.WriteByte('\n')
		case TypeDir:
			fmt.Fprintf(&b, "dir %s %s\n", e.Name, own)
		case TypeChar, TypeBlock:
			t := "c"
			if e.Type == TypeBlock {
				t = "b"
			}
			fmt.Fprintf(&b, "nod %s %s %s %d %d\n", e.Name, own, t, e.Devmajor, e.Devminor)
		case TypeSymlink:
			fmt.Fprintf(&b, "slink %s %s %s\n", e.Name, e.Linkname, own)
		case TypeFifo:
			fmt.Fprintf(&b, "pipe %s %s\n", e.Name, own)
		case TypeSocket:
			fmt.Fprintf(&b, "sock %s %s\n", e.Name, own)
		case TypeLink:
		default:
			return nil, fmt.Errorf("%w: %q has unknown type", ErrManifest, e.Name)
		}
	}
	return b.Bytes(), nil
}

// ResolveManifest stats the host files of parsed manifest entries, setting
// each file's Size, with relative locations taken relative to base. Times
// are left zero (1970) unless the caller sets them: gen_init_cpio lists
// carry none.
func ResolveManifest(entries []Entry, base string) ([]Entry, error) {
	out := make([]Entry, len(entries))
	copy(out, entries)
	for i := range out {
		e := &out[i]
		if e.Type != TypeReg || e.Data != nil {
			continue
		}
		p := e.Source.Path
		if !filepath.IsAbs(p) {
			p = filepath.Join(base, p)
		}
		fi, err := os.Stat(p)
		if err != nil {
			return nil, entryErr(e.Name, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, entryErr(e.Name, fmt.Errorf("%w: %s is not a regular file", ErrInvalidHeader, p))
		}
		e.Source = Source{Path: p}
		e.Size = fi.Size()
	}
	return out, nil
}
