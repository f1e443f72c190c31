package initrd

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// sourceOpener keeps each confining os.Root, and the directory of the last
// file read, open while a segment is written. Files of one directory come
// together in archive order; they are opened relative to that directory
// with openat(2) and O_NOFOLLOW, and read with read(2) into the caller's
// buffer: no os.File per file, no poller registration, and for a small
// file three system calls (open, read, close).
type sourceOpener struct {
	roots   sourceRoots
	lastDir string
	lastKey string
	dir     *os.File // lastDir, opened through its root
	dirfd   int
}

func newSourceOpener() *sourceOpener {
	return &sourceOpener{roots: sourceRoots{}, dirfd: -1}
}

// sourceFile is an open source: a raw descriptor, or an *os.File where the
// fast path does not apply.
type sourceFile struct {
	fd int
	f  *os.File
}

func (sf sourceFile) Read(b []byte) (int, error) {
	if sf.f != nil {
		return sf.f.Read(b)
	}
	for {
		n, err := unix.Read(sf.fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 && len(b) > 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

func (sf sourceFile) Close() error {
	if sf.f != nil {
		return sf.f.Close()
	}
	return unix.Close(sf.fd)
}

// fileSource is the sourceFile of an openSource result.
func fileSource(f *os.File, err error) (sourceFile, error) {
	if err != nil {
		return sourceFile{}, err
	}
	return sourceFile{fd: -1, f: f}, nil
}

func (s *sourceOpener) open(src Source) (sourceFile, error) {
	if src.Root == "" {
		return fileSource(openSource(nil, src))
	}
	r, err := s.roots.get(src.Root)
	if err != nil {
		return sourceFile{}, err
	}
	dir, base := filepath.Split(src.Path)
	if dir == "" || base == "" || base == "." || base == ".." {
		return fileSource(openSource(r, src))
	}
	if s.dir == nil || s.lastKey != src.Root || s.lastDir != dir {
		if s.dir != nil {
			s.dir.Close()
			s.dir, s.dirfd = nil, -1
		}
		// Opened through the root, so it lies inside it.
		d, err := r.Open(dir)
		if err != nil {
			return sourceFile{}, err
		}
		s.dir, s.dirfd, s.lastKey, s.lastDir = d, int(d.Fd()), src.Root, dir
	}
	// base is one name without a slash, and O_NOFOLLOW refuses a
	// symlink: the file opened is inside the directory, so inside the
	// root. A symlink (ELOOP) takes the os.Root path, which follows it
	// only as long as it stays inside the root.
	for {
		fd, err := unix.Openat(s.dirfd, base, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
		switch err {
		case nil:
			var st unix.Stat_t
			if err := unix.Fstat(fd, &st); err != nil {
				unix.Close(fd)
				return sourceFile{}, &fs.PathError{Op: "fstat", Path: src.Path, Err: err}
			}
			if st.Mode&unix.S_IFMT != unix.S_IFREG {
				unix.Close(fd)
				return sourceFile{}, notRegular(src.Path, typeFromMode(uint32(st.Mode)))
			}
			return sourceFile{fd: fd}, nil
		case unix.EINTR:
			continue
		case unix.ELOOP:
			return fileSource(openSource(r, src))
		}
		return sourceFile{}, &fs.PathError{Op: "openat", Path: src.Path, Err: err}
	}
}

func (s *sourceOpener) close() {
	if s.dir != nil {
		s.dir.Close()
	}
	s.roots.close()
}
