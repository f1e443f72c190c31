package ipxe

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseBootSpecNixOS(t *testing.T) {
	src, err := os.ReadFile("testdata/nixos-netboot.ipxe")
	require.NoError(t, err)
	spec, err := ParseBootSpec(src)
	require.NoError(t, err)
	assert.Equal(t, "bzImage", spec.Kernel)
	assert.Equal(t, []ImageRef{{URL: "initrd"}}, spec.Initrds)
	assert.Equal(t, "/nix/store/9rj1g9vhh7ai6ilqyxwqfmr7v0zpz8gn-nixos-system-nixos-24.05.20240801/init", spec.Init)
	require.Len(t, spec.Args, 4)
	assert.Equal(t, "loglevel", spec.Args[2].Key)
	assert.Equal(t, []Setting{"cmdline"}, spec.Args[3].Value.Settings())
	assert.Equal(t, "init="+spec.Init+" initrd=initrd loglevel=4 ${cmdline}", spec.Args.String())

	// Serving it again through BootSpec.Script gives the same boot lines,
	// with the initrd named as the EFI stub needs.
	s, err := spec.Script()
	require.NoError(t, err)
	b, err := s.Render()
	require.NoError(t, err)
	assert.Equal(t, "#!ipxe\nkernel bzImage init="+spec.Init+" initrd=initrd loglevel=4 ${cmdline}\ninitrd --name initrd initrd\nboot\n", string(b))
}

func TestParseReadsLinesLikeIPXE(t *testing.T) {
	src := "#!ipxe\r\n" +
		"kernel http://x/vmlinuz \\\r\n" +
		"  console=ttyS0 \\\n" +
		"  quiet # trailing comment\n" +
		"\n" +
		":start initrd --name=rd http://x/initrd\n" +
		"   # indented comment\n" +
		"imgargs vmlinuz console=tty1\n" +
		"boot\n"
	s, err := Parse([]byte(src))
	require.NoError(t, err)
	require.Len(t, s.Commands, 6)
	k := s.Commands[0].(Kernel)
	assert.Equal(t, Args{KV("console", "ttyS0"), Flag("quiet")}, k.Args)
	assert.Equal(t, Label{Name: "start"}, s.Commands[1])
	assert.Equal(t, Initrd{URL: Lit("http://x/initrd"), Name: "rd"}, s.Commands[2])
	assert.Equal(t, Comment{Text: "indented comment"}, s.Commands[3])
}

func TestParseCompounds(t *testing.T) {
	s, err := Parse([]byte("#!ipxe\ndhcp net0 || dhcp net0 || dhcp net0\nisset ${next-server} || goto nonext\nchoose --timeout 2500 -d a sel && goto ${sel}\n"))
	require.NoError(t, err)
	assert.Equal(t, []Command{
		DHCP{Interface: "net0", Retries: 2},
		Isset{Setting: NextServer, Else: "nonext"},
		Choose{Setting: "sel", Default: "a", Timeout: 2500 * time.Millisecond, Goto: true},
	}, s.Commands)
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want error
		line int
	}{
		{"no signature", "kernel x\n", ErrSyntax, 1},
		{"signature glued", "#!ipxekernel\n", ErrSyntax, 1},
		{"unknown command", "#!ipxe\necho hi\nsanboot iscsi:1.2.3.4::::iqn\n", ErrUnknownCommand, 3},
		{"unknown option", "#!ipxe\nkernel --timeout 5 x\n", ErrUnsupported, 2},
		{"odd compound", "#!ipxe\nkernel x || shell\n", ErrUnsupported, 2},
		{"dhcp mixed", "#!ipxe\ndhcp net0 || dhcp net1\n", ErrUnsupported, 2},
		{"empty segment", "#!ipxe\ndhcp ||\n", ErrSyntax, 2},
		{"unterminated expansion", "#!ipxe\nchain http://x/${mac\n", ErrSyntax, 2},
		{"nested expansion", "#!ipxe\nchain http://x/${${a}}\n", ErrUnsupported, 2},
		{"bad setting", "#!ipxe\nchain http://x/${a b}\n", ErrSyntax, 2},
		{"empty key", "#!ipxe\nchain 0 =${0}=0\n", ErrUnsupported, 2},
		{"empty quoted key", "#!ipxe\nkernel x \"\"=${a}\n", ErrUnsupported, 2},
		{"quote in arg", "#!ipxe\nkernel x a=\"b\"c\"\n", ErrInvalidValue, 2},
		{"missing url", "#!ipxe\nkernel --name k\n", ErrSyntax, 2},
		{"sleep word", "#!ipxe\nsleep soon\n", ErrSyntax, 2},
		{"continued line numbers", "#!ipxe\necho a \\\nb\nfoo\n", ErrUnknownCommand, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.src))
			require.Error(t, err)
			assert.ErrorIs(t, err, tt.want)
			var le *LineError
			require.True(t, errors.As(err, &le), "%v", err)
			assert.Equal(t, tt.line, le.Line)
		})
	}
}

func TestParseLimits(t *testing.T) {
	big := "#!ipxe\n" + strings.Repeat("echo x\n", MaxScriptSize/7+1)
	_, err := Parse([]byte(big))
	require.ErrorIs(t, err, ErrTooLarge)
	many := "#!ipxe\n" + strings.Repeat("\n", MaxLines+1)
	_, err = Parse([]byte(many))
	require.ErrorIs(t, err, ErrTooLarge)
}

func TestParseBootSpecRejectsRuntimeDecisions(t *testing.T) {
	for _, src := range []string{
		"#!ipxe\nchain http://x/y\n",
		"#!ipxe\nmenu M\nitem a A\nchoose x && goto ${x}\n:a\nkernel k\nboot\n",
		"#!ipxe\nkernel k\n",
		"#!ipxe\ninitrd i\nboot\n",
		"#!ipxe\nkernel k\nboot\necho after\n",
		"#!ipxe\nkernel ${base}/k\nboot\n",
		"#!ipxe\nkernel k\nimgargs other x=1\nboot\n",
	} {
		_, err := ParseBootSpec([]byte(src))
		require.Error(t, err, src)
		assert.True(t, errors.Is(err, ErrNotBootScript) || errors.Is(err, ErrUnsupported), "%q: %v", src, err)
	}
}

func TestParseBootSpecImgargs(t *testing.T) {
	spec, err := ParseBootSpec([]byte("#!ipxe\ndhcp\nkernel http://x/vmlinuz console=ttyS0\nimgargs vmlinuz init=/init quiet\ninitrd http://x/initrd\nboot\n"))
	require.NoError(t, err)
	assert.Equal(t, "/init", spec.Init)
	assert.Equal(t, "init=/init quiet", spec.Args.String())
}
