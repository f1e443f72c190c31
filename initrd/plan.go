package initrd

import (
	"cmp"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Entry is one entry of a segment together with where its data comes from.
// Only regular files have data: Data when it is held in memory, otherwise
// the host file named by Source, read when the segment is written.
type Entry struct {
	Header
	// Data is the content of a regular file held in memory. Its length
	// must equal Size.
	Data []byte
	// Source is the host file holding a regular file's content when Data
	// is nil. The zero Source means an empty file.
	Source Source
}

// Source names a host file. When Root is set, Path is relative to it and is
// opened through os.Root, so neither ".." nor a symlink can lead outside
// Root; otherwise Path is opened as given (symlinks followed).
type Source struct {
	Root string
	Path string
}

// IsZero reports whether s names no file.
func (s Source) IsZero() bool { return s.Root == "" && s.Path == "" }

// PlanOptions control Plan. The zero value gives the strict defaults:
// duplicates are errors, times and owners are kept.
type PlanOptions struct {
	// LastWins lets a later entry replace an earlier one with the same path
	// (the kernel's own behaviour) instead of failing with ErrDuplicate.
	// Two directories with the same path are always merged, the later
	// one's metadata winning.
	LastWins bool
	// ClampTime, when non-zero, caps every modification time at it, as
	// reproducible builds do with SOURCE_DATE_EPOCH (see EpochFromEnv).
	// Parents Plan creates get this time.
	ClampTime time.Time
	// RootOwner sets every uid and gid to 0.
	RootOwner bool
	// Existing lists directories already present when this segment is
	// unpacked (from earlier segments or the kernel's built-in
	// initramfs): Plan does not create them again, which would reset their
	// mode and owner.
	Existing []string
	// ParentMode is the mode of directories Plan creates; 0 means 0o755.
	ParentMode uint32
}

// normName turns "/a/b", "./a/b/" or "a//b" into "a/b". It returns "" for the
// root itself and an error for paths that climb above it.
func normName(name string) (string, error) {
	if validName(name) == nil {
		return name, nil // already clean: keep the string, don't copy it
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: name contains NUL", ErrInvalidHeader)
	}
	c := path.Clean("/" + name)
	// Clean of a rooted path drops "..", so check the raw elements.
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return "", fmt.Errorf("%w: name %q contains \"..\"", ErrInvalidHeader, name)
		}
	}
	return strings.TrimPrefix(c, "/"), nil
}

// Plan turns entries from any sources into one segment in the order and
// form the kernel needs, checking everything before anything is written:
//
//   - names are cleaned ("/etc/x" and "./etc/x" become "etc/x") and checked
//     against the kernel's limits, as are sizes and symlink targets;
//   - entries are sorted by name in byte order, so every parent comes
//     before its children and the order never depends on the input order;
//   - missing parent directories are created (mode ParentMode, root-owned);
//   - duplicate paths fail with ErrDuplicate unless LastWins;
//   - hard-link groups (TypeLink entries) are checked and rewritten so the
//     first name in order holds the data and Links counts every name;
//   - ClampTime and RootOwner are applied.
//
// The input slice is not modified. The first error is returned wrapped in
// an *EntryError naming the entry. PlanStream does the same for trees and
// closures without holding their entries in memory.
func Plan(entries []Entry, opt PlanOptions) ([]Entry, error) {
	out := make([]Entry, 0, len(entries))
	index := make(map[string]int, len(entries))
	for _, e := range entries {
		name, err := normName(e.Name)
		if err != nil {
			return nil, entryErr(e.Name, err)
		}
		if name == "" {
			continue // the root itself: the kernel's rootfs already exists
		}
		e.Name = name
		if e.Type == TypeLink {
			if e.Linkname, err = normName(e.Linkname); err != nil {
				return nil, entryErr(e.Name, fmt.Errorf("%w: %w", ErrLink, err))
			}
		}
		if opt.RootOwner {
			e.Uid, e.Gid = 0, 0
		}
		if !opt.ClampTime.IsZero() && e.ModTime.After(opt.ClampTime) {
			e.ModTime = opt.ClampTime
		}
		if e.Type == TypeReg && e.Data != nil && int64(len(e.Data)) != e.Size {
			return nil, entryErr(e.Name, fmt.Errorf("%w: Size %d but %d bytes of Data", ErrInvalidHeader, e.Size, len(e.Data)))
		}
		if e.Type == TypeReg {
			e.Links = 0 // recomputed below from the TypeLink entries
		}
		if err := e.validate(); err != nil {
			return nil, entryErr(e.Name, err)
		}
		if i, dup := index[name]; dup {
			prev := out[i]
			switch {
			case prev.Type == TypeDir && e.Type == TypeDir:
			case opt.LastWins:
			default:
				return nil, entryErr(name, fmt.Errorf("%w: a %s and a %s", ErrDuplicate, prev.Type, e.Type))
			}
			out[i] = e
			continue
		}
		index[name] = len(out)
		out = append(out, e)
	}

	// Parents.
	existing := make(map[string]bool, len(opt.Existing))
	for _, d := range opt.Existing {
		if n, err := normName(d); err == nil {
			existing[n] = true
		}
	}
	pmode := opt.ParentMode
	if pmode == 0 {
		pmode = 0o755
	}
	n := len(out)
	for i := range n {
		for dir := path.Dir(out[i].Name); dir != "."; dir = path.Dir(dir) {
			if j, ok := index[dir]; ok {
				if out[j].Type != TypeDir {
					return nil, entryErr(out[i].Name, fmt.Errorf("%w: parent %q is a %s, not a directory", ErrInvalidHeader, dir, out[j].Type))
				}
				break
			}
			if existing[dir] {
				break
			}
			index[dir] = len(out)
			out = append(out, Entry{Header: Header{Name: dir, Type: TypeDir, Mode: pmode, ModTime: opt.ClampTime}})
		}
	}

	slices.SortFunc(out, func(a, b Entry) int { return cmp.Compare(a.Name, b.Name) })
	for i := range out {
		index[out[i].Name] = i
	}

	// Hard links: every TypeLink joins the group of its target; the first
	// member in archive order carries the data.
	groups := map[string][]int{} // target name -> member indexes (target included)
	for i := range out {
		if out[i].Type != TypeLink {
			continue
		}
		t, ok := index[out[i].Linkname]
		if !ok {
			return nil, entryErr(out[i].Name, fmt.Errorf("%w: target %q is not in the segment", ErrLink, out[i].Linkname))
		}
		if out[t].Type != TypeReg {
			return nil, entryErr(out[i].Name, fmt.Errorf("%w: target %q is a %s, not a regular file", ErrLink, out[i].Linkname, out[t].Type))
		}
		tn := out[t].Name
		if _, ok := groups[tn]; !ok {
			groups[tn] = []int{t}
		}
		groups[tn] = append(groups[tn], i)
	}
	for _, members := range groups {
		slices.Sort(members)
		first := members[0]
		var data Entry
		for _, m := range members {
			if out[m].Type == TypeReg {
				data = out[m]
			}
		}
		for _, m := range members {
			e := &out[m]
			if m == first {
				name := e.Name
				*e = data
				e.Name = name
				e.Links = len(members)
				continue
			}
			e.Header = Header{Name: e.Name, Type: TypeLink, Linkname: out[first].Name,
				Mode: data.Mode, Uid: data.Uid, Gid: data.Gid, ModTime: data.ModTime}
			e.Data, e.Source = nil, Source{}
		}
	}
	return out, nil
}

// EpochFromEnv returns the time in the SOURCE_DATE_EPOCH environment
// variable (decimal seconds since 1970), for PlanOptions.ClampTime. It
// returns the zero Time when the variable is unset or empty.
func EpochFromEnv(getenv func(string) string) (time.Time, error) {
	v := getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return time.Time{}, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > MaxTime {
		return time.Time{}, fmt.Errorf("%w: SOURCE_DATE_EPOCH=%q is not seconds in 1970..2106", ErrInvalidHeader, v)
	}
	return time.Unix(n, 0), nil
}
