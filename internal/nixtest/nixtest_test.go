package nixtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBuildMakesARunnableClosure(t *testing.T) {
	c := Build(t, "NIXTEST-MARKER")
	require.Len(t, c.Paths, 3)
	assert.True(t, strings.HasSuffix(c.Toplevel, "-toplevel"))
	assert.Contains(t, string(c.Registration), c.Toplevel)
	for _, p := range c.Paths {
		_, err := os.Lstat(c.HostPath(p))
		require.NoError(t, err, p)
	}
	// The init is a script for the closure's own busybox: run it in a
	// chroot of the store to prove the closure is self-contained.
	if os.Geteuid() == 0 {
		out, err := exec.Command("chroot", c.Store, filepath.Join(c.Toplevel, "init")).CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Equal(t, "NIXTEST-MARKER from "+c.Toplevel+"/init\n", string(out))
	}
}

func TestBuildSystemHasBootFiles(t *testing.T) {
	dir := t.TempDir()
	kernel, initrd := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd.img")
	require.NoError(t, os.WriteFile(kernel, []byte("a kernel"), 0o644))
	require.NoError(t, os.WriteFile(initrd, []byte("an initrd"), 0o644))
	c := BuildSystem(t, "SYSTEM", kernel, initrd, "console=ttyS0 quiet")
	require.Len(t, c.Paths, 4, "busybox, etc, boot and toplevel")
	for name, want := range map[string]string{"kernel": "a kernel", "initrd": "an initrd"} {
		target, err := os.Readlink(c.HostPath(c.Toplevel + "/" + name))
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(target, "/nix/store/"), target)
		assert.Contains(t, c.Paths, filepath.Dir(target), "the boot files are in the closure")
		b, err := os.ReadFile(c.HostPath(target))
		require.NoError(t, err)
		assert.Equal(t, want, string(b))
	}
	params, err := os.ReadFile(c.HostPath(c.Toplevel + "/kernel-params"))
	require.NoError(t, err)
	assert.Equal(t, "console=ttyS0 quiet\n", string(params))
	// The plain closure is unchanged by the boot files' option.
	plain := Build(t, "SYSTEM")
	assert.NotEqual(t, plain.Toplevel, c.Toplevel)
	require.Len(t, plain.Paths, 3)
}
