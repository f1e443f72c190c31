//go:build !linux

package initrd

import "os"

// sourceOpener keeps each confining os.Root open while a segment is
// written; each source is opened through its root (see openSource).
type sourceOpener struct{ roots sourceRoots }

func newSourceOpener() *sourceOpener { return &sourceOpener{roots: sourceRoots{}} }

func (s *sourceOpener) open(src Source) (*os.File, error) {
	if src.Root == "" {
		return openSource(nil, src)
	}
	r, err := s.roots.get(src.Root)
	if err != nil {
		return nil, err
	}
	return openSource(r, src)
}

func (s *sourceOpener) close() { s.roots.close() }
