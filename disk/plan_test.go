package disk

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// planLayout is a two-partition layout used by the pure planning tests.
func planLayout(rootSize Size) Layout {
	return Layout{Seed: "t", Partitions: []Partition{
		{Name: "ESP", Type: "esp", Size: Fixed(100 * MiB), Filesystem: &Filesystem{Type: FSVFAT, Label: "ESP"}},
		{Name: "root", Type: "root-x86-64", Size: rootSize, Filesystem: &Filesystem{Type: FSExt4, Label: "nixos"}},
	}}
}

// diskAfter returns what Inspect reports after plan p was applied to an
// empty 1 GiB disk: the plan's table with the planned filesystems.
func diskAfter(t *testing.T, p Plan) Disk {
	t.Helper()
	sectors := uint64(p.Size) / uint64(p.SectorSize)
	first, last := usableRange(sectors, p.SectorSize)
	d := Disk{Path: "/img", Size: p.Size, SectorSize: p.SectorSize, Table: TableGPT, GUID: p.DiskGUID,
		FirstUsableLBA: first, LastUsableLBA: last, Partitions: []PartitionInfo{}}
	for _, pp := range p.Partitions {
		pi := PartitionInfo{Number: pp.Number, FirstLBA: pp.FirstLBA, LastLBA: pp.LastLBA,
			Start: ByteSize(pp.FirstLBA * uint64(p.SectorSize)), Size: ByteSize((pp.LastLBA - pp.FirstLBA + 1) * uint64(p.SectorSize)),
			Type: pp.Type, GUID: pp.GUID, Name: pp.Name, Attributes: pp.Attributes}
		for _, a := range p.Actions {
			if a.Number == pp.Number && a.Filesystem != nil {
				pi.Filesystem = &FSInfo{Type: a.Filesystem.Type, Label: a.Filesystem.Label, UUID: a.Filesystem.UUID}
			}
		}
		d.Partitions = append(d.Partitions, pi)
	}
	return d
}

func blankDisk(size int64, sector int) Disk {
	return Disk{Path: "/img", Size: size, SectorSize: sector, Blank: true, Partitions: []PartitionInfo{}}
}

func kinds(p Plan) []ActionKind {
	var out []ActionKind
	for _, a := range p.Actions {
		out = append(out, a.Kind)
	}
	return out
}

func TestPlanBlankAndIdempotent(t *testing.T) {
	for _, sector := range []int{512, 4096} {
		t.Run(ByteSize(sector).String(), func(t *testing.T) {
			d := blankDisk(int64(GiB), sector)
			l := planLayout(Rest())
			l.Partitions[0].Size = Fixed(300 * MiB) // FAT32 on 4Kn needs 260 MiB
			p, err := MakePlan(d, l, PlanOptions{})
			require.NoError(t, err)
			assert.Equal(t, []ActionKind{ActionCreateTable, ActionCreate, ActionCreate}, kinds(p))
			require.Len(t, p.Partitions, 2)
			grain := uint64(MiB) / uint64(sector)
			assert.Equal(t, grain, p.Partitions[0].FirstLBA, "first partition at 1 MiB")
			assert.Equal(t, uint64(300*MiB)/uint64(sector), p.Partitions[0].LastLBA-p.Partitions[0].FirstLBA+1)
			assert.Zero(t, (p.Partitions[1].LastLBA+1)%grain, "end aligned")

			again, err := MakePlan(diskAfter(t, p), l, PlanOptions{})
			require.NoError(t, err)
			assert.True(t, again.Empty(), again.String())
			assert.Equal(t, []ActionKind{ActionKeep, ActionKeep}, kinds(again))
		})
	}
}

func TestPlanSeedIsReproducible(t *testing.T) {
	d := blankDisk(int64(GiB), 512)
	a, err := MakePlan(d, planLayout(Rest()), PlanOptions{})
	require.NoError(t, err)
	b, err := MakePlan(d, planLayout(Rest()), PlanOptions{})
	require.NoError(t, err)
	assert.Equal(t, a, b)
	l := planLayout(Rest())
	l.Seed = "other"
	c, err := MakePlan(d, l, PlanOptions{})
	require.NoError(t, err)
	assert.NotEqual(t, a.DiskGUID, c.DiskGUID)
	assert.NotEqual(t, a.Partitions[0].GUID, c.Partitions[0].GUID)

	// Without a seed every GUID and UUID is drawn at random.
	l.Seed = ""
	r1, err := MakePlan(d, l, PlanOptions{})
	require.NoError(t, err)
	r2, err := MakePlan(d, l, PlanOptions{})
	require.NoError(t, err)
	assert.NotEqual(t, r1.DiskGUID, r2.DiskGUID)
	for i := range r1.Partitions {
		assert.NotEqual(t, r1.Partitions[i].GUID, r2.Partitions[i].GUID)
		assert.NotEqual(t, r1.Actions[i+1].Filesystem.UUID, r2.Actions[i+1].Filesystem.UUID)
	}
}

// TestPlanAlignment places partitions on the layout's grain, not only on
// the 1 MiB default.
func TestPlanAlignment(t *testing.T) {
	for _, tc := range []struct {
		align     ByteSize
		sector    int
		wantFirst uint64 // LBA of partition 1
	}{
		{0, 512, 2048},
		{4 * KiB, 512, 40}, // first usable LBA 34, rounded up to 8 sectors
		{4 * KiB, 4096, 6}, // first usable LBA 6 (array of 4 sectors)
		{64 * KiB, 512, 128},
		{2 * MiB, 512, 4096},
		{2 * MiB, 4096, 512},
	} {
		t.Run(fmt.Sprintf("%s-%d", tc.align, tc.sector), func(t *testing.T) {
			l := Layout{Alignment: tc.align, Seed: "a", Partitions: []Partition{
				{Name: "a", Type: "linux", Size: Fixed(5*MiB + 3)},
				{Name: "b", Type: "linux", Size: Percent(10)},
				{Name: "c", Type: "linux", Size: Rest()},
			}}
			p, err := MakePlan(blankDisk(int64(GiB)+12345, tc.sector), l, PlanOptions{})
			require.NoError(t, err)
			grain := uint64(l.alignment()) / uint64(tc.sector)
			require.Len(t, p.Partitions, 3)
			assert.Equal(t, tc.wantFirst, p.Partitions[0].FirstLBA)
			for _, pp := range p.Partitions {
				assert.Zero(t, pp.FirstLBA%grain, "partition %d start", pp.Number)
				assert.Zero(t, (pp.LastLBA+1)%grain, "partition %d end", pp.Number)
			}
			// 5 MiB + 3 bytes rounds up to the next grain.
			assert.Equal(t, roundUp(uint64(5*MiB)+3, uint64(l.alignment())), (p.Partitions[0].LastLBA-p.Partitions[0].FirstLBA+1)*uint64(tc.sector))
			again, err := MakePlan(diskAfter(t, p), l, PlanOptions{})
			require.NoError(t, err)
			assert.True(t, again.Empty(), again.String())
		})
	}
}

// TestPlanGrowReason: a grow never resizes the filesystem; the reason says
// so, and mentions systemd only when the grow-fs attribute is set.
func TestPlanGrowReason(t *testing.T) {
	for _, attrs := range []Attributes{0, attrGrowFS} {
		l := planLayout(Fixed(300 * MiB))
		l.Partitions[1].Attributes = attrs
		base, err := MakePlan(blankDisk(int64(GiB), 512), l, PlanOptions{})
		require.NoError(t, err)
		l.Partitions[1].Size = Fixed(500 * MiB)
		p, err := MakePlan(diskAfter(t, base), l, PlanOptions{})
		require.NoError(t, err)
		require.Equal(t, []ActionKind{ActionKeep, ActionGrow}, kinds(p))
		r := p.Actions[1].Reason
		assert.Contains(t, r, "300MiB -> 500MiB; the filesystem is not resized")
		assert.Equal(t, attrs != 0, strings.Contains(r, "grow-fs attribute asks systemd"), r)
	}
}

func TestPlanChanges(t *testing.T) {
	base, err := MakePlan(blankDisk(int64(GiB), 512), planLayout(Fixed(300*MiB)), PlanOptions{})
	require.NoError(t, err)
	had := diskAfter(t, base)

	withData := func(mod func(d *Disk)) Disk {
		c := had
		c.Partitions = append([]PartitionInfo{}, had.Partitions...)
		for i := range c.Partitions {
			f := *c.Partitions[i].Filesystem
			c.Partitions[i].Filesystem = &f
		}
		mod(&c)
		return c
	}
	for _, tc := range []struct {
		name   string
		disk   Disk
		layout Layout
		want   []ActionKind
		loses  string // a refusal must name this
	}{
		{name: "grow", disk: had, layout: planLayout(Fixed(500 * MiB)), want: []ActionKind{ActionKeep, ActionGrow}},
		{name: "grow into rest", disk: had, layout: planLayout(Rest()), want: []ActionKind{ActionKeep, ActionGrow}},
		{name: "add", disk: had, layout: func() Layout {
			l := planLayout(Fixed(300 * MiB))
			l.Partitions = append(l.Partitions, Partition{Name: "home", Type: "home", Size: Rest()})
			return l
		}(), want: []ActionKind{ActionKeep, ActionKeep, ActionCreate}},
		{name: "rename", disk: had, layout: func() Layout {
			l := planLayout(Fixed(300 * MiB))
			l.Partitions[1].Name = "nixos"
			return l
		}(), want: []ActionKind{ActionKeep, ActionModify}},
		{name: "format blank", disk: withData(func(d *Disk) { d.Partitions[1].Filesystem = nil; d.Partitions[1].Blank = true }),
			layout: planLayout(Fixed(300 * MiB)), want: []ActionKind{ActionKeep, ActionFormat}},
		{name: "shrink", disk: had, layout: planLayout(Fixed(200 * MiB)),
			want: []ActionKind{ActionKeep, ActionConflict}, loses: `partition 2 "root" (root-x86-64, 300MiB, ext4 filesystem "nixos"`},
		{name: "retype", disk: had, layout: func() Layout {
			l := planLayout(Fixed(300 * MiB))
			l.Partitions[1].Type = "home"
			return l
		}(), want: []ActionKind{ActionKeep, ActionConflict}, loses: `partition 2 "root"`},
		{name: "move", disk: had, layout: func() Layout {
			l := planLayout(Fixed(300 * MiB))
			l.Partitions[0].Size = Fixed(200 * MiB)
			return l
		}(), want: []ActionKind{ActionGrow, ActionConflict}, loses: `partition 2 "root" (root-x86-64, 300MiB, ext4 filesystem "nixos"`},
		{name: "reformat", disk: withData(func(d *Disk) { d.Partitions[1].Filesystem.Type = "xfs" }),
			layout: planLayout(Fixed(300 * MiB)), want: []ActionKind{ActionKeep, ActionConflict}, loses: `xfs filesystem "nixos"`},
		{name: "unknown data", disk: withData(func(d *Disk) { d.Partitions[1].Filesystem = nil }),
			layout: planLayout(Fixed(300 * MiB)), want: []ActionKind{ActionKeep, ActionConflict}, loses: "unrecognised data"},
		{name: "foreign in the way", disk: withData(func(d *Disk) {
			d.Partitions = append(d.Partitions, PartitionInfo{Number: 7, FirstLBA: 900000, LastLBA: 1000000, Type: PartitionTypes["linux"], Name: "data", Size: 50 * MiB, Filesystem: &FSInfo{Type: "ext4", Label: "d"}})
		}), layout: planLayout(Rest()), want: []ActionKind{ActionKeep, ActionGrow, ActionConflict}, loses: `partition 7 "data"`},
		{name: "foreign out of the way", disk: withData(func(d *Disk) {
			d.Partitions = append(d.Partitions, PartitionInfo{Number: 7, FirstLBA: 1900000, LastLBA: 2000000, Type: PartitionTypes["linux"], Name: "data"})
		}), layout: planLayout(Fixed(300 * MiB)), want: []ActionKind{ActionKeep, ActionKeep}},
		{name: "mbr disk", disk: Disk{Path: "/img", Size: int64(GiB), SectorSize: 512, Table: TableMBR, Partitions: []PartitionInfo{
			{Number: 1, FirstLBA: 2048, LastLBA: 4095, Type: "0x83", Size: MiB, Filesystem: &FSInfo{Type: "ext4", Label: "old"}}}},
			layout: planLayout(Rest()), want: []ActionKind{ActionConflict, ActionCreate, ActionCreate}, loses: "the MBR partition table with 1 partitions"},
		{name: "whole-disk filesystem", disk: Disk{Path: "/img", Size: int64(GiB), SectorSize: 512, Filesystem: &FSInfo{Type: "xfs", Label: "big"}},
			layout: planLayout(Rest()), want: []ActionKind{ActionConflict, ActionCreate, ActionCreate}, loses: `the xfs filesystem "big"`},
		{name: "unknown whole disk", disk: Disk{Path: "/img", Size: int64(GiB), SectorSize: 512},
			layout: planLayout(Rest()), want: []ActionKind{ActionConflict, ActionCreate, ActionCreate}, loses: "unrecognised data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := MakePlan(tc.disk, tc.layout, PlanOptions{})
			assert.Equal(t, tc.want, kinds(p), p.String())
			if tc.loses == "" {
				require.NoError(t, err)
				assert.Empty(t, p.Refused())
				return
			}
			require.ErrorIs(t, err, ErrRefused)
			var re *RefusedError
			require.ErrorAs(t, err, &re)
			assert.Contains(t, err.Error(), tc.loses)
			assert.Contains(t, p.String(), "LOSES")

			// Allowed, the same plan carries the destructive actions.
			p2, err := MakePlan(tc.disk, tc.layout, PlanOptions{AllowDestructive: true})
			require.NoError(t, err)
			assert.Empty(t, p2.Refused())
			assert.True(t, p2.AllowDestructive)
			for _, a := range p2.Actions {
				assert.NotEqual(t, ActionConflict, a.Kind)
			}
		})
	}
}

func TestPlanNoSpace(t *testing.T) {
	_, err := MakePlan(blankDisk(int64(256*MiB), 512), planLayout(Fixed(GiB)), PlanOptions{})
	require.ErrorIs(t, err, ErrNoSpace)
	assert.ErrorContains(t, err, "partitions[1] (root, 1GiB)")
}

func TestPlanJSON(t *testing.T) {
	p, err := MakePlan(blankDisk(int64(GiB), 512), planLayout(Rest()), PlanOptions{})
	require.NoError(t, err)
	b, err := json.Marshal(p)
	require.NoError(t, err)
	var back Plan
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&back))
	assert.Equal(t, p, back)
}

func TestResolveSizes(t *testing.T) {
	sectors := uint64(10*GiB) / 512
	l := Layout{Partitions: []Partition{
		{Name: "a", Type: "linux", Size: Fixed(1000)},       // rounded up to 1 MiB
		{Name: "b", Type: "linux", Size: Percent(10)},       // 10% of usable
		{Name: "c", Type: "linux", Size: Range(GiB, 2*GiB)}, // grows to 2 GiB
		{Name: "d", Type: "linux", Size: Rest()},            // the rest
		{Name: "e", Type: "linux", Size: Fixed(512 * MiB)},  // after d
	}}
	s, err := resolve(l, sectors, 512)
	require.NoError(t, err)
	size := func(i int) uint64 { return (s[i].Last - s[i].First + 1) * 512 }
	assert.Equal(t, uint64(2048), s[0].First)
	assert.Equal(t, uint64(MiB), size(0))
	assert.InDelta(t, float64(GiB), float64(size(1)), float64(MiB))
	assert.Equal(t, uint64(2*GiB), size(2))
	assert.Equal(t, uint64(512*MiB), size(4))
	for i := 1; i < len(s); i++ {
		assert.Equal(t, s[i-1].Last+1, s[i].First)
	}
	first, last := usableRange(sectors, 512)
	assert.GreaterOrEqual(t, s[0].First, first)
	assert.LessOrEqual(t, s[4].Last, last)
	assert.Greater(t, s[4].Last+2048, last, "rest leaves less than one grain")
}

func TestPlanFAT32Minimum(t *testing.T) {
	l := planLayout(Rest())
	_, err := MakePlan(blankDisk(int64(GiB), 4096), l, PlanOptions{})
	require.ErrorIs(t, err, ErrLayout)
	assert.ErrorContains(t, err, "partitions[0].size: FAT32 on 4096-byte sectors needs at least 260MiB")
	l.Partitions[0].Size = Fixed(300 * MiB)
	_, err = MakePlan(blankDisk(int64(GiB), 4096), l, PlanOptions{})
	require.NoError(t, err)
}

func TestPlanMBRUnsupported(t *testing.T) {
	l := planLayout(Rest())
	l.Table = TableMBR
	_, err := MakePlan(blankDisk(int64(GiB), 512), l, PlanOptions{})
	require.ErrorIs(t, err, ErrUnsupported)
}
