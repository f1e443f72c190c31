package pxe_test

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/pxe"
)

func TestRenderPXELinuxGolden(t *testing.T) {
	cfg := pxe.PXELinuxConfig{
		UI: "menu.c32", Default: "nixos", Timeout: 5 * time.Second, MenuTitle: "nixboot",
		Labels: []pxe.PXELinuxLabel{
			{Name: "nixos", MenuLabel: "NixOS installer", Kernel: "nixos/bzImage", Initrd: []string{"nixos/initrd", "nixos/overlay.cpio"},
				Append: "init=/nix/store/abc-nixos-system/init loglevel=4 console=ttyS0"},
			{Name: "local", MenuLabel: "Boot from disk", Kernel: "chain.c32", Append: "hd0"},
		},
	}
	got, err := pxe.RenderPXELinux(cfg)
	require.NoError(t, err)
	path := filepath.Join("testdata", "pxelinux.golden")
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run with -update to create it")
	assert.Equal(t, string(want), string(got))

	empty, err := pxe.RenderPXELinux(pxe.PXELinuxConfig{})
	require.NoError(t, err)
	assert.Equal(t, "PROMPT 0\n", string(empty))
}

func TestRenderPXELinuxRejects(t *testing.T) {
	ok := pxe.PXELinuxLabel{Name: "a", Kernel: "k"}
	tests := []struct {
		name string
		cfg  pxe.PXELinuxConfig
		want string
	}{
		{"newline in append", pxe.PXELinuxConfig{Labels: []pxe.PXELinuxLabel{{Name: "a", Kernel: "k", Append: "quiet\nLABEL evil"}}}, "APPEND"},
		{"carriage return in title", pxe.PXELinuxConfig{MenuTitle: "x\ry"}, "MENU TITLE"},
		{"space in kernel", pxe.PXELinuxConfig{Labels: []pxe.PXELinuxLabel{{Name: "a", Kernel: "k x"}}}, "white space"},
		{"empty kernel", pxe.PXELinuxConfig{Labels: []pxe.PXELinuxLabel{{Name: "a"}}}, "KERNEL is empty"},
		{"empty label", pxe.PXELinuxConfig{Labels: []pxe.PXELinuxLabel{{Kernel: "k"}}}, "LABEL is empty"},
		{"comma in initrd", pxe.PXELinuxConfig{Labels: []pxe.PXELinuxLabel{{Name: "a", Kernel: "k", Initrd: []string{"a,b"}}}}, "comma"},
		{"duplicate label", pxe.PXELinuxConfig{Labels: []pxe.PXELinuxLabel{ok, ok}}, "twice"},
		{"default not a label", pxe.PXELinuxConfig{Default: "b", Labels: []pxe.PXELinuxLabel{ok}}, "not a label"},
		{"negative timeout", pxe.PXELinuxConfig{Timeout: -time.Second}, "negative"},
		{"tab in default", pxe.PXELinuxConfig{Default: "a\tb"}, "DEFAULT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pxe.RenderPXELinux(tt.cfg)
			require.ErrorIs(t, err, pxe.ErrBadValue)
			assert.ErrorContains(t, err, tt.want)
		})
	}
}

func TestPXELinuxPaths(t *testing.T) {
	// The example of the PXELINUX documentation.
	u := pxe.UUID{0xb8, 0x94, 0x59, 0x08, 0xd6, 0xa6, 0x41, 0xa9, 0x61, 0x1d, 0x74, 0xa6, 0xab, 0x80, 0xb8, 0x3d}
	mac := net.HardwareAddr{0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd}
	want := []string{
		"pxelinux.cfg/b8945908-d6a6-41a9-611d-74a6ab80b83d",
		"pxelinux.cfg/01-88-99-aa-bb-cc-dd",
		"pxelinux.cfg/C0A8025B", "pxelinux.cfg/C0A8025", "pxelinux.cfg/C0A802", "pxelinux.cfg/C0A80",
		"pxelinux.cfg/C0A8", "pxelinux.cfg/C0A", "pxelinux.cfg/C0", "pxelinux.cfg/C",
		"pxelinux.cfg/default",
	}
	assert.Equal(t, want, pxe.PXELinuxPaths(&u, mac, net.IPv4(192, 168, 2, 91)))
	assert.Equal(t, []string{"pxelinux.cfg/default"}, pxe.PXELinuxPaths(nil, nil, nil))
	assert.Equal(t, []string{"pxelinux.cfg/01-88-99-aa-bb-cc-dd", "pxelinux.cfg/default"}, pxe.PXELinuxPaths(nil, mac, net.ParseIP("fd00::1")))
}
