package vmtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixboot/nixboot/internal/testenv"
)

// Firmware selects what the VM runs before the boot loader.
type Firmware int

const (
	// SeaBIOS is QEMU's default BIOS. NIC option ROMs are iPXE.
	SeaBIOS Firmware = iota
	// OVMF is UEFI (Debian's OVMF_CODE_4M.fd, no Secure Boot), with a private
	// copy of the variable store per VM.
	OVMF
)

func (f Firmware) String() string {
	switch f {
	case SeaBIOS:
		return "bios"
	case OVMF:
		return "uefi"
	}
	return "firmware(" + strconv.Itoa(int(f)) + ")"
}

// Default firmware files (Debian 12's ovmf package).
const (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// OVMFHTTPBootOnly are QEMU arguments that leave OVMF's HTTPv4 boot as the
// first network boot option: they turn off its PXE (v4 and v6) and IPv6,
// which would otherwise each be tried (about 60 s apiece) before HTTPv4.
// This has the effect of putting HTTPv4 first in BootOrder without editing
// the variable store.
var OVMFHTTPBootOnly = []string{
	"-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=no",
	"-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=no",
	"-fw_cfg", "name=opt/org.tianocore/IPv6Support,string=no",
}

// NIC is one network card of a VM.
type NIC struct {
	// Tap is the tap device (in the VM's network namespace) the NIC is
	// plugged into. Required.
	Tap string
	// MAC is the card's address. Required: tests match machines by MAC.
	MAC net.HardwareAddr
	// Model is the QEMU device; "" means virtio-net-pci. "e1000" also works
	// with the Debian kernel (the test initrd carries both drivers).
	Model string
	// NoROM loads no option ROM (romfile=), so the firmware's own network
	// stack boots (OVMF's PXE and HTTP boot) instead of QEMU's iPXE ROM.
	NoROM bool
	// BootIndex, when > 0, makes this NIC a boot device in that position.
	BootIndex int
}

// Config describes one VM.
type Config struct {
	// Name labels the VM in logs; "" means "vm".
	Name string
	// Firmware is SeaBIOS (zero) or OVMF.
	Firmware Firmware
	// Kernel, Initrd and Append boot a kernel directly (-kernel); when Kernel
	// is "" the VM boots from the network.
	Kernel, Initrd, Append string
	// NICs are the network cards, in PCI order.
	NICs []NIC
	// MemoryMB is the guest RAM; 0 means 512.
	MemoryMB int
	// VarsTemplate is the OVMF variable store copied for this VM; "" means
	// OVMFVars. The copy is private, so the template is never written.
	VarsTemplate string
	// Netns runs QEMU in that network namespace (needed to open taps that live
	// there); "" means the test's own namespace.
	Netns string
	// Extra are more QEMU arguments, appended last.
	Extra []string
}

// Machine is a running QEMU process and its serial console.
type Machine struct {
	Name    string
	Started time.Time // when QEMU was started

	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when QEMU has exited and the console is drained
	waitErr error         // set before done is closed

	mu      sync.Mutex
	console []byte
	changed chan struct{} // closed and replaced on every console write
}

// Start boots a VM under QEMU and returns at once. QEMU is killed (by its
// PID) when the test ends; if the test failed, the tail of the serial console
// is written to the test log and the full console stays in a file named
// there.
func Start(t testing.TB, cfg Config) *Machine {
	t.Helper()
	qemu := testenv.Command(t, "qemu-system-x86_64")
	args, err := qemuArgs(cfg, t.TempDir())
	if err != nil {
		t.Fatalf("vmtest: %v", err)
	}
	name := cfg.Name
	if name == "" {
		name = "vm"
	}
	argv := append([]string{qemu}, args...)
	if cfg.Netns != "" {
		ip := testenv.Command(t, "ip")
		// ip netns exec execs QEMU in place, so the PID is QEMU's.
		argv = append([]string{ip, "netns", "exec", cfg.Netns}, argv...)
	}
	logDir := os.Getenv("NIXBOOT_VMTEST_LOGDIR")
	if logDir == "" {
		logDir = t.TempDir()
	}
	m := &Machine{
		Name:    name,
		logPath: filepath.Join(logDir, sanitize(t.Name()+"-"+name)+".console"),
		done:    make(chan struct{}),
		changed: make(chan struct{}),
	}
	logFile, err := os.Create(m.logPath)
	if err != nil {
		t.Fatalf("vmtest: console log: %v", err)
	}
	m.cmd = exec.Command(argv[0], argv[1:]...)
	m.cmd.Stdin = nil
	stdout, err := m.cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("vmtest: %v", err)
	}
	m.cmd.Stderr = m.cmd.Stdout // QEMU's own errors belong in the same log
	t.Logf("vmtest: starting %s: %s", name, strings.Join(argv, " "))
	m.Started = time.Now()
	if err := m.cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("vmtest: starting QEMU: %v", err)
	}
	go m.read(stdout, logFile)
	t.Cleanup(func() {
		m.Kill()
		if t.Failed() {
			t.Logf("vmtest: %s console (full log %s), last lines:\n%s", name, m.logPath, tail(m.Console(), 120))
		}
	})
	return m
}

// read copies the console into memory and the log file until QEMU exits.
func (m *Machine) read(r io.Reader, log *os.File) {
	buf := make([]byte, 4096)
	lineStart := true
	for {
		n, err := r.Read(buf)
		if n > 0 {
			// The log file gets each line prefixed with the seconds since
			// QEMU started, to see where a slow boot spends its time.
			var stamped []byte
			for _, c := range buf[:n] {
				if lineStart {
					stamped = fmt.Appendf(stamped, "[%7.3f] ", time.Since(m.Started).Seconds())
					lineStart = false
				}
				if c == '\r' {
					continue
				}
				stamped = append(stamped, c)
				lineStart = c == '\n'
			}
			_, _ = log.Write(stamped)
			m.mu.Lock()
			m.console = append(m.console, buf[:n]...)
			close(m.changed)
			m.changed = make(chan struct{})
			m.mu.Unlock()
		}
		if err != nil {
			break
		}
	}
	log.Close()
	m.waitErr = m.cmd.Wait()
	close(m.done)
}

// Console returns everything the VM wrote to its serial port so far, with
// carriage returns removed.
func (m *Machine) Console() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return strings.ReplaceAll(string(m.console), "\r", "")
}

// LogPath is the file holding the full console, each line prefixed with
// the seconds since QEMU started.
func (m *Machine) LogPath() string { return m.logPath }

// Done is closed when QEMU has exited.
func (m *Machine) Done() <-chan struct{} { return m.done }

// Kill stops QEMU (SIGKILL to its PID) and waits for it. Safe to call twice.
func (m *Machine) Kill() {
	select {
	case <-m.done:
		return
	default:
	}
	_ = m.cmd.Process.Kill()
	<-m.done
}

// WaitLine waits until a complete console line contains substr and returns
// that line. It fails with ErrExited if QEMU exits first, and with the
// context's error when ctx ends.
func (m *Machine) WaitLine(ctx context.Context, substr string) (string, error) {
	return m.waitFunc(ctx, func(line string) (bool, error) {
		return strings.Contains(line, substr), nil
	})
}

// WaitMatch waits until the console matches re anywhere, also in a line
// not yet complete (iPXE's last "... ok" is followed by the kernel's output,
// not by a line break), and returns the time since QEMU started at which the
// match was seen. It fails like WaitLine.
func (m *Machine) WaitMatch(ctx context.Context, re *regexp.Regexp) (time.Duration, error) {
	for {
		found := re.MatchString(m.Console())
		m.mu.Lock()
		changed := m.changed
		m.mu.Unlock()
		if found {
			return time.Since(m.Started), nil
		}
		select {
		case <-changed:
		case <-m.done:
			if re.MatchString(m.Console()) {
				return time.Since(m.Started), nil
			}
			return 0, fmt.Errorf("%w: %s after %s (%v)", ErrExited, m.Name, time.Since(m.Started).Round(time.Millisecond), m.waitErr)
		case <-ctx.Done():
			return 0, fmt.Errorf("vmtest: waiting for /%s/ from %s: %w", re, m.Name, ctx.Err())
		}
	}
}

// deadEnds are console lines after which a VM will never reach the marker:
// the firmware has tried every boot device.
var deadEnds = []string{
	"No bootable device.",                     // SeaBIOS
	"Kernel panic - not syncing: VFS: Unable", // no usable initrd
}

// WaitBoot waits for testinit's marker line and parses it. A failure marker
// gives ErrBootFailed with the guest's reason; a firmware that has run out
// of boot devices gives ErrNoBoot at once rather than at the deadline.
func (m *Machine) WaitBoot(ctx context.Context) (Marker, error) {
	line, err := m.waitFunc(ctx, func(line string) (bool, error) {
		if i := strings.Index(line, FailMarker); i >= 0 {
			return false, fmt.Errorf("%w: %s", ErrBootFailed, line[i:])
		}
		for _, dead := range deadEnds {
			if strings.Contains(line, dead) {
				return false, fmt.Errorf("%w: firmware gave up: %q", ErrNoBoot, dead)
			}
		}
		return strings.Contains(line, OKMarker), nil
	})
	if err != nil {
		return Marker{}, err
	}
	return ParseMarker(line)
}

func (m *Machine) waitFunc(ctx context.Context, match func(string) (bool, error)) (string, error) {
	scanned := 0 // bytes of complete lines already looked at
	for {
		m.mu.Lock()
		data := m.console
		changed := m.changed
		m.mu.Unlock()
		for {
			i := indexByte(data[scanned:], '\n')
			if i < 0 {
				break
			}
			line := strings.TrimRight(string(data[scanned:scanned+i]), "\r")
			scanned += i + 1
			ok, err := match(line)
			if err != nil {
				return line, err
			}
			if ok {
				return line, nil
			}
		}
		select {
		case <-changed:
		case <-m.done:
			// Look once more at what arrived before the exit.
			m.mu.Lock()
			more := len(m.console) > scanned
			m.mu.Unlock()
			if more {
				continue
			}
			return "", fmt.Errorf("%w: %s after %s (%v)", ErrExited, m.Name, time.Since(m.Started).Round(time.Millisecond), m.waitErr)
		case <-ctx.Done():
			return "", fmt.Errorf("vmtest: waiting for %s after %s: %w", m.Name, time.Since(m.Started).Round(time.Millisecond), ctx.Err())
		}
	}
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// qemuArgs renders the QEMU command line for cfg. dir holds per-VM files
// (the OVMF variable store copy).
func qemuArgs(cfg Config, dir string) ([]string, error) {
	mem := cfg.MemoryMB
	if mem == 0 {
		mem = 512
	}
	args := []string{
		"-no-user-config", "-nodefaults",
		"-machine", "pc,graphics=off",
		"-accel", Accel(),
		"-m", strconv.Itoa(mem),
		"-smp", "1",
		"-display", "none",
		"-serial", "stdio",
		"-monitor", "none",
		"-no-reboot",
	}
	switch cfg.Firmware {
	case SeaBIOS:
	case OVMF:
		tmpl := cfg.VarsTemplate
		if tmpl == "" {
			tmpl = OVMFVars
		}
		vars := filepath.Join(dir, "OVMF_VARS.fd")
		if err := copyFile(vars, tmpl); err != nil {
			return nil, fmt.Errorf("copying OVMF variable store: %w", err)
		}
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+OVMFCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars)
	default:
		return nil, fmt.Errorf("unknown firmware %v", cfg.Firmware)
	}
	if cfg.Kernel != "" {
		args = append(args, "-kernel", cfg.Kernel)
		if cfg.Initrd != "" {
			args = append(args, "-initrd", cfg.Initrd)
		}
		if cfg.Append != "" {
			args = append(args, "-append", cfg.Append)
		}
	}
	for i, n := range cfg.NICs {
		if n.Tap == "" || len(n.MAC) != 6 {
			return nil, fmt.Errorf("NIC %d: needs a tap and a 6-byte MAC", i)
		}
		model := n.Model
		if model == "" {
			model = "virtio-net-pci"
		}
		id := "n" + strconv.Itoa(i)
		args = append(args, "-netdev", "tap,id="+id+",ifname="+n.Tap+",script=no,downscript=no")
		dev := model + ",netdev=" + id + ",mac=" + n.MAC.String()
		if n.NoROM {
			dev += ",romfile="
		}
		if n.BootIndex > 0 {
			dev += ",bootindex=" + strconv.Itoa(n.BootIndex)
		}
		args = append(args, "-device", dev)
	}
	return append(args, cfg.Extra...), nil
}

func copyFile(dst, src string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o600)
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}

func tail(s string, lines int) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	var all []string
	for sc.Scan() {
		all = append(all, sc.Text())
	}
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
