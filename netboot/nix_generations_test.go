package netboot

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeSystem writes a NixOS-shaped toplevel under root and returns its
// store path.
func fakeSystem(t testing.TB, root, hash, name, params string) string {
	t.Helper()
	top := "/nix/store/" + hash + "-nixos-system-" + name
	dir := filepath.Join(root, top)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.Symlink("/nix/store/"+hash[:31]+"k-linux-6.1/bzImage", filepath.Join(dir, "kernel")))
	require.NoError(t, os.Symlink("/nix/store/"+hash[:31]+"i-initrd-linux-6.1/initrd", filepath.Join(dir, "initrd")))
	if params != "" {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "kernel-params"), []byte(params+"\n"), 0o444))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "init"), []byte("#!/bin/sh\n"), 0o555))
	return top
}

func TestSystemProfileGenerations(t *testing.T) {
	root := t.TempDir()
	profiles := filepath.Join(root, "profiles")
	require.NoError(t, os.MkdirAll(profiles, 0o755))
	g1 := fakeSystem(t, root, "0c8ykm2wnb7mk5q9w8bkr6h0p6b2ln5q", "lab1-a", "console=ttyS0 loglevel=4")
	g2 := fakeSystem(t, root, "1c8ykm2wnb7mk5q9w8bkr6h0p6b2ln5q", "lab1-b", "")
	g10 := fakeSystem(t, root, "2c8ykm2wnb7mk5q9w8bkr6h0p6b2ln5q", "lab1-c", "quiet")
	for n, top := range map[string]string{"1": g1, "2": g2, "10": g10} {
		require.NoError(t, os.Symlink(top, filepath.Join(profiles, "system-"+n+"-link")))
	}
	require.NoError(t, os.Symlink("system-10-link", filepath.Join(profiles, "system")))
	require.NoError(t, os.Symlink(g1, filepath.Join(profiles, "other-3-link")))

	gens, err := SystemProfile{Dir: profiles, StoreRoot: root}.Generations(context.Background())
	require.NoError(t, err)
	require.Len(t, gens, 3)
	assert.Equal(t, []int{10, 2, 1}, []int{gens[0].Number, gens[1].Number, gens[2].Number}, "newest first, numerically")
	assert.Equal(t, g10, gens[0].Toplevel)
	assert.Equal(t, "/nix/store/2c8ykm2wnb7mk5q9w8bkr6h0p6b2ln5k-linux-6.1/bzImage", gens[0].Kernel)
	assert.Equal(t, "init="+g10+"/init quiet", gens[0].Args.String())
	assert.Equal(t, "init="+g1+"/init console=ttyS0 loglevel=4", gens[2].Args.String())

}

func TestSystemProfileErrors(t *testing.T) {
	root := t.TempDir()
	profiles := filepath.Join(root, "profiles")
	require.NoError(t, os.MkdirAll(profiles, 0o755))
	_, err := SystemProfile{Dir: filepath.Join(root, "nope")}.Generations(context.Background())
	require.ErrorIs(t, err, ErrGeneration)

	// A link to something that is not a toplevel is named in the error.
	require.NoError(t, os.Symlink("/etc", filepath.Join(profiles, "system-4-link")))
	_, err = SystemProfile{Dir: profiles, StoreRoot: root}.Generations(context.Background())
	require.ErrorIs(t, err, ErrGeneration)
	assert.Contains(t, err.Error(), "system-4-link")
	require.NoError(t, os.Remove(filepath.Join(profiles, "system-4-link")))

	// A toplevel whose kernel-params would inject into a script.
	top := fakeSystem(t, root, "3c8ykm2wnb7mk5q9w8bkr6h0p6b2ln5q", "bad", "")
	require.NoError(t, os.WriteFile(filepath.Join(root, top, "kernel-params"), []byte("x=${evil}"), 0o444))
	require.NoError(t, os.Symlink(top, filepath.Join(profiles, "system-5-link")))
	_, err = SystemProfile{Dir: profiles, StoreRoot: root}.Generations(context.Background())
	require.ErrorIs(t, err, ErrGeneration)
}
