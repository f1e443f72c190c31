package netboot

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/initrd"
)

// A caller that cannot wait for a base initrd to be read again (a DHCP-time
// Boot under the policy timeout) returns at its deadline; the read goes on
// and its answer serves the next caller.
func TestBaseDirsScanOutlivesCaller(t *testing.T) {
	dir := t.TempDir()
	// 64 MiB of zeros (a sparse file) after "etc": little on disk, but the
	// whole archive must be unpacked to learn that "root" is missing.
	big := filepath.Join(dir, "big")
	require.NoError(t, os.WriteFile(big, nil, 0o644))
	require.NoError(t, os.Truncate(big, 64<<20))
	planned, err := initrd.Plan([]initrd.Entry{
		{Header: initrd.Header{Name: "etc", Type: initrd.TypeDir, Mode: 0o755}},
		{Header: initrd.Header{Name: "zz", Type: initrd.TypeReg, Mode: 0o644, Size: 64 << 20}, Source: initrd.Source{Path: big}},
	}, initrd.PlanOptions{})
	require.NoError(t, err)
	base := filepath.Join(dir, "initrd")
	f, err := os.Create(base)
	require.NoError(t, err)
	_, err = initrd.Write(t.Context(), f, []initrd.Segment{{Compression: initrd.Gzip, Entries: planned}}, initrd.WriteOptions{})
	require.NoError(t, err)
	require.NoError(t, f.Close())

	b := &baseDirs{path: base, want: []string{"etc", "root"}}
	ctx, cancel := context.WithTimeout(t.Context(), time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = b.get(ctx)
	waited := time.Since(start)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "still reading")
	t.Logf("the caller returned after %v", waited)

	found, err := b.get(t.Context()) // waits for the same read
	require.NoError(t, err)
	assert.Equal(t, []string{"etc"}, found)

	expired, cancel2 := context.WithCancel(t.Context())
	cancel2()
	found, err = b.get(expired)
	require.NoError(t, err, "answered from the cache, without waiting")
	assert.Equal(t, []string{"etc"}, found)
}
