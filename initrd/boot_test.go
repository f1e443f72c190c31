package initrd_test

import (
	"bytes"
	"context"
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
// links, deduplicated files and data, and a gzip per-machine segment added
// by AppendFile. The init checks what the kernel unpacked and prints a
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
	)
	main, err := initrd.Plan(mainEntries, initrd.PlanOptions{ClampTime: time.Unix(1, 0), Existing: []string{"dev"}})
	require.NoError(t, err)
	main, stats, err := initrd.Dedup(ctx, main, initrd.DedupOptions{})
	require.NoError(t, err)
	require.GreaterOrEqual(t, stats.Files, 1)

	img := filepath.Join(dir, "initrd.img")
	_, err = initrd.WriteFile(ctx, img, []initrd.Segment{
		{Compression: initrd.None, Entries: early},
		{Compression: initrd.Zstd, Compress: initrd.CompressOptions{ChunkSize: 256 << 10}, Entries: main},
	}, initrd.WriteOptions{})
	require.NoError(t, err)
	machine, err := initrd.Plan([]initrd.Entry{reg("etc/hostname", "nbi-machine\n")}, initrd.PlanOptions{Existing: []string{"etc"}})
	require.NoError(t, err)
	_, err = initrd.AppendFile(ctx, img, initrd.Segment{Compression: initrd.Gzip, Entries: machine}, initrd.WriteOptions{})
	require.NoError(t, err)

	f, err := os.Open(img)
	require.NoError(t, err)
	rep, err := initrd.Inspect(ctx, f, initrd.InspectOptions{})
	f.Close()
	require.NoError(t, err)
	require.Len(t, rep.Segments, 3)
	require.Empty(t, rep.Dropped)
	require.Empty(t, rep.Clashes)

	var console lockedBuffer
	cmd := exec.Command(qemu, "-no-user-config", "-nodefaults", "-accel", "tcg", "-m", "512",
		"-display", "none", "-serial", "stdio", "-no-reboot",
		"-kernel", kernel, "-initrd", img, "-append", "console=ttyS0 panic=-1 quiet")
	cmd.Stdout, cmd.Stderr = &console, &console
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	waitCtx, cancel := context.WithTimeout(ctx, 180*time.Second)
	defer cancel()
	for !strings.Contains(console.String(), "NBI-BOOT-") {
		select {
		case <-waitCtx.Done():
			t.Fatalf("no marker from the guest within 180 s; console:\n%s", console.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
	time.Sleep(200 * time.Millisecond)
	got := console.String()
	require.Contains(t, got, "NBI-BOOT-OK", "console:\n%s", got)
}
