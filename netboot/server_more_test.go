package netboot_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/internal/testenv"
	"github.com/nixboot/nixboot/ipxe"
	"github.com/nixboot/nixboot/netboot"
	"github.com/nixboot/nixboot/pxe"
)

// TestServerFullDHCP runs the Server as a full DHCP server and checks that a
// relayed PXE DISCOVER (relayed, so that the reply goes to the relay's
// unicast address on loopback rather than to a broadcast) gets an address
// from the pool and the loader the profile names for its firmware.
func TestServerFullDHCP(t *testing.T) {
	testenv.Root(t) // the reply goes to the relay's port 67
	fx := newBootFixture(t, func(c *netboot.Config) {
		p := c.Profiles["linux"]
		p.Loaders = map[string]string{"bios": "custom.kpxe"}
		c.Profiles["linux"] = p
		// The inventory is the allow-list: no default profile, unknown
		// machines ignored.
		c.Default, c.IgnoreUnknown = "", true
	})
	r := startServer(t, &netboot.Server{
		Inventory:   fx.inv,
		Files:       netboot.FS(fstest.MapFS{"undionly.kpxe": {Data: []byte("x")}}),
		DHCP:        netboot.DHCPFull,
		DHCPNetwork: &pxe.Network{Subnet: net.IPNet{IP: net.IPv4(127, 0, 0, 0).To4(), Mask: net.CIDRMask(8, 32)}, RangeStart: net.IPv4(127, 0, 9, 10), RangeEnd: net.IPv4(127, 0, 9, 20)},
		Loaders:     pxe.Loaders{BIOS: "undionly.kpxe"},
	})
	relay, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 67})
	require.NoError(t, err)
	defer relay.Close()
	discover := func(t *testing.T, mac net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
		t.Helper()
		d, err := dhcpv4.NewDiscovery(mac, mods...)
		require.NoError(t, err)
		d.GatewayIPAddr = net.IPv4(127, 0, 0, 2)
		return sendDHCP(t, relay, r.dhcpAddr, d, 2*time.Second)
	}
	t.Run("profile loader", func(t *testing.T) {
		offer := discover(t, mustMAC(t, "52:54:00:12:34:56"), biosPXE...)
		require.NotNil(t, offer, "no offer")
		assert.Equal(t, dhcpv4.MessageTypeOffer, offer.MessageType())
		ip := offer.YourIPAddr.To4()
		require.NotNil(t, ip)
		assert.Equal(t, []byte{127, 0, 9}, []byte(ip[:3]))
		assert.GreaterOrEqual(t, ip[3], byte(10))
		assert.LessOrEqual(t, ip[3], byte(20))
		assert.Equal(t, "custom.kpxe", offer.BootFileName, "the profile's loader for bios")
	})
	t.Run("iPXE gets the script", func(t *testing.T) {
		offer := discover(t, mustMAC(t, "52:54:00:12:34:56"), biosIPXE...)
		require.NotNil(t, offer)
		assert.Equal(t, r.httpURL+"/boot.ipxe", offer.BootFileName)
	})
	t.Run("unknown machine gets nothing, not even an address", func(t *testing.T) {
		assert.Nil(t, discover(t, mustMAC(t, "52:54:00:99:99:99"), biosPXE...))
		assert.Nil(t, discover(t, mustMAC(t, "52:54:00:99:99:99"), biosIPXE...))
	})
}

// TestServerDHCPAllowDeny checks that the Server hands its DHCP allow- and
// deny-lists to pxe: in full mode a denied machine, or one off the
// allow-list, gets no address even as a plain DHCP client.
func TestServerDHCPAllowDeny(t *testing.T) {
	testenv.Root(t) // the reply goes to the relay's port 67
	fx := newBootFixture(t, nil)
	allowed, denied, other := mustMAC(t, "52:54:00:00:00:01"), mustMAC(t, "52:54:00:00:00:02"), mustMAC(t, "52:54:00:00:00:03")
	r := startServer(t, &netboot.Server{
		Inventory:   fx.inv,
		DHCP:        netboot.DHCPFull,
		DHCPNetwork: &pxe.Network{Subnet: net.IPNet{IP: net.IPv4(127, 0, 0, 0).To4(), Mask: net.CIDRMask(8, 32)}, RangeStart: net.IPv4(127, 0, 9, 10), RangeEnd: net.IPv4(127, 0, 9, 20)},
		DHCPAllow:   []net.HardwareAddr{allowed, denied},
		DHCPDeny:    []net.HardwareAddr{denied},
	})
	relay, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 67})
	require.NoError(t, err)
	defer relay.Close()
	discover := func(mac net.HardwareAddr) *dhcpv4.DHCPv4 {
		d, err := dhcpv4.NewDiscovery(mac)
		require.NoError(t, err)
		d.GatewayIPAddr = net.IPv4(127, 0, 0, 2)
		return sendDHCP(t, relay, r.dhcpAddr, d, time.Second)
	}
	offer := discover(allowed)
	require.NotNil(t, offer, "the allowed machine")
	assert.Equal(t, dhcpv4.MessageTypeOffer, offer.MessageType())
	assert.Nil(t, discover(denied), "denied, though on the allow-list")
	assert.Nil(t, discover(other), "not on the allow-list")

	// The DHCP packets are counted, with their replies.
	_, err = relay.WriteTo([]byte("not DHCP"), r.dhcpAddr)
	require.NoError(t, err)
	want := []string{
		`nixboot_dhcp_total{reply="offer",request="discover"} 1`,
		`nixboot_dhcp_total{reply="none",request="discover"} 2`,
		`nixboot_dhcp_total{reply="none",request="unparsable"} 1`,
	}
	eventuallyMetrics(t, r.httpURL, want)
}

// TestServerMetricsResults checks that refusals, missing files and our own
// failures are counted apart, and failures of ours in errors_total.
func TestServerMetricsResults(t *testing.T) {
	inv := netboot.InventoryFunc(func(context.Context, *netboot.Machine) (*netboot.Boot, error) {
		return nil, netboot.ErrUnknownMachine
	})
	files := netboot.Chain(
		netboot.FS(fstest.MapFS{"ok.bin": {Data: []byte("fine")}}),
		netboot.Files{"broken": netboot.SourceFunc(func(context.Context, *netboot.Request) (*netboot.File, error) {
			return nil, errors.New("disk on fire")
		})},
	)
	reg := prometheus.NewRegistry()
	r := startServer(t, &netboot.Server{Inventory: inv, Files: files, Metrics: reg})
	_, _, err := pinGet(t, r.tftpAddr, "ok.bin", 0)
	require.NoError(t, err)
	_, _, err = pinGet(t, r.tftpAddr, "missing", 0)
	require.Error(t, err)
	_, _, err = pinGet(t, r.tftpAddr, "broken", 0)
	require.Error(t, err)
	reply := rawRRQ(t, r.tftpAddr, rrq("../etc/passwd", "octet"))
	_, _, isErr := tftpError(reply)
	require.True(t, isErr)
	resp, _ := get(t, r.httpURL+"/broken")
	assert.Equal(t, 500, resp.StatusCode)

	wants := []string{
		`nixboot_requests_total{proto="tftp",result="ok"} 1`,
		`nixboot_requests_total{proto="tftp",result="not_found"} 1`,
		`nixboot_requests_total{proto="tftp",result="error"} 1`,
		`nixboot_requests_total{proto="tftp",result="refused"} 1`,
		`nixboot_requests_total{proto="http",result="error"} 1`,
		`nixboot_errors_total{proto="tftp"} 1`,
		`nixboot_errors_total{proto="http"} 1`,
		`nixboot_sent_bytes_total{proto="tftp"} 4`,
	}
	// A TFTP transfer is counted when the server sees the last ACK, which
	// can be just after the client has its data: wait for the counts
	// (bounded), then check every line.
	var text string
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body := get(t, r.httpURL+netboot.MetricsPath)
		text = string(body)
		all := true
		for _, want := range wants {
			all = all && strings.Contains(text, want+"\n")
		}
		if all || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range wants {
		assert.Contains(t, text, want+"\n")
	}
}

// TestProfileIPXETemplate serves a profile's own iPXE template through the
// chain pattern, and a caller's own inventory through InventoryFunc.
func TestProfileIPXETemplate(t *testing.T) {
	fx := newBootFixture(t, func(c *netboot.Config) {
		p := c.Profiles["linux"]
		p.IPXE = "#!ipxe\necho {{ .Vars.role }} on {{ .Machine.MAC }}\n{{boot .Spec}}"
		c.Profiles["linux"] = p
	})
	srv := httptest.NewServer(&netboot.HTTPHandler{Inventory: fx.inv})
	defer srv.Close()
	_, body := get(t, srv.URL+"/boot.ipxe?mac=52:54:00:12:34:56&arch=x86_64")
	script := string(body)
	assert.Contains(t, script, "echo db on 52:54:00:12:34:56\n")
	kernel, initrds := scriptURLs(t, script)
	_, got := get(t, kernel)
	assert.Equal(t, fx.kernel, got)
	require.Len(t, initrds, 2, script)
	_, got = get(t, initrds[1])
	assert.Equal(t, fx.initrd1, got)
	assert.Contains(t, script, "console=ttyS0 hostname=db1 role=db")

	t.Run("own inventory", func(t *testing.T) {
		var seen *netboot.Machine
		inv := netboot.InventoryFunc(func(_ context.Context, m *netboot.Machine) (*netboot.Boot, error) {
			seen = m
			return &netboot.Boot{Profile: "mine", Kernel: netboot.Image{URL: "http://10.0.0.9/k"}, Args: ipxe.Args{ipxe.KV("arch", m.Arch)}}, nil
		})
		srv := httptest.NewServer(&netboot.HTTPHandler{Inventory: inv})
		defer srv.Close()
		_, body := get(t, srv.URL+"/boot.ipxe?mac=52:54:00:00:00:07&uuid=8a0e2b34-aaaa-bbbb-cccc-0123456789ab&arch=arm64")
		assert.Contains(t, string(body), "kernel http://10.0.0.9/k arch=arm64\n")
		require.NotNil(t, seen)
		assert.Equal(t, "8a0e2b34-aaaa-bbbb-cccc-0123456789ab", seen.UUID)
		assert.True(t, strings.HasPrefix(seen.IP.String(), "127."))
	})
}

// TestServerAdminListener checks that with an AdminListener the state and
// metrics are served there and only there.
func TestServerAdminListener(t *testing.T) {
	fx := newBootFixture(t, nil)
	admin, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	adminURL := "http://" + admin.Addr().String()
	r := startServer(t, &netboot.Server{Inventory: fx.inv, AdminListener: admin, Metrics: prometheus.NewRegistry()})

	resp, body := get(t, r.httpURL+"/boot.ipxe?mac=52:54:00:12:34:56")
	require.Equal(t, 200, resp.StatusCode, "%s", body)
	for _, p := range []string{netboot.StatePath, netboot.MetricsPath} {
		resp, _ := get(t, r.httpURL+p)
		assert.Equal(t, 404, resp.StatusCode, "%s on the boot port", p)
	}
	resp, body = get(t, adminURL+netboot.StatePath)
	require.Equal(t, 200, resp.StatusCode)
	assert.Contains(t, string(body), `"mac": "52:54:00:12:34:56"`)
	resp, body = get(t, adminURL+netboot.MetricsPath)
	require.Equal(t, 200, resp.StatusCode)
	assert.Contains(t, string(body), "nixboot_")
	resp, _ = get(t, adminURL+"/boot.ipxe")
	assert.Equal(t, 404, resp.StatusCode, "boot files are not on the admin port")
}

// TestServerDHCPv6 runs the Server's DHCPv6 on loopback: a UEFI machine the
// inventory knows gets an address and the loader as a tftp:// URL on
// ServerIP6, one it does not know gets no reply at all (as in DHCPv4), the
// loader comes over the IPv6 TFTP socket, and the messages are counted.
func TestServerDHCPv6(t *testing.T) {
	fx := newBootFixture(t, func(c *netboot.Config) { c.Default, c.IgnoreUnknown = "", true })
	loader := randomBytes(t, 50_000)
	c6, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	t6, err := net.ListenPacket("udp6", "[::1]:0")
	require.NoError(t, err)
	h6, err := net.Listen("tcp6", "[::1]:0")
	require.NoError(t, err)
	base6 := "http://" + h6.Addr().String()
	tracker := &netboot.Tracker{}
	r := startServer(t, &netboot.Server{
		Inventory:     fx.inv,
		Files:         netboot.FS(fstest.MapFS{"ipxe.efi": {Data: loader}}),
		State:         tracker,
		DHCPv6:        true,
		DHCPv6Conn:    c6,
		DHCPv6Prefix:  netip.MustParsePrefix("fd00:77::/64"),
		ServerIP6:     net.IPv6loopback,
		TFTPConn6:     t6,
		HTTPListener6: h6,
	})
	client, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	require.NoError(t, err)
	defer client.Close()
	exchange := func(m *dhcpv6.Message) *dhcpv6.Message {
		_, err := client.WriteTo(m.ToBytes(), c6.LocalAddr())
		require.NoError(t, err)
		require.NoError(t, client.SetReadDeadline(time.Now().Add(time.Second)))
		buf := make([]byte, 1500)
		n, _, err := client.ReadFrom(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		require.NoError(t, err)
		reply, err := dhcpv6.MessageFromBytes(buf[:n])
		require.NoError(t, err)
		require.Equal(t, m.TransactionID, reply.TransactionID)
		return reply
	}
	solicit := func(mac string) *dhcpv6.Message {
		sol, err := dhcpv6.NewSolicit(mustMAC(t, mac), dhcpv6.WithNetboot, dhcpv6.WithArchType(iana.EFI_X86_64))
		require.NoError(t, err)
		return exchange(sol)
	}
	adv := solicit("52:54:00:12:34:56")
	require.NotNil(t, adv)
	assert.Equal(t, dhcpv6.MessageTypeAdvertise, adv.MessageType)
	assert.Equal(t, "tftp://[::1]/ipxe.efi", adv.Options.BootFileURL())
	addr := adv.Options.OneIANA().Options.OneAddress()
	require.NotNil(t, addr)
	assert.True(t, netip.MustParsePrefix("fd00:77::/64").Contains(netip.AddrFrom16([16]byte(addr.IPv6Addr.To16()))), addr.IPv6Addr)
	assert.Nil(t, solicit("52:54:00:99:99:99"), "a machine the inventory does not know")

	// UEFI HTTP boot and iPXE get URLs on the IPv6 HTTP listener, which
	// serves the loader and the machine's script with IPv6 URLs in it.
	httpBoot, err := dhcpv6.NewSolicit(mustMAC(t, "52:54:00:12:34:56"), dhcpv6.WithNetboot, dhcpv6.WithArchType(iana.EFI_X86_64_HTTP),
		dhcpv6.WithOption(&dhcpv6.OptVendorClass{EnterpriseNumber: 343, Data: [][]byte{[]byte("HTTPClient:Arch:00016:UNDI:003000")}}))
	require.NoError(t, err)
	adv6 := exchange(httpBoot)
	require.NotNil(t, adv6)
	assert.Equal(t, base6+"/ipxe.efi", adv6.Options.BootFileURL())
	assert.Equal(t, [][]byte{[]byte("HTTPClient")}, adv6.Options.VendorClass(343))
	resp, body := get(t, adv6.Options.BootFileURL())
	require.Equal(t, 200, resp.StatusCode)
	assert.True(t, bytes.Equal(loader, body), "the loader over IPv6 HTTP")
	ipxeSol, err := dhcpv6.NewSolicit(mustMAC(t, "52:54:00:12:34:56"), dhcpv6.WithNetboot, dhcpv6.WithArchType(iana.EFI_X86_64),
		dhcpv6.WithUserClass([]byte("iPXE")))
	require.NoError(t, err)
	advIPXE := exchange(ipxeSol)
	require.NotNil(t, advIPXE)
	assert.Equal(t, base6+"/boot.ipxe", advIPXE.Options.BootFileURL())
	_, script := get(t, base6+"/boot.ipxe?mac=52:54:00:12:34:56")
	assert.Contains(t, string(script), "kernel "+base6+"/m/52:54:00:12:34:56/kernel")

	// The Request binds the address, and the boot state knows it.
	req, err := dhcpv6.NewRequestFromAdvertise(adv, dhcpv6.WithNetboot, dhcpv6.WithArchType(iana.EFI_X86_64))
	require.NoError(t, err)
	rep := exchange(req)
	require.NotNil(t, rep)
	bound, ok := netip.AddrFromSlice(rep.Options.OneIANA().Options.OneAddress().IPv6Addr)
	require.True(t, ok)
	assert.Eventually(t, func() bool {
		return tracker.MACForIP(bound).String() == "52:54:00:12:34:56"
	}, 5*time.Second, 20*time.Millisecond, "the tracker maps %s to the machine", bound)

	got, _, err := pinGet(t, t6.LocalAddr().String(), "ipxe.efi", 1468)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(loader, got), "the loader over IPv6 TFTP")

	want := []string{
		`nixboot_dhcpv6_total{reply="advertise",request="solicit"} 3`,
		`nixboot_dhcpv6_total{reply="none",request="solicit"} 1`,
	}
	eventuallyMetrics(t, r.httpURL, want)
}

// eventuallyMetrics waits until the server's metrics hold every line of want.
func eventuallyMetrics(t *testing.T, httpURL string, want []string) {
	t.Helper()
	assert.Eventually(t, func() bool {
		_, body := get(t, httpURL+netboot.MetricsPath)
		for _, w := range want {
			if !strings.Contains(string(body), w+"\n") {
				return false
			}
		}
		return true
	}, 5*time.Second, 50*time.Millisecond, "metrics %v", want)
}
