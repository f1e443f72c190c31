package disk

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/nixboot/nixboot/internal/testenv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type sfdiskDump struct {
	PartitionTable struct {
		Label      string `json:"label"`
		ID         string `json:"id"`
		SectorSize int    `json:"sectorsize"`
		Partitions []struct {
			Start uint64 `json:"start"`
			Size  uint64 `json:"size"`
			Type  string `json:"type"`
			UUID  string `json:"uuid"`
			Name  string `json:"name"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

// requireTableIs checks, with sfdisk --json, that dev holds the plan's table.
func requireTableIs(t *testing.T, dev string, p Plan) {
	t.Helper()
	out, code := tool(t, "sfdisk", "--json", dev)
	require.Equal(t, 0, code, out)
	var d sfdiskDump
	require.NoError(t, json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &d), out)
	require.Equal(t, "gpt", d.PartitionTable.Label)
	assert.Equal(t, p.DiskGUID, d.PartitionTable.ID)
	require.Len(t, d.PartitionTable.Partitions, len(p.Partitions))
	for i, pp := range p.Partitions {
		got := d.PartitionTable.Partitions[i]
		assert.Equal(t, pp.FirstLBA, got.Start, "partition %d start", pp.Number)
		assert.Equal(t, pp.LastLBA-pp.FirstLBA+1, got.Size, "partition %d size", pp.Number)
		assert.Equal(t, pp.Type, got.Type)
		assert.Equal(t, pp.GUID, got.UUID)
		assert.Equal(t, pp.Name, got.Name)
	}
}

// dataLayout has a raw data partition (no filesystem) that the safety
// tests fill with random bytes.
func dataLayout(rootSize Size, extra ...Partition) Layout {
	l := Layout{Seed: "safety", Partitions: []Partition{
		{Name: "ESP", Type: "esp", Size: Fixed(64 * MiB), Filesystem: &Filesystem{Type: FSVFAT, Label: "ESP"}},
		{Name: "data", Type: "linux", Size: Fixed(8 * MiB)},
		{Name: "root", Type: "root-x86-64", Size: rootSize, Filesystem: &Filesystem{Type: FSExt4, Label: "nixos"}},
	}}
	l.Partitions = append(l.Partitions, extra...)
	return l
}

// fillData writes random bytes over partition 2 and returns the hashes of
// partitions 1-3 (keyed by number).
func fillData(t *testing.T, img string) map[int]string {
	t.Helper()
	d, err := Inspect(context.Background(), img, InspectOptions{})
	require.NoError(t, err)
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	require.NoError(t, err)
	buf := make([]byte, d.Partitions[1].Size)
	_, _ = rand.Read(buf)
	_, err = f.WriteAt(buf, int64(d.Partitions[1].Start))
	require.NoError(t, err)
	require.NoError(t, f.Close())
	return partHashes(t, img, d)
}

func partHashes(t *testing.T, img string, d Disk) map[int]string {
	t.Helper()
	out := map[int]string{}
	for _, p := range d.Partitions {
		out[p.Number] = hashRange(t, img, int64(p.Start), int64(p.Size))
	}
	return out
}

func TestDataSafety(t *testing.T) {
	ctx := context.Background()
	img := newImage(t, 640*MiB)
	planApply(t, img, dataLayout(Fixed(200*MiB)), InspectOptions{})
	kept := fillData(t, img)
	before, err := Inspect(ctx, img, InspectOptions{})
	require.NoError(t, err)

	t.Run("destructive layouts are refused and change nothing", func(t *testing.T) {
		for name, l := range map[string]Layout{
			"shrink root": dataLayout(Fixed(100 * MiB)),
			"retype data": func() Layout { l := dataLayout(Fixed(200 * MiB)); l.Partitions[1].Type = "home"; return l }(),
			"move data":   func() Layout { l := dataLayout(Fixed(200 * MiB)); l.Partitions[0].Size = Fixed(48 * MiB); return l }(),
			"format data": func() Layout {
				l := dataLayout(Fixed(200 * MiB))
				l.Partitions[1].Filesystem = &Filesystem{Type: FSExt4}
				return l
			}(),
			"reformat root":   func() Layout { l := dataLayout(Fixed(200 * MiB)); l.Partitions[2].Filesystem.Type = FSXFS; return l }(),
			"relabel root fs": func() Layout { l := dataLayout(Fixed(200 * MiB)); l.Partitions[2].Filesystem.Label = "other"; return l }(),
		} {
			t.Run(name, func(t *testing.T) {
				whole := hashFile(t, img)
				p, err := MakePlan(before, l, PlanOptions{})
				require.ErrorIs(t, err, ErrRefused)
				assert.NotEmpty(t, p.Refused())
				require.ErrorIs(t, Apply(ctx, p, ApplyOptions{}), ErrRefused)
				assert.Equal(t, whole, hashFile(t, img), "disk changed")
			})
		}
	})

	t.Run("grow and add keep data", func(t *testing.T) {
		l := dataLayout(Fixed(400*MiB), Partition{Name: "home", Type: "home", Size: Rest(), Filesystem: &Filesystem{Type: FSExt4, Label: "home"}})
		p, err := MakePlan(before, l, PlanOptions{})
		require.NoError(t, err)
		assert.Equal(t, []ActionKind{ActionKeep, ActionKeep, ActionGrow, ActionCreate}, kinds(p))
		require.NoError(t, Apply(ctx, p, ApplyOptions{WorkDir: t.TempDir()}))
		requireSgdiskClean(t, img)
		requireTableIs(t, img, p)
		for n, h := range kept {
			pi := before.Partitions[n-1]
			assert.Equal(t, h, hashRange(t, img, int64(pi.Start), int64(pi.Size)), "partition %d data", n)
		}
		after, err := Inspect(ctx, img, InspectOptions{})
		require.NoError(t, err)
		again, err := MakePlan(after, l, PlanOptions{})
		require.NoError(t, err)
		assert.True(t, again.Empty(), again.String())
	})
}

func TestApplyStalePlan(t *testing.T) {
	ctx := context.Background()
	img := newImage(t, 256*MiB)
	d, err := Inspect(ctx, img, InspectOptions{})
	require.NoError(t, err)
	l := Layout{Partitions: []Partition{{Name: "a", Type: "linux", Size: Fixed(16 * MiB)}}}
	p, err := MakePlan(d, l, PlanOptions{})
	require.NoError(t, err)
	// Someone else partitions the disk in between.
	other := Layout{Partitions: []Partition{{Name: "b", Type: "swap", Size: Fixed(32 * MiB)}}}
	planApply(t, img, other, InspectOptions{})
	whole := hashFile(t, img)
	require.ErrorIs(t, Apply(ctx, p, ApplyOptions{}), ErrStale)
	assert.Equal(t, whole, hashFile(t, img))
}

// TestApplyMissingTool hides one mkfs program: Apply must name it, wrap
// ErrNoTool, and write nothing at all (not even the filesystems it could
// make).
func TestApplyMissingTool(t *testing.T) {
	ctx := context.Background()
	img := newImage(t, 256*MiB)
	l := Layout{Seed: "no-tool", Partitions: []Partition{
		{Name: "ESP", Type: "esp", Size: Fixed(64 * MiB), Filesystem: &Filesystem{Type: FSVFAT, Label: "ESP"}},
		{Name: "root", Type: "linux", Size: Fixed(64 * MiB), Filesystem: &Filesystem{Type: FSExt4, Label: "root"}},
		{Name: "var", Type: "var", Size: Rest(), Filesystem: &Filesystem{Type: FSXFS, Label: "var"}},
	}}
	d, err := Inspect(ctx, img, InspectOptions{})
	require.NoError(t, err)
	p, err := MakePlan(d, l, PlanOptions{})
	require.NoError(t, err)
	var looked []string
	hide := func(name string) (string, error) {
		looked = append(looked, name)
		if name == "mkfs.xfs" {
			return "", fmt.Errorf("%w: %s", ErrNoTool, name)
		}
		return lookTool(name)
	}
	before := hashFile(t, img)
	err = apply(ctx, p, ApplyOptions{WorkDir: t.TempDir()}, applyHooks{lookTool: hide})
	require.ErrorIs(t, err, ErrNoTool)
	assert.ErrorContains(t, err, "partition 3 (xfs) needs mkfs.xfs")
	assert.Equal(t, []string{"mkfs.ext4", "mkfs.xfs"}, looked)
	assert.Equal(t, before, hashFile(t, img), "the disk was written")

	// The real lookup: a program that does not exist gives ErrNoTool.
	_, err = lookTool("mkfs.nixboot-does-not-exist")
	require.ErrorIs(t, err, ErrNoTool)
}

// TestFAT32Sizes makes FAT32 filesystems of the sizes for which go-diskfs
// v1.9.4 writes more clusters than its FAT holds (found by sweeping 33 MiB
// to 1100 MiB with fsck.fat) and a few good ones: every result must pass
// fsck.fat -n and carry the requested label and serial.
func TestFAT32Sizes(t *testing.T) {
	testenv.Command(t, "fsck.fat")
	for _, tc := range []struct {
		mib    int64
		sector int
	}{
		{33, 512}, {64, 512}, {100, 512}, {129, 512}, {194, 512}, {259, 512}, {505, 512},
		{506, 512}, {507, 512}, {762, 512}, {1018, 512}, {260, 4096}, {505, 4096}, {1020, 4096},
	} {
		t.Run(fmt.Sprintf("%dMiB-%d", tc.mib, tc.sector), func(t *testing.T) {
			ctx := context.Background()
			size := tc.mib << 20
			img, err := buildFS(ctx, Filesystem{Type: FSVFAT, Label: "ESP", UUID: "ABCD-0123"}, size, tc.sector, t.TempDir(), "")
			require.NoError(t, err)
			f, err := os.Open(img)
			require.NoError(t, err)
			defer f.Close()
			bs := make([]byte, tc.sector)
			_, err = f.ReadAt(bs, 0)
			require.NoError(t, err)
			require.NoError(t, checkFAT32(bs))
			assert.Equal(t, &FSInfo{Type: FSVFAT, Label: "ESP", UUID: "ABCD-0123"}, probeFS(f, 0, size))
			out, code := tool(t, "fsck.fat", "-n", img)
			assert.Equal(t, 0, code, "fsck.fat -n:\n%s", out)
		})
	}
}

// TestApplyClearsReusedSpace: a new partition without a filesystem lands on
// space that held an old filesystem and other bytes. Apply must clear the
// old signatures (first and last MiB), so that the partition reads as blank
// and blkid finds nothing there, and must leave the kept partitions alone.
func TestApplyClearsReusedSpace(t *testing.T) {
	ctx := context.Background()
	img := newImage(t, 256*MiB)
	l := Layout{Seed: "reuse", Partitions: []Partition{
		{Name: "ESP", Type: "esp", Size: Fixed(40 * MiB), Filesystem: &Filesystem{Type: FSVFAT, Label: "ESP"}},
		{Name: "data", Type: "linux", Size: Fixed(8 * MiB)},
	}}
	planApply(t, img, l, InspectOptions{})
	kept := fillData(t, img)
	old, err := Inspect(ctx, img, InspectOptions{})
	require.NoError(t, err)

	// Leftovers in the free space: an ext4 filesystem where partition 3
	// will start, and random bytes in the last MiB it will cover.
	start := int64(old.Partitions[1].Start + old.Partitions[1].Size)
	out, code := tool(t, "mkfs.ext4", "-q", "-F", "-L", "stale", "-E", "offset="+fmt.Sprint(start), img, "4096")
	require.Equal(t, 0, code, out)
	junk := make([]byte, MiB)
	_, _ = rand.Read(junk)
	end := int64(old.LastUsableLBA+1) * 512
	end -= end % int64(MiB) // where the rest ends
	writeAt(t, img, end-int64(MiB), junk)
	d, err := Inspect(ctx, img, InspectOptions{})
	require.NoError(t, err)

	l.Partitions = append(l.Partitions, Partition{Name: "raw", Type: "linux", Size: Rest()})
	p, err := MakePlan(d, l, PlanOptions{})
	require.NoError(t, err)
	require.Equal(t, []ActionKind{ActionKeep, ActionKeep, ActionCreate}, kinds(p))
	require.NoError(t, Apply(ctx, p, ApplyOptions{WorkDir: t.TempDir()}))
	requireSgdiskClean(t, img)

	got, err := Inspect(ctx, img, InspectOptions{})
	require.NoError(t, err)
	require.Len(t, got.Partitions, 3)
	raw := got.Partitions[2]
	assert.Equal(t, ByteSize(start), raw.Start)
	assert.Nil(t, raw.Filesystem)
	assert.True(t, raw.Blank, "new partition is not blank")
	assert.Equal(t, ByteSize(end), raw.Start+raw.Size, "test setup: the junk must sit in the partition's last MiB")
	assert.Equal(t, hashRange(t, "/dev/zero", 0, int64(MiB)), hashRange(t, img, end-int64(MiB), int64(MiB)), "last MiB not cleared")
	b, _ := tool(t, "blkid", "-p", "-O", fmt.Sprint(start), img)
	assert.NotContains(t, b, "TYPE=", b)
	for n, h := range kept {
		pi := old.Partitions[n-1]
		assert.Equal(t, h, hashRange(t, img, int64(pi.Start), int64(pi.Size)), "partition %d", n)
	}
}

// TestFATLabels checks Validate's FAT label rule against fsck.fat, one
// printable character at a time: what Validate accepts, fsck.fat accepts
// and Inspect reads back; what it refuses, fsck.fat refuses too.
func TestFATLabels(t *testing.T) {
	testenv.Command(t, "fsck.fat")
	ctx := context.Background()
	dir := t.TempDir()
	for c := byte(0x20); c < 0x7f; c++ {
		label := "A" + string(c) + "B"
		l := Layout{Partitions: []Partition{{Name: "ESP", Type: "esp", Size: Rest(), Filesystem: &Filesystem{Type: FSVFAT, Label: label}}}}
		valid := l.Validate() == nil
		img, err := buildFS(ctx, Filesystem{Type: FSVFAT, Label: label, UUID: "ABCD-0123"}, int64(34*MiB), 512, dir, "")
		require.NoError(t, err)
		out, code := tool(t, "fsck.fat", "-n", img)
		assert.Equal(t, valid, code == 0, "label %q: Validate accepts it: %v; fsck.fat:\n%s", label, valid, out)
		if valid {
			f, err := os.Open(img)
			require.NoError(t, err)
			assert.Equal(t, label, probeFS(f, 0, int64(34*MiB)).Label)
			f.Close()
		}
		require.NoError(t, os.Remove(img))
	}
}
