//go:build !linux

package initrd

import (
	"errors"
	"io/fs"
	"os"
)

// wdir is a directory open for the walker, as an os.Root: its entries are
// lstat'ed and its symlinks read through it, and its subdirectories are
// opened as roots of their own, so nothing outside the directory is
// reached. Unlike openat(2) with O_NOFOLLOW, os.Root follows a symlink
// that stays inside it; the walker's identity check (device and inode
// before and after opening) catches a directory replaced by one, except
// where there are no inode numbers (Windows). Its methods name host, the
// path of the file involved, in their errors.
type wdir struct{ r *os.Root }

// openWalkDir opens the directory dir.
func openWalkDir(dir string) (wdir, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return wdir{}, hostErr("open", dir, err)
	}
	return wdir{r}, nil
}

// hostErr is err, from an os.Root method, as a *fs.PathError naming host
// instead of the name relative to the root.
func hostErr(op, host string, err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		err = pe.Err
	}
	return &fs.PathError{Op: op, Path: host, Err: err}
}

// infoLstat is lstatOfInfo for a walk.
func infoLstat(fi fs.FileInfo, op, host string) (lstat, error) {
	st, ok := lstatOfInfo(fi)
	if !ok {
		return lstat{}, hostErr(op, host, errors.ErrUnsupported)
	}
	return st, nil
}

// stat is the stat result of the directory itself.
func (d wdir) stat(host string) (lstat, error) {
	fi, err := d.r.Stat(".")
	if err != nil {
		return lstat{}, hostErr("stat", host, err)
	}
	return infoLstat(fi, "stat", host)
}

func (d wdir) names() ([]string, error) {
	f, err := d.r.Open(".")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// lstatAt lstats the entry name.
func (d wdir) lstatAt(name, host string) (lstat, error) {
	fi, err := d.r.Lstat(name)
	if err != nil {
		return lstat{}, hostErr("lstat", host, err)
	}
	return infoLstat(fi, "lstat", host)
}

// openAt opens the subdirectory name.
func (d wdir) openAt(name, host string) (wdir, error) {
	r, err := d.r.OpenRoot(name)
	if err != nil {
		return wdir{}, hostErr("openat", host, err)
	}
	return wdir{r}, nil
}

// readlinkAt reads the symlink name; size is not needed.
func (d wdir) readlinkAt(name, host string, size int64) (string, error) {
	s, err := d.r.Readlink(name)
	if err != nil {
		return "", hostErr("readlink", host, err)
	}
	return s, nil
}

func (d wdir) close() { d.r.Close() }
