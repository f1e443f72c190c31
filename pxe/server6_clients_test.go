//go:build linux

package pxe_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/internal/netstat"
	"github.com/nixboot/nixboot/internal/testenv"
	"github.com/nixboot/nixboot/pxe"
)

// serve6 runs s in the server namespace on a socket bound to the veth,
// with fd00:77::1/64 on it, until the returned stop is called or the test
// ends.
func (tn *testNet) serve6(t *testing.T, s *pxe.Server6) (stop func()) {
	t.Helper()
	out, err := exec.Command("ip", "-n", tn.srvNS, "addr", "replace", "fd00:77::1/64", "dev", tn.srvIf, "nodad").CombinedOutput()
	require.NoError(t, err, "%s", out)
	err = inNetns(tn.srvNS, func() error {
		c, err := pxe.ListenPacket6(tn.srvIf)
		s.Conn = c
		return err
	})
	require.NoError(t, err)
	s.ServerIP = net.ParseIP("fd00:77::1")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("Serve6 did not return")
		}
	}
	t.Cleanup(stop)
	return stop
}

// waitLinkLocal waits until the client end's link-local address has passed
// duplicate address detection: DHCPv6 clients send from it.
func (tn *testNet) waitLinkLocal(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool {
		out, err := exec.Command("ip", "-n", tn.cliNS, "-6", "addr", "show", "dev", tn.cliIf).CombinedOutput()
		return err == nil && strings.Contains(string(out), "fe80::") && !strings.Contains(string(out), "tentative")
	}, 10*time.Second, 50*time.Millisecond)
}

// dhclient -6 (ISC) gets an address from the prefix and the DNS server;
// after the server restarts, a client with the same DUID gets the same
// address again, with no lease file on the server.
func TestDhclient6(t *testing.T) {
	dhclient := testenv.Command(t, "dhclient")
	tn := newTestNet(t)
	tn.setClientMAC(t, net.HardwareAddr{0x02, 0, 0, 0, 0x77, 6})
	tn.waitLinkLocal(t)
	newServer := func() *pxe.Server6 {
		return &pxe.Server6{
			Interface: tn.srvIf,
			ServerID:  &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{0x02, 0, 0, 0, 0x77, 1}},
			Prefix:    netip.MustParsePrefix("fd00:77::/64"),
			DNS:       []net.IP{net.ParseIP("fd00:77::53")},
		}
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "script")
	require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\nenv > "+dir+"/env.$reason\nexit 0\n"), 0o755))
	// run gets a lease with a fresh lease file and returns dhclient's view
	// of it; the daemon it leaves behind is stopped first.
	run := func(t *testing.T, n int) map[string]string {
		t.Helper()
		pid := filepath.Join(dir, "pid")
		lease := filepath.Join(dir, "lease"+strconv.Itoa(n))
		out, err := tn.client(t, 60*time.Second, dhclient, "-6", "-1", "-v", "-D", "LL", "-sf", script,
			"-lf", lease, "-pf", pid, tn.cliIf)
		if b, err := os.ReadFile(pid); err == nil {
			if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				_ = exec.Command("kill", strconv.Itoa(p)).Run()
			}
		}
		require.NoError(t, err, "%s", out)
		b, err := os.ReadFile(filepath.Join(dir, "env.BOUND6"))
		require.NoError(t, err, "dhclient output:\n%s", out)
		require.NoError(t, os.Remove(filepath.Join(dir, "env.BOUND6")))
		env := map[string]string{}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				env[k] = v
			}
		}
		return env
	}
	var mu sync.Mutex
	var seen []string
	first := newServer()
	first.Observer = func(ex pxe.Exchange6) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, fmt.Sprintf("%s %s->%s %v", ex.MAC, ex.Request, ex.Reply, ex.Err))
	}
	stop := tn.serve6(t, first)
	env := run(t, 1)
	addr, err := netip.ParseAddr(env["new_ip6_address"])
	require.NoError(t, err, "%v", env)
	assert.True(t, netip.MustParsePrefix("fd00:77::/64").Contains(addr), addr)
	assert.Equal(t, "fd00:77::53", strings.TrimSpace(env["new_dhcp6_name_servers"]))
	t.Logf("dhclient got %s", addr)

	stop()
	mu.Lock()
	assert.Contains(t, seen, "02:00:00:00:77:06 SOLICIT->ADVERTISE <nil>", "the Observer's view: %q", seen)
	assert.Contains(t, seen, "02:00:00:00:77:06 REQUEST->REPLY <nil>", "the Observer's view: %q", seen)
	mu.Unlock()
	tn.serve6(t, newServer())
	env = run(t, 2)
	assert.Equal(t, addr.String(), env["new_ip6_address"], "the same client after a server restart")
}

// perfdhcp -6 (Kea), as a client on the link and as a relay (-A 1, with a
// link-local link-address, which names no link): every Solicit and Request
// is answered, and perfdhcp sees no address twice.
func TestPerfdhcp6(t *testing.T) {
	perf := testenv.Command(t, "perfdhcp")
	tn := newTestNet(t)
	tn.waitLinkLocal(t)
	var mu sync.Mutex
	counts := map[string]int{}
	tn.serve6(t, &pxe.Server6{
		Interface: tn.srvIf,
		ServerID:  &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{0x02, 0, 0, 0, 0x77, 1}},
		Prefix:    netip.MustParsePrefix("fd00:77::/64"),
		Observer: func(ex pxe.Exchange6) {
			mu.Lock()
			defer mu.Unlock()
			counts[fmt.Sprintf("%s->%s", ex.Request, ex.Reply)]++
		},
	})
	for _, relay := range []bool{false, true} {
		t.Run(fmt.Sprintf("relay=%v", relay), func(t *testing.T) {
			mu.Lock()
			clear(counts)
			mu.Unlock()
			// As in TestPerfdhcpRelayed: -d 5 and -W let a reply that is
			// late under CI's load still count.
			args := []string{"-6", "-l", tn.cliIf, "-r", "200", "-R", "50", "-n", "400", "-d", "5", "-W", "5000000"}
			if relay {
				args = append(args, "-A", "1")
			}
			srvOverflow, cliOverflow := udp6RcvbufErrors(t, tn.srvNS), udp6RcvbufErrors(t, tn.cliNS)
			out, err := tn.client(t, 60*time.Second, perf, args...)
			srvOverflow, cliOverflow = udp6RcvbufErrors(t, tn.srvNS)-srvOverflow, udp6RcvbufErrors(t, tn.cliNS)-cliOverflow
			// perfdhcp exits 3 when it counted drops; the counts say why.
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 3 {
				require.NoError(t, err, "%s", out)
			}
			c := perfdhcpCounts(out)
			t.Logf("perfdhcp: %v; receive-buffer overflows: server %d, perfdhcp %d", c, srvOverflow, cliOverflow)
			require.Equal(t, 400, c["sent packets"], "%s", out)
			assert.Zero(t, srvOverflow, "Solicits lost at the server's socket")
			mu.Lock()
			defer mu.Unlock()
			t.Logf("server: %v", counts)
			// Every Solicit reached the server and was answered; perfdhcp
			// counted every Advertise except any its own receive buffer
			// dropped while the load kept it from reading. Any other loss
			// fails.
			assert.Equal(t, 400, counts["SOLICIT->ADVERTISE"], "%v", counts)
			assert.Equal(t, cliOverflow, c["drops"], "drops not explained by perfdhcp's own socket: %s", out)
			assert.Equal(t, 400-cliOverflow, c["received packets"], "%s", out)
			assert.Equal(t, 400-cliOverflow, counts["REQUEST->REPLY"], "a Request for every Advertise perfdhcp got: %v", counts)
			assert.Contains(t, out, "non unique addresses: 0")
		})
	}
}

// udp6RcvbufErrors returns the Udp6RcvbufErrors counter of namespace ns.
func udp6RcvbufErrors(t *testing.T, ns string) int {
	t.Helper()
	var snmp6 []byte
	err := inNetns(ns, func() error {
		b, err := os.ReadFile("/proc/thread-self/net/snmp6")
		snmp6 = b
		return err
	})
	require.NoError(t, err)
	n, err := netstat.UDP6RcvbufErrors(snmp6)
	require.NoError(t, err, "%s's /proc/net/snmp6", ns)
	return n
}
