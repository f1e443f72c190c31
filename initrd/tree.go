package initrd

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Tree returns entries for everything below the host directory dir, placed
// under prefix in the archive ("" for the root). The walk is confined to dir
// with os.Root: symlinks are recorded as symlinks and never followed, and
// nothing outside dir is read, then or when the segment is written. Files
// with several names inside the tree become hard-link groups. dir itself
// becomes the prefix directory (nothing when prefix is "").
//
// Owners, modes, times and device numbers come from lstat. Errors name the
// path that failed. The entries are held in memory, about 200 bytes each;
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
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
			id := fileID{uint64(st.Dev), st.Ino}
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
// its contents).
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
	m := fi.Mode()
	e := Entry{Header: Header{Name: name, ModTime: fi.ModTime(), Mode: uint32(m.Perm())}}
	if m&fs.ModeSetuid != 0 {
		e.Mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		e.Mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		e.Mode |= 0o1000
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	if st != nil {
		e.Uid, e.Gid = st.Uid, st.Gid
	}
	if t := e.ModTime.Unix(); t < 0 {
		e.ModTime = time.Unix(0, 0)
	} else if t > MaxTime {
		e.ModTime = time.Unix(MaxTime, 0)
	} else {
		e.ModTime = time.Unix(t, 0)
	}
	switch {
	case m.IsRegular():
		e.Type = TypeReg
		e.Size = fi.Size()
	case m.IsDir():
		e.Type = TypeDir
	case m&fs.ModeSymlink != 0:
		e.Type = TypeSymlink
	case m&fs.ModeNamedPipe != 0:
		e.Type = TypeFifo
	case m&fs.ModeSocket != 0:
		e.Type = TypeSocket
	case m&fs.ModeDevice != 0:
		e.Type = TypeBlock
		if m&fs.ModeCharDevice != 0 {
			e.Type = TypeChar
		}
		if st != nil {
			e.Devmajor, e.Devminor = unix.Major(st.Rdev), unix.Minor(st.Rdev)
		}
	default:
		return Entry{}, fmt.Errorf("%w: %s has unsupported file mode %v", ErrInvalidHeader, name, m)
	}
	return e, nil
}
