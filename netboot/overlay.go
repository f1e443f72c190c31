package netboot

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"text/template"

	"golang.org/x/sync/singleflight"

	"github.com/nixboot/nixboot/initrd"
)

// MaxOverlaySize bounds a rendered per-machine initrd segment.
const MaxOverlaySize = 4 << 20

// overlayTemplates is a profile's per-machine files: archive path →
// template of the content.
type overlayTemplates map[string]*template.Template

func compileOverlay(field string, files map[string]string) (overlayTemplates, error) {
	if len(files) == 0 {
		return nil, nil
	}
	out := overlayTemplates{}
	for name, text := range files {
		clean, err := CleanName(name)
		if err != nil {
			return nil, &ConfigError{Field: fmt.Sprintf("%s[%q]", field, name), Err: err}
		}
		t, err := template.New(clean).Option("missingkey=zero").Parse(text)
		if err != nil {
			return nil, &ConfigError{Field: fmt.Sprintf("%s[%q]", field, name), Err: err}
		}
		out[clean] = t
	}
	return out, nil
}

// parents returns the directories the overlay's files sit in, sorted.
func (o overlayTemplates) parents() []string {
	seen := map[string]bool{}
	for name := range o {
		for d := path.Dir(name); d != "." && d != "/" && !seen[d]; d = path.Dir(d) {
			seen[d] = true
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// render builds the machine's initrd segment: the rendered files in one
// gzip-compressed newc archive, reproducible for the same data (fixed
// times, root owner), so that its ETag is stable. existing lists the
// directories the base initrd already has: the segment does not carry
// them, because the kernel applies a directory record's mode, owner and
// time to a directory that exists (a base's 0700 /root would become 0755).
func (o overlayTemplates) render(ctx context.Context, data TemplateData, existing []string) ([]byte, error) {
	names := make([]string, 0, len(o))
	for name := range o {
		names = append(names, name)
	}
	slices.Sort(names)
	var entries []initrd.Entry
	for _, name := range names {
		var b bytes.Buffer
		if err := o[name].Execute(&b, data); err != nil {
			return nil, fmt.Errorf("netboot: overlay file %s: %w", name, err)
		}
		if b.Len() > MaxOverlaySize {
			return nil, fmt.Errorf("netboot: overlay file %s: larger than %d bytes", name, MaxOverlaySize)
		}
		mode := uint32(0o644)
		if strings.Contains(name, "ssh") || strings.Contains(name, "secret") || strings.Contains(name, "key") {
			mode = 0o600
		}
		entries = append(entries, initrd.Entry{
			Header: initrd.Header{Name: name, Type: initrd.TypeReg, Mode: mode, Size: int64(b.Len())},
			Data:   b.Bytes(),
		})
	}
	planned, err := initrd.Plan(entries, initrd.PlanOptions{RootOwner: true, Existing: existing})
	if err != nil {
		return nil, fmt.Errorf("netboot: overlay: %w", err)
	}
	var out bytes.Buffer
	if _, err := initrd.Write(ctx, &out, []initrd.Segment{{Compression: initrd.Gzip, Entries: planned}}, initrd.WriteOptions{Existing: existing}); err != nil {
		return nil, fmt.Errorf("netboot: overlay: %w", err)
	}
	if out.Len() > MaxOverlaySize {
		return nil, fmt.Errorf("netboot: overlay: segment larger than %d bytes", MaxOverlaySize)
	}
	return out.Bytes(), nil
}

// baseDirs finds which of want the initrd at path has as directories or
// symlinks (to directories, the kernel and the booted system hope). It
// caches the answer per file identity (size and modification time), so a
// rebuilt initrd at the same path is read again.
//
// Reading a large initrd again takes a while (0.6 s for 300 MB of gzip),
// and Boot runs at DHCP time under the policy's timeout. So the scan runs
// on its own, shared by every caller that needs it, and a caller whose
// context ends stops waiting while the scan goes on to fill the cache for
// the machine's next try. The scan is bounded by the file
// (maxBaseInitrdUnpacked).
type baseDirs struct {
	path string
	want []string

	mu    sync.Mutex
	key   string // the file identity found is for
	found []string
	scans singleflight.Group // by file identity
}

// maxBaseInitrdUnpacked bounds how much of a base initrd baseDirs
// decompresses while looking for directories.
const maxBaseInitrdUnpacked = 16 << 30

func (b *baseDirs) get(ctx context.Context) ([]string, error) {
	if len(b.want) == 0 {
		return nil, nil
	}
	st, err := os.Stat(b.path)
	if err != nil {
		return nil, fmt.Errorf("netboot: overlay base initrd: %w", err)
	}
	key := identityKey(st)
	b.mu.Lock()
	if b.key == key {
		found := b.found
		b.mu.Unlock()
		return found, nil
	}
	b.mu.Unlock()
	ch := b.scans.DoChan(key, func() (any, error) { return b.run(key) })
	select {
	case r := <-ch:
		found, _ := r.Val.([]string)
		return found, r.Err
	case <-ctx.Done():
		return nil, fmt.Errorf("netboot: overlay base initrd %s: still reading it: %w", b.path, context.Cause(ctx))
	}
}

func identityKey(st fs.FileInfo) string { return fmt.Sprint(st.Size(), st.ModTime().UnixNano()) }

// run reads the base initrd and caches the answer under key, unless the
// file it opened is no longer the one key names. A scan of an older
// identity that ends last may leave its answer in the cache; get compares
// identities, so that costs one more scan, never a wrong answer.
func (b *baseDirs) run(key string) ([]string, error) {
	found, err := b.read(key)
	if err == nil {
		b.mu.Lock()
		b.key, b.found = key, found
		b.mu.Unlock()
	}
	return found, err
}

func (b *baseDirs) read(key string) ([]string, error) {
	f, err := os.Open(b.path)
	if err != nil {
		return nil, fmt.Errorf("netboot: overlay base initrd: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("netboot: overlay base initrd: %w", err)
	}
	if identityKey(st) != key {
		return nil, fmt.Errorf("netboot: overlay base initrd %s changed while it was opened", b.path)
	}
	left := map[string]bool{}
	for _, d := range b.want {
		left[d] = true
	}
	var found []string
	r := initrd.NewReader(bufio.NewReaderSize(f, 256<<10))
	r.MaxUnpacked = maxBaseInitrdUnpacked
	for len(left) > 0 {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("netboot: overlay base initrd %s: %w", b.path, err)
		}
		if left[rec.Name] && (rec.Type == initrd.TypeDir || rec.Type == initrd.TypeSymlink) {
			delete(left, rec.Name)
			found = append(found, rec.Name)
		}
	}
	slices.Sort(found)
	return found, nil
}

// openAppended serves the file at img.Path followed by NUL padding to a
// multiple of 4 bytes (the kernel expects each archive member aligned) and
// img.Append, as one seekable file of known length.
//
// Its strong ETag names the base file's identity (size and modification
// time) and the appendix's hash, so a rebuilt base of the same size, or a
// new appendix, is never taken for the old bytes by If-None-Match or
// If-Range. It has no modification time: the base's would not change with
// the appendix, and If-Modified-Since would then serve stale bytes.
func openAppended(f *os.File, st fs.FileInfo, img Image) *File {
	size := st.Size()
	pad := (4 - size%4) % 4
	tail := append(make([]byte, pad, pad+int64(len(img.Append))), img.Append...)
	r := &concatReaderAt{head: f, headSize: size, tail: tail}
	total := size + int64(len(tail))
	sum := sha256.Sum256(img.Append)
	return &File{
		Content: io.NewSectionReader(r, 0, total),
		Size:    total,
		Closer:  f,
		ETag:    fmt.Sprintf(`"%x-%x-%s"`, st.ModTime().UnixNano(), size, hex.EncodeToString(sum[:8])),
	}
}

type concatReaderAt struct {
	head     io.ReaderAt
	headSize int64
	tail     []byte
}

func (c *concatReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	if off < c.headSize {
		want := p
		if int64(len(want)) > c.headSize-off {
			want = want[:c.headSize-off]
		}
		m, err := c.head.ReadAt(want, off)
		n += m
		if err != nil && !(err == io.EOF && m == len(want)) {
			return n, err
		}
		off += int64(m)
		p = p[m:]
	}
	if len(p) == 0 {
		return n, nil
	}
	toff := off - c.headSize
	if toff >= int64(len(c.tail)) {
		return n, io.EOF
	}
	m := copy(p, c.tail[toff:])
	n += m
	if m < len(p) {
		return n, io.EOF
	}
	return n, nil
}
