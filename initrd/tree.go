package initrd

import (
	"fmt"
	"io/fs"
	"os"
	"path"
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
// path that failed.
func Tree(dir, prefix string) ([]Entry, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("initrd: tree %s: %w", dir, err)
	}
	defer root.Close()
	type fileID struct{ dev, ino uint64 }
	seen := map[fileID]string{}
	var out []Entry
	err = fs.WalkDir(root.FS(), ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := root.Lstat(rel)
		if err != nil {
			return err
		}
		name := path.Join(prefix, rel)
		e, err := entryFromInfo(fi, name)
		if err != nil {
			return err
		}
		switch e.Type {
		case TypeSymlink:
			if e.Linkname, err = root.Readlink(rel); err != nil {
				return err
			}
		case TypeReg:
			e.Source = Source{Root: dir, Path: rel}
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
				id := fileID{uint64(st.Dev), st.Ino}
				if first, ok := seen[id]; ok {
					e = Entry{Header: Header{Name: name, Type: TypeLink, Linkname: first}}
				} else {
					seen[id] = name
				}
			}
		}
		if name == "" || name == "." {
			return nil
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("initrd: tree %s: %w", dir, err)
	}
	return out, nil
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
