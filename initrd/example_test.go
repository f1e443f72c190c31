package initrd_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nixboot/nixboot/initrd"
)

// Build an initrd from in-memory entries: an uncompressed first segment
// and a zstd-compressed main one, then read it back.
func Example() {
	ctx := context.Background()
	epoch := time.Unix(1700000000, 0)
	main, err := initrd.Plan([]initrd.Entry{
		{Header: initrd.Header{Name: "/init", Type: initrd.TypeReg, Mode: 0o755, Size: 10}, Data: []byte("#!/bin/sh\n")},
		{Header: initrd.Header{Name: "dev/console", Type: initrd.TypeChar, Mode: 0o600, Devmajor: 5, Devminor: 1}},
		{Header: initrd.Header{Name: "bin/sh", Type: initrd.TypeSymlink, Mode: 0o777, Linkname: "busybox"}},
		{Header: initrd.Header{Name: "etc/motd", Type: initrd.TypeReg, Mode: 0o644, Size: 3}, Data: []byte("hi\n")},
	}, initrd.PlanOptions{ClampTime: epoch, RootOwner: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	early, _ := initrd.Plan([]initrd.Entry{
		{Header: initrd.Header{Name: "kernel/x86/microcode/GenuineIntel.bin", Type: initrd.TypeReg, Mode: 0o644, Size: 4}, Data: []byte("ucod")},
	}, initrd.PlanOptions{ClampTime: epoch})

	var out bytes.Buffer
	_, err = initrd.Write(ctx, &out, []initrd.Segment{
		{Compression: initrd.None, Entries: early},
		{Compression: initrd.Zstd, Entries: main},
	}, initrd.WriteOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}

	rep, err := initrd.Inspect(ctx, &out, initrd.InspectOptions{Entries: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range rep.Segments {
		fmt.Printf("segment %s: %d entries\n", s.Compression, s.Entries)
	}
	for _, e := range rep.Entries {
		fmt.Println(strings.TrimSpace(fmt.Sprintf("%d %-5s %04o %s %s", e.Inode, e.Type, e.Mode, e.Name, e.Linkname)))
	}
	fmt.Println("dropped:", len(rep.Dropped), "clashes:", len(rep.Clashes))
	// Output:
	// segment none: 4 entries
	// segment zstd: 7 entries
	// 1 dir   0755 kernel
	// 2 dir   0755 kernel/x86
	// 3 dir   0755 kernel/x86/microcode
	// 4 file  0644 kernel/x86/microcode/GenuineIntel.bin
	// 5 dir   0755 bin
	// 6 slink 0777 bin/sh busybox
	// 7 dir   0755 dev
	// 8 char  0600 dev/console
	// 9 dir   0755 etc
	// 10 file  0644 etc/motd
	// 11 file  0755 init
	// dropped: 0 clashes: 0
}

// Build an initrd from a host tree without holding its entries in memory:
// PlanStream checks the tree and the in-memory entries together, and
// WriteFile walks the tree again while it writes.
func ExamplePlanStream() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	tree := filepath.Join(dir, "root")
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc", "hostname"), []byte("nb1\n"), 0o644)
	os.Symlink("hostname", filepath.Join(tree, "etc", "hostname-link"))

	st, err := initrd.PlanStream([]initrd.Input{
		initrd.TreeInput(tree, ""),
		initrd.EntriesInput(initrd.Entry{
			Header: initrd.Header{Name: "/init", Type: initrd.TypeReg, Mode: 0o755, Size: 10},
			Data:   []byte("#!/bin/sh\n"),
		}),
	}, initrd.PlanOptions{ClampTime: time.Unix(1700000000, 0), RootOwner: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	out := filepath.Join(dir, "initrd.img")
	if _, err := initrd.WriteFile(context.Background(), out, []initrd.Segment{{Compression: initrd.Zstd, Stream: st}}, initrd.WriteOptions{}); err != nil {
		fmt.Println(err)
		return
	}
	f, _ := os.Open(out)
	defer f.Close()
	rep, err := initrd.Inspect(context.Background(), f, initrd.InspectOptions{Entries: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, e := range rep.Entries {
		fmt.Println(strings.TrimSpace(fmt.Sprintf("%-5s %04o %s %s", e.Type, e.Mode, e.Name, e.Linkname)))
	}
	// Output:
	// dir   0755 etc
	// file  0644 etc/hostname
	// slink 0777 etc/hostname-link hostname
	// file  0755 init
}
