package initrd

import (
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"
)

// item is an entry on its way from an input to the planner, with the
// identity of its host file when that file has several names (st_nlink > 1).
type item struct {
	Entry
	id    linkID
	hasID bool
}

// linkID identifies a host file within one hard-link scope: one tree, or
// one store path of a closure (as Tree and Closure scope their links).
type linkID struct {
	scope    int
	dev, ino uint64
}

// cursor yields an input's items in archive order, one at a time.
type cursor interface {
	// next returns the next item; ok is false at the end.
	next() (it item, ok bool, err error)
	close()
}

// sliceCursor yields in-memory entries, already cleaned and sorted.
type sliceCursor struct {
	entries []Entry
	i       int
}

func (c *sliceCursor) next() (item, bool, error) {
	if c.i >= len(c.entries) {
		return item{}, false, nil
	}
	c.i++
	return item{Entry: c.entries[c.i-1]}, true, nil
}

func (c *sliceCursor) close() {}

// lstat is the part of a stat result an entry is made of.
type lstat struct {
	mode     uint32
	uid, gid uint32
	size     int64
	mtime    int64
	rdev     uint64
	dev, ino uint64
	nlink    uint64
	isDir    bool
}

// entryFromStat returns the entry for a file with stat result st, placed
// at name. Tree and File (through entryFromInfo) and the streaming walk all
// make their entries here.
func entryFromStat(st *lstat, name string) (Entry, error) {
	e := Entry{Header: Header{Name: name, Mode: st.mode & 0o7777, Uid: st.uid, Gid: st.gid}}
	switch t := st.mtime; {
	case t < 0:
		e.ModTime = time.Unix(0, 0)
	case t > MaxTime:
		e.ModTime = time.Unix(MaxTime, 0)
	default:
		e.ModTime = time.Unix(t, 0)
	}
	e.Type = typeFromMode(st.mode)
	switch e.Type {
	case TypeReg:
		e.Size = st.size
	case TypeChar, TypeBlock:
		e.Devmajor, e.Devminor = devNumbers(st.rdev)
	case 0:
		return Entry{}, fmt.Errorf("%w: %s has unsupported file mode %#o", ErrInvalidHeader, name, st.mode)
	}
	return e, nil
}

// wkey is one step of a directory's walk: the record of a child, or (desc)
// the start of a child directory's contents, which sorts as name + "/".
type wkey struct {
	name string
	desc bool
	st   lstat
	// For the children of a closure's store directory: the tree each
	// child directory starts.
	scope int
}

// cmpKey orders keys as full paths are ordered: a descent key compares as
// its name followed by '/', so "a" < "a-c" < "a/" (the contents of a) <
// "a0".
func cmpKey(a, b *wkey) int {
	n := min(len(a.name), len(b.name))
	if c := strings.Compare(a.name[:n], b.name[:n]); c != 0 {
		return c
	}
	at, bt := keyByte(a, n), keyByte(b, n)
	return at - bt
}

// keyByte is the byte at i of k's sort string, or -1 past its end.
func keyByte(k *wkey, i int) int {
	switch {
	case i < len(k.name):
		return int(k.name[i])
	case i == len(k.name) && k.desc:
		return '/'
	}
	return -1
}

// frame is a directory being walked.
type frame struct {
	d      wdir   // the directory
	root   string // host directory of the tree (Source.Root)
	prefix string // archive prefix of the tree
	rel    string // path of this directory in the tree, "." for its root
	scope  int
	keys   []wkey
	i      int
	store  bool // a closure's store directory: each child is a tree
}

// walker walks host trees in archive order (full-path byte order, what
// `find . | LC_ALL=C sort` gives). Each directory is listed once and its
// entries are lstat'ed relative to it, and subdirectories are opened
// relative to it without following symlinks (see wdir): nothing outside
// the tree is reached. It holds the names and stat results of the
// directories on the current path only.
//
// Each listing's stat results are hashed; with check set the walk compares
// them with the digests of an earlier walk (the planning pass) and fails
// with ErrChanged when a directory changed in between.
type walker struct {
	frames  []*frame
	pending []item // records made when the walk started (a tree's root)
	digests []uint64
	ndir    int
	check   bool
	start   func(w *walker) error
	started bool
	// done, when set, is called with a store path's hard-link scope once
	// the walk has left that store path.
	done func(scope int)
}

// newTreeWalker walks the host directory dir, named prefix in the archive,
// as Tree does.
func newTreeWalker(dir, prefix string, scope int) *walker {
	return &walker{start: func(w *walker) error {
		d, err := openWalkDir(dir)
		if err != nil {
			return fmt.Errorf("initrd: tree %s: %w", dir, err)
		}
		ls, err := d.stat(dir)
		if err != nil {
			d.close()
			return fmt.Errorf("initrd: tree %s: %w", dir, err)
		}
		if name := path.Join(prefix, "."); name != "." && name != "" {
			e, err := entryFromStat(&ls, name)
			if err != nil {
				d.close()
				return fmt.Errorf("initrd: tree %s: %w", dir, err)
			}
			w.pending = append(w.pending, item{Entry: e})
		}
		return w.push(&frame{d: d, root: dir, prefix: prefix, rel: ".", scope: scope})
	}}
}

// newStoreWalker walks the store paths bases (unique, top-level names in
// storeDir) as Closure does: each is placed at nix/store/<base>, and each
// directory among them is a tree of its own (its own hard-link scope).
func newStoreWalker(storeDir string, bases []string, scope int) *walker {
	return &walker{start: func(w *walker) error {
		d, err := openWalkDir(storeDir)
		if err != nil {
			return fmt.Errorf("initrd: closure: %w", err)
		}
		fr := &frame{d: d, root: storeDir, prefix: "nix/store", rel: ".", store: true}
		fr.keys = make([]wkey, 0, 2*len(bases))
		for i, b := range bases {
			fr.keys = append(fr.keys, wkey{name: b, scope: scope + i})
		}
		if err := w.stat(fr); err != nil {
			fr.d.close()
			return fmt.Errorf("initrd: closure: %w", err)
		}
		w.frames = append(w.frames, fr)
		return nil
	}}
}

// push lists the directory of fr, lstats its entries and makes it the
// current frame.
func (w *walker) push(fr *frame) error {
	names, err := fr.d.names()
	if err != nil {
		fr.d.close()
		return &fs.PathError{Op: "readdir", Path: path.Join(fr.root, fr.rel), Err: err}
	}
	fr.keys = make([]wkey, len(names), len(names)+8)
	for i, n := range names {
		fr.keys[i] = wkey{name: n, scope: fr.scope}
	}
	if err := w.stat(fr); err != nil {
		fr.d.close()
		return err
	}
	w.frames = append(w.frames, fr)
	return nil
}

// stat lstats the keys of fr, adds a descent key for each directory, sorts
// them and records or checks the listing's digest.
func (w *walker) stat(fr *frame) error {
	h := fnv.New64a()
	var buf [8 * 9]byte
	n := len(fr.keys)
	for i := 0; i < n; i++ {
		k := &fr.keys[i]
		st, err := fr.d.lstatAt(k.name, path.Join(fr.root, fr.rel, k.name))
		if err != nil {
			return err
		}
		k.st = st
		if k.st.isDir {
			fr.keys = append(fr.keys, wkey{name: k.name, desc: true, st: k.st, scope: k.scope})
		}
	}
	slices.SortFunc(fr.keys, func(a, b wkey) int { return cmpKey(&a, &b) })
	for i := range fr.keys {
		k := &fr.keys[i]
		if k.desc {
			continue
		}
		h.Write([]byte(k.name))
		s := &k.st
		for j, v := range []uint64{uint64(s.mode), uint64(s.uid), uint64(s.gid), uint64(s.size), uint64(s.mtime), s.rdev, s.dev, s.ino, s.nlink} {
			for b := range 8 {
				buf[8*j+b] = byte(v >> (8 * b))
			}
		}
		h.Write(buf[:])
	}
	sum := h.Sum64()
	d := w.ndir
	w.ndir++
	switch {
	case !w.check:
		w.digests = append(w.digests, sum)
	case d >= len(w.digests) || w.digests[d] != sum:
		return entryErr(fr.archiveName(""), fmt.Errorf("%w: directory %s changed after planning (an entry was added, removed or changed)", ErrChanged, path.Join(fr.root, fr.rel)))
	}
	return nil
}

// archiveName is the archive name of child (or of the directory itself
// for "") as Tree names it: path.Join(prefix, rel).
func (fr *frame) archiveName(child string) string {
	rel := fr.rel
	if child != "" {
		if rel == "." {
			rel = child
		} else {
			rel = rel + "/" + child
		}
	}
	return path.Join(fr.prefix, rel)
}

func (w *walker) next() (item, bool, error) {
	if !w.started {
		w.started = true
		if err := w.start(w); err != nil {
			return item{}, false, err
		}
	}
	if len(w.pending) > 0 {
		it := w.pending[0]
		w.pending = w.pending[1:]
		return it, true, nil
	}
	for len(w.frames) > 0 {
		fr := w.frames[len(w.frames)-1]
		if fr.i >= len(fr.keys) {
			fr.d.close()
			w.frames[len(w.frames)-1] = nil
			w.frames = w.frames[:len(w.frames)-1]
			if n := len(w.frames); n == 1 && w.frames[0].store && w.done != nil {
				w.done(fr.scope)
			}
			continue
		}
		k := &fr.keys[fr.i]
		fr.i++
		if k.desc {
			if err := w.descend(fr, k); err != nil {
				return item{}, false, err
			}
			continue
		}
		it, err := w.record(fr, k)
		if err != nil {
			return item{}, false, err
		}
		return it, true, nil
	}
	return item{}, false, nil
}

// descend starts the contents of the directory k in fr.
func (w *walker) descend(fr *frame, k *wkey) error {
	host := path.Join(fr.root, fr.rel, k.name)
	d, err := fr.d.openAt(k.name, host)
	if err != nil {
		return entryErr(fr.archiveName(k.name), err)
	}
	sub := &frame{d: d, root: fr.root, prefix: fr.prefix, rel: path.Join(fr.rel, k.name), scope: k.scope}
	if fr.store {
		// A store path: a tree of its own, as Closure walks it with Tree.
		sub.root, sub.prefix, sub.rel = host, fr.archiveName(k.name), "."
	}
	ls, err := d.stat(host)
	if err != nil {
		d.close()
		return err
	}
	if ls.dev != k.st.dev || ls.ino != k.st.ino {
		d.close()
		return entryErr(fr.archiveName(k.name), fmt.Errorf("%w: directory %s was replaced during the walk", ErrChanged, host))
	}
	return w.push(sub)
}

// record makes the entry of the child k of fr.
func (w *walker) record(fr *frame, k *wkey) (item, error) {
	name := fr.archiveName(k.name)
	e, err := entryFromStat(&k.st, name)
	if err != nil {
		return item{}, err
	}
	it := item{Entry: e}
	switch e.Type {
	case TypeSymlink:
		if it.Linkname, err = fr.d.readlinkAt(k.name, path.Join(fr.root, fr.rel, k.name), k.st.size); err != nil {
			return item{}, entryErr(name, err)
		}
	case TypeReg:
		if fr.store {
			it.Source = Source{Root: fr.root, Path: k.name}
		} else {
			it.Source = Source{Root: fr.root, Path: path.Join(fr.rel, k.name)}
			if k.st.nlink > 1 {
				it.id, it.hasID = linkID{scope: k.scope, dev: k.st.dev, ino: k.st.ino}, true
			}
		}
	}
	return it, nil
}

func (w *walker) close() {
	for _, fr := range w.frames {
		fr.d.close()
	}
	w.frames = nil
}
