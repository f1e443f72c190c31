package disk

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/nixboot/nixboot/internal/testenv"
	"github.com/stretchr/testify/require"
)

// newImage makes a sparse image file of the given size in t.TempDir().
func newImage(t *testing.T, size ByteSize) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(int64(size)))
	require.NoError(t, f.Close())
	return p
}

// tool runs a Debian tool and returns its combined output and exit code.
func tool(t *testing.T, name string, args ...string) (string, int) {
	t.Helper()
	path := testenv.Command(t, name)
	out, err := exec.Command(path, args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	require.NoError(t, err, "%s %v: %s", name, args, out)
	return string(out), 0
}

// requireSgdiskClean asserts that sgdisk -v finds no problem at all.
func requireSgdiskClean(t *testing.T, dev string) {
	t.Helper()
	out, _ := tool(t, "sgdisk", "-v", dev)
	require.Contains(t, out, "No problems found", "sgdisk -v %s:\n%s", dev, out)
}

// hashRange hashes n bytes at off of a file.
func hashRange(t *testing.T, path string, off, n int64) string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, io.NewSectionReader(f, off, n))
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

// hashFile hashes a whole file.
func hashFile(t *testing.T, path string) string {
	t.Helper()
	st, err := os.Stat(path)
	require.NoError(t, err)
	return hashRange(t, path, 0, st.Size())
}

// planApply inspects, plans and applies a layout, returning the plan.
func planApply(t *testing.T, dev string, l Layout, opt InspectOptions) Plan {
	t.Helper()
	ctx := context.Background()
	d, err := Inspect(ctx, dev, opt)
	require.NoError(t, err)
	p, err := MakePlan(d, l, PlanOptions{})
	require.NoError(t, err, p.String())
	require.NoError(t, Apply(ctx, p, ApplyOptions{WorkDir: t.TempDir()}))
	return p
}
