// Command testinit is the /init of the initramfs that nixboot's end-to-end
// tests boot. It is built statically (CGO_ENABLED=0) by vmtest.BuildInit and
// runs as PID 1 in the VM.
//
// It mounts /proc, /sys and /dev, loads the NIC drivers it finds under
// /lib/modules/nbv (Debian's kernel builds virtio_net and e1000 as modules),
// waits for the network interfaces to appear, reads the kernel command line
// and the MAC addresses, checks that the paths named by nbv.check= exist,
// prints one marker line to the serial console and powers the VM off:
//
//	NIXBOOT-E2E-OK token=<nbv.token> mac=<mac,...> cmdline=<the command line>
//
// or, if something is wrong, `NIXBOOT-E2E-FAIL <why>` followed by the same
// power off. The test on the host waits for one of the two lines.
//
// With init=PATH on the command line it plays a NixOS-style stage 1: after
// the OK line it execs PATH (a stage 2 from a Nix closure in the same
// initramfs) instead of powering off.
//
// Run as anything other than PID 1 it mounts nothing, loads nothing and
// does not power off, so its logic can be tried on a workstation.
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Markers the host-side harness looks for. Keep in sync with vmtest.
const (
	okMarker   = "NIXBOOT-E2E-OK"
	failMarker = "NIXBOOT-E2E-FAIL"
	moduleDir  = "/lib/modules/nbv"
)

func main() {
	pid1 := os.Getpid() == 1
	out := console()
	line, next := run(pid1)
	fmt.Fprintln(out, line)
	if pid1 && next != "" && strings.HasPrefix(line, okMarker) {
		// Stage 1 hands over to the init= the command line names, as NixOS's
		// stage 1 does once the store is in place (here: already in the
		// initramfs, so no switch_root is needed).
		fmt.Fprintln(out, "testinit: handing over to "+next)
		err := unix.Exec(next, []string{next}, []string{"PATH=/bin", "TERM=linux"})
		fmt.Fprintln(out, failMarker+" exec "+next+": "+err.Error())
	}
	if pid1 {
		unix.Sync()
		// Give the UART a moment to drain before the machine disappears.
		time.Sleep(200 * time.Millisecond)
		_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
		// If power off failed, there is nothing left to do but wait; PID 1
		// must not exit or the kernel panics with a confusing message.
		select {}
	}
	if strings.HasPrefix(line, failMarker) {
		os.Exit(1)
	}
}

// console returns where the marker goes: the first serial port if it can be
// opened (the harness reads it whatever console= says), else /dev/console,
// else stdout.
func console() io.Writer {
	for _, p := range []string{"/dev/ttyS0", "/dev/console"} {
		if f, err := os.OpenFile(p, os.O_WRONLY|unix.O_NOCTTY, 0); err == nil {
			return f
		}
	}
	return os.Stdout
}

// run does the work and returns the line to print and, for a stage 1, the
// init= program to hand over to.
func run(pid1 bool) (string, string) {
	line, args := check(pid1)
	return line, args.init
}

func check(pid1 bool) (string, cmdArgs) {
	if pid1 {
		if err := mountAll(); err != nil {
			return failMarker + " " + err.Error(), cmdArgs{}
		}
		if err := loadModules(moduleDir); err != nil {
			return failMarker + " " + err.Error(), cmdArgs{}
		}
	}
	raw, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return failMarker + " reading /proc/cmdline: " + err.Error(), cmdArgs{}
	}
	cmdline := strings.TrimSpace(string(raw))
	args := parseCmdline(cmdline)
	wait := 0 * time.Second
	if pid1 && pciNICs("/sys/bus/pci/devices") > 0 {
		wait = 20 * time.Second
	}
	if missing := missingPaths(args.checks); len(missing) > 0 {
		return failMarker + " missing paths: " + strings.Join(missing, ","), args
	}
	macs, err := waitMACs("/sys/class/net", wait)
	if err != nil {
		return failMarker + " " + err.Error(), cmdArgs{}
	}
	return marker(args.token, macs, cmdline), args
}

// marker renders the success line.
func marker(token string, macs []string, cmdline string) string {
	if token == "" {
		token = "-"
	}
	mac := strings.Join(macs, ",")
	if mac == "" {
		mac = "-"
	}
	return fmt.Sprintf("%s token=%s mac=%s cmdline=%s", okMarker, token, mac, cmdline)
}

// cmdArgs holds what testinit reads from the kernel command line.
type cmdArgs struct {
	token  string   // nbv.token=
	checks []string // nbv.check=a,b (repeatable)
	init   string   // init=: testinit then acts as a stage 1 and execs it
}

// parseCmdline reads the nbv.* parameters. Quoting is not needed: tokens and
// paths never contain spaces.
func parseCmdline(s string) cmdArgs {
	var a cmdArgs
	for _, f := range strings.Fields(s) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		switch k {
		case "nbv.token":
			a.token = v
		case "init":
			a.init = v
		case "nbv.check":
			for _, p := range strings.Split(v, ",") {
				if p != "" {
					a.checks = append(a.checks, p)
				}
			}
		}
	}
	return a
}

func missingPaths(paths []string) []string {
	var missing []string
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p)
		}
	}
	return missing
}

func mountAll() error {
	mounts := []struct{ src, dst, fstype string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
	}
	for _, m := range mounts {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", m.dst, err)
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, 0, ""); err != nil && err != unix.EBUSY {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	return nil
}

// loadModules loads every *.ko in dir in name order (the harness prefixes
// names so that order satisfies dependencies). A module already loaded or
// built in is fine.
func loadModules(dir string) error {
	names, err := filepath.Glob(filepath.Join(dir, "*.ko"))
	if err != nil {
		return fmt.Errorf("listing %s: %w", dir, err)
	}
	sort.Strings(names)
	for _, n := range names {
		f, err := os.Open(n)
		if err != nil {
			return fmt.Errorf("opening module %s: %w", n, err)
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && err != unix.EEXIST {
			return fmt.Errorf("loading module %s: %w", n, err)
		}
	}
	return nil
}

// waitMACs returns the MAC addresses of the non-loopback interfaces under
// sysDir, waiting up to wait for at least one to appear (drivers probe
// asynchronously).
func waitMACs(sysDir string, wait time.Duration) ([]string, error) {
	deadline := time.Now().Add(wait)
	for {
		macs, err := readMACs(sysDir)
		if err != nil {
			return nil, err
		}
		if len(macs) > 0 || !time.Now().Before(deadline) {
			return macs, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pciNICs counts the PCI network controllers (class 0x02xxxx), so that a VM
// without a NIC does not wait for one.
func pciNICs(dir string) int {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "class"))
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), "0x02") {
			n++
		}
	}
	return n
}

func readMACs(sysDir string) ([]string, error) {
	ents, err := os.ReadDir(sysDir)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", sysDir, err)
	}
	var macs []string
	for _, e := range ents {
		if e.Name() == "lo" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(sysDir, e.Name(), "address"))
		if err != nil {
			continue
		}
		mac := strings.TrimSpace(string(b))
		if mac == "" || mac == "00:00:00:00:00:00" {
			continue
		}
		macs = append(macs, mac)
	}
	sort.Strings(macs)
	return macs, nil
}
