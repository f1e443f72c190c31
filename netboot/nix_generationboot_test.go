package netboot

import (
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/ipxe"
	"github.com/nixboot/nixboot/pxe"
)

// generationStore writes a profile with generations 1 and 2 under a new
// root, each with its own kernel and initrd contents, and returns the
// root and the profile.
func generationStore(t testing.TB) (string, SystemProfile) {
	t.Helper()
	root := t.TempDir()
	profiles := filepath.Join(root, "profiles")
	require.NoError(t, os.MkdirAll(profiles, 0o755))
	for i, hash := range []string{"0c8ykm2wnb7mk5q9w8bkr6h0p6b2ln5q", "1c8ykm2wnb7mk5q9w8bkr6h0p6b2ln5q"} {
		n := string(rune('1' + i))
		top := fakeSystem(t, root, hash, "lab-"+n, "console=ttyS0")
		g, err := ReadToplevel(root, top)
		require.NoError(t, err)
		for _, p := range []string{g.Kernel, g.Initrd} {
			require.NoError(t, os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(root, p), []byte("gen"+n+" "+filepath.Base(p)), 0o444))
		}
		require.NoError(t, os.Symlink(top, filepath.Join(profiles, "system-"+n+"-link")))
	}
	return root, SystemProfile{Dir: profiles, StoreRoot: root}
}

func readSource(t testing.TB, s Source, proto Proto, name string) (string, error) {
	t.Helper()
	f, err := s.Open(context.Background(), &Request{Proto: proto, Name: name})
	if err != nil {
		return "", err
	}
	defer f.close()
	b, err := io.ReadAll(f.Content)
	require.NoError(t, err)
	require.Equal(t, f.Size, int64(len(b)))
	return string(b), nil
}

func TestGenerationBootMenus(t *testing.T) {
	root, profile := generationStore(t)
	g := &GenerationBoot{
		Generations: profile, StoreRoot: root, BaseURL: "http://10.0.0.1:8080",
		Args: ipxe.Args{ipxe.KV("nixboot.server", "http://10.0.0.1:8080")}, Timeout: 3 * time.Second,
	}
	script, err := readSource(t, g, HTTP, GenerationMenuName)
	require.NoError(t, err)
	// The menu is a script iPXE (and our parser) accepts, newest default.
	parsed, err := ipxe.Parse([]byte(script))
	require.NoError(t, err, script)
	assert.NotEmpty(t, parsed.Commands)
	assert.Contains(t, script, "choose --default gen2 --timeout 3000 nixboot-choice && goto ${nixboot-choice}\n")
	assert.Less(t, strings.Index(script, "item gen2 "), strings.Index(script, "item gen1 "), "newest first")
	assert.Contains(t, script, "kernel http://10.0.0.1:8080/nixos/2/kernel init=/nix/store/1c8ykm2wnb7mk5q9w8bkr6h0p6b2ln5q-nixos-system-lab-2/init console=ttyS0 nixboot.server=http://10.0.0.1:8080 initrd=initrd\n")
	assert.Contains(t, script, "initrd --name initrd http://10.0.0.1:8080/nixos/2/initrd\n")

	cfg, err := readSource(t, g, TFTP, PXELinuxDefaultName)
	require.NoError(t, err)
	want := `UI menu.c32
DEFAULT gen2
PROMPT 0
TIMEOUT 30
MENU TITLE NixOS

LABEL gen2
  MENU LABEL NixOS generation 2 (nixos-system-lab-2)
  KERNEL http://10.0.0.1:8080/nixos/2/kernel
  INITRD http://10.0.0.1:8080/nixos/2/initrd
  APPEND init=/nix/store/1c8ykm2wnb7mk5q9w8bkr6h0p6b2ln5q-nixos-system-lab-2/init console=ttyS0 nixboot.server=http://10.0.0.1:8080

LABEL gen1
  MENU LABEL NixOS generation 1 (nixos-system-lab-1)
  KERNEL http://10.0.0.1:8080/nixos/1/kernel
  INITRD http://10.0.0.1:8080/nixos/1/initrd
  APPEND init=/nix/store/0c8ykm2wnb7mk5q9w8bkr6h0p6b2ln5q-nixos-system-lab-1/init console=ttyS0 nixboot.server=http://10.0.0.1:8080
`
	assert.Equal(t, want, cfg)

	// Over TFTP for pxelinux.0, without a menu module.
	g.PXELinuxTFTP, g.PXELinuxUI = true, "-"
	c, err := g.PXELinuxMenu(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "nixos/2/kernel", c.Labels[0].Kernel)
	assert.Equal(t, []string{"nixos/1/initrd"}, c.Labels[1].Initrd)
	assert.Equal(t, "", c.UI)
	assert.Equal(t, "gen2", c.Default)

	// A new generation is in the next menu, first.
	top := fakeSystem(t, root, "2c8ykm2wnb7mk5q9w8bkr6h0p6b2ln5q", "lab-3", "")
	require.NoError(t, os.Symlink(top, filepath.Join(profile.Dir, "system-3-link")))
	c, err = g.PXELinuxMenu(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "gen3", c.Default)
	assert.Len(t, c.Labels, 3)
}

func TestGenerationBootFiles(t *testing.T) {
	root, profile := generationStore(t)
	g := &GenerationBoot{Generations: profile, StoreRoot: root, BaseURL: "http://10.0.0.1"}
	for _, proto := range []Proto{TFTP, HTTP} {
		b, err := readSource(t, g, proto, "nixos/1/kernel")
		require.NoError(t, err)
		assert.Equal(t, "gen1 bzImage", b)
		b, err = readSource(t, g, proto, "nixos/2/initrd")
		require.NoError(t, err)
		assert.Equal(t, "gen2 initrd", b)
	}
	// Only generation numbers and the two kinds exist.
	for _, name := range []string{"nixos/3/kernel", "nixos/01/kernel", "nixos/1/init", "nixos/1", "nixos/-1/kernel",
		"nixos/1/kernel/x", "nix/store/1c8ykm2wnb7mk5q9w8bkr6h0p6b2ln5q-nixos-system-lab-2/init", "pxelinux.cfg/01-52-54-00-00-00-01", "x"} {
		_, err := readSource(t, g, HTTP, name)
		assert.ErrorIs(t, err, fs.ErrNotExist, name)
	}
	// A generation whose kernel is gone is a store error, not "not found".
	gens, err := profile.Generations(context.Background())
	require.NoError(t, err)
	require.NoError(t, os.Remove(filepath.Join(root, gens[1].Kernel)))
	_, err = readSource(t, g, HTTP, "nixos/1/kernel")
	require.ErrorIs(t, err, ErrGeneration)
	assert.Contains(t, err.Error(), gens[1].Kernel)
}

func TestGenerationBootErrors(t *testing.T) {
	ctx := context.Background()
	none := GenerationsFunc(func(context.Context) ([]Generation, error) { return nil, nil })
	_, err := (&GenerationBoot{Generations: none, BaseURL: "http://x"}).IPXEMenu(ctx)
	require.ErrorIs(t, err, ErrGeneration)
	_, err = (&GenerationBoot{}).IPXEMenu(ctx)
	require.ErrorIs(t, err, ErrConfig)

	root, profile := generationStore(t)
	_, err = (&GenerationBoot{Generations: profile, StoreRoot: root}).IPXEMenu(ctx)
	require.ErrorIs(t, err, ErrConfig, "no BaseURL")
	// PXELINUX cannot expand iPXE settings: refused, naming the argument.
	g := &GenerationBoot{Generations: profile, StoreRoot: root, BaseURL: "http://x",
		Args: ipxe.Args{{Key: "nixboot.mac", Value: ipxe.MAC.Value()}}}
	_, err = g.PXELinuxMenu(ctx)
	require.ErrorIs(t, err, ErrGeneration)
	assert.Contains(t, err.Error(), "nixboot.mac")
	// ... while iPXE expands them.
	s, err := g.IPXEMenu(ctx)
	require.NoError(t, err)
	b, err := s.Render()
	require.NoError(t, err)
	assert.Contains(t, string(b), `nixboot.mac="${mac}"`)
	// A bad label in the rendered PXELINUX file is refused by pxe.
	_, err = pxe.RenderPXELinux(pxe.PXELinuxConfig{Labels: []pxe.PXELinuxLabel{{Name: "a b", Kernel: "k"}}})
	require.Error(t, err)
}

// FuzzGenerationBootOpen: whatever name a client asks for, Open serves a
// menu or one of the generations' own files, or says the name does not
// exist.
func FuzzGenerationBootOpen(f *testing.F) {
	for _, s := range []string{GenerationMenuName, PXELinuxDefaultName, "nixos/1/kernel", "nixos/2/initrd", "nixos/3/kernel",
		"nixos//kernel", "nixos/+1/kernel", "nixos/1e0/kernel", "nixos/1/../2/kernel", "../etc/passwd", "nixos/9999999999999999999/initrd"} {
		f.Add(s)
	}
	store, profile := generationStore(f)
	f.Fuzz(func(t *testing.T, name string) {
		g := &GenerationBoot{Generations: profile, StoreRoot: store, BaseURL: "http://10.0.0.1"}
		clean, err := CleanName(name)
		if err != nil {
			return
		}
		b, err := readSource(t, g, HTTP, clean)
		if err != nil {
			require.ErrorIs(t, err, fs.ErrNotExist, "%q", clean)
			return
		}
		switch clean {
		case GenerationMenuName, PXELinuxDefaultName:
			return
		}
		assert.Contains(t, []string{"gen1 bzImage", "gen1 initrd", "gen2 bzImage", "gen2 initrd"}, b, "%q served %q", clean, b)
	})
}
