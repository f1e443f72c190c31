//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd || solaris

package disk

import (
	"context"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestApplyImageLocked: while another process (here: another open file
// description) holds the image's lock, Apply fails with EBUSY and writes
// nothing; afterwards it proceeds.
func TestApplyImageLocked(t *testing.T) {
	ctx := context.Background()
	img := newImage(t, 128*MiB)
	d, err := Inspect(ctx, img, InspectOptions{})
	require.NoError(t, err)
	p, err := MakePlan(d, Layout{Partitions: []Partition{{Name: "a", Type: "linux", Size: Fixed(16 * MiB)}}}, PlanOptions{})
	require.NoError(t, err)
	other, err := os.Open(img)
	require.NoError(t, err)
	defer other.Close()
	require.NoError(t, unix.Flock(int(other.Fd()), unix.LOCK_EX|unix.LOCK_NB))
	before := hashFile(t, img)
	err = Apply(ctx, p, ApplyOptions{})
	require.ErrorIs(t, err, unix.EBUSY)
	assert.Equal(t, before, hashFile(t, img))
	require.NoError(t, unix.Flock(int(other.Fd()), unix.LOCK_UN))
	require.NoError(t, Apply(ctx, p, ApplyOptions{}))
	requireSgdiskClean(t, img)
}
