package ipxe

import (
	"bytes"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// FuzzParse checks that Parse never panics and that whatever it accepts
// renders, and that render→parse→render is stable.
func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("testdata/nixos-netboot.ipxe"); err == nil {
		f.Add(b)
	}
	for _, name := range []string{"boot", "chain", "menu"} {
		if b, err := os.ReadFile("testdata/render-" + name + ".golden"); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("#!ipxe\r\nkernel a \\\nb=\"c d\" ${x}\n:l echo hi # c\ndhcp || dhcp\n"))
	f.Add([]byte("#!gpxe\nchoose -t 10 --default=a s && goto ${s}\nitem --gap\nisset ${a:hex} || goto l\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		s, err := Parse(src)
		if err != nil {
			return
		}
		r1, err := s.Render()
		require.NoError(t, err, "parsed script must render")
		s2, err := Parse(r1)
		require.NoError(t, err, "rendered script must parse:\n%s", r1)
		r2, err := s2.Render()
		require.NoError(t, err)
		require.Equal(t, string(r1), string(r2))
		// BootSpec extraction must not panic either, and what it accepts
		// must render as a boot script.
		if spec, err := s.BootSpec(); err == nil {
			if _, err := spec.Script(); err != nil {
				require.NotEmpty(t, err.Error())
			}
		}
	})
}

// FuzzRenderValues puts arbitrary text into every kind of field. Rendering
// either fails or yields a script that parses back to the same commands:
// no value can change the structure of a script.
func FuzzRenderValues(f *testing.F) {
	f.Add("http://10.0.0.1/bzImage", "a b", "label", "console=ttyS0 quiet")
	f.Add("x\nchain http://evil", "${evil}", "-x", "a=\"b c\"")
	f.Add("#x", "x || y", "a.b", "x=${y}")
	f.Fuzz(func(t *testing.T, url, text, name, cmdline string) {
		args, err := ParseArgs(cmdline)
		if err != nil {
			args = Args{KV("k", cmdline)}
		}
		cmds := []Command{
			Kernel{URL: Lit(url), Name: name, Args: args},
			Initrd{URL: Expr(url, MAC), Name: name},
			Echo{Text: Lit(text)},
			Set{Name: Setting(name), Value: Lit(text)},
			Menu{Title: Lit(text)},
			Item{Label: name, Text: Lit(text)},
			Goto{Label: name},
			Choose{Setting: Setting(name), Default: name, Timeout: time.Second, Goto: true},
			Chain{URL: Lit(url), Args: Args{{Key: name, Value: Lit(text)}}},
			Comment{Text: text},
		}
		for _, c := range cmds {
			s := &Script{Commands: []Command{c}}
			b, err := s.Render()
			if err != nil {
				continue
			}
			p, err := Parse(b)
			require.NoError(t, err, "%T rendered unparseable script:\n%s", c, b)
			require.Len(t, p.Commands, 1, "%T rendered %d commands:\n%s", c, len(p.Commands), b)
			b2, err := p.Render()
			require.NoError(t, err)
			require.True(t, bytes.Equal(b, b2), "%T: %q != %q", c, b, b2)
		}
	})
}
