package netboot

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// FuzzCanonicalRequest checks the TFTP request filter: an accepted read
// request comes out as a canonical request that the filter accepts again
// unchanged, with a clean name, a lower-case mode and a bounded blksize.
func FuzzCanonicalRequest(f *testing.F) {
	seed := func(parts ...string) []byte {
		b := []byte{0, 1}
		for _, p := range parts {
			b = append(append(b, p...), 0)
		}
		return b
	}
	f.Add(seed("pxelinux.0", "octet", "tsize", "0", "blksize", "1408"))
	f.Add(seed(`\boot\ipxe.efi`, "OCTET", "TSIZE", "0", "BLKSIZE", "65464", "windowsize", "4"))
	f.Add(seed("../etc/passwd", "octet"))
	f.Add(seed("a", "netascii", "blksize", "8"))
	f.Add(append([]byte{0, 2}, seed("a", "octet")[2:]...))
	f.Add([]byte{0, 4, 0, 1})
	f.Add(seed("f", "octet", "blksize", "512", "WindowSize", "65535", "windowsize", "0"))
	f.Add(seed("f", "octet", "windowsize", "-1", "windowsize", "+7"))
	f.Add(seed("f", "octet", "timeout", "5", "TIMEOUT", "0255", "timeout", "256"))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		out, code, err := canonicalRequest(pkt, DefaultTFTPBlockSize)
		if err != nil {
			assert.Contains(t, []int{-1, tftpErrAccess, tftpErrIllegal}, code)
			return
		}
		if len(pkt) < 2 || binary.BigEndian.Uint16(pkt) != opRRQ {
			assert.Equal(t, pkt, out)
			return
		}
		again, _, err := canonicalRequest(out, DefaultTFTPBlockSize)
		require.NoError(t, err)
		assert.Equal(t, out, again)
		fields := bytes.Split(out[2:len(out)-1], []byte{0})
		require.GreaterOrEqual(t, len(fields), 2)
		name, err := CleanName(string(fields[0]))
		require.NoError(t, err)
		assert.Equal(t, name, string(fields[0]))
		assert.Contains(t, []string{"octet", "netascii"}, string(fields[1]))
		assert.LessOrEqual(t, len(out), len(pkt)+1)
		// The own sender reads the canonical form back without error.
		req, err := parseReadRequest(out)
		require.NoError(t, err)
		assert.Equal(t, string(fields[0]), req.name)
		assert.Equal(t, string(fields[1]), req.mode)
		if req.blksize != 0 {
			assert.True(t, req.blksize >= minBlockSize && req.blksize <= DefaultTFTPBlockSize, "blksize %d", req.blksize)
		}
		if req.windowsize != 0 {
			assert.True(t, ownSender && req.windowsize >= 1 && req.windowsize <= maxWindow, "windowsize %d", req.windowsize)
		}
		if req.timeout != 0 {
			assert.True(t, ownSender && req.timeout >= time.Second && req.timeout <= maxClientTimeout*time.Second, "timeout %v", req.timeout)
		}
	})
}

// FuzzPixiecoreAPIResponse feeds API answers to the parser: it never
// panics, and what it accepts names each image one way (a server-fetched
// http(s) URL, or a regular file under FileRoot) and renders as a boot
// script.
func FuzzPixiecoreAPIResponse(f *testing.F) {
	root, err := filepath.EvalSymlinks(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "k"), []byte("kernel"), 0o644); err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"kernel":"/files/k","initrd":["http://10.0.0.9/i1","i2"],"cmdline":"console=ttyS0 quiet","message":"hello"}`))
	f.Add([]byte(`{"kernel":"file://` + root + `/k","initrd":["file:///etc/passwd"]}`))
	f.Add([]byte(`{"kernel":"https://x/k","cmdline":"a={{ URL \"https://x/c\" }} b={{URL ` + "`/d`" + `}} c={{ ID \"x\" }}"}`))
	f.Add([]byte(`{"kernel":"file://` + root + `/../k","cmdline":"a=\"b c\" d"}`))
	f.Add([]byte(`{"kernel":"ftp://x/k","message":"a\nb"}`))
	from, err := url.Parse("http://api.example:8081/v1/boot/52:54:00:00:00:01")
	if err != nil {
		f.Fatal(err)
	}
	p := &PixiecoreAPI{FileRoot: root, ServerURL: "http://10.0.0.1:8080"}
	f.Fuzz(func(t *testing.T, body []byte) {
		b, err := p.parseResponse(body, from, "52:54:00:00:00:01")
		if err != nil {
			require.ErrorIs(t, err, ErrBackend)
			return
		}
		require.LessOrEqual(t, len(b.Files), maxAPIFiles)
		for _, img := range append(append([]Image{b.Kernel}, b.Initrds...), b.Files...) {
			switch {
			case img.Upstream != "":
				assert.Empty(t, img.URL+img.Path)
				u, err := url.Parse(img.Upstream)
				require.NoError(t, err)
				assert.Contains(t, []string{"http", "https"}, u.Scheme)
			case img.Path != "":
				assert.Empty(t, img.URL)
				rel, err := filepath.Rel(root, img.Path)
				require.NoError(t, err)
				assert.True(t, filepath.IsLocal(rel), "%s outside %s", img.Path, root)
			default:
				t.Fatalf("image with neither Upstream nor Path: %+v", img)
			}
		}
		m := &Machine{MAC: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}}
		_, err = MachineScript("http://10.0.0.1", m, b)
		require.NoError(t, err)
	})
}
