//go:build linux

// Command netinstall installs a NixOS generation onto a machine's local
// disk from inside a network-booted initrd, and is safe to run on every
// boot:
//
//  1. it loads the NIC and disk drivers and configures the network by DHCP;
//  2. it fetches the declared disk layout from nixboot and, only if the
//     disk is not already laid out as declared, partitions and formats it
//     with package disk (a plan that would destroy data is refused unless
//     nixboot.destroy=1);
//  3. it mounts the root partition and fetches every store path of the
//     generation's closure that the disk lacks from nixboot's binary cache,
//     checking each narinfo's signature and each NAR's hash;
//  4. it writes /nix-path-registration for the installed system's Nix and
//     reports success (or, with nixboot.poweroff=1, powers off).
//
// Settings come from the kernel command line:
//
//	nixboot.server=http://10.0.0.1:8080  nixboot's HTTP server (required)
//	nixboot.system=/nix/store/...-nixos-system-...  the generation (default: the one init= names)
//	nixboot.key=name:base64              a trusted cache key (required, repeatable)
//	nixboot.layout=URL                   default <server>/layout.json
//	nixboot.cache=URL                    default <server>/nix-cache
//	nixboot.rootpart=root                the layout partition to install into
//	nixboot.destroy=1                    allow destructive disk plans
//	nixboot.poweroff=1                   power off when done
//
// It runs only on Linux (it is a Linux initrd's /init: mounts, kernel
// modules, a raw-socket DHCP client); its files are built for linux alone.
//
// Build it statically and put it in an initrd as /init (package initrd):
//
//	CGO_ENABLED=0 go build -o init ./examples/netinstall
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nixboot/nixboot/disk"
	"github.com/nixboot/nixboot/netboot"
)

// Console markers the end-to-end tests look for.
const (
	markerOK   = "NIXBOOT-INSTALL-OK"
	markerFail = "NIXBOOT-INSTALL-FAIL"
)

func main() {
	out := console()
	say := func(format string, a ...any) { fmt.Fprintf(out, "netinstall: "+format+"\n", a...) }
	pid1 := os.Getpid() == 1
	if pid1 {
		// The kernel starts init with no PATH; mkfs.* are looked up on it.
		os.Setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
		if err := mountEarly(); err != nil {
			say("early mounts: %v", err)
		}
	}
	cfg, err := readConfig()
	if err == nil {
		err = install(context.Background(), cfg, say)
	}
	if err != nil {
		fmt.Fprintf(out, "%s %v\n", markerFail, err)
	} else {
		fmt.Fprintf(out, "%s system=%s\n", markerOK, cfg.System)
	}
	if pid1 {
		// PID 1 must not exit; power off either way so a failed install
		// never leaves a machine half-booted.
		unix.Sync()
		if err == nil && !cfg.PowerOff {
			say("done; the installed system is on disk (booting it from here is left to the next boot)")
		}
		unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
		select {}
	}
	if err != nil {
		os.Exit(1)
	}
}

// console returns where progress goes: /dev/console when it opens, so the
// lines reach the serial console even if stdout is not connected.
func console() io.Writer {
	if f, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
		return f
	}
	return os.Stdout
}

func mountEarly() error {
	var errs []error
	for _, m := range []struct{ src, dst, typ string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"}, {"tmpfs", "/tmp", "tmpfs"},
	} {
		os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.typ, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, fmt.Errorf("mount %s: %w", m.dst, err))
		}
	}
	return errors.Join(errs...)
}

func readConfig() (config, error) {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return config{}, fmt.Errorf("reading the kernel command line: %w", err)
	}
	return parseCmdline(string(b))
}

func install(ctx context.Context, cfg config, say func(string, ...any)) error {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err == nil {
		release := unix.ByteSliceToString(uts.Release[:])
		dir := filepath.Join("/lib/modules", release)
		if _, err := os.Stat(filepath.Join(dir, "modules.dep")); err == nil {
			say("step 1/5: loading drivers %s", strings.Join(cfg.Modules, ","))
			if err := loadModules(dir, cfg.Modules, say); err != nil {
				return fmt.Errorf("drivers: %w", err)
			}
		}
	}

	ifname, err := pickInterface(cfg.Interface, cfg.MAC)
	if err != nil {
		return fmt.Errorf("no network: %w", err)
	}
	say("step 2/5: configuring %s by DHCP", ifname)
	ip, err := configureNetwork(ctx, ifname, cfg.Timeout)
	if err != nil {
		return fmt.Errorf("no network: %w", err)
	}
	say("network: %s has %s", ifname, ip)
	client := &http.Client{Timeout: cfg.Timeout}

	say("step 3/5: checking the disk against %s", cfg.Layout)
	layout, err := fetchLayout(ctx, client, cfg.Layout.String())
	if err != nil {
		return err
	}
	rootDev, err := prepareDisk(ctx, layout, cfg, say)
	if err != nil {
		return err
	}

	say("step 4/5: mounting %s and fetching %s", rootDev, cfg.System)
	mnt := "/mnt/nixboot-root"
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err
	}
	fstype := "ext4"
	if p := findPartition(layout, cfg.RootPart); p != nil && p.Filesystem != nil {
		fstype = p.Filesystem.Type
	}
	if err := mountRetry(ctx, rootDev, mnt, fstype, 15*time.Second); err != nil {
		return err
	}
	defer unix.Unmount(mnt, 0)
	sub := &netboot.Substituter{
		CacheURL:    cfg.Cache.String(),
		TrustedKeys: cfg.Keys,
		Client:      client,
		Logger:      slog.New(slog.NewTextHandler(consoleWriter{say}, &slog.HandlerOptions{})),
	}
	infos, err := sub.Realise(ctx, filepath.Join(mnt, "nix", "store"), cfg.System)
	if err != nil {
		return fmt.Errorf("fetching the system: %w", err)
	}

	say("step 5/5: registering %d store paths", len(infos))
	if err := writeFileAtomic(filepath.Join(mnt, "nix-path-registration"), func(w io.Writer) error {
		return netboot.WriteRegistration(w, infos)
	}); err != nil {
		return fmt.Errorf("registering paths: %w", err)
	}
	// A profile link as nixos-install makes, so the installed system's
	// bootloader tooling finds the generation.
	prof := filepath.Join(mnt, "nix", "var", "nix", "profiles")
	if err := os.MkdirAll(prof, 0o755); err != nil {
		return err
	}
	link := filepath.Join(prof, "system-1-link")
	if cur, err := os.Readlink(link); err != nil || cur != cfg.System {
		os.Remove(link)
		if err := os.Symlink(cfg.System, link); err != nil {
			return err
		}
	}
	// A record of the first install, never rewritten: later boots leave
	// it (and everything else they do not need to change) as it is.
	stamp := filepath.Join(mnt, "var", "lib", "nixboot", "installed")
	if _, err := os.Stat(stamp); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(stamp), 0o755); err != nil {
			return err
		}
		if err := writeFileAtomic(stamp, func(w io.Writer) error {
			_, err := fmt.Fprintf(w, "system=%s\n", cfg.System)
			return err
		}); err != nil {
			return err
		}
		say("first install recorded in /var/lib/nixboot/installed")
	} else {
		say("installed before: /var/lib/nixboot/installed kept")
	}
	unix.Sync()
	return nil
}

// consoleWriter turns slog lines into console lines.
type consoleWriter struct{ say func(string, ...any) }

func (c consoleWriter) Write(p []byte) (int, error) {
	c.say("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func fetchLayout(ctx context.Context, client *http.Client, url string) (disk.Layout, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return disk.Layout{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return disk.Layout{}, fmt.Errorf("fetching the layout: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return disk.Layout{}, fmt.Errorf("fetching the layout %s: %s", url, resp.Status)
	}
	l, err := disk.ParseLayout(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return disk.Layout{}, fmt.Errorf("layout %s: %w", url, err)
	}
	return l, nil
}

func findPartition(l disk.Layout, name string) *disk.Partition {
	for i := range l.Partitions {
		if l.Partitions[i].Name == name {
			return &l.Partitions[i]
		}
	}
	return nil
}

// prepareDisk brings the disk to the layout (changing nothing if it is
// already there) and returns the root partition's device node.
func prepareDisk(ctx context.Context, l disk.Layout, cfg config, say func(string, ...any)) (string, error) {
	dev, err := disk.ResolveTarget(ctx, l.Target)
	if err != nil {
		return "", fmt.Errorf("no disk to install on, nothing was written: %w", err)
	}
	num := 0
	for i, p := range l.Partitions {
		if p.Name == cfg.RootPart {
			num = i + 1
		}
	}
	if num == 0 {
		return "", fmt.Errorf("the layout has no partition named %q (nixboot.rootpart)", cfg.RootPart)
	}
	d, err := disk.Inspect(ctx, dev, disk.InspectOptions{})
	if err != nil {
		return "", fmt.Errorf("inspecting %s: %w", dev, err)
	}
	plan, err := disk.MakePlan(d, l, disk.PlanOptions{AllowDestructive: cfg.Destroy})
	if errors.Is(err, disk.ErrRefused) {
		return "", fmt.Errorf("destructive plan refused for %s, nothing was written (boot with nixboot.destroy=1 to allow it): %w", dev, err)
	}
	if err != nil {
		return "", fmt.Errorf("planning %s: %w", dev, err)
	}
	if plan.Empty() {
		say("disk: %s layout already as required; nothing to change", dev)
	} else {
		for _, line := range strings.Split(strings.TrimSpace(plan.String()), "\n") {
			say("plan: %s", line)
		}
		if refused := plan.Refused(); len(refused) > 0 {
			return "", fmt.Errorf("destructive plan refused for %s (boot with nixboot.destroy=1 to allow it): %s", dev, refused[0].Loses)
		}
		if err := disk.Apply(ctx, plan, disk.ApplyOptions{WorkDir: "/tmp"}); err != nil {
			return "", fmt.Errorf("applying the layout to %s: %w", dev, err)
		}
		say("disk: %s laid out", dev)
	}
	return partitionDevice(dev, num), nil
}

// partitionDevice names partition n of a whole-disk device: /dev/vda1,
// /dev/nvme0n1p1.
func partitionDevice(dev string, n int) string {
	if last := dev[len(dev)-1]; last >= '0' && last <= '9' {
		return fmt.Sprintf("%sp%d", dev, n)
	}
	return fmt.Sprintf("%s%d", dev, n)
}

// mountRetry mounts dev, waiting for its node: after a partition table is
// re-read, devtmpfs removes and re-creates partition nodes asynchronously,
// so the node may be missing, or vanish, for a moment.
func mountRetry(ctx context.Context, dev, dir, fstype string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := unix.Mount(dev, dir, fstype, 0, "")
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENXIO) || time.Now().After(deadline) {
			parts, _ := os.ReadFile("/proc/partitions")
			_, statErr := os.Stat(dev)
			return fmt.Errorf("mounting %s (%s) at %s: %w (device node: %v; the kernel sees: %s)",
				dev, fstype, dir, err, statErr, strings.Join(strings.Fields(string(parts)), " "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// writeFileAtomic writes a file through a temporary name and a rename, so
// an interrupted install never leaves a truncated registration.
func writeFileAtomic(path string, write func(io.Writer) error) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	err = write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
