package disk

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/nixboot/nixboot/internal/testenv"
)

// benchLayout is a typical first-boot layout: a 512 MiB ESP and an ext4
// root over the rest of a 4 GiB disk.
var benchLayout = Layout{Seed: "bench", Partitions: []Partition{
	{Name: "ESP", Type: "esp", Size: Fixed(512 * MiB), Filesystem: &Filesystem{Type: FSVFAT, Label: "ESP"}},
	{Name: "root", Type: "root-x86-64", Size: Rest(), Filesystem: &Filesystem{Type: FSExt4, Label: "nixos"}},
}}

func benchImage(b *testing.B) string {
	p := filepath.Join(b.TempDir(), "disk.img")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.Truncate(p, int64(4*GiB)); err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkFirstBoot partitions and formats a blank image: this package
// (Inspect, MakePlan, Apply) against the shell peer (sgdisk, then
// mkfs.fat and mkfs.ext4 writing at the partitions' offsets).
func BenchmarkFirstBoot(b *testing.B) {
	ctx := context.Background()
	b.Run("disk", func(b *testing.B) {
		for b.Loop() {
			img := benchImage(b)
			d, err := Inspect(ctx, img, InspectOptions{})
			if err != nil {
				b.Fatal(err)
			}
			p, err := MakePlan(d, benchLayout, PlanOptions{})
			if err != nil {
				b.Fatal(err)
			}
			if err := Apply(ctx, p, ApplyOptions{WorkDir: b.TempDir()}); err != nil {
				b.Fatal(err)
			}
			os.Remove(img)
		}
	})
	b.Run("sgdisk+mkfs", func(b *testing.B) {
		sgdisk, mkfat, mkext4 := testenv.Command(b, "sgdisk"), testenv.Command(b, "mkfs.fat"), testenv.Command(b, "mkfs.ext4")
		run := func(name string, args ...string) {
			if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
				b.Fatalf("%s %v: %v: %s", name, args, err, out)
			}
		}
		for b.Loop() {
			img := benchImage(b)
			run(sgdisk, "-n1:2048:+512M", "-t1:ef00", "-c1:ESP", "-n2:0:0", "-t2:8304", "-c2:root", img)
			run(mkfat, "-F", "32", "-n", "ESP", "--offset", "2048", img, strconv.Itoa(512*1024))
			rootStart := int64(2048+1048576) * 512
			rootBlocks := (int64(4*GiB) - rootStart - 34*512) / 4096
			run(mkext4, "-q", "-F", "-L", "nixos", "-b", "4096", "-E", "offset="+strconv.FormatInt(rootStart, 10), img, strconv.FormatInt(rootBlocks, 10))
			os.Remove(img)
		}
	})
}

// BenchmarkEveryBoot is the cost on every later boot: inspect a matching
// disk and find the plan empty, against the shell peer reading the table
// with sfdisk --json and probing each partition with blkid -p.
func BenchmarkEveryBoot(b *testing.B) {
	ctx := context.Background()
	img := benchImage(b)
	d, err := Inspect(ctx, img, InspectOptions{})
	if err != nil {
		b.Fatal(err)
	}
	p, err := MakePlan(d, benchLayout, PlanOptions{})
	if err != nil {
		b.Fatal(err)
	}
	if err := Apply(ctx, p, ApplyOptions{WorkDir: b.TempDir()}); err != nil {
		b.Fatal(err)
	}
	b.Run("disk", func(b *testing.B) {
		for b.Loop() {
			d, err := Inspect(ctx, img, InspectOptions{})
			if err != nil {
				b.Fatal(err)
			}
			p, err := MakePlan(d, benchLayout, PlanOptions{})
			if err != nil || !p.Empty() {
				b.Fatal(err, p.String())
			}
		}
	})
	b.Run("sfdisk+blkid", func(b *testing.B) {
		sfdisk, blkid := testenv.Command(b, "sfdisk"), testenv.Command(b, "blkid")
		for b.Loop() {
			if out, err := exec.Command(sfdisk, "--json", img).CombinedOutput(); err != nil {
				b.Fatal(err, string(out))
			}
			for _, off := range []string{strconv.Itoa(2048 * 512), strconv.Itoa((2048 + 1048576) * 512)} {
				if out, err := exec.Command(blkid, "-p", "-O", off, img).CombinedOutput(); err != nil {
					b.Fatal(err, string(out))
				}
			}
		}
	})
}
