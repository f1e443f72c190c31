//go:build linux

package disk

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/nixboot/nixboot/internal/testenv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestApplyDestructiveAllowed replaces what is on a disk only when the
// caller allows it: an MBR table made by sfdisk, a whole-disk filesystem
// made by mkfs.ext4, and an existing GPT partition that must shrink.
func TestApplyDestructiveAllowed(t *testing.T) {
	ctx := context.Background()
	target := Layout{Seed: "d", Partitions: []Partition{
		{Name: "ESP", Type: "esp", Size: Fixed(40 * MiB), Filesystem: &Filesystem{Type: FSVFAT, Label: "ESP"}},
		{Name: "root", Type: "linux", Size: Rest(), Filesystem: &Filesystem{Type: FSExt4, Label: "new"}},
	}}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, img string)
		loses string
	}{
		{name: "mbr table", loses: "the MBR partition table with 2 partitions", setup: func(t *testing.T, img string) {
			sfdisk := testenv.Command(t, "sfdisk")
			cmd := exec.Command(sfdisk, "--quiet", img)
			cmd.Stdin = strings.NewReader("label: dos\nsize=20MiB, type=83\nsize=30MiB, type=82\n")
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
		}},
		{name: "whole-disk ext4", loses: `the ext4 filesystem "old"`, setup: func(t *testing.T, img string) {
			out, code := tool(t, "mkfs.ext4", "-q", "-F", "-L", "old", img)
			require.Equal(t, 0, code, out)
		}},
		{name: "shrink", loses: `partition 2 "root" (linux, `, setup: func(t *testing.T, img string) {
			l := target
			l.Partitions = append([]Partition{}, target.Partitions...)
			l.Partitions[0].Size = Fixed(60 * MiB)
			l.Partitions[1].Filesystem = &Filesystem{Type: FSExt4, Label: "old"}
			planApply(t, img, l, InspectOptions{})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := newImage(t, 160*MiB)
			tc.setup(t, img)
			whole := hashFile(t, img)
			d, err := Inspect(ctx, img, InspectOptions{})
			require.NoError(t, err)
			_, err = MakePlan(d, target, PlanOptions{})
			require.ErrorIs(t, err, ErrRefused)
			assert.ErrorContains(t, err, tc.loses)
			assert.Equal(t, whole, hashFile(t, img))

			p, err := MakePlan(d, target, PlanOptions{AllowDestructive: true})
			require.NoError(t, err)
			require.NoError(t, Apply(ctx, p, ApplyOptions{WorkDir: t.TempDir()}))
			requireSgdiskClean(t, img)
			requireTableIs(t, img, p)
			b := blkidExport(t, img)
			assert.Equal(t, "gpt", b["PTTYPE"], "whole disk: %v", b)
			assert.Empty(t, b["TYPE"], "no stale whole-disk filesystem: %v", b)
			got, err := Inspect(ctx, img, InspectOptions{})
			require.NoError(t, err)
			require.Len(t, got.Partitions, 2)
			require.NotNil(t, got.Partitions[1].Filesystem)
			assert.Equal(t, "new", got.Partitions[1].Filesystem.Label)
			again, err := MakePlan(got, target, PlanOptions{})
			require.NoError(t, err)
			assert.True(t, again.Empty(), again.String())
			out, code := tool(t, "e2fsck", "-fn", partLoop(t, img, got, 2))
			assert.Equal(t, 0, code, out)
		})
	}
}
