package netboot_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/netboot"
)

type runningServer struct {
	httpURL  string
	tftpAddr string
	dhcpAddr *net.UDPAddr
	cancel   context.CancelFunc
	done     chan error
}

func startServer(t *testing.T, s *netboot.Server) *runningServer {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	tc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	s.HTTPListener, s.TFTPConn = ln, tc
	r := &runningServer{httpURL: "http://" + ln.Addr().String(), tftpAddr: tc.LocalAddr().String(), done: make(chan error, 1)}
	if s.DHCP != netboot.DHCPOff {
		dc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(t, err)
		bc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(t, err)
		s.DHCPConn, s.DHCPBootConn = dc, bc
		s.ServerIP = net.IPv4(127, 0, 0, 1)
		r.dhcpAddr = dc.LocalAddr().(*net.UDPAddr)
	}
	ctx, cancel := context.WithCancel(t.Context())
	r.cancel = cancel
	go func() { r.done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-r.done:
			assert.NoError(t, err)
		case <-time.After(15 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return r
}

// dhcpExchange sends a DISCOVER and returns the reply, or nil.
func dhcpExchange(t *testing.T, addr *net.UDPAddr, mac net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	d, err := dhcpv4.NewDiscovery(mac, mods...)
	require.NoError(t, err)
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer c.Close()
	return sendDHCP(t, c, addr, d, time.Second)
}

// sendDHCP sends d from c to addr and returns the reply with d's
// transaction ID, or nil if none comes within wait.
func sendDHCP(t *testing.T, c net.PacketConn, addr net.Addr, d *dhcpv4.DHCPv4, wait time.Duration) *dhcpv4.DHCPv4 {
	t.Helper()
	_, err := c.WriteTo(d.ToBytes(), addr)
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(wait)))
	buf := make([]byte, 4096)
	n, _, err := c.ReadFrom(buf)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	require.NoError(t, err)
	reply, err := dhcpv4.FromBytes(buf[:n])
	require.NoError(t, err)
	require.Equal(t, d.TransactionID, reply.TransactionID)
	return reply
}

var (
	biosPXE = []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
	}
	biosIPXE = append(append([]dhcpv4.Modifier{}, biosPXE...), dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")))
)

func TestServerBootSequence(t *testing.T) {
	fx := newBootFixture(t, func(c *netboot.Config) {
		c.Default = ""
		c.Groups = []netboot.GroupConfig{{Selector: map[string]string{"firmware": "bios"}, Profile: "linux"}}
	})
	loader := randomBytes(t, 80_000)
	reg := prometheus.NewRegistry()
	tracker := &netboot.Tracker{}
	r := startServer(t, &netboot.Server{
		Inventory: fx.inv,
		Files:     netboot.FS(fstest.MapFS{"undionly.kpxe": {Data: loader}}),
		DHCP:      netboot.DHCPProxy,
		State:     tracker,
		Metrics:   reg,
	})
	mac := mustMAC(t, "52:54:00:12:34:56")

	// 1. The PXE ROM gets the loader name, iPXE the script URL.
	offer := dhcpExchange(t, r.dhcpAddr, mac, biosPXE...)
	require.NotNil(t, offer, "no proxy offer")
	assert.Equal(t, "undionly.kpxe", offer.BootFileName)
	offer = dhcpExchange(t, r.dhcpAddr, mac, biosIPXE...)
	require.NotNil(t, offer)
	assert.Equal(t, r.httpURL+"/boot.ipxe", offer.BootFileName)
	// A machine the inventory does not serve gets no proxy offer at all.
	assert.Nil(t, dhcpExchange(t, r.dhcpAddr, mustMAC(t, "52:54:00:99:99:99"),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003000")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64))))

	// 2. The loader over TFTP, and the generic script too.
	got, _, err := pinGet(t, r.tftpAddr, "undionly.kpxe", 1432)
	require.NoError(t, err)
	assert.Equal(t, loader, got)
	got, _, err = pinGet(t, r.tftpAddr, "boot.ipxe", 0)
	require.NoError(t, err)
	assert.Contains(t, string(got), "chain "+r.httpURL+"/boot.ipxe?mac=${mac}")

	// 3. The chain over HTTP.
	_, body := get(t, r.httpURL+"/boot.ipxe")
	assert.Contains(t, string(body), "chain "+r.httpURL+"/boot.ipxe?mac=${mac}&uuid=${uuid}&arch=${buildarch}")
	_, body = get(t, r.httpURL+"/boot.ipxe?mac=52:54:00:12:34:56&uuid=&arch=i386")
	kernel, initrds := scriptURLs(t, string(body))
	require.Len(t, initrds, 2, "%s", body)
	_, k := get(t, kernel)
	assert.Equal(t, fx.kernel, k)
	for _, u := range initrds {
		resp, _ := get(t, u)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
	}
	resp, _ := get(t, r.httpURL+"/beacon?mac=52:54:00:12:34:56&phase=done")
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	// 4. Boot state as JSON.
	_, body = get(t, r.httpURL+netboot.StatePath)
	var states []netboot.MachineState
	require.NoError(t, json.Unmarshal(body, &states), "%s", body)
	require.Len(t, states, 1)
	s := states[0]
	assert.Equal(t, "52:54:00:12:34:56", s.MAC)
	assert.Equal(t, netboot.PhaseDone, s.Phase)
	assert.Equal(t, "linux", s.Profile)
	for _, p := range []netboot.Phase{netboot.PhaseDHCP, netboot.PhaseScript, netboot.PhaseKernel, netboot.PhaseInitrd, netboot.PhaseDone} {
		assert.Contains(t, s.Phases, p)
	}

	// 5. Metrics.
	_, body = get(t, r.httpURL+netboot.MetricsPath)
	text := string(body)
	for _, want := range []string{
		`nixboot_requests_total{proto="tftp",result="ok"} 2`,
		`nixboot_boot_phase_total{phase="dhcp"} 1`,
		`nixboot_boot_phase_total{phase="done"} 1`,
		`nixboot_sent_bytes_total{proto="tftp"}`,
	} {
		assert.Contains(t, text, want)
	}
	assert.True(t, strings.Contains(text, `nixboot_requests_total{proto="http",result="ok"}`))

	// 6. Clean shutdown: Serve returns nil and the sockets are closed.
	r.cancel()
	select {
	case err := <-r.done:
		require.NoError(t, err)
		r.done <- nil
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return")
	}
	_, err = http.Get(r.httpURL + "/boot.ipxe")
	assert.Error(t, err)
}

func TestServerConfigErrors(t *testing.T) {
	inv := netboot.InventoryFunc(func(context.Context, *netboot.Machine) (*netboot.Boot, error) {
		return nil, netboot.ErrUnknownMachine
	})
	tests := []struct {
		name string
		s    *netboot.Server
	}{
		{"no inventory", &netboot.Server{}},
		{"dhcp without server ip", &netboot.Server{Inventory: inv, DHCP: netboot.DHCPProxy}},
		{"dhcpv6 without server ip", &netboot.Server{Inventory: inv, DHCPv6: true, DHCPInterface: "lo"}},
		{"dhcpv6 without interface", &netboot.Server{Inventory: inv, DHCPv6: true, ServerIP6: net.ParseIP("fd00::1")}},
		{"dhcpv6 with an IPv4 server ip", &netboot.Server{Inventory: inv, DHCPv6: true, ServerIP6: net.ParseIP("10.0.0.1"), DHCPv6Conn: mustListen(t)}},
		{"wildcard listener without url", &netboot.Server{Inventory: inv, HTTPListener: mustListenTCP(t, "0.0.0.0:0"), TFTPConn: mustListen(t)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.ErrorIs(t, tc.s.Serve(t.Context()), netboot.ErrConfig)
		})
	}
}

func mustListenTCP(t *testing.T, addr string) net.Listener {
	ln, err := net.Listen("tcp4", addr)
	require.NoError(t, err)
	return ln
}
