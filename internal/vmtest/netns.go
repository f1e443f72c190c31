package vmtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"golang.org/x/sys/unix"

	"github.com/nixboot/nixboot/internal/testenv"
)

// Net is a private network namespace holding a bridge with a fixed address,
// to which tap devices for VMs are added. Everything it creates is deleted
// when the test ends, also after failures.
type Net struct {
	// Name is the network namespace (see `ip netns list`).
	Name string
	// Bridge is the bridge device inside the namespace.
	Bridge string
	// Addr is the bridge's IPv4 address and prefix, e.g. 10.77.0.1/24.
	Addr netip.Prefix
	// MAC is the bridge's fixed address.
	MAC net.HardwareAddr

	t     testing.TB
	ip    string
	mu    sync.Mutex
	taps  int
	peers int
}

// NetConfig tunes NewNet. The zero value is what boot tests want.
type NetConfig struct {
	// Addr is the bridge address; the zero value means 10.77.0.1/24.
	Addr netip.Prefix
	// NoRA turns off the router advertisements Net sends by default. Without
	// them every iPXE "Configuring" step waits about 15 s for IPv6.
	NoRA bool
}

// The bridge's MAC: locally administered, fixed, so the bridge never changes
// address when ports come and go (early DHCP packets would be lost).
var bridgeMAC = net.HardwareAddr{0x02, 0x6e, 0x62, 0x76, 0x00, 0x01}

// NewNet creates a network namespace named "nbv<pid>-<random>" with a
// bridge (STP off, forward delay 0, fixed MAC, cfg.Addr) and loopback up,
// and starts sending IPv6 router advertisements on the bridge unless
// cfg.NoRA. Needs root and `ip`.
func NewNet(t testing.TB, cfg NetConfig) *Net {
	t.Helper()
	testenv.Root(t)
	addr := cfg.Addr
	if !addr.IsValid() {
		addr = netip.MustParsePrefix("10.77.0.1/24")
	}
	var rnd [2]byte
	_, _ = rand.Read(rnd[:])
	n := &Net{
		Name:   "nbv" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(rnd[:]),
		Bridge: "nbvbr0",
		Addr:   addr,
		MAC:    bridgeMAC,
		t:      t,
		ip:     testenv.Command(t, "ip"),
	}
	n.run("netns", "add", n.Name)
	t.Cleanup(func() {
		// Deleting the namespace deletes its devices; processes started in it
		// are killed by their own cleanups, which run before this one.
		if out, err := exec.Command(n.ip, "netns", "del", n.Name).CombinedOutput(); err != nil {
			t.Errorf("vmtest: deleting netns %s: %v: %s", n.Name, err, out)
		}
	})
	// DAD would keep fresh IPv6 addresses tentative for a second or more.
	n.sysctl("net/ipv6/conf/default/accept_dad", "0")
	n.sysctl("net/ipv6/conf/all/accept_dad", "0")
	n.run("-n", n.Name, "link", "set", "lo", "up")
	n.run("-n", n.Name, "link", "add", n.Bridge, "address", n.MAC.String(), "type", "bridge",
		"stp_state", "0", "forward_delay", "0")
	n.run("-n", n.Name, "addr", "add", addr.String(), "dev", n.Bridge)
	n.run("-n", n.Name, "addr", "add", raSource+"/64", "dev", n.Bridge, "nodad")
	n.run("-n", n.Name, "link", "set", n.Bridge, "up")
	if !cfg.NoRA {
		n.startRA()
	}
	return n
}

// IP is the bridge's IPv4 address, where servers listen.
func (n *Net) IP() netip.Addr { return n.Addr.Addr() }

// Host returns the i-th address of the bridge's subnet (Host(1) is the
// bridge itself in the default layout), for static leases and pools.
func (n *Net) Host(i int) netip.Addr {
	a := n.Addr.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += uint32(i)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// AddTap creates a tap device "nbvtapN" on the bridge and returns its name.
// The VM using it must run in the namespace (Config.Netns).
func (n *Net) AddTap() string {
	n.mu.Lock()
	name := "nbvtap" + strconv.Itoa(n.taps)
	n.taps++
	n.mu.Unlock()
	n.run("-n", n.Name, "tuntap", "add", "dev", name, "mode", "tap")
	n.run("-n", n.Name, "link", "set", name, "master", n.Bridge, "up")
	return name
}

// AddPeer creates a second network namespace joined to the bridge by a
// veth pair, with addr on its end, for a peer server such as another DHCP
// server (proxyDHCP tests). The returned Net is that namespace: its Bridge
// is the veth end (so Dnsmasq and Listen* serve on it), Addr is addr, and
// Start, Dnsmasq, Do and the Listen methods work in it; AddTap and the
// router advertisements are the main Net's business. Everything is deleted
// when the test ends.
func (n *Net) AddPeer(addr netip.Prefix) *Net {
	n.t.Helper()
	n.mu.Lock()
	i := n.peers
	n.peers++
	n.mu.Unlock()
	p := &Net{
		Name:   n.Name + "-p" + strconv.Itoa(i),
		Bridge: "nbvpeer",
		Addr:   addr,
		t:      n.t,
		ip:     n.ip,
	}
	n.run("netns", "add", p.Name)
	n.t.Cleanup(func() {
		if out, err := exec.Command(n.ip, "netns", "del", p.Name).CombinedOutput(); err != nil {
			n.t.Errorf("vmtest: deleting netns %s: %v: %s", p.Name, err, out)
		}
	})
	port := "nbvpeer" + strconv.Itoa(i)
	n.run("-n", n.Name, "link", "add", port, "type", "veth", "peer", "name", p.Bridge, "netns", p.Name)
	n.run("-n", n.Name, "link", "set", port, "master", n.Bridge, "up")
	n.run("-n", p.Name, "link", "set", "lo", "up")
	n.run("-n", p.Name, "addr", "add", addr.String(), "dev", p.Bridge)
	n.run("-n", p.Name, "link", "set", p.Bridge, "up")
	return p
}

// Do runs fn on an OS thread that has joined the namespace. Sockets created
// in fn stay in the namespace after fn returns and may be used from any
// goroutine; that is how Go servers in the test process listen there. The
// thread is never returned to the scheduler, so the namespace cannot leak to
// other goroutines.
//
// Only sockets opened inside fn are in the namespace. A server that opens
// more sockets later (pin/tftp opens one per transfer) would open them in
// the host's namespace and send there: run such servers with StartRole.
func (n *Net) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// No UnlockOSThread: when this goroutine ends, the runtime terminates
		// the thread instead of reusing it in the wrong namespace.
		runtime.LockOSThread()
		fd, err := unix.Open("/run/netns/"+n.Name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("vmtest: opening netns %s: %w", n.Name, err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("vmtest: entering netns %s: %w", n.Name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Listen opens a listener inside the namespace (e.g. "tcp", "10.77.0.1:80")
// and closes it when the test ends.
func (n *Net) Listen(network, addr string) net.Listener {
	n.t.Helper()
	var l net.Listener
	err := n.Do(func() (err error) {
		l, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		n.t.Fatalf("vmtest: listen %s %s in %s: %v", network, addr, n.Name, err)
	}
	n.t.Cleanup(func() { _ = l.Close() })
	return l
}

// ListenPacket opens a packet socket inside the namespace (e.g. "udp4",
// "10.77.0.1:69") and closes it when the test ends.
func (n *Net) ListenPacket(network, addr string) net.PacketConn {
	n.t.Helper()
	var c net.PacketConn
	err := n.Do(func() (err error) {
		c, err = net.ListenPacket(network, addr)
		return err
	})
	if err != nil {
		n.t.Fatalf("vmtest: listen %s %s in %s: %v", network, addr, n.Name, err)
	}
	n.t.Cleanup(func() { _ = c.Close() })
	return c
}

// ListenDHCP opens a DHCP server socket inside the namespace: 0.0.0.0:port
// bound to the bridge, broadcast allowed. (A socket bound to the bridge's
// unicast address would not see broadcast DISCOVERs.) port 0 means 67.
func (n *Net) ListenDHCP(port int) *net.UDPConn {
	n.t.Helper()
	if port == 0 {
		port = 67
	}
	var c *net.UDPConn
	err := n.Do(func() (err error) {
		c, err = server4.NewIPv4UDPConn(n.Bridge, &net.UDPAddr{IP: net.IPv4zero, Port: port})
		return err
	})
	if err != nil {
		n.t.Fatalf("vmtest: DHCP socket on %s in %s: %v", n.Bridge, n.Name, err)
	}
	n.t.Cleanup(func() { _ = c.Close() })
	return c
}

// Command returns a command that runs inside the namespace (via `ip netns
// exec`, which execs in place, so the process's PID is the command's own).
func (n *Net) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, n.ip, append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Process is a background program started in a namespace by Net.Start.
type Process struct {
	Cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
	err  error
}

// Output returns what the process wrote to stdout and stderr so far.
func (p *Process) Output() string { return p.out.String() }

// Done is closed when the process has exited; Err then tells why.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is the process's exit status, valid once Done is closed.
func (p *Process) Err() error { return p.err }

// Start runs a background program in the namespace. It is killed by its PID
// when the test ends, and its output is logged if the test failed.
func (n *Net) Start(name string, args ...string) *Process {
	n.t.Helper()
	p := &Process{Cmd: n.Command(context.Background(), name, args...), out: &lockedBuffer{}, done: make(chan struct{})}
	p.Cmd.Stdout = p.out
	p.Cmd.Stderr = p.out
	if err := p.Cmd.Start(); err != nil {
		n.t.Fatalf("vmtest: starting %s in %s: %v", name, n.Name, err)
	}
	go func() {
		p.err = p.Cmd.Wait()
		close(p.done)
	}()
	n.t.Cleanup(func() {
		_ = p.Cmd.Process.Kill()
		<-p.done
		if n.t.Failed() {
			n.t.Logf("vmtest: output of %s:\n%s", strings.Join(p.Cmd.Args, " "), p.Output())
		}
	})
	return p
}

// Go runs serve in a goroutine and, when the test ends, cancels its context
// and waits for it to return. A non-nil error other than the context's
// fails the test. Use it only for Go servers that never open sockets of
// their own after start, with sockets from Listen, ListenPacket or
// ListenDHCP; anything else belongs in StartRole.
func (n *Net) Go(serve func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx) }()
	n.t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && ctx.Err() == nil {
				n.t.Errorf("vmtest: server returned: %v", err)
			}
		case <-time.After(10 * time.Second):
			n.t.Errorf("vmtest: server did not stop within 10 s of cancellation")
		}
	})
}

func (n *Net) run(args ...string) {
	n.t.Helper()
	out, err := exec.Command(n.ip, args...).CombinedOutput()
	if err != nil {
		n.t.Fatalf("vmtest: ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// sysctl writes a /proc/sys value inside the namespace.
func (n *Net) sysctl(key, value string) {
	n.t.Helper()
	err := n.Do(func() error {
		return os.WriteFile("/proc/sys/"+key, []byte(value), 0o644)
	})
	if err != nil {
		n.t.Fatalf("vmtest: sysctl %s in %s: %v", key, n.Name, err)
	}
}

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
