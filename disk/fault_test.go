package disk

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/nixboot/nixboot/internal/testenv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sameEntries reports whether an inspected disk holds exactly the given
// table entries (position, type, GUID, name, attributes).
func sameEntries(d Disk, want []PlannedPartition) bool {
	if len(d.Partitions) != len(want) {
		return false
	}
	for i, e := range d.Partitions {
		w := want[i]
		if e.Number != w.Number || e.FirstLBA != w.FirstLBA || e.LastLBA != w.LastLBA || e.Type != w.Type ||
			e.GUID != w.GUID || e.Name != w.Name || e.Attributes != w.Attributes {
			return false
		}
	}
	return true
}

func entriesOf(d Disk) []PlannedPartition {
	var out []PlannedPartition
	for _, e := range d.Partitions {
		out = append(out, PlannedPartition{Number: e.Number, FirstLBA: e.FirstLBA, LastLBA: e.LastLBA, Type: e.Type,
			GUID: e.GUID, Name: e.Name, Attributes: e.Attributes})
	}
	return out
}

// TestApplyInterrupted stops Apply after each of its write steps, as a
// crash would, and checks every resulting image: the table is the old or
// the new one, the kept partitions' bytes are unchanged, sgdisk -v
// accepts it (or, between the backup and primary writes, reports only the
// stale backup that the next run repairs), and inspect-plan-apply from
// there reaches the target layout.
func TestApplyInterrupted(t *testing.T) {
	ctx := context.Background()
	base := newImage(t, 640*MiB)
	planApply(t, base, dataLayout(Fixed(200*MiB)), InspectOptions{})
	kept := fillData(t, base)
	old, err := Inspect(ctx, base, InspectOptions{})
	require.NoError(t, err)
	target := dataLayout(Fixed(300*MiB),
		Partition{Name: "swap", Type: "swap", Size: Fixed(32 * MiB), Filesystem: &Filesystem{Type: FSSwap}},
		Partition{Name: "home", Type: "home", Size: Rest(), Filesystem: &Filesystem{Type: FSExt4, Label: "home"}})
	cp := testenv.Command(t, "cp")

	sawMidState := false
	for n := 0; n < 20; n++ {
		img := filepath.Join(t.TempDir(), fmt.Sprintf("step%d.img", n))
		out, err := exec.Command(cp, "--sparse=always", base, img).CombinedOutput()
		require.NoError(t, err, "%s", out)
		d, err := Inspect(ctx, img, InspectOptions{})
		require.NoError(t, err)
		p, err := MakePlan(d, target, PlanOptions{})
		require.NoError(t, err)
		applyErr := apply(ctx, p, ApplyOptions{WorkDir: t.TempDir()}, applyHooks{interrupt: true, stopAfter: n})
		done := applyErr == nil
		if !done {
			require.ErrorIs(t, applyErr, errInterrupted)
		}
		t.Run(fmt.Sprintf("after %d steps", n), func(t *testing.T) {
			for num, h := range kept {
				pi := old.Partitions[num-1]
				assert.Equal(t, h, hashRange(t, img, int64(pi.Start), int64(pi.Size)), "partition %d", num)
			}
			got, err := Inspect(ctx, img, InspectOptions{})
			require.NoError(t, err)
			isOld, isNew := sameEntries(got, entriesOf(old)), sameEntries(got, p.Partitions)
			require.True(t, isOld || isNew, "table is neither old nor new: %+v", got.Partitions)
			if done {
				require.True(t, isNew)
			}
			out, _ := tool(t, "sgdisk", "-v", img)
			if len(got.Problems) == 0 {
				assert.Contains(t, out, "No problems found", out)
			} else {
				// Crash between the backup and the primary write: the
				// primary (what every reader uses) is the old table, the
				// backup already the new one. sgdisk counts the
				// difference as its one problem.
				sawMidState = true
				assert.True(t, isOld)
				assert.Equal(t, []string{"primary and backup GPT differ"}, got.Problems)
				assert.Contains(t, out, "Identified 1 problems", out)
			}
			// Recovery: plan again from what is there and apply.
			p2, err := MakePlan(got, target, PlanOptions{})
			require.NoError(t, err)
			require.NoError(t, Apply(ctx, p2, ApplyOptions{WorkDir: t.TempDir()}))
			requireSgdiskClean(t, img)
			fin, err := Inspect(ctx, img, InspectOptions{})
			require.NoError(t, err)
			assert.True(t, sameEntries(fin, p.Partitions), "final table differs from the plan")
			for i, lp := range target.Partitions {
				if lp.Filesystem != nil {
					require.NotNil(t, fin.Partitions[i].Filesystem, lp.Name)
					assert.Equal(t, lp.Filesystem.Type, fin.Partitions[i].Filesystem.Type)
				}
			}
			again, err := MakePlan(fin, target, PlanOptions{})
			require.NoError(t, err)
			assert.True(t, again.Empty(), again.String())
		})
		if done {
			assert.GreaterOrEqual(t, n, 4, "expected four write steps")
			assert.True(t, sawMidState, "never stopped between backup and primary")
			return
		}
	}
	t.Fatal("apply never finished")
}
