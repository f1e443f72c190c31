package netboot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/template"

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

// render builds the machine's initrd segment: the rendered files in one
// gzip-compressed newc archive, reproducible for the same data (fixed
// times, root owner), so that its ETag is stable.
func (o overlayTemplates) render(ctx context.Context, data TemplateData) ([]byte, error) {
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
	planned, err := initrd.Plan(entries, initrd.PlanOptions{RootOwner: true})
	if err != nil {
		return nil, fmt.Errorf("netboot: overlay: %w", err)
	}
	var out bytes.Buffer
	if _, err := initrd.Write(ctx, &out, []initrd.Segment{{Compression: initrd.Gzip, Entries: planned}}, initrd.WriteOptions{}); err != nil {
		return nil, fmt.Errorf("netboot: overlay: %w", err)
	}
	if out.Len() > MaxOverlaySize {
		return nil, fmt.Errorf("netboot: overlay: segment larger than %d bytes", MaxOverlaySize)
	}
	return out.Bytes(), nil
}

// openAppended serves the file at img.Path followed by NUL padding to a
// multiple of 4 bytes (the kernel expects each archive member aligned) and
// img.Append, as one seekable file of known length.
func openAppended(f *os.File, size int64, img Image) *File {
	pad := (4 - size%4) % 4
	tail := append(make([]byte, pad, pad+int64(len(img.Append))), img.Append...)
	r := &concatReaderAt{head: f, headSize: size, tail: tail}
	total := size + int64(len(tail))
	sum := sha256.Sum256(img.Append)
	return &File{
		Content: io.NewSectionReader(r, 0, total),
		Size:    total,
		Closer:  f,
		ETag:    fmt.Sprintf(`"%x-%s"`, size, hex.EncodeToString(sum[:8])),
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
