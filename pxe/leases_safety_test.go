//go:build linux

package pxe_test

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/pxe"
)

// startWithLeases runs a full-mode server on file until the test ends or
// the returned stop is called.
func startWithLeases(t *testing.T, n *pxe.Network, file string) (*pxe.Server, *running, func()) {
	t.Helper()
	s := &pxe.Server{Mode: pxe.ModeFull, Network: n, LeaseFile: file}
	r := start(t, s)
	stop := func() {
		r.cancel()
		select {
		case err := <-r.done:
			require.NoError(t, err)
			r.done <- nil // for start's cleanup
		case <-time.After(5 * time.Second):
			t.Fatal("Serve did not return")
		}
	}
	return s, r, stop
}

// A request with an empty or odd-length hardware address gets no lease:
// before, it was stored under a MAC the lease file cannot hold, and the
// server refused its own file at the next start.
func TestServerOddHardwareAddress(t *testing.T) {
	file := filepath.Join(t.TempDir(), "leases.json")
	s, r, stop := startWithLeases(t, testNetwork(), file)
	for _, hw := range []net.HardwareAddr{{}, {2, 0, 0, 0, 0, 0, 7}, make(net.HardwareAddr, 16)} {
		d, err := dhcpv4.NewDiscovery(hw)
		require.NoError(t, err)
		assert.Nil(t, exchange(t, r.addr, d, 300*time.Millisecond), "offer to a %d-byte address", len(hw))
		req := request(t, hw, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 9, 0, 100))), pxe.WithServerID(serverIP))
		assert.Nil(t, exchange(t, r.addr, req, 300*time.Millisecond), "ack to a %d-byte address", len(hw))
	}
	assert.Empty(t, s.Leases())
	lease, err := client(t, r, mac(1)).Request(t.Context())
	require.NoError(t, err)
	stop()

	_, r2, _ := startWithLeases(t, testNetwork(), file)
	again, err := client(t, r2, mac(1)).Request(t.Context())
	require.NoError(t, err, "the restarted server serves from its own lease file")
	assert.Equal(t, lease.ACK.YourIPAddr.String(), again.ACK.YourIPAddr.String())
}

// Only the machine holding an address can decline it, and only through a
// DECLINE naming this server.
func TestServerDeclineOnlyByHolder(t *testing.T) {
	file := filepath.Join(t.TempDir(), "leases.json")
	s, r, _ := startWithLeases(t, testNetwork(), file)
	victim, err := client(t, r, mac(1)).Request(t.Context())
	require.NoError(t, err)
	ip := victim.ACK.YourIPAddr
	decline := func(from net.HardwareAddr, server net.IP) {
		mods := []dhcpv4.Modifier{dhcpv4.WithHwAddr(from), dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline),
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip))}
		if server != nil {
			mods = append(mods, pxe.WithServerID(server))
		}
		d, err := dhcpv4.New(mods...)
		require.NoError(t, err)
		assert.Nil(t, exchange(t, r.addr, d, 200*time.Millisecond), "no reply to DECLINE")
	}
	held := func() bool {
		for _, l := range s.Leases() {
			if l.IP == ip.String() {
				return l.MAC == mac(1).String() && !l.Declined && l.Expires.After(time.Now())
			}
		}
		return false
	}
	decline(mac(2), serverIP)              // another machine
	decline(mac(1), net.IPv4(10, 9, 0, 9)) // the holder, to another server
	decline(mac(1), nil)                   // the holder, no server ID
	// The server handles packets in order per socket; give it a moment.
	time.Sleep(100 * time.Millisecond)
	assert.True(t, held(), "the lease was taken from its holder: %+v", s.Leases())
	ls, err := pxe.ReadLeaseFile(file)
	require.NoError(t, err)
	assert.Contains(t, ls, pxe.Lease{MAC: mac(1).String(), IP: ip.String(), Expires: ls[0].Expires})

	// The holder's renewal still works, and a third machine is not offered
	// the address.
	renew := exchange(t, r.addr, request(t, mac(1), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip)), pxe.WithServerID(serverIP)), time.Second)
	require.NotNil(t, renew)
	assert.Equal(t, dhcpv4.MessageTypeAck, renew.MessageType())
	d, err := dhcpv4.NewDiscovery(mac(3))
	require.NoError(t, err)
	offer := exchange(t, r.addr, d, time.Second)
	require.NotNil(t, offer)
	assert.False(t, offer.YourIPAddr.Equal(ip))

	// The holder's own DECLINE takes the address out of use.
	decline(mac(1), serverIP)
	require.Eventually(t, func() bool {
		for _, l := range s.Leases() {
			if l.IP == ip.String() {
				return l.Declined && l.MAC == ""
			}
		}
		return false
	}, 2*time.Second, 20*time.Millisecond)
}

// The server's own address, the routers and the DNS servers are never
// handed out, even when the pool covers them; reserving one is a
// configuration error.
func TestServerPoolSkipsInfrastructure(t *testing.T) {
	n := testNetwork()
	n.RangeStart, n.RangeEnd = net.IPv4(10, 9, 0, 1).To4(), net.IPv4(10, 9, 0, 4).To4()
	n.Router = []net.IP{net.IPv4(10, 9, 0, 2).To4()}
	n.DNS = []net.IP{net.IPv4(10, 9, 0, 3).To4()}
	s := &pxe.Server{Mode: pxe.ModeFull, Network: n, ServerIP: net.IPv4(10, 9, 0, 1)}
	r := start(t, s)
	lease, err := client(t, r, mac(1)).Request(t.Context())
	require.NoError(t, err)
	assert.Equal(t, "10.9.0.4", lease.ACK.YourIPAddr.String())
	d, err := dhcpv4.NewDiscovery(mac(2))
	require.NoError(t, err)
	assert.Nil(t, exchange(t, r.addr, d, 300*time.Millisecond), "only one address of four is free")
	// Asking for the router's address by name gets a NAK.
	nak := exchange(t, r.addr, request(t, mac(3), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 9, 0, 2))), pxe.WithServerID(net.IPv4(10, 9, 0, 1))), time.Second)
	require.NotNil(t, nak)
	assert.Equal(t, dhcpv4.MessageTypeNak, nak.MessageType())

	bad := testNetwork()
	bad.Reservations = append(bad.Reservations, pxe.Reservation{MAC: mac(9), IP: net.IPv4(10, 9, 0, 1).To4()})
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: serverIP})
	require.NoError(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	err = (&pxe.Server{Mode: pxe.ModeFull, Network: bad, ServerIP: serverIP, Conn: conn}).Serve(ctx)
	assert.ErrorIs(t, err, pxe.ErrConfig)
	assert.Contains(t, err.Error(), "10.9.0.1")
}
