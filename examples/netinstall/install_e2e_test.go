//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/initrd"
	"github.com/nixboot/nixboot/internal/nixtest"
	"github.com/nixboot/nixboot/internal/testenv"
	"github.com/nixboot/nixboot/internal/vmtest"
	"github.com/nixboot/nixboot/ipxe"
	"github.com/nixboot/nixboot/netboot"
	"github.com/nixboot/nixboot/pxe"
)

const modulesRoot = "/var/cache/nixboot/lib/modules"

// installerInitrd builds the installer's initrd with package initrd: this
// program as /init, the drivers for virtio NIC and disk and ext4 (with a
// modules.dep listing only them), and mkfs.ext4 with its libraries.
func installerInitrd(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "netinstall")
	goBin := filepath.Join(runtimeGOROOT(t), "bin", "go")
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)

	rels, _ := filepath.Glob(filepath.Join(modulesRoot, "*", "modules.dep"))
	if len(rels) == 0 {
		testenv.Unavailable(t, "no kernel modules under "+modulesRoot+" (scripts/install-deps.sh unpacks them)")
	}
	relDir := filepath.Dir(rels[0])
	rel := filepath.Base(relDir)
	f, err := os.Open(rels[0])
	require.NoError(t, err)
	deps, err := parseModulesDep(f)
	f.Close()
	require.NoError(t, err)
	order, unknown := deps.loadOrder(defaultModules)
	require.Empty(t, unknown)

	var entries []initrd.Entry
	add := func(name string, mode uint32, src string) {
		st, err := os.Stat(src)
		require.NoError(t, err)
		entries = append(entries, initrd.Entry{
			Header: initrd.Header{Name: name, Type: initrd.TypeReg, Mode: mode, Size: st.Size()},
			Source: initrd.Source{Path: src},
		})
	}
	add("init", 0o755, bin)
	var depLines bytes.Buffer
	for _, m := range order {
		add(filepath.Join("lib/modules", rel, m), 0o644, filepath.Join(relDir, m))
		fmt.Fprintf(&depLines, "%s: %s\n", m, strings.Join(deps[m], " "))
	}
	entries = append(entries, initrd.Entry{
		Header: initrd.Header{Name: filepath.Join("lib/modules", rel, "modules.dep"), Type: initrd.TypeReg, Mode: 0o644, Size: int64(depLines.Len())},
		Data:   depLines.Bytes(),
	})
	// mkfs.ext4 and the shared libraries it loads, at their host paths.
	mkfs := testenv.Command(t, "mkfs.ext4")
	real, err := filepath.EvalSymlinks(mkfs)
	require.NoError(t, err)
	add("usr/sbin/mkfs.ext4", 0o755, real)
	ldd, err := exec.Command("ldd", real).Output()
	require.NoError(t, err)
	seen := map[string]bool{}
	for _, line := range strings.Split(string(ldd), "\n") {
		for _, w := range strings.Fields(line) {
			if !strings.HasPrefix(w, "/") || seen[w] {
				continue
			}
			seen[w] = true
			target, err := filepath.EvalSymlinks(w)
			require.NoError(t, err)
			add(strings.TrimPrefix(w, "/"), 0o755, target)
		}
	}
	// Debian's /lib and /lib64 are links into /usr on merged-/usr systems;
	// the libraries were added at the paths ldd printed, which is enough.
	planned, err := initrd.Plan(entries, initrd.PlanOptions{RootOwner: true})
	require.NoError(t, err)
	// Uncompressed: see the note on multi-frame zstd in the initrd issue.
	p := filepath.Join(dir, "initrd.cpio")
	_, err = initrd.WriteFile(context.Background(), p, []initrd.Segment{{Compression: initrd.None, Entries: planned}}, initrd.WriteOptions{})
	require.NoError(t, err)
	return p
}

func runtimeGOROOT(t *testing.T) string {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	require.NoError(t, err)
	return strings.TrimSpace(string(out))
}

// recorder is a netboot.Source that serves from src and remembers every
// name asked for, in order.
type recorder struct {
	src   netboot.Source
	mu    sync.Mutex
	names []string
}

func (r *recorder) Open(ctx context.Context, req *netboot.Request) (*netboot.File, error) {
	f, err := r.src.Open(ctx, req)
	if err == nil {
		r.mu.Lock()
		r.names = append(r.names, string(req.Proto)+" "+req.Name)
		r.mu.Unlock()
	}
	return f, err
}

// take returns the names served since the last call.
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.names
	r.names = nil
	return n
}

// TestInstallOverTheNetwork runs the install flow as a lab runs it, for
// BIOS (SeaBIOS, PXELINUX menu) and UEFI (OVMF, iPXE menu): the machine
// PXE boots from a netboot.Server, whose menu offers two generations with
// the newest as default; it loads that generation's kernel and the
// installer initrd over HTTP; the installer lays out the blank virtio
// disk and installs the generation's real Nix closure from nixboot's
// binary cache. A second boot finds everything in place and changes
// nothing; a third, given a layout that would destroy data, refuses it
// and leaves the disk byte-identical.
func TestInstallOverTheNetwork(t *testing.T) {
	testenv.Short(t)
	testenv.Root(t)
	kernel := testenv.Kernel(t)
	testenv.Command(t, "qemu-system-x86_64")
	for _, tool := range []string{"sgdisk", "debugfs", "sfdisk", "e2fsck", "blkid", "nix-store"} {
		testenv.Command(t, tool)
	}
	for _, f := range []string{"/usr/lib/PXELINUX/lpxelinux.0", "/usr/lib/syslinux/modules/bios/ldlinux.c32", "/usr/lib/ipxe/snponly.efi", vmtest.OVMFCode} {
		testenv.File(t, f)
	}

	closure := nixtest.Build(t, "NIXBOOT-INSTALLED-SYSTEM")
	infos, err := netboot.ParseRegistration(bytes.NewReader(closure.Registration))
	require.NoError(t, err)
	sk, pk := closure.GenerateKey(t, "nixboot-e2e-1")
	installer := installerInitrd(t)

	// The generations: the newest is the real closure; an older one names
	// a system the cache does not have, so booting it could not succeed.
	// Their kernel and initrd live in a store directory of their own.
	store := t.TempDir()
	linux := "/nix/store/0c8ykm2wnb7mk5q9w8bkr6h0p6b2ln5q-linux/bzImage"
	initrdPath := "/nix/store/1c8ykm2wnb7mk5q9w8bkr6h0p6b2ln5q-netinstall-initrd/initrd"
	for p, src := range map[string]string{linux: kernel, initrdPath: installer} {
		require.NoError(t, os.MkdirAll(filepath.Join(store, filepath.Dir(p)), 0o755))
		require.NoError(t, os.Symlink(src, filepath.Join(store, p)))
	}
	old := "/nix/store/2c8ykm2wnb7mk5q9w8bkr6h0p6b2ln5q-nixos-system-old"
	gens := []netboot.Generation{
		{Number: 7, Toplevel: closure.Toplevel, Kernel: linux, Initrd: initrdPath, Args: ipxe.Args{ipxe.KV("init", closure.Toplevel+"/init")}},
		{Number: 6, Toplevel: old, Kernel: linux, Initrd: initrdPath, Args: ipxe.Args{ipxe.KV("init", old+"/init")}},
	}

	for _, fw := range []vmtest.Firmware{vmtest.SeaBIOS, vmtest.OVMF} {
		t.Run(fw.String(), func(t *testing.T) {
			installFlow(t, fw, kernel, store, gens, closure, infos, sk, pk)
		})
	}
}

func installFlow(t *testing.T, fw vmtest.Firmware, kernel, store string, gens []netboot.Generation,
	closure *nixtest.Closure, infos []netboot.StorePathInfo, sk, pk string) {
	n := vmtest.NewNet(t, vmtest.NetConfig{NoRA: true})
	ip := n.IP().String()
	base := "http://" + net.JoinHostPort(ip, "8080")
	cacheURL := "http://" + net.JoinHostPort(ip, "8081")

	var layout atomic.Pointer[[]byte]
	setLayout := func(l map[string]any) {
		b, err := json.Marshal(l)
		require.NoError(t, err)
		layout.Store(&b)
	}
	boot := &netboot.GenerationBoot{
		Generations: netboot.GenerationsFunc(func(context.Context) ([]netboot.Generation, error) { return gens, nil }),
		StoreRoot:   store,
		BaseURL:     base,
		Title:       "nixboot install",
		Timeout:     2 * time.Second,
		Args: ipxe.Args{
			// no_timer_check: under TCG on a loaded host the kernel's
			// IO-APIC timer check can fail and panic ("IO-APIC + timer
			// doesn't work!"); a VM's timer is fine, the check is slow.
			ipxe.KV("console", "ttyS0"), ipxe.KV("panic", "-1"), ipxe.Flag("no_timer_check"),
			ipxe.KV("nixboot.server", base), ipxe.KV("nixboot.cache", cacheURL+"/nix-cache"),
			ipxe.KV("nixboot.key", pk), ipxe.KV("nixboot.poweroff", "1"), ipxe.KV("nixboot.timeout", "60s"),
		},
	}
	files := &recorder{src: netboot.Chain(
		boot,
		netboot.Files{"layout.json": netboot.SourceFunc(func(context.Context, *netboot.Request) (*netboot.File, error) {
			return netboot.BytesFile(*layout.Load(), time.Time{}), nil
		})},
		netboot.HostFiles{
			"lpxelinux.0": "/usr/lib/PXELINUX/lpxelinux.0",
			"ldlinux.c32": "/usr/lib/syslinux/modules/bios/ldlinux.c32",
			"menu.c32":    "/usr/lib/syslinux/modules/bios/menu.c32",
			"libutil.c32": "/usr/lib/syslinux/modules/bios/libutil.c32",
			"snponly.efi": "/usr/lib/ipxe/snponly.efi",
		},
	)}
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x4e, 0x49, byte(fw) + 1}
	loaders := pxe.Loaders{ScriptURL: base + "/" + netboot.GenerationMenuName, BIOS: "lpxelinux.0", EFI64: "snponly.efi"}
	if fw == vmtest.SeaBIOS {
		// SeaBIOS boots QEMU's iPXE ROM, which says it is iPXE: send it
		// PXELINUX anyway (no iPXE here sends this user class).
		loaders.ChainIPXE, loaders.UserClass = true, "nixboot-install"
	}
	_, subnet, _ := net.ParseCIDR(n.Addr.Masked().String())
	srv := &netboot.Server{
		Inventory: netboot.InventoryFunc(func(_ context.Context, m *netboot.Machine) (*netboot.Boot, error) {
			if m.MAC.String() != mac.String() {
				return nil, netboot.ErrUnknownMachine
			}
			return &netboot.Boot{Profile: "install"}, nil
		}),
		Files:        files,
		HTTPListener: n.Listen("tcp", net.JoinHostPort(ip, "8080")),
		HTTPURL:      base,
		TFTPConn:     n.ListenPacket("udp4", net.JoinHostPort(ip, "69")),
		DHCP:         netboot.DHCPFull,
		DHCPConn:     n.ListenDHCP(67),
		ServerIP:     net.IP(n.IP().AsSlice()),
		DHCPNetwork: &pxe.Network{
			Subnet:     *subnet,
			RangeStart: net.IP(n.Host(100).AsSlice()),
			RangeEnd:   net.IP(n.Host(150).AsSlice()),
		},
		Loaders: loaders,
	}
	// The server's log, shown when the test fails: firmware consoles say
	// only that a download failed, the log says why.
	serverLog := &lockedBuffer{}
	srv.Logger = slog.New(slog.NewTextHandler(serverLog, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			b := serverLog.String()
			t.Logf("server log (last 8 KiB of %d bytes):\n%s", len(b), b[max(0, len(b)-8192):])
		}
	})
	n.Go(srv.Serve)
	// The binary cache on a port of its own.
	cacheLn := n.Listen("tcp", net.JoinHostPort(ip, "8081"))
	cache := &http.Server{
		Handler:           http.StripPrefix("/nix-cache", &netboot.BinaryCache{StoreDir: closure.StoreDir(), Paths: infos, Key: sk}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	n.Go(func(ctx context.Context) error {
		go func() { <-ctx.Done(); cache.Close() }()
		if err := cache.Serve(cacheLn); err != http.ErrServerClosed {
			return err
		}
		return nil
	})

	img := filepath.Join(t.TempDir(), "disk.img")
	require.NoError(t, os.WriteFile(img, nil, 0o644))
	require.NoError(t, os.Truncate(img, 512<<20))
	tap := n.AddTap()
	run := func(name string) string {
		cfg := vmtest.Config{
			Name: fw.String() + "-" + name, Firmware: fw, MemoryMB: 1024, Netns: n.Name,
			// The NIC boots first: an installed disk must not take over.
			NICs:  []vmtest.NIC{{Tap: tap, MAC: mac, NoROM: fw == vmtest.OVMF, BootIndex: 1}},
			Extra: []string{"-drive", "file=" + img + ",format=raw,if=virtio,cache=unsafe", "-device", "virtio-rng-pci"},
		}
		if fw == vmtest.OVMF {
			cfg.Extra = append(cfg.Extra, "-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=no")
		}
		m := vmtest.Start(t, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Second)
		defer cancel()
		line, err := m.WaitLine(ctx, "NIXBOOT-INSTALL-")
		require.NoError(t, err, "console:\n%s", installerLines(m.Console()))
		select {
		case <-m.Done():
		case <-time.After(60 * time.Second):
			t.Fatalf("%s did not power off", name)
		}
		t.Logf("%s: %s", name, line)
		served := files.take()
		menu := "tftp " + netboot.PXELinuxDefaultName
		if fw == vmtest.OVMF {
			menu = "http " + netboot.GenerationMenuName
		}
		// The menu was loaded, then the newest generation's kernel and
		// initrd over HTTP, and nothing of the older one.
		require.Contains(t, served, menu, "served: %v", served)
		assert.Contains(t, served, "http nixos/7/kernel")
		assert.Contains(t, served, "http nixos/7/initrd")
		assert.NotContains(t, served, "http nixos/6/kernel")
		return installerLines(m.Console())
	}

	l := map[string]any{
		// The first non-removable real disk of at least 256 MiB: the VM's
		// 512 MiB virtio disk.
		"target": map[string]any{"rule": map[string]any{"minSize": "256MiB"}},
		"seed":   "nixboot-e2e",
		"partitions": []any{
			map[string]any{"name": "bios", "type": "bios-boot", "size": "1MiB"},
			map[string]any{"name": "root", "type": "root-x86-64", "size": "rest",
				"filesystem": map[string]any{"type": "ext4", "label": "nixos"}},
		},
	}
	setLayout(l)

	// First boot: blank disk -> laid out and installed.
	con := run("first")
	require.Contains(t, con, "NIXBOOT-INSTALL-OK system="+closure.Toplevel, con)
	assert.Contains(t, con, "laid out")
	assert.Equal(t, len(closure.Paths), strings.Count(con, "store path fetched"), con)

	out, err := exec.Command("sgdisk", "-v", img).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "No problems found")
	installed := readInstalled(t, img, closure.Toplevel)
	assert.Equal(t, "system="+closure.Toplevel+"\n", installed["/var/lib/nixboot/installed"])
	assert.Contains(t, installed["/nix-path-registration"], closure.Toplevel)
	assert.Contains(t, installed[closure.Toplevel+"/init"], "#!/nix/store/")
	// The registration loads into a real Nix store and verifies.
	checkRegistration(t, closure, installed["/nix-path-registration"])

	// Second boot: nothing changes on the disk's table, nothing is fetched,
	// the first boot's record stays.
	tableBefore := hashRange(t, img, 0, 1<<20)
	con = run("second")
	require.Contains(t, con, "NIXBOOT-INSTALL-OK", con)
	assert.Contains(t, con, "layout already as required")
	assert.Equal(t, 0, strings.Count(con, "store path fetched"), con)
	assert.Equal(t, len(closure.Paths), strings.Count(con, "store path already present"), con)
	assert.Contains(t, con, "installed before")
	assert.Equal(t, tableBefore, hashRange(t, img, 0, 1<<20), "the partition table must not be rewritten")
	again := readInstalled(t, img, closure.Toplevel)
	assert.Equal(t, installed["/var/lib/nixboot/installed"], again["/var/lib/nixboot/installed"])

	// Third boot: shrinking root would destroy data; refused, disk unchanged.
	l["partitions"].([]any)[1].(map[string]any)["size"] = "100MiB"
	setLayout(l)
	whole := hashRange(t, img, 0, 512<<20)
	con = run("third")
	require.Contains(t, con, "NIXBOOT-INSTALL-FAIL", con)
	assert.Contains(t, con, "destructive plan refused")
	assert.Equal(t, whole, hashRange(t, img, 0, 512<<20), "a refused plan must leave the disk byte-identical")

	// Fourth boot: no disk fits the layout's rule; refused by name.
	l["target"] = map[string]any{"rule": map[string]any{"minSize": "1TiB"}}
	setLayout(l)
	con = run("fourth")
	require.Contains(t, con, "NIXBOOT-INSTALL-FAIL no disk to install on, nothing was written", con)
	assert.Contains(t, con, "vda (512MiB): smaller than 1TiB")
	assert.Equal(t, whole, hashRange(t, img, 0, 512<<20), "a refused install must leave the disk byte-identical")
}

func hashRange(t *testing.T, path string, off, n int64) string {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, io.NewSectionReader(f, off, n))
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

// readInstalled copies the image's second partition into a file (the
// container may not create loop partition nodes) and reads it with
// blkid, e2fsck and debugfs, without mounting: the install record, the
// registration and the system's init.
func readInstalled(t *testing.T, img, toplevel string) map[string]string {
	t.Helper()
	out, err := exec.Command("sfdisk", "--json", img).Output()
	require.NoError(t, err)
	var table struct {
		PartitionTable struct {
			SectorSize int64 `json:"sectorsize"`
			Partitions []struct {
				Start int64  `json:"start"`
				Size  int64  `json:"size"`
				Name  string `json:"name"`
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	require.NoError(t, json.Unmarshal(out, &table))
	pt := table.PartitionTable
	require.Len(t, pt.Partitions, 2)
	root := pt.Partitions[1]
	assert.Equal(t, "root", root.Name)
	src, err := os.Open(img)
	require.NoError(t, err)
	defer src.Close()
	part := filepath.Join(t.TempDir(), "root.img")
	dst, err := os.Create(part)
	require.NoError(t, err)
	_, err = io.Copy(dst, io.NewSectionReader(src, root.Start*pt.SectorSize, root.Size*pt.SectorSize))
	require.NoError(t, err)
	require.NoError(t, dst.Close())

	blk, err := exec.Command("blkid", "-p", "-o", "export", part).CombinedOutput()
	require.NoError(t, err, "%s", blk)
	assert.Contains(t, string(blk), "TYPE=ext4")
	assert.Contains(t, string(blk), "LABEL=nixos")
	fsck, err := exec.Command("e2fsck", "-fn", part).CombinedOutput()
	require.NoError(t, err, "%s", fsck)
	files := map[string]string{}
	for _, p := range []string{"/var/lib/nixboot/installed", "/nix-path-registration", toplevel + "/init"} {
		b, err := exec.Command("debugfs", "-R", "cat "+p, part).Output()
		require.NoError(t, err, p)
		files[p] = string(b)
	}
	return files
}

// checkRegistration loads the installer's registration into a fresh
// chroot store holding copies of the paths and lets Nix verify them.
func checkRegistration(t *testing.T, c *nixtest.Closure, reg string) {
	t.Helper()
	root := c.NewStore(t, "verify-registration")
	require.NoError(t, os.MkdirAll(filepath.Join(root, "nix", "store"), 0o755))
	for _, p := range c.Paths {
		out, err := exec.Command("cp", "-a", c.HostPath(p), filepath.Join(root, "nix", "store")).CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	cmd := exec.Command("nix-store", "--store", root, "--load-db")
	cmd.Stdin = strings.NewReader(reg)
	cmd.Env = append(os.Environ(), "NIX_CONF_DIR="+filepath.Join(c.Dir, "conf"), "HOME="+c.Dir)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	out, err = c.NixErr("nix-store", "--store", root, "--verify", "--check-contents")
	require.NoError(t, err, "%s", out)
}

// installerLines keeps the installer's own console lines, for assertions
// and readable failures.
func installerLines(console string) string {
	var b strings.Builder
	for _, l := range strings.Split(console, "\n") {
		if strings.Contains(l, "netinstall:") || strings.Contains(l, "NIXBOOT-INSTALL-") {
			b.WriteString(strings.TrimSpace(l) + "\n")
		}
	}
	return b.String()
}

// lockedBuffer is a bytes.Buffer a logger and the test can share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
