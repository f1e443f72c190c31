package netboot_test

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/netboot"
)

func TestCleanName(t *testing.T) {
	tests := []struct {
		in, want string // want "" means refused
	}{
		{"pxelinux.0", "pxelinux.0"},
		{"/pxelinux.0", "pxelinux.0"},
		{"//boot///x64//ipxe.efi", "boot/x64/ipxe.efi"},
		{`\boot\x64\wdsnbp.com`, "boot/x64/wdsnbp.com"},
		{"./a/./b", "a/b"},
		{"pxelinux.cfg/01-52-54-00-12-34-56", "pxelinux.cfg/01-52-54-00-12-34-56"},
		{"a/", "a"},
		{"...", "..."},
		{"a..b", "a..b"},
		{"", ""},
		{"/", ""},
		{".", ""},
		{"..", ""},
		{"a/../b", ""},
		{`a\..\b`, ""},
		{"../etc/passwd", ""},
		{"a\x00b", ""},
		{"a\nb", ""},
		{"a\x7fb", ""},
		{strings.Repeat("a", netboot.MaxNameLen+1), ""},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := netboot.CleanName(tc.in)
			if tc.want == "" {
				require.ErrorIs(t, err, netboot.ErrBadName)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

// FuzzCleanName checks that every accepted name is valid for fs.ValidPath,
// holds no ".." segment and no backslash, and is a fixed point.
func FuzzCleanName(f *testing.F) {
	for _, s := range traversalAttempts {
		f.Add(s)
	}
	for _, s := range []string{"pxelinux.0", `\boot\x64\wdsnbp.com`, "/a//b/./c", "a/../b", "ok\x00", "é/ü"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := netboot.CleanName(in)
		if err != nil {
			assert.ErrorIs(t, err, netboot.ErrBadName)
			return
		}
		assert.True(t, fs.ValidPath(out), "%q -> %q not valid", in, out)
		assert.NotContains(t, out, `\`)
		for _, seg := range strings.Split(out, "/") {
			assert.NotEqual(t, "..", seg)
		}
		for _, seg := range strings.Split(strings.ReplaceAll(in, `\`, "/"), "/") {
			assert.NotEqual(t, "..", seg, "accepted a name with a .. segment: %q", in)
		}
		again, err := netboot.CleanName(out)
		require.NoError(t, err)
		assert.Equal(t, out, again)
	})
}

// FuzzHTTPPath checks that whatever path a client sends, the handler either
// serves exactly one of the root's files, by its cleaned name, or refuses.
func FuzzHTTPPath(f *testing.F) {
	files := fstest.MapFS{
		"ipxe.efi":        {Data: []byte("loader")},
		"dir/initrd.img":  {Data: []byte("initrd")},
		"pxelinux.cfg/01": {Data: []byte("cfg")},
	}
	h := &netboot.HTTPHandler{Files: netboot.FS(files)}
	for _, s := range []string{"/ipxe.efi", "/dir/initrd.img", "/../ipxe.efi", "//dir//initrd.img", `/dir\initrd.img`, "/dir/../ipxe.efi", "/%2e%2e/x", "/pxelinux.cfg"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		r := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: p}, Header: http.Header{}, RemoteAddr: "127.0.0.1:1"}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r.WithContext(t.Context()))
		if w.Code != http.StatusOK {
			assert.Contains(t, []int{http.StatusNotFound, http.StatusBadRequest}, w.Code)
			return
		}
		name, err := netboot.CleanName(p)
		require.NoError(t, err, "served %q", p)
		file, ok := files[name]
		require.True(t, ok, "served %q as %q, which is not a file", p, name)
		assert.Equal(t, string(file.Data), w.Body.String())
		assert.NotContains(t, strings.Split(strings.ReplaceAll(p, `\`, "/"), "/"), "..")
	})
}
