//go:build linux

package initrd_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/initrd"
	"github.com/nixboot/nixboot/internal/nixtest"
	"github.com/nixboot/nixboot/internal/testenv"
	"github.com/nixboot/nixboot/internal/vmtest"
)

// lockedBuffer collects QEMU's serial output while the test polls it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestBootQEMU boots Debian's kernel with our initrd: an uncompressed first
// segment holding a static Go /init and device nodes, a zstd segment (one
// frame compressed in several parallel jobs) holding a real Nix closure,
// links, deduplicated files and data, an xz segment of many blocks
// compressed in parallel, and a gzip per-machine segment added by
// AppendFile. The init checks what the kernel unpacked and prints a
// marker.
func TestBootQEMU(t *testing.T) {
	testenv.Short(t)
	testenv.Root(t)
	qemu := testenv.Command(t, "qemu-system-x86_64")
	kernel := testenv.Kernel(t)
	goBin := testenv.Command(t, "go")
	closure := nixtest.Build(t, "NBI-NIX-MARKER")
	dir := t.TempDir()

	initBin := filepath.Join(dir, "init")
	build := exec.Command(goBin, "build", "-trimpath", "-o", initBin, "./testdata/bootinit")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "building init: %s", out)
	initFile, err := initrd.File(initBin, "init")
	require.NoError(t, err)

	ctx := t.Context()
	early, err := initrd.Plan([]initrd.Entry{
		initFile,
		{Header: initrd.Header{Name: "dev/console", Type: initrd.TypeChar, Mode: 0o600, Devmajor: 5, Devminor: 1}},
		{Header: initrd.Header{Name: "dev/nbi-null", Type: initrd.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}},
		{Header: initrd.Header{Name: "dev/nbi-blk", Type: initrd.TypeBlock, Mode: 0o600, Devmajor: 259, Devminor: 0x12345}},
	}, initrd.PlanOptions{RootOwner: true})
	require.NoError(t, err)

	big := make([]byte, 1<<20+3)
	for i := range big {
		big[i] = byte(i % 251)
	}
	xzData := mixedData(600<<10, 11)
	mainEntries, err := initrd.Closure(closure.StoreDir(), closure.Paths, closure.Registration)
	require.NoError(t, err)
	mainEntries = append(mainEntries,
		reg("etc/data", "payload\n"),
		initrd.Entry{Header: initrd.Header{Name: "etc/data-hardlink", Type: initrd.TypeLink, Linkname: "etc/data"}},
		initrd.Entry{Header: initrd.Header{Name: "bin/nbi-link", Type: initrd.TypeSymlink, Mode: 0o777, Linkname: "../etc/data"}},
		reg("etc/toplevel", closure.Toplevel+"\n"),
		initrd.Entry{Header: initrd.Header{Name: "etc/big", Type: initrd.TypeReg, Mode: 0o644, Size: int64(len(big))}, Data: big},
		reg("etc/dup-a", strings.Repeat("dedup\n", 1000)),
		reg("etc/dup-b", strings.Repeat("dedup\n", 1000)),
		// init compares the xz segment's file with this SHA-256, so every
		// block of that segment must have been decoded.
		reg("etc/xz-data.sha256", fmt.Sprintf("%x", sha256.Sum256(xzData))),
	)
	main, err := initrd.Plan(mainEntries, initrd.PlanOptions{ClampTime: time.Unix(1, 0), Existing: []string{"dev"}})
	require.NoError(t, err)
	main, stats, err := initrd.Dedup(ctx, main, initrd.DedupOptions{})
	require.NoError(t, err)
	require.GreaterOrEqual(t, stats.Files, 1)

	// An xz segment of many blocks compressed in parallel (64 KiB each).
	xzSeg, err := initrd.Plan([]initrd.Entry{
		{Header: initrd.Header{Name: "etc/xz-data", Type: initrd.TypeReg, Mode: 0o644, Size: int64(len(xzData))}, Data: xzData},
	}, initrd.PlanOptions{Existing: []string{"etc"}})
	require.NoError(t, err)

	img := filepath.Join(dir, "initrd.img")
	const xzBlock = 64 << 10
	infos, err := initrd.WriteFile(ctx, img, []initrd.Segment{
		{Compression: initrd.None, Entries: early},
		{Compression: initrd.Zstd, Compress: initrd.CompressOptions{ChunkSize: 256 << 10}, Entries: main},
		{Compression: initrd.XZ, Compress: initrd.CompressOptions{ChunkSize: xzBlock, Workers: 3}, Entries: xzSeg},
	}, initrd.WriteOptions{})
	require.NoError(t, err)
	xzInfo := infos[2]
	whole, err := os.ReadFile(img)
	require.NoError(t, err)
	xzFile := filepath.Join(dir, "segment.xz")
	require.NoError(t, os.WriteFile(xzFile, whole[xzInfo.Offset:xzInfo.Offset+xzInfo.Size], 0o644))
	require.GreaterOrEqual(t, xzInfo.Unpacked, int64(9*xzBlock))
	assertXZBlocks(t, testenv.Command(t, "xz"), xzFile, int((xzInfo.Unpacked+xzBlock-1)/xzBlock))
	machine, err := initrd.Plan([]initrd.Entry{reg("etc/hostname", "nbi-machine\n")}, initrd.PlanOptions{Existing: []string{"etc"}})
	require.NoError(t, err)
	_, err = initrd.AppendFile(ctx, img, initrd.Segment{Compression: initrd.Gzip, Entries: machine}, initrd.WriteOptions{})
	require.NoError(t, err)

	f, err := os.Open(img)
	require.NoError(t, err)
	rep, err := initrd.Inspect(ctx, f, initrd.InspectOptions{})
	f.Close()
	require.NoError(t, err)
	require.Len(t, rep.Segments, 4)
	require.Empty(t, rep.Dropped)
	require.Empty(t, rep.Clashes)

	got := bootQEMU(t, qemu, kernel, img, "console=ttyS0 panic=-1 quiet", "NBI-BOOT-")
	require.Contains(t, got, "NBI-BOOT-OK", "console:\n%s", got)

	// The closure alone, from its closure-info, booted straight into the
	// toplevel's init with rdinit= (as NixOS netboot does with its stage 1).
	t.Run("rdinit", func(t *testing.T) {
		info := filepath.Join(dir, "closure-info")
		require.NoError(t, os.MkdirAll(info, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(info, "store-paths"), []byte(strings.Join(closure.Paths, "\n")+"\n"), 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(info, "registration"), closure.Registration, 0o644))
		entries, err := initrd.ClosureInfo(info, closure.StoreDir())
		require.NoError(t, err)
		entries = append(entries, initrd.Entry{Header: initrd.Header{Name: "dev/console", Type: initrd.TypeChar, Mode: 0o600, Devmajor: 5, Devminor: 1}})
		planned, err := initrd.Plan(entries, initrd.PlanOptions{RootOwner: true, ClampTime: time.Unix(1, 0)})
		require.NoError(t, err)
		planned, _, err = initrd.Dedup(ctx, planned, initrd.DedupOptions{})
		require.NoError(t, err)
		img := filepath.Join(dir, "closure.img")
		// Several xz blocks (busybox alone is over a MiB).
		_, err = initrd.WriteFile(ctx, img, []initrd.Segment{{Compression: initrd.XZ, Compress: initrd.CompressOptions{ChunkSize: 256 << 10}, Entries: planned}}, initrd.WriteOptions{})
		require.NoError(t, err)
		got := bootQEMU(t, qemu, kernel, img, "console=ttyS0 panic=-1 quiet rdinit="+closure.Toplevel+"/init", "NBI-NIX-MARKER")
		require.Contains(t, got, "NBI-NIX-MARKER from "+closure.Toplevel+"/init", "console:\n%s", got)
	})
}

// bootQEMU boots kernel with img as its initrd and returns the serial
// console once it shows marker (failing the test after 180 s). KVM is used
// when it is a real hardware hypervisor (vmtest.Accel), TCG otherwise.
func bootQEMU(t *testing.T, qemu, kernel, img, cmdline, marker string) string {
	t.Helper()
	accel := []string{"-accel", vmtest.Accel()}
	var console lockedBuffer
	args := append(append([]string{"-no-user-config", "-nodefaults"}, accel...), "-m", "512",
		"-display", "none", "-serial", "stdio", "-no-reboot",
		"-kernel", kernel, "-initrd", img, "-append", cmdline)
	cmd := exec.Command(qemu, args...)
	cmd.Stdout, cmd.Stderr = &console, &console
	require.NoError(t, cmd.Start())
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	waitCtx, cancel := context.WithTimeout(t.Context(), 180*time.Second)
	defer cancel()
	for !strings.Contains(console.String(), marker) {
		select {
		case <-waitCtx.Done():
			t.Fatalf("no %q from the guest within 180 s; console:\n%s", marker, console.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
	time.Sleep(200 * time.Millisecond)
	return console.String()
}
