//go:build !unix

package initrd

import (
	"io/fs"
)

// lstatOfInfo is the stat result behind fi where there is no struct stat
// (Windows, for one): the type, permission bits, size and time come from
// fi; owner, device and inode numbers are 0 and the link count 1, so no
// two names are taken for one file.
func lstatOfInfo(fi fs.FileInfo) (lstat, bool) {
	m := fi.Mode()
	mode := uint32(m.Perm())
	for _, b := range []struct {
		fs   fs.FileMode
		unix uint32
	}{{fs.ModeSetuid, 0o4000}, {fs.ModeSetgid, 0o2000}, {fs.ModeSticky, 0o1000}} {
		if m&b.fs != 0 {
			mode |= b.unix
		}
	}
	switch {
	case m.IsDir():
		mode |= 0o040000
	case m&fs.ModeSymlink != 0:
		mode |= 0o120000
	case m&fs.ModeNamedPipe != 0:
		mode |= 0o010000
	case m&fs.ModeSocket != 0:
		mode |= 0o140000
	case m&fs.ModeCharDevice != 0:
		mode |= 0o020000
	case m&fs.ModeDevice != 0:
		mode |= 0o060000
	case m.IsRegular():
		mode |= 0o100000
	}
	return lstat{mode: mode, size: fi.Size(), mtime: fi.ModTime().Unix(), nlink: 1, isDir: m.IsDir()}, true
}

// devNumbers is 0, 0: there are no device numbers here.
func devNumbers(uint64) (major, minor uint32) { return 0, 0 }

// openFlags adds nothing: there is no O_NONBLOCK or O_NOCTTY here.
const openFlags = 0
