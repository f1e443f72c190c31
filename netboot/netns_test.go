//go:build linux

package netboot_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/internal/testenv"
	"github.com/nixboot/nixboot/netboot"
)

// TestServerInNamespace runs a Server on sockets created in a network
// namespace (from one thread, as VM harnesses do) and boots a client from a
// second namespace over a veth pair: TFTP transfers must work (their
// sockets opened in the server's namespace), and the loader fetch must be
// tied to the client's MAC through the ARP table of that namespace, not the
// process's.
func TestServerInNamespace(t *testing.T) {
	testenv.Root(t)
	ip := testenv.Command(t, "ip")
	id := nsCounter.Add(1)
	srvNS, cliNS := fmt.Sprintf("nbns%d-%ds", os.Getpid(), id), fmt.Sprintf("nbns%d-%dc", os.Getpid(), id)
	run := func(args ...string) {
		t.Helper()
		out, err := exec.Command(ip, args...).CombinedOutput()
		require.NoError(t, err, "ip %v: %s", args, out)
	}
	for _, ns := range []string{srvNS, cliNS} {
		run("netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command(ip, "netns", "del", ns).Run() })
	}
	run("link", "add", "nbv-s", "netns", srvNS, "type", "veth", "peer", "name", "nbv-c", "netns", cliNS)
	run("-n", srvNS, "addr", "add", "10.98.0.1/24", "dev", "nbv-s")
	run("-n", cliNS, "addr", "add", "10.98.0.2/24", "dev", "nbv-c")
	for _, ns := range []string{srvNS, cliNS} {
		run("-n", ns, "link", "set", "lo", "up")
	}
	run("-n", srvNS, "link", "set", "nbv-s", "up")
	run("-n", cliNS, "link", "set", "nbv-c", "up")

	var clientMAC net.HardwareAddr
	var udp net.PacketConn
	var tcp net.Listener
	var err error
	inNamespace(t, cliNS, func() {
		var ifi *net.Interface
		if ifi, err = net.InterfaceByName("nbv-c"); err == nil {
			clientMAC = ifi.HardwareAddr
		}
	})
	require.NoError(t, err)
	inNamespace(t, srvNS, func() {
		if udp, err = net.ListenPacket("udp4", "10.98.0.1:0"); err != nil {
			return
		}
		tcp, err = net.Listen("tcp4", "10.98.0.1:0")
	})
	require.NoError(t, err)

	loader := randomBytes(t, 200_000)
	tracker := &netboot.Tracker{}
	fx := newBootFixture(t, nil)
	srv := &netboot.Server{
		Inventory: fx.inv, Files: netboot.FS(fstest.MapFS{"undionly.kpxe": {Data: loader}}),
		TFTPConn: udp, HTTPListener: tcp, State: tracker,
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})

	var got []byte
	inNamespace(t, cliNS, func() {
		got, _, err = pinGet(t, udp.LocalAddr().String(), "undionly.kpxe", 1468)
	})
	require.NoError(t, err)
	assert.Equal(t, loader, got)
	require.Eventually(t, func() bool {
		for _, s := range tracker.States() {
			if s.MAC == clientMAC.String() && s.Phase == netboot.PhaseLoader {
				return true
			}
		}
		return false
	}, 3*time.Second, 20*time.Millisecond, "no loader phase for %s: %+v", clientMAC, tracker.States())
}
