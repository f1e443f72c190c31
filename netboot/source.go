package netboot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"net/url"
	"time"
)

// Proto names the protocol a request came in on.
type Proto string

// Protocols served.
const (
	TFTP Proto = "tftp"
	HTTP Proto = "http"
)

// Request is one client's request for a file.
type Request struct {
	Proto  Proto
	Name   string         // cleaned by CleanName: always valid for fs.ValidPath
	Remote netip.AddrPort // the client
	Query  url.Values     // HTTP query parameters; nil for TFTP
}

// File is content ready to be served. Content must be positioned at its start
// and able to seek (tsize and HTTP ranges need the size and random access).
type File struct {
	Content io.ReadSeeker // required
	Size    int64         // bytes
	ModTime time.Time     // zero: unknown, no Last-Modified header
	ETag    string        // optional strong ETag, quoted ("\"...\"")
	Closer  io.Closer     // optional: closed once the transfer ends
}

func (f *File) close() {
	if f != nil && f.Closer != nil {
		_ = f.Closer.Close()
	}
}

// BytesFile returns a File serving b, with a strong ETag derived from its
// content so that HTTP clients can revalidate generated files.
func BytesFile(b []byte, modTime time.Time) *File {
	sum := sha256.Sum256(b)
	return &File{
		Content: bytes.NewReader(b),
		Size:    int64(len(b)),
		ModTime: modTime,
		ETag:    `"` + hex.EncodeToString(sum[:12]) + `"`,
	}
}

// A Source opens files for clients. Open returns an error wrapping
// fs.ErrNotExist for names it does not have. Sources are called concurrently.
type Source interface {
	Open(ctx context.Context, req *Request) (*File, error)
}

// SourceFunc adapts a function to Source.
type SourceFunc func(ctx context.Context, req *Request) (*File, error)

// Open calls f.
func (f SourceFunc) Open(ctx context.Context, req *Request) (*File, error) { return f(ctx, req) }

// FS serves the regular files of fsys by their cleaned names. Directories and
// other non-regular files do not exist as far as clients are concerned.
//
// Use (*os.Root).FS for a directory on disk: unlike os.DirFS it refuses
// symbolic links that lead out of the directory. Files must implement
// io.Seeker (those of os.Root, embed.FS and fstest.MapFS do).
func FS(fsys fs.FS) Source {
	return SourceFunc(func(ctx context.Context, req *Request) (*File, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		// Stat before Open: opening a FIFO for reading waits for a
		// writer, so a client naming a named pipe in the directory would
		// hold a thread (not just a goroutine) until one came. The check
		// after Open stays for what changes in between.
		if st, err := fs.Stat(fsys, req.Name); err != nil {
			return nil, err
		} else if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("%s: not a regular file: %w", req.Name, fs.ErrNotExist)
		}
		f, err := fsys.Open(req.Name)
		if err != nil {
			return nil, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		if !st.Mode().IsRegular() {
			f.Close()
			return nil, fmt.Errorf("%s: not a regular file: %w", req.Name, fs.ErrNotExist)
		}
		rs, ok := f.(io.ReadSeeker)
		if !ok {
			f.Close()
			return nil, fmt.Errorf("%s: %w", req.Name, ErrNotSeekable)
		}
		return &File{Content: rs, Size: st.Size(), ModTime: st.ModTime(), Closer: f}, nil
	})
}

// HostFiles serves files of the server's disk under names the operator
// chose: client name → host path. Paths may be symbolic links anywhere
// (Debian's /usr/lib/ipxe/ipxe.efi points to /boot/ipxe.efi): clients can
// only name keys, never paths.
type HostFiles map[string]string

// Open serves the host file mapped to req.Name.
func (m HostFiles) Open(ctx context.Context, req *Request) (*File, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, ok := m[req.Name]
	if !ok {
		return nil, fmt.Errorf("%s: %w", req.Name, fs.ErrNotExist)
	}
	return OpenImage(Image{Path: p})
}

// Files is a set of named files, usually generated per request (a pxelinux
// configuration, an iPXE script). Names are cleaned names (see CleanName).
type Files map[string]Source

// Open serves req.Name from the map.
func (m Files) Open(ctx context.Context, req *Request) (*File, error) {
	s, ok := m[req.Name]
	if !ok {
		return nil, fmt.Errorf("%s: %w", req.Name, fs.ErrNotExist)
	}
	return s.Open(ctx, req)
}

// Chain tries each source in order and serves the first file found. Any error
// other than "not found" stops the search.
func Chain(sources ...Source) Source {
	return SourceFunc(func(ctx context.Context, req *Request) (*File, error) {
		for _, s := range sources {
			if s == nil {
				continue
			}
			f, err := s.Open(ctx, req)
			if err == nil {
				return f, nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
		}
		return nil, fmt.Errorf("%s: %w", req.Name, fs.ErrNotExist)
	})
}

// Observer is told about every finished (or refused) file request, for
// metrics and boot-state tracking. It must be fast and safe for concurrent use.
type Observer interface {
	Observe(ev Event)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(ev Event)

// Observe calls f.
func (f ObserverFunc) Observe(ev Event) { f(ev) }

// Event describes one served or refused request.
type Event struct {
	Proto    Proto
	Name     string // cleaned name, or the raw name when it was refused
	Remote   netip.AddrPort
	Bytes    int64 // bytes of content sent
	Duration time.Duration
	Err      error // nil on success
}
