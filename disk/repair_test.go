package disk

import (
	"context"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestApplyRepairs damages a good image in ways that lose no partition
// data and checks that the next plan repairs the table (and, on a grown
// disk, grows the last partition) while keeping the data.
func TestApplyRepairs(t *testing.T) {
	ctx := context.Background()
	l := Layout{Seed: "repair", Partitions: []Partition{
		{Name: "boot", Type: "xbootldr", Size: Fixed(16 * MiB), Filesystem: &Filesystem{Type: FSExt4, Label: "boot"}},
		{Name: "data", Type: "linux", Size: Fixed(8 * MiB)},
		{Name: "root", Type: "linux", Size: Rest(), Filesystem: &Filesystem{Type: FSExt4, Label: "root"}},
	}}
	for _, tc := range []struct {
		name    string
		damage  func(t *testing.T, img string)
		problem string
		want    []ActionKind
	}{
		{name: "protective MBR erased", problem: "no protective MBR", want: []ActionKind{ActionRepairTable, ActionKeep, ActionKeep, ActionKeep},
			damage: func(t *testing.T, img string) { writeAt(t, img, 0, make([]byte, 512)) }},
		{name: "backup header damaged", problem: "backup GPT unusable: GPT header at LBA 524287: bad header CRC", want: []ActionKind{ActionRepairTable, ActionKeep, ActionKeep, ActionKeep},
			damage: func(t *testing.T, img string) { writeAt(t, img, int64(256*MiB)-512+40, []byte{0xff}) }},
		{name: "primary array damaged", problem: "primary GPT unusable: bad partition entry array CRC", want: []ActionKind{ActionRepairTable, ActionKeep, ActionKeep, ActionKeep},
			damage: func(t *testing.T, img string) { writeAt(t, img, 1024+200, []byte{0xff}) }},
		{name: "disk grew", problem: "backup GPT header at LBA 524287, not at the last LBA 729087", want: []ActionKind{ActionRepairTable, ActionKeep, ActionKeep, ActionGrow},
			damage: func(t *testing.T, img string) { require.NoError(t, os.Truncate(img, int64(356*MiB))) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := newImage(t, 256*MiB)
			planApply(t, img, l, InspectOptions{})
			kept := fillData(t, img)
			tc.damage(t, img)
			d, err := Inspect(ctx, img, InspectOptions{})
			require.NoError(t, err)
			assert.Contains(t, d.Problems, tc.problem)
			p, err := MakePlan(d, l, PlanOptions{})
			require.NoError(t, err)
			assert.Equal(t, tc.want, kinds(p), p.String())
			require.NoError(t, Apply(ctx, p, ApplyOptions{WorkDir: t.TempDir()}))
			requireSgdiskClean(t, img)
			for n, h := range kept {
				pi := d.Partitions[n-1]
				assert.Equal(t, h, hashRange(t, img, int64(pi.Start), int64(pi.Size)), "partition %d", n)
			}
			got, err := Inspect(ctx, img, InspectOptions{})
			require.NoError(t, err)
			assert.Empty(t, got.Problems)
			again, err := MakePlan(got, l, PlanOptions{})
			require.NoError(t, err)
			assert.True(t, again.Empty(), again.String())
		})
	}
}

func writeAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(b, off)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}
