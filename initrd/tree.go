package initrd

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
)

// Tree returns entries for everything below the host directory dir, placed
// under prefix in the archive ("" for the root). The walk is confined to dir
// with os.Root: symlinks are recorded as symlinks and never followed, and
// nothing outside dir is read, then or when the segment is written. Files
// with several names inside the tree become hard-link groups. dir itself
// becomes the prefix directory (nothing when prefix is "").
//
// Owners, modes, times and device numbers come from lstat; on systems
// without struct stat (Windows) only the type, permission bits, size and
// time are known, and there are no hard-link groups (see the package
// documentation, "Other systems"). Errors name the path that failed. The entries are held in memory, about 200 bytes each;
// TreeInput and PlanStream give the same segment without holding them.
func Tree(dir, prefix string) ([]Entry, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("initrd: tree %s: %w", dir, err)
	}
	defer root.Close()
	t := treeWalk{dir: dir, prefix: prefix, seen: map[fileID]string{}}
	fi, err := root.Lstat(".")
	if err == nil {
		err = t.add(root, ".", ".", fi)
	}
	if err == nil && fi.IsDir() {
		err = t.walk(root, ".")
	}
	if err != nil {
		return nil, fmt.Errorf("initrd: tree %s: %w", dir, err)
	}
	return t.out, nil
}

type fileID struct{ dev, ino uint64 }

// treeWalk lists a tree depth first, each directory's names in byte order
// (the order of fs.WalkDir). Every directory is opened once, as an os.Root
// of its own, and its entries are looked at relative to it: one lstat per
// entry, never a path of several names to resolve again.
type treeWalk struct {
	dir, prefix string
	seen        map[fileID]string // first name of each multiply-linked file
	out         []Entry
}

// walk adds everything below the directory r, which is rel in the tree.
func (t *treeWalk) walk(r *os.Root, rel string) error {
	f, err := r.Open(".")
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return &fs.PathError{Op: "readdir", Path: rel, Err: err}
	}
	slices.Sort(names)
	for _, n := range names {
		crel := n
		if rel != "." {
			crel = rel + "/" + n
		}
		fi, err := r.Lstat(n)
		if err != nil {
			return err
		}
		if err := t.add(r, n, crel, fi); err != nil {
			return err
		}
		if !fi.IsDir() {
			continue
		}
		sub, err := r.OpenRoot(n)
		if err != nil {
			return err
		}
		err = t.walk(sub, crel)
		sub.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// add appends the entry for fi, which is n in the directory r and rel in
// the tree.
func (t *treeWalk) add(r *os.Root, n, rel string, fi fs.FileInfo) error {
	name := path.Join(t.prefix, rel)
	e, err := entryFromInfo(fi, name)
	if err != nil {
		return err
	}
	switch e.Type {
	case TypeSymlink:
		if e.Linkname, err = r.Readlink(n); err != nil {
			return err
		}
	case TypeReg:
		e.Source = Source{Root: t.dir, Path: rel}
		if st, ok := lstatOfInfo(fi); ok && st.nlink > 1 {
			id := fileID{st.dev, st.ino}
			if first, ok := t.seen[id]; ok {
				e = Entry{Header: Header{Name: name, Type: TypeLink, Linkname: first}}
			} else {
				t.seen[id] = name
			}
		}
	}
	if name == "" || name == "." {
		return nil
	}
	t.out = append(t.out, e)
	return nil
}

// File returns the entry for the host file at hostPath placed at name in the
// archive. Symlinks in hostPath are followed: naming a file is a choice the
// caller made. A directory gives just the directory entry (use Tree for
// its contents). What stat tells depends on the system, as for Tree.
func File(hostPath, name string) (Entry, error) {
	fi, err := os.Stat(hostPath)
	if err != nil {
		return Entry{}, fmt.Errorf("initrd: file: %w", err)
	}
	e, err := entryFromInfo(fi, name)
	if err != nil {
		return Entry{}, fmt.Errorf("initrd: file %s: %w", hostPath, err)
	}
	if e.Type == TypeReg {
		e.Source = Source{Path: hostPath}
	}
	return e, nil
}

func entryFromInfo(fi fs.FileInfo, name string) (Entry, error) {
	st, ok := lstatOfInfo(fi)
	if !ok {
		return Entry{}, fmt.Errorf("%w: %s: no stat data (%T)", ErrInvalidHeader, name, fi.Sys())
	}
	return entryFromStat(&st, name)
}
