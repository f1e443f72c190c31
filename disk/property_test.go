package disk

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/nixboot/nixboot/internal/testenv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// randomLayout draws a valid layout; sizes may still not fit the disk.
func randomLayout(r *rand.Rand) Layout {
	types := []string{"linux", "root-x86-64", "root-arm64", "home", "swap", "srv", "var", "0FC63DAF-8483-4772-8E79-3D69D8477DE4"}
	n := 1 + r.IntN(5)
	l := Layout{Seed: fmt.Sprint(r.Uint64())}
	if r.IntN(3) == 0 {
		l.Seed = "" // random GUIDs
	}
	if r.IntN(2) == 0 {
		l.Alignment = []ByteSize{4 * KiB, 64 * KiB, 2 * MiB}[r.IntN(3)]
	}
	restAt := -1
	if r.IntN(2) == 0 {
		restAt = r.IntN(n)
	}
	for i := 0; i < n; i++ {
		p := Partition{Name: fmt.Sprintf("part-%d", i), Type: types[r.IntN(len(types))]}
		switch {
		case i == restAt:
			p.Size = Rest()
		case r.IntN(4) == 0:
			p.Size = Percent(uint8(1 + r.IntN(15)))
		case r.IntN(4) == 0:
			lo := ByteSize(1+r.IntN(16)) * MiB
			p.Size = Range(lo, lo+ByteSize(r.IntN(32))*MiB)
		default:
			p.Size = Fixed(ByteSize(1+r.IntN(48))*MiB + ByteSize(r.IntN(3))*KiB)
		}
		if r.IntN(3) == 0 {
			p.Attributes = Attributes(r.Uint64() & (1<<0 | 1<<2 | 1<<59 | 1<<60 | 1<<63 | 1<<50))
		}
		switch r.IntN(4) {
		case 0:
			p.Filesystem = &Filesystem{Type: FSExt4, Label: fmt.Sprintf("fs%d", i)}
		case 1:
			p.Filesystem = &Filesystem{Type: FSSwap}
		case 2:
			if i == 0 && restAt != 0 {
				p.Type, p.Size = "esp", Fixed(ByteSize(34+r.IntN(40))*MiB)
				p.Filesystem = &Filesystem{Type: FSVFAT, Label: "ESP"}
			}
		}
		l.Partitions = append(l.Partitions, p)
	}
	return l
}

// TestPropertyApplyInspect: for random valid layouts, plan -> apply ->
// inspect gives back the layout, sgdisk -v is clean, and a second plan is
// empty.
func TestPropertyApplyInspect(t *testing.T) {
	testenv.Short(t)
	seed := uint64(20261122)
	r := rand.New(rand.NewPCG(seed, seed))
	applied, applied4k := 0, 0
	for i := 0; (applied < 12 || applied4k < 3) && i < 60; i++ {
		l := randomLayout(r)
		require.NoError(t, l.Validate())
		size := ByteSize(128+r.IntN(256)) * MiB
		sector := 512
		if i%3 == 2 {
			sector = 4096
		}
		name := fmt.Sprintf("layout %d (%s, %d-byte sectors, %s grain)", i, size, sector, ByteSize(l.alignment()))
		ctx := context.Background()
		img := newImage(t, size)
		opt := InspectOptions{SectorSize: sector}
		d, err := Inspect(ctx, img, opt)
		require.NoError(t, err)
		p, err := MakePlan(d, l, PlanOptions{})
		if errors.Is(err, ErrNoSpace) || (errors.Is(err, ErrLayout) && strings.Contains(err.Error(), "FAT32 on")) {
			continue // does not fit this disk (or FAT32 too small for 4Kn)
		}
		applied++
		if sector == 4096 {
			applied4k++
		}
		t.Run(name, func(t *testing.T) {
			require.NoError(t, err)
			require.NoError(t, Apply(ctx, p, ApplyOptions{WorkDir: t.TempDir()}))
			if sector == 512 { // sgdisk reads image files as 512-byte disks
				requireSgdiskClean(t, img)
				requireTableIs(t, img, p)
			}
			got, err := Inspect(ctx, img, InspectOptions{})
			require.NoError(t, err)
			assert.Equal(t, sector, got.SectorSize)
			assert.Empty(t, got.Problems)
			require.Len(t, got.Partitions, len(l.Partitions))
			slots, err := resolve(l, uint64(size)/uint64(sector), sector)
			require.NoError(t, err)
			for j, lp := range l.Partitions {
				e := got.Partitions[j]
				typ, _ := TypeGUID(lp.Type)
				assert.Equal(t, j+1, e.Number)
				assert.Equal(t, typ, e.Type)
				assert.Equal(t, lp.Name, e.Name)
				assert.Equal(t, lp.Attributes, e.Attributes)
				assert.Equal(t, slots[j], slot{e.FirstLBA, e.LastLBA})
				assert.Zero(t, uint64(e.Start)%l.alignment(), "aligned start")
				assert.Zero(t, uint64(e.Start+e.Size)%l.alignment(), "aligned end")
				if lp.Size.Kind == SizeFixed {
					assert.GreaterOrEqual(t, uint64(e.Size), uint64(lp.Size.Bytes))
				}
				if lp.Filesystem != nil {
					require.NotNil(t, e.Filesystem, lp.Name)
					assert.Equal(t, lp.Filesystem.Type, e.Filesystem.Type)
					assert.Equal(t, lp.Filesystem.Label, e.Filesystem.Label)
				} else {
					assert.Nil(t, e.Filesystem)
				}
			}
			again, err := MakePlan(got, l, PlanOptions{})
			require.NoError(t, err)
			assert.True(t, again.Empty(), again.String())
		})
	}
	require.GreaterOrEqual(t, applied, 12, "too few random layouts fitted")
	require.GreaterOrEqual(t, applied4k, 3, "too few 4096-byte-sector layouts fitted")
}
