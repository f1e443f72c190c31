package initrd

import (
	"bytes"
	"errors"
	"fmt"
	"iter"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Input is one source of a streamed segment (see PlanStream): a host tree,
// a Nix closure, or entries held in memory. Make one with TreeInput,
// ClosureInput, ClosureInfoInput or EntriesInput; the zero Input has no
// entries.
type Input struct {
	kind         inputKind
	dir, prefix  string
	bases        []string
	registration []byte
	entries      []Entry
	err          error
}

type inputKind uint8

const (
	inputEntries inputKind = iota
	inputTree
	inputStore
)

// TreeInput is the host directory dir placed under prefix, as Tree gives
// it, but read while the segment is planned and again while it is written
// instead of being held in memory: confined to dir, symlinks stored and
// never followed, files with several names in the tree stored as hard
// links.
//
// A hard-link group's first name in archive order carries the data, as
// after Plan. One difference from Tree followed by Plan: with
// PlanOptions.LastWins, a name of a group replaced by another input's
// entry leaves the group; Plan instead gives the group the replacing
// entry's data when the replaced name is the one Tree saw first.
func TreeInput(dir, prefix string) Input { return Input{kind: inputTree, dir: dir, prefix: prefix} }

// ClosureInput is the Nix closure Closure returns for the same arguments,
// read while the segment is planned and written instead of held in
// memory: each store path walked as TreeInput walks a tree.
func ClosureInput(storeDir string, paths []string, registration []byte) Input {
	seen := map[string]bool{}
	var bases []string
	for _, p := range paths {
		base := path.Base(p)
		if !strings.HasPrefix(p, "/nix/store/") || path.Dir(p) != "/nix/store" || base == "" || seen[base] {
			if seen[base] {
				continue
			}
			return Input{err: fmt.Errorf("initrd: closure: %q is not a top-level store path", p)}
		}
		seen[base] = true
		bases = append(bases, base)
	}
	slices.Sort(bases)
	return Input{kind: inputStore, dir: storeDir, bases: bases, registration: registration}
}

// ClosureInfoInput reads a closure-info directory as ClosureInfo does and
// returns ClosureInput's Input for it.
func ClosureInfoInput(dir, storeDir string) (Input, error) {
	sp, err := os.ReadFile(filepath.Join(dir, "store-paths"))
	if err != nil {
		return Input{}, fmt.Errorf("initrd: closure info: %w", err)
	}
	reg, err := os.ReadFile(filepath.Join(dir, "registration"))
	if err != nil {
		return Input{}, fmt.Errorf("initrd: closure info: %w", err)
	}
	return ClosureInput(storeDir, strings.Fields(string(bytes.TrimSpace(sp))), reg), nil
}

// EntriesInput is entries held in memory, in any order (File's, a
// manifest's, literal ones). They are kept, sorted, until the segment is
// written.
func EntriesInput(entries ...Entry) Input { return Input{kind: inputEntries, entries: entries} }

// Stream is a segment planned by PlanStream: checked as Plan checks
// entries, but holding only what the checks need (the names of its
// directories, those Plan creates, and its hard-link groups). Its entries
// are read from the inputs again when it is written (Segment.Stream) or
// ranged over (All).
//
// A Stream is not safe for concurrent use: range over All, or write it,
// once at a time.
type Stream struct {
	opt      PlanOptions
	inputs   []prepared
	existing map[string]bool
	pmode    uint32

	created []Entry           // directories Plan creates, sorted
	dirs    []string          // every directory of the segment
	needs   map[string]string // directory expected from earlier segments -> first entry needing it
	ids     map[linkID]*idGroup
	// While planning: the hard-link scopes of store paths, and the files
	// seen in each (see pruneScope).
	storeScope map[int]bool
	scopeIDs   map[int][]linkID
	groups     map[string]*nameGroup
	targets    map[string]bool // names TypeLink entries of EntriesInputs point to
	n          int
	size       int64
}

// prepared is an Input ready to be walked: entries cleaned and sorted,
// trees with their hard-link scope and the digests of the planning walk.
type prepared struct {
	in      Input
	scope   int
	reg     []Entry // a closure's registration entry
	digests []uint64
}

// idGroup is a host file with several names in one tree.
type idGroup struct {
	first string // first name in archive order: carries the data
	count int
	size  int64
}

// nameGroup is a regular file named by TypeLink entries.
type nameGroup struct {
	target string
	first  string // first member in archive order
	link   string // first TypeLink in archive order (named in errors)
	count  int    // members, the target included
	data   Entry  // the target
}

// PlanStream plans one segment from inputs as Plan plans the entries of
// the same sources concatenated in the same order, and gives the same
// entries, in the same order, when written: byte-identical output. It
// checks everything Plan checks before anything is written, in one pass
// over the inputs that keeps no entry: host trees are walked in archive
// order (full-path byte order), one directory listing at a time, and
// merged with the sorted in-memory entries. Memory is the listings of the
// directories on the current path, the directory names of the segment and
// its hard-linked files, not the entries.
//
// Writing the Stream walks the trees again. A directory whose entries
// changed in between fails the write with ErrChanged naming it, a file
// whose size changes while it is read with ErrChanged naming the file.
//
// Trees are confined as with Tree. On Linux each directory's entries are
// lstat'ed and opened relative to its descriptor (fstatat, openat with
// O_NOFOLLOW); elsewhere through os.Root, with the same result (see the
// package documentation, "Other systems"). Errors are those of Plan, Tree and
// Closure; as with Plan, the first error found is returned (found in
// archive order rather than input order).
func PlanStream(inputs []Input, opt PlanOptions) (*Stream, error) {
	s := &Stream{opt: opt, existing: map[string]bool{}, pmode: opt.ParentMode,
		needs: map[string]string{}, ids: map[linkID]*idGroup{}, storeScope: map[int]bool{}, scopeIDs: map[int][]linkID{}, groups: map[string]*nameGroup{}, targets: map[string]bool{}}
	if s.pmode == 0 {
		s.pmode = 0o755
	}
	for _, d := range opt.Existing {
		if n, err := normName(d); err == nil {
			s.existing[n] = true
		}
	}
	scope := 0
	for _, in := range inputs {
		if in.err != nil {
			return nil, in.err
		}
		p := prepared{in: in, scope: scope}
		switch in.kind {
		case inputTree:
			scope++
		case inputStore:
			for i := range in.bases {
				s.storeScope[scope+i] = true
			}
			scope += len(in.bases)
			if len(in.registration) > 0 {
				p.reg = []Entry{{Header: Header{Name: RegistrationName, Type: TypeReg, Mode: 0o644, Size: int64(len(in.registration))}, Data: in.registration}}
			}
		case inputEntries:
			es := make([]Entry, len(in.entries))
			for i, e := range in.entries {
				name, err := normName(e.Name)
				if err != nil {
					return nil, entryErr(e.Name, err)
				}
				e.Name = name
				if e.Type == TypeLink {
					if t, err := normName(e.Linkname); err == nil {
						s.targets[t] = true
					}
				}
				es[i] = e
			}
			slices.SortStableFunc(es, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
			p.in.entries = es
		}
		s.inputs = append(s.inputs, p)
	}
	captured := map[string]item{}
	st := s.newState(false)
	err := st.run(func(it *item) error {
		e := &it.Entry
		if s.targets[e.Name] {
			captured[e.Name] = *it
		}
		switch e.Type {
		case TypeDir:
			s.dirs = append(s.dirs, e.Name)
		case TypeReg:
			s.size += e.Size
			if it.hasID {
				g := s.ids[it.id]
				if g == nil {
					g = &idGroup{first: e.Name, size: e.Size}
					s.ids[it.id] = g
					if s.storeScope[it.id.scope] {
						s.scopeIDs[it.id.scope] = append(s.scopeIDs[it.id.scope], it.id)
					}
				}
				g.count++
			}
		case TypeLink:
			g := s.groups[e.Linkname]
			if g == nil {
				g = &nameGroup{target: e.Linkname, first: e.Linkname, link: e.Name, count: 1}
				s.groups[e.Linkname] = g
			}
			g.count++
			g.first = min(g.first, e.Name)
		}
		s.n++
		return nil
	})
	for i := range s.inputs {
		s.inputs[i].digests = st.digests[i]
	}
	if err != nil {
		return nil, err
	}
	s.storeScope, s.scopeIDs = nil, nil
	slices.Sort(st.created)
	for _, d := range st.created {
		s.created = append(s.created, Entry{Header: Header{Name: d, Type: TypeDir, Mode: s.pmode, ModTime: opt.ClampTime}})
		s.dirs = append(s.dirs, d)
	}
	s.n += len(st.created)
	for id, g := range s.ids {
		if g.count < 2 {
			delete(s.ids, id) // its other names are outside the tree
			continue
		}
		s.size -= int64(g.count-1) * g.size
	}
	var bad []*nameGroup
	for _, g := range s.groups {
		t, ok := captured[g.target]
		switch {
		case !ok:
			g.data.Name = ""
		case t.Type != TypeReg:
			g.data = t.Entry
		case t.hasID && s.ids[t.id] != nil:
			g.data = t.Entry
			g.data.Type = TypeLink // reported below
		default:
			g.data = t.Entry
			continue
		}
		bad = append(bad, g)
	}
	if len(bad) > 0 {
		g := slices.MinFunc(bad, func(a, b *nameGroup) int { return strings.Compare(a.link, b.link) })
		switch {
		case g.data.Name == "":
			return nil, entryErr(g.link, fmt.Errorf("%w: target %q is not in the segment", ErrLink, g.target))
		case g.data.Type == TypeLink && captured[g.target].Type == TypeReg:
			return nil, entryErr(g.link, fmt.Errorf("%w: target %q already has several names in its tree (use Tree and Plan)", ErrLink, g.target))
		default:
			return nil, entryErr(g.link, fmt.Errorf("%w: target %q is a %s, not a regular file", ErrLink, g.target, g.data.Type))
		}
	}
	return s, nil
}

// Len returns the number of entries of the segment.
func (s *Stream) Len() int { return s.n }

// Size returns the number of data bytes of the segment's regular files.
func (s *Stream) Size() int64 { return s.size }

// Dirs returns the directories of the segment (for PlanOptions.Existing of
// the next one), in no particular order. The caller may modify the slice.
func (s *Stream) Dirs() []string { return slices.Clone(s.dirs) }

// All returns the planned entries in archive order, read from the inputs
// again, as Plan would return them. It yields an error, then stops, if an
// input cannot be read or changed since PlanStream (ErrChanged).
func (s *Stream) All() iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		st := s.newState(true)
		type idSeen struct {
			n   int
			hdr Header
		}
		seenID := map[linkID]*idSeen{}
		seenName := map[string]int{}
		err := st.run(func(it *item) error {
			e := &it.Entry
			if it.hasID && e.Type == TypeReg {
				if g := s.ids[it.id]; g != nil {
					sn := seenID[it.id]
					if sn == nil {
						sn = &idSeen{}
						seenID[it.id] = sn
					}
					sn.n++
					if e.Name == g.first {
						e.Links = g.count
						sn.hdr = e.Header
					} else {
						if sn.hdr.Name == "" {
							return entryErr(e.Name, fmt.Errorf("%w: hard links changed after planning", ErrChanged))
						}
						*e = Entry{Header: Header{Name: e.Name, Type: TypeLink, Linkname: g.first,
							Mode: sn.hdr.Mode, Uid: sn.hdr.Uid, Gid: sn.hdr.Gid, ModTime: sn.hdr.ModTime}}
					}
				}
			}
			var g *nameGroup
			switch {
			case e.Type == TypeLink && !it.hasID:
				if g = s.groups[e.Linkname]; g == nil {
					return entryErr(e.Name, fmt.Errorf("%w: hard links changed after planning", ErrChanged))
				}
			case s.targets[e.Name]:
				g = s.groups[e.Name]
			}
			if g != nil {
				seenName[g.target]++
				if e.Name == g.first {
					name := e.Name
					*e = g.data
					e.Name = name
					e.Links = g.count
				} else {
					*e = Entry{Header: Header{Name: e.Name, Type: TypeLink, Linkname: g.first,
						Mode: g.data.Mode, Uid: g.data.Uid, Gid: g.data.Gid, ModTime: g.data.ModTime}}
				}
			}
			if !yield(*e, nil) {
				return errStop
			}
			return nil
		})
		if err == nil {
			for id, g := range s.ids {
				if sn := seenID[id]; sn == nil || sn.n != g.count {
					err = entryErr(g.first, fmt.Errorf("%w: hard links changed after planning", ErrChanged))
					break
				}
			}
		}
		if err == nil {
			for t, g := range s.groups {
				if seenName[t] != g.count {
					err = entryErr(g.first, fmt.Errorf("%w: hard links changed after planning", ErrChanged))
					break
				}
			}
		}
		if err != nil && err != errStop {
			yield(Entry{}, err)
		}
	}
}

var errStop = errors.New("initrd: iteration stopped")

// planState is one pass over a Stream's inputs: the merge, the checks Plan
// makes, and (when planning) what the write needs.
type planState struct {
	s       *Stream
	write   bool
	cs      []cursor
	heads   []item
	live    []bool
	last    []string
	stack   []ancestor // entries whose names are prefixes of the current one
	created []string
	isNew   map[string]bool
	digests [][]uint64
	walkers []*walker
	// Store paths the walk has left, whose files' hard-link counts are
	// complete (pruned after the current entry).
	done []int
}

type ancestor struct {
	name string
	typ  Type
}

func (s *Stream) newState(write bool) *planState {
	st := &planState{s: s, write: write, isNew: map[string]bool{}, digests: make([][]uint64, len(s.inputs))}
	for _, p := range s.inputs {
		var c cursor
		switch p.in.kind {
		case inputEntries:
			c = &sliceCursor{entries: p.in.entries}
		case inputTree:
			w := newTreeWalker(p.in.dir, p.in.prefix, p.scope)
			w.check, w.digests = write, p.digests
			st.walkers = append(st.walkers, w)
			c = w
		case inputStore:
			w := newStoreWalker(p.in.dir, p.in.bases, p.scope)
			w.check, w.digests = write, p.digests
			if !write {
				w.done = func(scope int) { st.done = append(st.done, scope) }
			}
			st.walkers = append(st.walkers, w)
			c = &chainCursor{cs: []cursor{&sliceCursor{entries: p.reg}, w}}
		}
		st.cs = append(st.cs, c)
	}
	if write {
		st.cs = append(st.cs, &sliceCursor{entries: s.created})
	}
	return st
}

// chainCursor yields its cursors' items one cursor after the other.
type chainCursor struct{ cs []cursor }

func (c *chainCursor) next() (item, bool, error) {
	for len(c.cs) > 0 {
		it, ok, err := c.cs[0].next()
		if err != nil || ok {
			return it, ok, err
		}
		c.cs = c.cs[1:]
	}
	return item{}, false, nil
}

func (c *chainCursor) close() {
	for _, x := range c.cs {
		x.close()
	}
}

// run merges the inputs and calls f with each planned entry, in archive
// order, after the checks.
func (st *planState) run(f func(*item) error) error {
	defer func() {
		for _, c := range st.cs {
			c.close()
		}
		wi := 0
		for i, p := range st.s.inputs {
			if p.in.kind == inputTree || p.in.kind == inputStore {
				st.digests[i] = st.walkers[wi].digests
				wi++
			}
		}
	}()
	st.heads = make([]item, len(st.cs))
	st.live = make([]bool, len(st.cs))
	st.last = make([]string, len(st.cs))
	for i := range st.cs {
		if err := st.fill(i); err != nil {
			return err
		}
	}
	for {
		m := -1
		for i := range st.cs {
			if st.live[i] && (m < 0 || st.heads[i].Name < st.heads[m].Name) {
				m = i
			}
		}
		if m < 0 {
			return nil
		}
		cur := st.heads[m]
		if err := st.fill(m); err != nil {
			return err
		}
		// Later duplicates: the other inputs' (in input order) and the
		// same input's next ones.
		for {
			d := -1
			for i := range st.cs {
				if st.live[i] && st.heads[i].Name == cur.Name {
					d = i
					break
				}
			}
			if d < 0 {
				break
			}
			e := st.heads[d]
			switch {
			case cur.Type == TypeDir && e.Type == TypeDir:
			case st.s.opt.LastWins:
			default:
				return entryErr(cur.Name, fmt.Errorf("%w: a %s and a %s", ErrDuplicate, cur.Type, e.Type))
			}
			cur = e
			if err := st.fill(d); err != nil {
				return err
			}
		}
		if err := st.parents(&cur.Entry); err != nil {
			return err
		}
		if err := f(&cur); err != nil {
			return err
		}
		for _, sc := range st.done {
			st.s.pruneScope(sc)
		}
		st.done = st.done[:0]
	}
}

// pruneScope forgets the files of a finished store path that have only
// one name in it: in a store optimised by nix-store --optimise nearly
// every file has other names (under /nix/store/.links), and keeping them
// all would make the plan's memory grow with the closure.
func (s *Stream) pruneScope(scope int) {
	for _, id := range s.scopeIDs[scope] {
		if g := s.ids[id]; g != nil && g.count < 2 {
			delete(s.ids, id)
		}
	}
	delete(s.scopeIDs, scope)
}

// fill reads cursor i's next item, cleaned and checked as Plan does.
func (st *planState) fill(i int) error {
	opt := &st.s.opt
	for {
		it, ok, err := st.cs[i].next()
		if err != nil {
			return err
		}
		if !ok {
			st.live[i] = false
			return nil
		}
		e := &it.Entry
		name, err := normName(e.Name)
		if err != nil {
			return entryErr(e.Name, err)
		}
		if name == "" {
			continue // the root itself
		}
		e.Name = name
		if e.Type == TypeLink {
			if e.Linkname, err = normName(e.Linkname); err != nil {
				return entryErr(e.Name, fmt.Errorf("%w: %w", ErrLink, err))
			}
		}
		if opt.RootOwner {
			e.Uid, e.Gid = 0, 0
		}
		if !opt.ClampTime.IsZero() && e.ModTime.After(opt.ClampTime) {
			e.ModTime = opt.ClampTime
		}
		if e.Type == TypeReg && e.Data != nil && int64(len(e.Data)) != e.Size {
			return entryErr(e.Name, fmt.Errorf("%w: Size %d but %d bytes of Data", ErrInvalidHeader, e.Size, len(e.Data)))
		}
		if e.Type == TypeReg {
			e.Links = 0
		}
		if err := e.validate(); err != nil {
			return entryErr(e.Name, err)
		}
		if name < st.last[i] {
			return entryErr(name, fmt.Errorf("%w: input out of archive order (after %q)", ErrInvalidHeader, st.last[i]))
		}
		st.last[i] = name
		st.heads[i], st.live[i] = it, true
		return nil
	}
}

// parents checks e's parent directories as Plan does: each must be a
// directory entry of the segment or in Existing; missing ones are created
// (when planning; when writing they come from the plan).
func (st *planState) parents(e *Entry) error {
	for len(st.stack) > 0 {
		t := st.stack[len(st.stack)-1].name
		if len(e.Name) > len(t) && strings.HasPrefix(e.Name, t) && e.Name[len(t)] <= '/' {
			break
		}
		st.stack = st.stack[:len(st.stack)-1]
	}
	child := e.Name
	for dir := path.Dir(e.Name); dir != "."; dir = path.Dir(dir) {
		if a, ok := st.ancestor(dir); ok {
			if a.typ != TypeDir {
				return entryErr(e.Name, fmt.Errorf("%w: parent %q is a %s, not a directory", ErrInvalidHeader, dir, a.typ))
			}
			break
		}
		if st.isNew[dir] {
			break
		}
		if st.s.existing[dir] {
			if !st.write {
				if _, ok := st.s.needs[dir]; !ok {
					st.s.needs[dir] = child
				}
			}
			break
		}
		if st.write {
			return entryErr(e.Name, fmt.Errorf("%w: parent %q appeared or vanished after planning", ErrChanged, dir))
		}
		st.isNew[dir] = true
		st.created = append(st.created, dir)
		child = dir
	}
	st.stack = append(st.stack, ancestor{e.Name, e.Type})
	return nil
}

func (st *planState) ancestor(dir string) (ancestor, bool) {
	for i := len(st.stack) - 1; i >= 0; i-- {
		if st.stack[i].name == dir {
			return st.stack[i], true
		}
	}
	return ancestor{}, false
}
