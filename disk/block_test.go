//go:build linux

package disk

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// everyFS declares one partition of each filesystem type. The seed differs
// on every run: mkfs.btrfs refuses a UUID that a block device on the machine
// already carries (a loop device left by another run, for example), and the
// seed decides the btrfs UUID.
func everyFS() Layout {
	return Layout{Seed: "every-fs-" + rand.Text(), Partitions: []Partition{
		{Name: "ESP", Type: "esp", Size: Fixed(100 * MiB), Attributes: 1,
			Filesystem: &Filesystem{Type: FSVFAT, Label: "ESP", UUID: "12AB-34CD"}},
		{Name: "root", Type: "root-x86-64", Size: Fixed(400 * MiB), Attributes: 1 << 59,
			Filesystem: &Filesystem{Type: FSExt4, Label: "nixos", UUID: "0f1e2d3c-4b5a-4968-8776-655443322110"}},
		{Name: "swap", Type: "swap", Size: Fixed(64 * MiB), Filesystem: &Filesystem{Type: FSSwap, Label: "swap"}},
		{Name: "var", Type: "var", Size: Fixed(400 * MiB), Filesystem: &Filesystem{Type: FSXFS, Label: "var"}},
		{Name: "home", Type: "home", Size: Rest(), Filesystem: &Filesystem{Type: FSBtrfs, Label: "home"}},
	}}
}

// blkidExport returns blkid -p -o export as a map.
func blkidExport(t *testing.T, dev string) map[string]string {
	t.Helper()
	out, code := tool(t, "blkid", "-p", "-o", "export", dev)
	require.Equal(t, 0, code, out)
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}

func TestApplyImageEveryFilesystem(t *testing.T) {
	img := newImage(t, 2*GiB)
	l := everyFS()
	t.Logf("layout seed %q", l.Seed)
	p := planApply(t, img, l, InspectOptions{})

	requireSgdiskClean(t, img)
	requireTableIs(t, img, p)
	out, _ := tool(t, "sgdisk", "-i", "2", img)
	assert.Contains(t, out, "Attribute flags: 0800000000000000")

	d, err := Inspect(context.Background(), img, InspectOptions{})
	require.NoError(t, err)
	require.Empty(t, d.Problems)
	// Inspect equals the layout.
	for i, lp := range l.Partitions {
		got := d.Partitions[i]
		typ, _ := TypeGUID(lp.Type)
		assert.Equal(t, typ, got.Type)
		assert.Equal(t, lp.Name, got.Name)
		assert.Equal(t, lp.Attributes, got.Attributes)
		require.NotNil(t, got.Filesystem, lp.Name)
		assert.Equal(t, lp.Filesystem.Type, got.Filesystem.Type)
		assert.Equal(t, lp.Filesystem.Label, got.Filesystem.Label)
	}
	assert.Equal(t, "12AB-34CD", d.Partitions[0].Filesystem.UUID)
	assert.Equal(t, "0f1e2d3c-4b5a-4968-8776-655443322110", d.Partitions[1].Filesystem.UUID)

	// The real tools agree, partition by partition.
	want := []struct{ typ, check string }{{"vfat", "fsck.fat"}, {"ext4", "e2fsck"}, {"swap", ""}, {"xfs", "xfs_repair"}, {"btrfs", "btrfs"}}
	for i, w := range want {
		dev := partLoop(t, img, d, i+1)
		b := blkidExport(t, dev)
		assert.Equal(t, w.typ, b["TYPE"], "partition %d", i+1)
		assert.Equal(t, l.Partitions[i].Filesystem.Label, b["LABEL"], "partition %d", i+1)
		assert.True(t, strings.EqualFold(d.Partitions[i].Filesystem.UUID, b["UUID"]), "partition %d uuid %s vs %s", i+1, d.Partitions[i].Filesystem.UUID, b["UUID"])
		var out string
		var code int
		switch w.check {
		case "fsck.fat":
			out, code = tool(t, "fsck.fat", "-n", dev)
		case "e2fsck":
			out, code = tool(t, "e2fsck", "-fn", dev)
		case "xfs_repair":
			out, code = tool(t, "xfs_repair", "-n", dev)
		case "btrfs":
			out, code = tool(t, "btrfs", "check", "--readonly", dev)
		}
		assert.Equal(t, 0, code, "%s on partition %d: %s", w.check, i+1, out)
	}

	// Planning again finds nothing to do; applying the old plan again is a
	// no-op that writes nothing.
	again, err := MakePlan(d, l, PlanOptions{})
	require.NoError(t, err)
	assert.True(t, again.Empty(), again.String())
	before := hashFile(t, img)
	require.NoError(t, Apply(context.Background(), p, ApplyOptions{}))
	require.NoError(t, Apply(context.Background(), again, ApplyOptions{}))
	assert.Equal(t, before, hashFile(t, img))
}
