package netboot_test

import (
	"io/fs"
	"strings"
	"testing"

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
