package disk_test

import (
	"fmt"
	"strings"

	"github.com/nixboot/nixboot/disk"
)

// Plan a blank 8 GiB disk. Disk values normally come from Inspect; here
// one is written out so that the example is deterministic.
func ExampleMakePlan() {
	layout, err := disk.ParseLayout(strings.NewReader(`{
	  "seed": "example",
	  "partitions": [
	    {"name": "ESP", "type": "esp", "size": "512MiB", "filesystem": {"type": "vfat", "label": "ESP"}},
	    {"name": "swap", "type": "swap", "size": "1GiB"},
	    {"name": "root", "type": "root-x86-64", "size": "rest", "filesystem": {"type": "ext4", "label": "nixos"}}
	  ]}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	blank := disk.Disk{Path: "/dev/vda", Size: int64(8 * disk.GiB), SectorSize: 512, Blank: true}
	plan, err := disk.MakePlan(blank, layout, disk.PlanOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(plan)
	// Output:
	// disk /dev/vda: 8GiB, 512-byte sectors
	//   create-table : the disk is blank
	//   create        1 "ESP" LBA 2048-1050623 (512MiB) vfat label "ESP": not on the disk
	//   create        2 "swap" LBA 1050624-3147775 (1GiB): not on the disk
	//   create        3 "root" LBA 3147776-16775167 (6654MiB) ext4 label "nixos": not on the disk
}

// A layout change that would shrink a partition is refused, and the error
// says what would be lost.
func ExampleRefusedError() {
	layout := disk.Layout{Partitions: []disk.Partition{
		{Name: "root", Type: "linux", Size: disk.Fixed(1 * disk.GiB)},
	}}
	d := disk.Disk{Path: "/dev/vda", Size: int64(8 * disk.GiB), SectorSize: 512, Table: disk.TableGPT,
		GUID: "0B8D1A2C-3E4F-4A5B-8C6D-7E8F9A0B1C2D", FirstUsableLBA: 34, LastUsableLBA: 16777182,
		Partitions: []disk.PartitionInfo{{Number: 1, FirstLBA: 2048, LastLBA: 4196351, Start: disk.MiB, Size: 2 * disk.GiB,
			Type: disk.PartitionTypes["linux"], Name: "root", Filesystem: &disk.FSInfo{Type: "ext4", Label: "data"}}}}
	_, err := disk.MakePlan(d, layout, disk.PlanOptions{})
	fmt.Println(err)
	// Output:
	// disk: /dev/vda: destructive change refused (allow destruction to proceed); it would lose: partition 1 "root" (linux, 2GiB, ext4 filesystem "data")
}
