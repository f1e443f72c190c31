//go:build linux

package pxe_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/pxe"
)

func mac(i byte) net.HardwareAddr { return net.HardwareAddr{0x02, 0xee, 0, 0, 0, i} }

func request(t *testing.T, m net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	d, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(m), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest)}, mods...)...)
	require.NoError(t, err)
	return d
}

// TestServerFullMessages walks through the RFC 2131 messages other than a
// plain DORA, each checked on the wire.
func TestServerFullMessages(t *testing.T) {
	s := &pxe.Server{Mode: pxe.ModeFull, Network: testNetwork()}
	r := start(t, s)
	wait := 500 * time.Millisecond
	discoverFrom := func(m net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
		d, err := dhcpv4.NewDiscovery(m, mods...)
		require.NoError(t, err)
		return exchange(t, r.addr, d, wait)
	}

	t.Run("request for another machine's address is NAKed", func(t *testing.T) {
		lease, err := client(t, r, mac(1)).Request(t.Context())
		require.NoError(t, err)
		taken := lease.ACK.YourIPAddr
		nak := exchange(t, r.addr, request(t, mac(2), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(taken)), pxe.WithServerID(serverIP)), wait)
		require.NotNil(t, nak)
		assert.Equal(t, dhcpv4.MessageTypeNak, nak.MessageType())
		assert.True(t, nak.YourIPAddr.IsUnspecified())
	})
	t.Run("init-reboot on another network is NAKed", func(t *testing.T) {
		nak := exchange(t, r.addr, request(t, mac(3), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 168, 1, 5)))), wait)
		require.NotNil(t, nak)
		assert.Equal(t, dhcpv4.MessageTypeNak, nak.MessageType())
	})
	t.Run("request to another server is ignored", func(t *testing.T) {
		offer := discoverFrom(mac(4))
		require.NotNil(t, offer)
		got := exchange(t, r.addr, request(t, mac(4), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)),
			pxe.WithServerID(net.IPv4(10, 9, 0, 254))), wait)
		assert.Nil(t, got)
	})
	t.Run("inform gets configuration without an address or lease time", func(t *testing.T) {
		inf, err := dhcpv4.NewInform(mac(5), net.IPv4(10, 9, 0, 7))
		require.NoError(t, err)
		ack := exchange(t, r.addr, inf, wait)
		require.NotNil(t, ack)
		assert.Equal(t, dhcpv4.MessageTypeAck, ack.MessageType())
		assert.True(t, ack.YourIPAddr.IsUnspecified())
		assert.False(t, ack.Options.Has(dhcpv4.OptionIPAddressLeaseTime))
		assert.Equal(t, "ffffff00", ack.SubnetMask().String())
	})
	t.Run("declined address is not offered again", func(t *testing.T) {
		offer := discoverFrom(mac(6))
		require.NotNil(t, offer)
		bad := offer.YourIPAddr
		dec, err := dhcpv4.New(dhcpv4.WithHwAddr(mac(6)), dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline),
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(bad)), pxe.WithServerID(serverIP))
		require.NoError(t, err)
		assert.Nil(t, exchange(t, r.addr, dec, 200*time.Millisecond), "no reply to DECLINE")
		again := discoverFrom(mac(6))
		require.NotNil(t, again)
		assert.False(t, bad.Equal(again.YourIPAddr), "offered the declined %s again", bad)
	})
	t.Run("relayed from outside the subnet is dropped", func(t *testing.T) {
		assert.Nil(t, discoverFrom(mac(7), dhcpv4.WithGatewayIP(net.IPv4(172, 16, 0, 1))))
	})
	t.Run("release frees the address for the same machine", func(t *testing.T) {
		c := client(t, r, mac(8))
		lease, err := c.Request(t.Context())
		require.NoError(t, err)
		// nclient4's Release sends to port 67 of the server ID; send it to
		// the test server's port instead.
		rel, err := dhcpv4.NewReleaseFromACK(lease.ACK)
		require.NoError(t, err)
		assert.Nil(t, exchange(t, r.addr, rel, 200*time.Millisecond), "no reply to RELEASE")
		require.Eventually(t, func() bool {
			for _, l := range s.Leases() {
				if l.MAC == mac(8).String() {
					return !l.Expires.After(time.Now())
				}
			}
			return false
		}, 2*time.Second, 20*time.Millisecond)
		again, err := c.Request(t.Context())
		require.NoError(t, err)
		assert.Equal(t, lease.ACK.YourIPAddr.String(), again.ACK.YourIPAddr.String(), "same machine, same address")
	})
}

// TestServerPoolExhaustion fills a 10-address pool: every machine gets its
// own address, the 11th gets no offer, the reservation is unaffected, and
// a machine asking again keeps its address.
func TestServerPoolExhaustion(t *testing.T) {
	s := &pxe.Server{Mode: pxe.ModeFull, Network: testNetwork()}
	r := start(t, s)
	owner := map[string]byte{}
	for i := byte(20); i < 30; i++ {
		lease, err := client(t, r, mac(i)).Request(t.Context())
		require.NoError(t, err, "machine %d", i)
		ip := lease.ACK.YourIPAddr
		assert.True(t, inPool(ip), "%s outside the pool", ip)
		if prev, dup := owner[ip.String()]; dup {
			t.Errorf("%s given to machines %d and %d", ip, prev, i)
		}
		owner[ip.String()] = i
	}
	require.Len(t, owner, 10)
	d, err := dhcpv4.NewDiscovery(mac(30))
	require.NoError(t, err)
	assert.Nil(t, exchange(t, r.addr, d, 500*time.Millisecond), "the 11th machine gets no offer")

	// The reserved machine still gets its address.
	lease, err := client(t, r, macUEFI).Request(t.Context())
	require.NoError(t, err)
	assert.Equal(t, "10.9.0.50", lease.ACK.YourIPAddr.String())
	// A leased machine asking again keeps its address.
	again, err := client(t, r, mac(25)).Request(t.Context())
	require.NoError(t, err)
	assert.Equal(t, byte(25), owner[again.ACK.YourIPAddr.String()])
	assert.Len(t, s.Leases(), 11)
}

func inPool(ip net.IP) bool {
	n := testNetwork()
	v := ip.To4()
	return v != nil && bytes.Compare(v, n.RangeStart) >= 0 && bytes.Compare(v, n.RangeEnd) <= 0
}

func TestServerReplyTooLarge(t *testing.T) {
	// 120 + 250 bytes of boot information: about 640 bytes in all.
	policy := pxe.PolicyFunc(func(context.Context, pxe.Client) (pxe.Answer, error) {
		return pxe.Answer{BootFile: "http://10.9.0.1/" + strings.Repeat("x", 104), TFTPServerName: strings.Repeat("t", 250)}, nil
	})
	r := start(t, &pxe.Server{Mode: pxe.ModeProxy, Policy: policy})
	f := fixtureByName(t, "ovmf-native-pxe")
	// The fixture allows 1472 bytes: answered.
	require.NotNil(t, exchange(t, r.addr, discover(t, f), time.Second))
	// Without option 57 the same answer exceeds 548 bytes: no reply rather
	// than a reply the client would drop or truncate.
	assert.Nil(t, exchange(t, r.addr, discover(t, f, dhcpv4.WithoutOption(dhcpv4.OptionMaximumDHCPMessageSize)), 500*time.Millisecond))
}

// TestServerFullIgnore: a policy that answers ErrIgnore keeps a boot
// client from getting anything, not even an address (an allow-list
// decided at run time); other machines, and the same machine as a plain
// DHCP client, are served as usual.
func TestServerFullIgnore(t *testing.T) {
	ignored := mac(40)
	s := &pxe.Server{Mode: pxe.ModeFull, Network: testNetwork(), Policy: pxe.PolicyFunc(func(ctx context.Context, c pxe.Client) (pxe.Answer, error) {
		if c.MAC.String() == ignored.String() {
			return pxe.Answer{}, fmt.Errorf("%w: not in the inventory", pxe.ErrIgnore)
		}
		return testLoaders().Decide(ctx, c)
	})}
	r := start(t, s)
	wait := 500 * time.Millisecond
	bios := fixtureByName(t, "qemu-ipxe-bios-rom")
	bios.mac = ignored
	assert.Nil(t, exchange(t, r.addr, discover(t, bios), wait), "ignored: no offer")
	assert.Nil(t, exchange(t, r.addr, discover(t, bios, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 9, 0, 100))), pxe.WithServerID(serverIP)), wait), "ignored: no ACK or NAK")
	assert.Nil(t, exchange(t, r.addr, discover(t, bios, dhcpv4.WithMessageType(dhcpv4.MessageTypeInform)), wait), "ignored: no answer to INFORM")
	assert.Empty(t, s.Leases(), "an ignored client holds no address")

	// Another PXE client is served with boot information.
	other := fixtureByName(t, "qemu-ipxe-bios-rom")
	other.mac = mac(41)
	offer := exchange(t, r.addr, discover(t, other), wait)
	require.NotNil(t, offer)
	assert.NotEmpty(t, offer.BootFileName)
	// The ignored machine's OS, a plain DHCP client, is not a boot client:
	// the policy is not asked and it gets an address.
	plain, err := dhcpv4.NewDiscovery(ignored)
	require.NoError(t, err)
	got := exchange(t, r.addr, plain, wait)
	require.NotNil(t, got)
	assert.True(t, inPool(got.YourIPAddr))
}
