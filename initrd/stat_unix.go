//go:build unix

package initrd

import (
	"io/fs"
	"syscall"

	"golang.org/x/sys/unix"
)

// lstatOfInfo is the stat result behind fi, from its *syscall.Stat_t;
// false when fi has none. The conversions are for the systems whose
// fields are narrower or signed; the time is fi's, as the field's name
// differs between systems (Mtim, Mtimespec).
func lstatOfInfo(fi fs.FileInfo) (lstat, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return lstat{}, false
	}
	mode := uint32(st.Mode)
	return lstat{mode: mode, uid: uint32(st.Uid), gid: uint32(st.Gid), size: int64(st.Size), mtime: fi.ModTime().Unix(),
		rdev: uint64(st.Rdev), dev: uint64(st.Dev), ino: uint64(st.Ino), nlink: uint64(st.Nlink), isDir: mode&syscall.S_IFMT == syscall.S_IFDIR}, true
}

// devNumbers splits a device number as this system encodes it.
func devNumbers(rdev uint64) (major, minor uint32) { return unix.Major(rdev), unix.Minor(rdev) }

// openFlags are added to the flags sources are opened with: a FIFO opens
// without waiting for a writer (and is then refused as not regular), a
// terminal does not become the controlling one. Neither changes how a
// regular file reads.
const openFlags = syscall.O_NONBLOCK | syscall.O_NOCTTY
