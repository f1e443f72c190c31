package initrd

import (
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// wdir is a directory open for the walker, by descriptor: its entries are
// lstat'ed with fstatat(2) and AT_SYMLINK_NOFOLLOW, its subdirectories
// opened with openat(2) and O_NOFOLLOW and its symlinks read with
// readlinkat(2), all relative to it. Its methods name host, the path of
// the file involved, in their errors.
type wdir struct {
	f  *os.File // owns fd
	fd int
}

// openWalkDir opens the directory dir.
func openWalkDir(dir string) (wdir, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return wdir{}, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	return wdir{f: os.NewFile(uintptr(fd), dir), fd: fd}, nil
}

// lstatOf converts a stat result; the conversions are for the
// architectures whose fields are narrower (nlink is 32 bits on arm64,
// times on 386).
func lstatOf(st *unix.Stat_t) lstat {
	return lstat{mode: st.Mode, uid: st.Uid, gid: st.Gid, size: st.Size, mtime: int64(st.Mtim.Sec),
		rdev: uint64(st.Rdev), dev: uint64(st.Dev), ino: st.Ino, nlink: uint64(st.Nlink), isDir: st.Mode&unix.S_IFMT == unix.S_IFDIR}
}

// stat is fstat(2) of the directory itself.
func (d wdir) stat(host string) (lstat, error) {
	var st unix.Stat_t
	if err := unix.Fstat(d.fd, &st); err != nil {
		return lstat{}, &fs.PathError{Op: "fstat", Path: host, Err: err}
	}
	return lstatOf(&st), nil
}

func (d wdir) names() ([]string, error) { return d.f.Readdirnames(-1) }

// lstatAt lstats the entry name.
func (d wdir) lstatAt(name, host string) (lstat, error) {
	var st unix.Stat_t
	for {
		err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return lstat{}, &fs.PathError{Op: "lstat", Path: host, Err: err}
		}
		return lstatOf(&st), nil
	}
}

// openAt opens the subdirectory name, failing on a symlink.
func (d wdir) openAt(name, host string) (wdir, error) {
	for {
		fd, err := unix.Openat(d.fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return wdir{}, &fs.PathError{Op: "openat", Path: host, Err: err}
		}
		return wdir{f: os.NewFile(uintptr(fd), host), fd: fd}, nil
	}
}

// readlinkAt reads the symlink name, whose lstat size was size.
func (d wdir) readlinkAt(name, host string, size int64) (string, error) {
	buf := make([]byte, max(size+1, 64))
	for {
		n, err := unix.Readlinkat(d.fd, name, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return "", &fs.PathError{Op: "readlinkat", Path: host, Err: err}
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		buf = make([]byte, 2*len(buf))
	}
}

func (d wdir) close() { d.f.Close() }
