//go:build linux

package pxe_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/nixboot/nixboot/internal/netstat"
	"github.com/nixboot/nixboot/internal/testenv"
	"github.com/nixboot/nixboot/pxe"
)

var netnsSeq atomic.Int32

// testNet is a server namespace and a client namespace joined by a veth
// pair, both created by the test and deleted when it ends. Nothing touches
// the machine's own interfaces. Addresses: server 10.77.0.1/24, client
// 10.77.0.2/24 (the client's is only set when a test asks for it).
type testNet struct {
	srvNS, cliNS string
	srvIf, cliIf string
	ip           string
}

func newTestNet(t *testing.T) *testNet {
	t.Helper()
	testenv.Root(t)
	ipCmd := testenv.Command(t, "ip")
	n := netnsSeq.Add(1)
	tag := fmt.Sprintf("nbp%d%c%d", os.Getpid()%100000, 'a'+rune(n%26), n/26)
	tn := &testNet{srvNS: tag + "s", cliNS: tag + "c", srvIf: tag + "s", cliIf: tag + "c", ip: "10.77.0.1"}
	run := func(args ...string) {
		t.Helper()
		out, err := exec.Command(ipCmd, args...).CombinedOutput()
		require.NoError(t, err, "ip %s: %s", strings.Join(args, " "), out)
	}
	run("netns", "add", tn.srvNS)
	t.Cleanup(func() { _ = exec.Command(ipCmd, "netns", "del", tn.srvNS).Run() })
	run("netns", "add", tn.cliNS)
	t.Cleanup(func() { _ = exec.Command(ipCmd, "netns", "del", tn.cliNS).Run() })
	run("link", "add", tn.srvIf, "netns", tn.srvNS, "type", "veth", "peer", "name", tn.cliIf, "netns", tn.cliNS)
	run("-n", tn.srvNS, "addr", "add", tn.ip+"/24", "dev", tn.srvIf)
	run("-n", tn.srvNS, "link", "set", tn.srvIf, "up")
	run("-n", tn.srvNS, "link", "set", "lo", "up")
	run("-n", tn.cliNS, "link", "set", tn.cliIf, "up")
	run("-n", tn.cliNS, "link", "set", "lo", "up")
	return tn
}

// clientAddr gives the client end 10.77.0.2/24 (perfdhcp needs one: it
// acts as a relay and uses it as giaddr).
func (tn *testNet) clientAddr(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "-n", tn.cliNS, "addr", "add", "10.77.0.2/24", "dev", tn.cliIf).CombinedOutput()
	require.NoError(t, err, "%s", out)
	return "10.77.0.2"
}

func (tn *testNet) setClientMAC(t *testing.T, mac net.HardwareAddr) {
	t.Helper()
	out, err := exec.Command("ip", "-n", tn.cliNS, "link", "set", tn.cliIf, "address", mac.String()).CombinedOutput()
	require.NoError(t, err, "%s", out)
}

// inNetns runs fn on an OS thread switched into the named namespace. The
// thread stays locked and is discarded when the goroutine ends, so the
// switch never leaks to other goroutines. Sockets fn opens stay in ns.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the runtime drops the thread
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// serve runs s in the server namespace, on sockets bound to the veth, until
// the test ends.
func (tn *testNet) serve(t *testing.T, s *pxe.Server) {
	t.Helper()
	err := inNetns(tn.srvNS, func() error {
		c, err := pxe.ListenPacket(tn.srvIf, 67)
		if err != nil {
			return err
		}
		s.Conn = c
		if s.Mode == pxe.ModeProxy {
			b, err := pxe.ListenPacket(tn.srvIf, pxe.PXEBootServerPort)
			if err != nil {
				c.Close()
				return err
			}
			s.BootConn = b
		}
		return nil
	})
	require.NoError(t, err)
	s.Interface = tn.srvIf
	s.ServerIP = net.ParseIP(tn.ip)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return")
		}
	})
}

// client runs a command in the client namespace with a time limit.
func (tn *testNet) client(t *testing.T, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", tn.cliNS, name}, args...)...)
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// udpRcvbufErrors returns the UDP RcvbufErrors counter of namespace ns:
// datagrams its kernel dropped because a socket's receive buffer was full.
func udpRcvbufErrors(t *testing.T, ns string) int {
	t.Helper()
	var snmp []byte
	err := inNetns(ns, func() error {
		b, err := os.ReadFile("/proc/thread-self/net/snmp")
		snmp = b
		return err
	})
	require.NoError(t, err)
	n, err := netstat.UDPRcvbufErrors(snmp)
	require.NoError(t, err, "%s's /proc/net/snmp", ns)
	return n
}
