//go:build linux

package pxe_test

import (
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/pxe"
)

// TestServerObserver checks that the Observer hears of every packet read:
// answered ones with their reply type, refused and unparsable ones with
// the reason.
func TestServerObserver(t *testing.T) {
	seen := make(chan pxe.Exchange, 16)
	s := &pxe.Server{Mode: pxe.ModeFull, Network: testNetwork(), Deny: []net.HardwareAddr{mac(2)},
		Observer: func(ex pxe.Exchange) {
			ex.MAC = append(net.HardwareAddr(nil), ex.MAC...)
			seen <- ex
		}}
	r := start(t, s)
	next := func() pxe.Exchange {
		t.Helper()
		select {
		case ex := <-seen:
			return ex
		case <-time.After(5 * time.Second):
			t.Fatal("no exchange observed")
			return pxe.Exchange{}
		}
	}

	d, err := dhcpv4.NewDiscovery(mac(1))
	require.NoError(t, err)
	require.NotNil(t, exchange(t, r.addr, d, time.Second))
	ex := next()
	assert.Equal(t, mac(1), ex.MAC)
	assert.Equal(t, dhcpv4.MessageTypeDiscover, ex.Request)
	assert.Equal(t, dhcpv4.MessageTypeOffer, ex.Reply)
	assert.NoError(t, ex.Err)
	assert.False(t, ex.BootServer)

	d, err = dhcpv4.NewDiscovery(mac(2))
	require.NoError(t, err)
	assert.Nil(t, exchange(t, r.addr, d, 300*time.Millisecond))
	ex = next()
	assert.Equal(t, mac(2), ex.MAC)
	assert.Equal(t, dhcpv4.MessageTypeNone, ex.Reply)
	assert.ErrorContains(t, ex.Err, "not allowed")

	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: serverIP})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.WriteTo([]byte("not a DHCP packet"), r.addr)
	require.NoError(t, err)
	ex = next()
	assert.Nil(t, ex.MAC)
	assert.Equal(t, dhcpv4.MessageTypeNone, ex.Request)
	assert.Error(t, ex.Err)
}
