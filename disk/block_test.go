package disk

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestApplyLoopDevice applies layouts to real block devices (loop devices
// this test creates, with 512- and 4096-byte logical sectors): the kernel
// must see the new partitions, the tools must accept them, and a second
// run must change nothing. Then it grows and adds partitions while the
// device stays attached.
func TestApplyLoopDevice(t *testing.T) {
	for _, sector := range []int{512, 4096} {
		t.Run(fmt.Sprintf("%d-byte sectors", sector), func(t *testing.T) {
			ctx := context.Background()
			img := newImage(t, GiB)
			dev := loop(t, img, 0, 0, sector, true)
			l := Layout{Seed: "loop", Partitions: []Partition{
				{Name: "ESP", Type: "esp", Size: Fixed(ByteSize(sector) * 75 * KiB), Filesystem: &Filesystem{Type: FSVFAT, Label: "ESP"}},
				{Name: "root", Type: "root-x86-64", Size: Fixed(300 * MiB), Filesystem: &Filesystem{Type: FSExt4, Label: "nixos"}},
			}}
			d, err := Inspect(ctx, dev, InspectOptions{})
			require.NoError(t, err)
			assert.True(t, d.BlockDevice)
			assert.Equal(t, sector, d.SectorSize)
			p := planApply(t, dev, l, InspectOptions{})
			requireSgdiskClean(t, dev)
			requireTableIs(t, dev, p)
			node := func(n int) string { return fmt.Sprintf("%sp%d", dev, n) }
			for i, lp := range l.Partitions {
				_, err := os.Stat(node(i + 1))
				require.NoError(t, err, "device node of partition %d", i+1)
				b := blkidExport(t, node(i+1))
				assert.Equal(t, lp.Filesystem.Type, b["TYPE"])
				assert.Equal(t, lp.Filesystem.Label, b["LABEL"])
				assert.Equal(t, lp.Name, b["PART_ENTRY_NAME"])
			}
			out, code := tool(t, "fsck.fat", "-n", node(1))
			assert.Equal(t, 0, code, out)
			out, code = tool(t, "e2fsck", "-fn", node(2))
			assert.Equal(t, 0, code, out)

			d, err = Inspect(ctx, dev, InspectOptions{})
			require.NoError(t, err)
			// The image file alone, without the loop device's sector size,
			// reads the same: Inspect finds the 4096-byte GPT by itself.
			fromFile, err := Inspect(ctx, img, InspectOptions{})
			require.NoError(t, err)
			assert.Equal(t, sector, fromFile.SectorSize)
			assert.Equal(t, d.Partitions, fromFile.Partitions)

			again, err := MakePlan(d, l, PlanOptions{})
			require.NoError(t, err)
			assert.True(t, again.Empty(), again.String())

			// Grow root and add a partition while the ESP's device is held
			// open (as a reader of it would), so the kernel cannot re-read
			// the whole table: it must learn of both changes partition by
			// partition, and keep the ESP.
			rootHash := hashRange(t, img, int64(d.Partitions[1].Start), int64(d.Partitions[1].Size))
			l.Partitions[1].Size = Fixed(400 * MiB)
			l.Partitions = append(l.Partitions, Partition{Name: "home", Type: "home", Size: Rest(), Filesystem: &Filesystem{Type: FSExt4, Label: "home"}})
			esp, err := os.Open(node(1))
			require.NoError(t, err)
			p = planApply(t, dev, l, InspectOptions{})
			require.NoError(t, esp.Close())
			requireSgdiskClean(t, dev)
			assert.Equal(t, rootHash, hashRange(t, img, int64(d.Partitions[1].Start), int64(d.Partitions[1].Size)))
			sz, err := os.ReadFile(filepath.Join("/sys/class/block", filepath.Base(dev), filepath.Base(node(2)), "size"))
			require.NoError(t, err)
			assert.Equal(t, fmt.Sprint(int64(400*MiB)/512)+"\n", string(sz), "kernel size of the grown partition")
			b := blkidExport(t, node(3))
			assert.Equal(t, "home", b["LABEL"])
			_ = p
		})
	}
}
