package disk

import (
	"context"
	"io/fs"
	"os"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func fakeSys() (fstest.MapFS, fstest.MapFS) {
	sys := fstest.MapFS{}
	add := func(name, size, removable string, hw bool) {
		sys["block/"+name+"/size"] = &fstest.MapFile{Data: []byte(size + "\n")}
		sys["block/"+name+"/removable"] = &fstest.MapFile{Data: []byte(removable + "\n")}
		sys["block/"+name+"/ro"] = &fstest.MapFile{Data: []byte("0\n")}
		if hw {
			sys["block/"+name+"/device/model"] = &fstest.MapFile{Data: []byte("QEMU HARDDISK\n")}
		}
	}
	add("loop0", "41943040", "0", false)  // 20 GiB, virtual
	add("sda", "15728640", "1", true)     // 7.5 GiB USB stick
	add("sdb", "8388608", "0", true)      // 4 GiB
	add("nvme0n1", "41943040", "0", true) // 20 GiB
	add("vda", "268435456", "0", true)    // 128 GiB
	byID := fstest.MapFS{
		"nvme-Samsung_SSD_S1":       &fstest.MapFile{Mode: fs.ModeSymlink, Data: []byte("../../nvme0n1")},
		"nvme-Samsung_SSD_S1-part1": &fstest.MapFile{Mode: fs.ModeSymlink, Data: []byte("../../nvme0n1p1")},
		"usb-Stick_0001":            &fstest.MapFile{Mode: fs.ModeSymlink, Data: []byte("../../sda")},
	}
	return sys, byID
}

func TestSelectDisk(t *testing.T) {
	sys, byID := fakeSys()
	disks, err := ListDisks(sys, byID)
	require.NoError(t, err)
	require.Len(t, disks, 5)
	assert.Equal(t, []string{"nvme-Samsung_SSD_S1"}, disks[1].IDs)
	for _, tc := range []struct {
		name string
		t    Target
		want string
		err  string
	}{
		{name: "path", t: Target{Path: "/tmp/x.img"}, want: "/tmp/x.img"},
		{name: "id", t: Target{ID: "nvme-Samsung_SSD_S1"}, want: "/dev/nvme0n1"},
		{name: "unknown id", t: Target{ID: "nvme-Samsung_SSD_S1-part1"}, err: `no disk has the id "nvme-Samsung_SSD_S1-part1"`},
		{name: "first non-removable >= 8 GiB", t: Target{Rule: &Rule{MinSize: 8 * GiB}}, want: "/dev/nvme0n1"},
		{name: "bigger", t: Target{Rule: &Rule{MinSize: 100 * GiB}}, want: "/dev/vda"},
		{name: "removable allowed", t: Target{Rule: &Rule{MinSize: 5 * GiB, AllowRemovable: true}}, want: "/dev/nvme0n1"},
		{name: "removable small", t: Target{Rule: &Rule{MaxSize: 8 * GiB, AllowRemovable: true}}, want: "/dev/sda"},
		{name: "none", t: Target{Rule: &Rule{MinSize: TiB}}, err: "loop0 (20GiB): virtual; nvme0n1 (20GiB): smaller than 1TiB"},
		{name: "no target", t: Target{}, err: "names no target"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SelectDisk(disks, tc.t)
			if tc.err != "" {
				require.ErrorIs(t, err, ErrNoDisk)
				assert.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

// TestListDisksHere reads this machine's real sysfs.
func TestListDisksHere(t *testing.T) {
	if _, err := os.Stat("/sys/block"); err != nil {
		t.Skip("no /sys/block")
	}
	disks, err := ListDisks(os.DirFS("/sys"), nil)
	require.NoError(t, err)
	for _, d := range disks {
		assert.NotEmpty(t, d.Name)
		if len(d.Name) >= 4 && d.Name[:4] == "loop" {
			assert.True(t, d.Virtual, d.Name)
		}
	}
	_, err = ResolveTarget(context.Background(), Target{Rule: &Rule{MinSize: 1 << 62}})
	require.ErrorIs(t, err, ErrNoDisk)
}
