//go:build linux

package pxe_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/pxe"
)

// pxeDiscover is a BIOS PXE DISCOVER from machine i.
func pxeDiscover(t *testing.T, i byte, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	d, err := dhcpv4.NewDiscovery(mac(i), append([]dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
	}, mods...)...)
	require.NoError(t, err)
	return d
}

// TestServerBoundedConcurrency: with Workers = 2, a policy that blocks is
// never entered more than twice at once, and the packets that waited are
// all answered once it unblocks (they queue, they are not dropped).
func TestServerBoundedConcurrency(t *testing.T) {
	var (
		inflight, most atomic.Int32
		entered        = make(chan struct{}, 16)
		release        = make(chan struct{})
	)
	policy := pxe.PolicyFunc(func(ctx context.Context, c pxe.Client) (pxe.Answer, error) {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		entered <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
			return pxe.Answer{}, ctx.Err()
		}
		return pxe.Answer{BootFile: "undionly.kpxe"}, nil
	})
	r := start(t, &pxe.Server{Mode: pxe.ModeProxy, Policy: policy, Workers: 2, PolicyTimeout: 20 * time.Second})

	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: serverIP})
	require.NoError(t, err)
	defer conn.Close()
	const n = 8
	for i := range byte(n) {
		_, err := conn.WriteTo(pxeDiscover(t, 40+i).ToBytes(), r.addr)
		require.NoError(t, err)
	}
	for range 2 {
		select {
		case <-entered:
		case <-time.After(5 * time.Second):
			t.Fatal("the policy was not called")
		}
	}
	// The other six wait: no third call while two are blocked.
	select {
	case <-entered:
		t.Fatal("a third packet was handled while both workers were busy")
	case <-time.After(300 * time.Millisecond):
	}
	assert.Equal(t, int32(2), most.Load())
	close(release)

	got := map[string]bool{}
	buf := make([]byte, 1500)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	for len(got) < n {
		k, _, err := conn.ReadFrom(buf)
		require.NoError(t, err, "%d of %d offers", len(got), n)
		reply, err := dhcpv4.FromBytes(buf[:k])
		require.NoError(t, err)
		assert.Equal(t, "undionly.kpxe", reply.BootFileName)
		got[reply.ClientHWAddr.String()] = true
	}
	assert.LessOrEqual(t, most.Load(), int32(2))
}

// TestServeWaitsForInFlight: cancelling Serve's context cancels the
// policy's context, and Serve returns nil only after the packet being
// handled has finished.
func TestServeWaitsForInFlight(t *testing.T) {
	var finished atomic.Bool
	entered := make(chan struct{})
	policy := pxe.PolicyFunc(func(ctx context.Context, c pxe.Client) (pxe.Answer, error) {
		close(entered)
		<-ctx.Done()
		time.Sleep(200 * time.Millisecond) // slow clean-up
		finished.Store(true)
		return pxe.Answer{}, ctx.Err()
	})
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: serverIP})
	require.NoError(t, err)
	boot, err := net.ListenUDP("udp4", &net.UDPAddr{IP: serverIP})
	require.NoError(t, err)
	s := &pxe.Server{Mode: pxe.ModeProxy, Policy: policy, ServerIP: serverIP, Conn: conn, BootConn: boot, PolicyTimeout: 20 * time.Second}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()

	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: serverIP})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.WriteTo(pxeDiscover(t, 60).ToBytes(), conn.LocalAddr())
	require.NoError(t, err)
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the policy was not called")
	}
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
		assert.True(t, finished.Load(), "Serve returned before the packet in flight was done")
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	_, err = conn.WriteTo([]byte{1}, conn.LocalAddr())
	require.ErrorIs(t, err, net.ErrClosed, "Serve closed the DHCP socket")
	_, err = boot.WriteTo([]byte{1}, boot.LocalAddr())
	require.ErrorIs(t, err, net.ErrClosed, "Serve closed the boot server socket")
}

// syncBuffer is a bytes.Buffer safe for the server's concurrent logging.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServerLogsUnknownArchAsNumbers: architecture codes without a name
// are kept and logged as numbers, both per packet and in the decision.
func TestServerLogsUnknownArchAsNumbers(t *testing.T) {
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := start(t, &pxe.Server{Mode: pxe.ModeProxy, Policy: testLoaders(), Logger: logger})
	d, err := dhcpv4.NewDiscovery(mac(70),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00041:UNDI:003000")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.Arch(41), iana.Arch(0xbeef))))
	require.NoError(t, err)
	assert.Nil(t, exchange(t, r.addr, d, 300*time.Millisecond), "no loader for arch 41: no proxy offer")
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "nothing to boot") }, 2*time.Second, 10*time.Millisecond)
	out := logs.String()
	assert.Contains(t, out, `level=DEBUG msg="pxe: request" mac=02:ee:00:00:00:46 type=DISCOVER arch="[41 48879]"`)
	assert.Contains(t, out, `level=INFO msg="pxe: nothing to boot" mac=02:ee:00:00:00:46 arch=41`)
	assert.Contains(t, out, "(arch 41)")
	assert.NotContains(t, out, "arch=unknown")
}

// TestServerProxyRequest: in proxy mode a REQUEST that names this server
// (option 54) gets an ACK with the boot file and no address, as NICs that
// insist on a REQUEST/ACK need; a REQUEST naming another server gets
// nothing.
func TestServerProxyRequest(t *testing.T) {
	r := start(t, &pxe.Server{Mode: pxe.ModeProxy, Policy: testLoaders()})
	f := fixtureByName(t, "ovmf-native-pxe")
	ack := exchange(t, r.addr, discover(t, f, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), pxe.WithServerID(serverIP)), time.Second)
	require.NotNil(t, ack)
	assert.Equal(t, dhcpv4.MessageTypeAck, ack.MessageType())
	assert.True(t, ack.YourIPAddr.IsUnspecified())
	assert.Equal(t, "ipxe.efi", ack.BootFileName)
	assertPXEOptions(t, ack)
	other := discover(t, f, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), pxe.WithServerID(net.IPv4(10, 9, 0, 254)))
	assert.Nil(t, exchange(t, r.addr, other, 300*time.Millisecond))
}

// TestServerBootFileTooLong: a policy answer that does not fit the BOOTP
// file field is never truncated. Full mode still leases an address, without
// boot information, and logs the error; proxy mode stays silent.
func TestServerBootFileTooLong(t *testing.T) {
	long := "http://10.9.0.1/" + strings.Repeat("a", 112) // 128 bytes
	policy := pxe.PolicyFunc(func(context.Context, pxe.Client) (pxe.Answer, error) {
		return pxe.Answer{BootFile: long}, nil
	})
	t.Run("full", func(t *testing.T) {
		var logs syncBuffer
		r := start(t, &pxe.Server{Mode: pxe.ModeFull, Network: testNetwork(), Policy: policy, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		f := fixtureByName(t, "qemu-ipxe-bios-rom")
		lease, err := client(t, r, f.mac).Request(t.Context(), f.mods...)
		require.NoError(t, err)
		for _, m := range []*dhcpv4.DHCPv4{lease.Offer, lease.ACK} {
			assert.False(t, m.YourIPAddr.IsUnspecified())
			assert.Empty(t, m.BootFileName)
			assert.False(t, m.Options.Has(dhcpv4.OptionBootfileName))
		}
		assert.Contains(t, logs.String(), "longer than 127 bytes")
	})
	t.Run("proxy", func(t *testing.T) {
		r := start(t, &pxe.Server{Mode: pxe.ModeProxy, Policy: policy})
		assert.Nil(t, exchange(t, r.addr, discover(t, fixtureByName(t, "qemu-ipxe-bios-rom")), 300*time.Millisecond))
	})
}
