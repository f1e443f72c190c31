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
