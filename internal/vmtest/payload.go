package vmtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/nixboot/nixboot/initrd"
	"github.com/nixboot/nixboot/internal/testenv"
)

// ModulesEnv names a directory holding the NIC driver modules (*.ko) that
// match the test kernel; the default is DefaultModulesDir.
const ModulesEnv = "NIXBOOT_MODULES"

// DefaultModulesDir is where scripts/install-deps.sh unpacks the modules of
// the kernel it puts at /var/cache/nixboot/vmlinuz.
const DefaultModulesDir = "/var/cache/nixboot/modules"

// NICModules are the modules, in load order, that Debian's kernel needs to
// see a virtio-net or e1000 NIC (both are built as modules there).
var NICModules = []string{
	"virtio_ring.ko", "virtio.ko", "virtio_pci_modern_dev.ko", "virtio_pci_legacy_dev.ko",
	"virtio_pci.ko", "failover.ko", "net_failover.ko", "virtio_net.ko", "e1000.ko",
}

// File is one file to put in an initrd.
type File struct {
	Path string      // path inside the initrd, without leading slash, e.g. "init"
	Src  string      // file on the host to copy, or a directory copied as a tree
	Mode os.FileMode // permission bits; 0 means 0o755 (executables and modules alike)
}

// BuildInit compiles testinit as a static binary into a temporary directory
// and returns its path.
func BuildInit(t testing.TB) string {
	t.Helper()
	goBin := testenv.Command(t, "go")
	out := filepath.Join(t.TempDir(), "init")
	cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", out,
		"github.com/nixboot/nixboot/internal/vmtest/testinit")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("vmtest: building testinit: %v\n%s", err, b)
	}
	return out
}

// Modules returns the NIC driver modules for the test kernel as initrd
// files under lib/modules/nbv, named so that testinit loads them in order.
func Modules(t testing.TB) []File {
	t.Helper()
	dir := os.Getenv(ModulesEnv)
	if dir == "" {
		dir = DefaultModulesDir
	}
	var files []File
	for i, m := range NICModules {
		src := filepath.Join(dir, m)
		if _, err := os.Stat(src); err != nil {
			testenv.Unavailable(t, fmt.Sprintf("kernel module %s missing (scripts/install-deps.sh unpacks NIC modules to %s, or set %s)", src, DefaultModulesDir, ModulesEnv))
			return nil
		}
		files = append(files, File{Path: fmt.Sprintf("lib/modules/nbv/%02d-%s", i, m), Src: src, Mode: 0o644})
	}
	return files
}

// InitFiles returns what the standard test initrd holds: testinit as /init
// and the NIC modules.
func InitFiles(t testing.TB) []File {
	t.Helper()
	return append([]File{{Path: "init", Src: BuildInit(t), Mode: 0o755}}, Modules(t)...)
}

// Initrd writes an initramfs holding files with nixboot's initrd package
// (one zstd segment, root-owned) and returns its path.
func Initrd(t testing.TB, files []File) string {
	t.Helper()
	var entries []initrd.Entry
	for _, f := range files {
		st, err := os.Stat(f.Src)
		if err != nil {
			t.Fatalf("vmtest: initrd source: %v", err)
		}
		if st.IsDir() {
			// A tree (a Nix store path): its symlinks are kept as symlinks.
			es, err := initrd.Tree(f.Src, f.Path)
			if err != nil {
				t.Fatalf("vmtest: initrd: %v", err)
			}
			entries = append(entries, es...)
			continue
		}
		e, err := initrd.File(f.Src, f.Path)
		if err != nil {
			t.Fatalf("vmtest: initrd: %v", err)
		}
		e.Mode = uint32(f.Mode.Perm())
		if e.Mode == 0 {
			e.Mode = 0o755
		}
		entries = append(entries, e)
	}
	planned, err := initrd.Plan(entries, initrd.PlanOptions{RootOwner: true})
	if err != nil {
		t.Fatalf("vmtest: initrd plan: %v", err)
	}
	// One compressed chunk for the whole archive: Linux 6.1 fails with
	// "Initramfs unpacking failed: junk at the end of compressed archive"
	// when a gzip or zstd segment is cut into independently compressed
	// chunks (seen with the initrd package's 4 MiB default), because it
	// decompresses one frame and expects the cpio archive to end there.
	chunk := 1 << 20
	for _, e := range planned {
		chunk += int(e.Size) + len(e.Name) + 128
	}
	out := filepath.Join(t.TempDir(), "initrd.cpio.zst")
	seg := initrd.Segment{Compression: initrd.Zstd, Compress: initrd.CompressOptions{ChunkSize: chunk}, Entries: planned}
	if _, err := initrd.WriteFile(t.Context(), out, []initrd.Segment{seg}, initrd.WriteOptions{}); err != nil {
		t.Fatalf("vmtest: writing initrd: %v", err)
	}
	return out
}
