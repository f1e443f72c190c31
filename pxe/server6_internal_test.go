package pxe

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	testServerID6 = &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{0x02, 0, 0, 0, 0, 1}}
	testSelf6     = net.ParseIP("fd00:77::1")
)

func testServer6(t testing.TB, prefix string) *state6 {
	t.Helper()
	s := &Server6{
		ServerIP: testSelf6, ServerID: testServerID6, Prefix: netip.MustParsePrefix(prefix),
		DNS:    []net.IP{net.ParseIP("fd00:77::53")},
		Policy: Loaders{EFI64: "ipxe.efi"},
	}
	st, err := s.prepare()
	require.NoError(t, err)
	return st
}

// exchange sends req and parses the answer; nil when there is none.
func exchange(t testing.TB, st *state6, req *dhcpv6.Message, now time.Time) *dhcpv6.Message {
	t.Helper()
	b, err := st.respond(context.Background(), req.ToBytes(), now, nil)
	if b == nil {
		return nil
	}
	require.NoError(t, err)
	m, err := dhcpv6.MessageFromBytes(b)
	require.NoError(t, err)
	return m
}

func solicit6(t testing.TB, mac net.HardwareAddr, mods ...dhcpv6.Modifier) *dhcpv6.Message {
	t.Helper()
	m, err := dhcpv6.NewSolicit(mac, mods...)
	require.NoError(t, err)
	return m
}

func iaAddr(t testing.TB, m *dhcpv6.Message) netip.Addr {
	t.Helper()
	ia := m.Options.OneIANA()
	require.NotNil(t, ia, "no IA_NA in %s", m.Summary())
	a := ia.Options.OneAddress()
	require.NotNil(t, a, "no address in %s", ia)
	addr, ok := netip.AddrFromSlice(a.IPv6Addr)
	require.True(t, ok)
	return addr
}

// A UEFI client's whole exchange: Solicit, Request, Renew; the address is
// stable across a restart, the boot URL follows the architecture.
func TestServer6Exchange(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}
	now := time.Now()
	st := testServer6(t, "fd00:77::/64")
	sol := solicit6(t, mac, dhcpv6.WithNetboot, dhcpv6.WithArchType(iana.EFI_X86_64),
		dhcpv6.WithRequestedOptions(dhcpv6.OptionDNSRecursiveNameServer))
	adv := exchange(t, st, sol, now)
	require.NotNil(t, adv)
	assert.Equal(t, dhcpv6.MessageTypeAdvertise, adv.MessageType)
	assert.Equal(t, sol.TransactionID, adv.TransactionID)
	assert.True(t, adv.Options.ServerID().Equal(testServerID6))
	assert.True(t, adv.Options.ClientID().Equal(sol.Options.ClientID()))
	addr := iaAddr(t, adv)
	assert.True(t, netip.MustParsePrefix("fd00:77::/64").Contains(addr), addr)
	assert.Equal(t, "tftp://[fd00:77::1]/ipxe.efi", adv.Options.BootFileURL())
	assert.Equal(t, []net.IP{net.ParseIP("fd00:77::53")}, adv.Options.DNS())
	ia := adv.Options.OneIANA()
	assert.Equal(t, DefaultLifetime6/2, ia.T1)
	assert.Equal(t, DefaultLifetime6*4/5, ia.T2)

	req, err := dhcpv6.NewRequestFromAdvertise(adv, dhcpv6.WithNetboot, dhcpv6.WithArchType(iana.EFI_X86_64))
	require.NoError(t, err)
	var ex Exchange6
	_, err = st.respond(context.Background(), req.ToBytes(), now, &ex)
	require.NoError(t, err)
	assert.Equal(t, addr, ex.Addr, "the bound address, for the Observer")
	rep := exchange(t, st, req, now)
	require.NotNil(t, rep)
	assert.Equal(t, dhcpv6.MessageTypeReply, rep.MessageType)
	assert.Equal(t, addr, iaAddr(t, rep))
	assert.Equal(t, "tftp://[fd00:77::1]/ipxe.efi", rep.Options.BootFileURL())

	// Restarted: no state, same address.
	st2 := testServer6(t, "fd00:77::/64")
	assert.Equal(t, addr, iaAddr(t, exchange(t, st2, sol, now)))

	// Another client, another address; a client that does not ask for
	// option 59 gets an address and no boot URL.
	other := exchange(t, st, solicit6(t, net.HardwareAddr{0x52, 0x54, 0, 0, 0, 2}), now)
	assert.NotEqual(t, addr, iaAddr(t, other))
	assert.Empty(t, other.Options.BootFileURL())

	// Renew: the same address; a client holding a stale one is told to
	// drop it (zero lifetimes).
	renew, err := dhcpv6.NewMessage()
	require.NoError(t, err)
	renew.MessageType = dhcpv6.MessageTypeRenew
	renew.AddOption(dhcpv6.OptClientID(sol.Options.ClientID()))
	renew.AddOption(dhcpv6.OptServerID(testServerID6))
	stale := net.ParseIP("fd00:99::5")
	renew.AddOption(&dhcpv6.OptIANA{IaId: sol.Options.OneIANA().IaId, Options: dhcpv6.IdentityOptions{Options: dhcpv6.Options{&dhcpv6.OptIAAddress{IPv6Addr: stale}}}})
	rep = exchange(t, st, renew, now)
	require.NotNil(t, rep)
	addrs := rep.Options.OneIANA().Options.Addresses()
	require.Len(t, addrs, 2)
	assert.Equal(t, net.IP(addr.AsSlice()), addrs[0].IPv6Addr)
	assert.Equal(t, stale, addrs[1].IPv6Addr)
	assert.Zero(t, addrs[1].ValidLifetime)
}

// Messages a server must not answer, and answers that say no.
func TestServer6Refusals(t *testing.T) {
	now := time.Now()
	st := testServer6(t, "fd00:77::/64")
	mac := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}
	sol := solicit6(t, mac)
	adv := exchange(t, st, sol, now)
	require.NotNil(t, adv)

	other := &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{0x02, 0, 0, 0, 0, 9}}
	req, err := dhcpv6.NewRequestFromAdvertise(adv, dhcpv6.WithServerID(other))
	require.NoError(t, err)
	assert.Nil(t, exchange(t, st, req, now), "a Request to another server")
	withSID := solicit6(t, mac, dhcpv6.WithServerID(testServerID6))
	assert.Nil(t, exchange(t, st, withSID, now), "a Solicit naming a server")
	noCID := solicit6(t, mac)
	noCID.Options.Del(dhcpv6.OptionClientID)
	_, err = st.respond(context.Background(), noCID.ToBytes(), now, nil)
	assert.ErrorIs(t, err, errNoClientID6)
	_, err = st.respond(context.Background(), []byte{1, 2, 3}, now, nil)
	assert.Error(t, err)
	assert.Nil(t, exchange(t, st, adv, now), "a server's own Advertise")

	// Deny wins; Allow lets only its MACs in.
	st.macs = newMACFilter(nil, []net.HardwareAddr{mac})
	_, err = st.respond(context.Background(), sol.ToBytes(), now, nil)
	assert.ErrorIs(t, err, ErrIgnore)
	st.macs = newMACFilter([]net.HardwareAddr{{0x52, 0x54, 0, 0, 0, 7}}, nil)
	_, err = st.respond(context.Background(), sol.ToBytes(), now, nil)
	assert.ErrorIs(t, err, ErrIgnore)
	st.macs = macFilter{}

	// Confirm: on-link or not.
	confirm := func(ip string) iana.StatusCode {
		m, err := dhcpv6.NewMessage()
		require.NoError(t, err)
		m.MessageType = dhcpv6.MessageTypeConfirm
		m.AddOption(dhcpv6.OptClientID(sol.Options.ClientID()))
		m.AddOption(&dhcpv6.OptIANA{IaId: [4]byte{1}, Options: dhcpv6.IdentityOptions{Options: dhcpv6.Options{&dhcpv6.OptIAAddress{IPv6Addr: net.ParseIP(ip)}}}})
		rep := exchange(t, st, m, now)
		require.NotNil(t, rep)
		return rep.Options.Status().StatusCode
	}
	assert.Equal(t, iana.StatusSuccess, confirm("fd00:77::1234"))
	assert.Equal(t, iana.StatusNotOnLink, confirm("fd00:99::1234"))
}

// Release frees an address for others; Decline retires it; a full prefix
// answers NoAddrsAvail.
func TestServer6Pool(t *testing.T) {
	now := time.Now()
	st := testServer6(t, "fd00:77::/120") // 256 addresses: the subnet's and the server's are never given
	bound := map[netip.Addr]bool{}
	var first *dhcpv6.Message
	for i := range 254 {
		sol := solicit6(t, net.HardwareAddr{0x52, 0x54, 0, 0, byte(i >> 8), byte(i)})
		adv := exchange(t, st, sol, now)
		req, err := dhcpv6.NewRequestFromAdvertise(adv)
		require.NoError(t, err)
		rep := exchange(t, st, req, now)
		a := iaAddr(t, rep)
		require.False(t, bound[a], "%s given twice", a)
		require.NotEqual(t, netip.MustParseAddr("fd00:77::"), a)
		require.NotEqual(t, netip.MustParseAddr("fd00:77::1"), a)
		bound[a] = true
		if first == nil {
			first = rep
		}
	}
	var ex Exchange6
	b, err := st.respond(context.Background(), solicit6(t, net.HardwareAddr{0x52, 0x54, 0, 0, 9, 9}).ToBytes(), now, &ex)
	require.NoError(t, err)
	assert.ErrorIs(t, ex.Err, ErrPoolExhausted)
	assert.Equal(t, net.HardwareAddr{0x52, 0x54, 0, 0, 9, 9}, ex.MAC)
	assert.Equal(t, dhcpv6.MessageTypeSolicit, ex.Request)
	last, err := dhcpv6.MessageFromBytes(b)
	require.NoError(t, err)
	status := last.Options.OneIANA().Options.Status()
	require.NotNil(t, status)
	assert.Equal(t, iana.StatusNoAddrsAvail, status.StatusCode)

	// The first client releases its address: the newcomer gets it.
	rel, err := dhcpv6.NewMessage()
	require.NoError(t, err)
	rel.MessageType = dhcpv6.MessageTypeRelease
	rel.AddOption(first.GetOneOption(dhcpv6.OptionClientID))
	rel.AddOption(dhcpv6.OptServerID(testServerID6))
	rel.AddOption(first.Options.OneIANA())
	rep := exchange(t, st, rel, now)
	require.NotNil(t, rep)
	assert.Equal(t, iana.StatusSuccess, rep.Options.Status().StatusCode)
	got := exchange(t, st, solicit6(t, net.HardwareAddr{0x52, 0x54, 0, 0, 9, 9}), now)
	assert.Equal(t, iaAddr(t, first), iaAddr(t, got))

	// Expired bindings are free again.
	later := now.Add(DefaultLifetime6 + time.Second)
	got = exchange(t, st, solicit6(t, net.HardwareAddr{0x52, 0x54, 0, 0, 9, 10}), later)
	assert.Nil(t, got.Options.OneIANA().Options.Status())
}

func TestServer6Config(t *testing.T) {
	for _, s := range []*Server6{
		{ServerIP: net.ParseIP("10.0.0.1"), ServerID: testServerID6},
		{ServerIP: testSelf6, ServerID: testServerID6, Prefix: netip.MustParsePrefix("fd00::/124")},
		{ServerIP: testSelf6, ServerID: testServerID6, Prefix: netip.MustParsePrefix("10.0.0.0/8")},
		{ServerIP: testSelf6, ServerID: testServerID6, Lifetime: time.Second},
		{ServerIP: testSelf6, ServerID: testServerID6, DNS: []net.IP{net.ParseIP("10.0.0.53")}},
		{ServerIP: testSelf6, Interface: "no-such-interface0"},
	} {
		_, err := s.prepare()
		assert.ErrorIs(t, err, ErrConfig, "%+v", s)
	}
	// Without an Interface the server's DUID comes from its address: the
	// same for the same address.
	a, err := (&Server6{ServerIP: testSelf6}).prepare()
	require.NoError(t, err)
	b, err := (&Server6{ServerIP: testSelf6}).prepare()
	require.NoError(t, err)
	c, err := (&Server6{ServerIP: net.ParseIP("fd00:77::2")}).prepare()
	require.NoError(t, err)
	assert.True(t, a.serverID.Equal(b.serverID))
	assert.False(t, a.serverID.Equal(c.serverID))
	assert.Equal(t, dhcpv6.DUID_UUID, a.serverID.DUIDType())

	s := &Server6{ServerIP: testSelf6, ServerID: testServerID6}
	st, err := s.prepare()
	require.NoError(t, err)
	// No prefix: Solicits go unanswered, Information-Requests get boot
	// information.
	_, err = st.respond(context.Background(), solicit6(t, net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}).ToBytes(), time.Now(), nil)
	assert.ErrorIs(t, err, errUnserved6)
	s.Policy = Loaders{EFI64: "ipxe.efi"}
	info, err := dhcpv6.NewMessage(dhcpv6.WithNetboot, dhcpv6.WithArchType(iana.EFI_X86_64))
	require.NoError(t, err)
	info.MessageType = dhcpv6.MessageTypeInformationRequest
	rep := exchange(t, st, info, time.Now())
	require.NotNil(t, rep)
	assert.Equal(t, "tftp://[fd00:77::1]/ipxe.efi", rep.Options.BootFileURL())
	assert.Nil(t, rep.Options.OneIANA())
}

// FuzzServer6 feeds raw packets to the server: no panic, and every answer
// parses, carries the server's identifier and echoes the client's.
func FuzzServer6(f *testing.F) {
	st := testServer6(f, "fd00:77::/64")
	mac := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}
	sol, err := dhcpv6.NewSolicit(mac, dhcpv6.WithNetboot, dhcpv6.WithArchType(iana.EFI_X86_64))
	require.NoError(f, err)
	f.Add(sol.ToBytes())
	adv := exchange(f, st, sol, time.Now())
	req, err := dhcpv6.NewRequestFromAdvertise(adv)
	require.NoError(f, err)
	f.Add(req.ToBytes())
	f.Add(adv.ToBytes())
	relay, err := dhcpv6.EncapsulateRelay(sol, dhcpv6.MessageTypeRelayForward, net.ParseIP("fe80::1"), net.ParseIP("fe80::2"))
	require.NoError(f, err)
	f.Add(relay.ToBytes())
	f.Add([]byte{11, 0, 0, 1})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		b, err := st.respond(context.Background(), pkt, time.Now(), nil)
		if b == nil {
			return
		}
		require.NoError(t, err)
		out, err := dhcpv6.FromBytes(b)
		require.NoError(t, err, "unparsable answer % x", b)
		m, err := out.GetInnerMessage()
		require.NoError(t, err)
		assert.True(t, m.Options.ServerID().Equal(testServerID6))
		raw, err := dhcpv6.FromBytes(pkt)
		require.NoError(t, err, "answered an unparsable message")
		in, err := raw.GetInnerMessage()
		require.NoError(t, err)
		assert.Equal(t, raw.IsRelay(), out.IsRelay(), "a relayed message is answered through the relay")
		if cid := in.Options.ClientID(); cid != nil {
			assert.True(t, m.Options.ClientID().Equal(cid))
		}
		for _, ia := range m.Options.IANA() {
			for _, a := range ia.Options.Addresses() {
				if a.ValidLifetime > 0 {
					addr, _ := netip.AddrFromSlice(a.IPv6Addr)
					assert.True(t, netip.MustParsePrefix("fd00:77::/64").Contains(addr), addr)
				}
			}
		}
	})
}

// Relayed messages are answered through the relays when the client's link
// is the prefix's, with the MAC from the relay's client link-layer address
// option; relays from other links get nothing.
func TestServer6Relay(t *testing.T) {
	now := time.Now()
	st := testServer6(t, "fd00:77::/64")
	mac := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 5}
	sol := solicit6(t, mac, dhcpv6.WithNetboot, dhcpv6.WithArchType(iana.EFI_X86_64))
	// A DUID that holds no MAC: the relay's option 79 is the only source.
	sol.UpdateOption(dhcpv6.OptClientID(&dhcpv6.DUIDUUID{UUID: [16]byte{1, 2, 3}}))
	relayed := func(link string, hops int) []byte {
		var m dhcpv6.DHCPv6 = sol
		for i := range hops {
			r, err := dhcpv6.EncapsulateRelay(m, dhcpv6.MessageTypeRelayForward, net.ParseIP(link), net.ParseIP("fe80::5"))
			require.NoError(t, err)
			if i == 0 {
				r.AddOption(dhcpv6.OptClientLinkLayerAddress(iana.HWTypeEthernet, mac))
			}
			link = "fd00:1::1" // outer relays sit on other links
			m = r
		}
		return m.ToBytes()
	}
	for _, hops := range []int{1, 2} {
		var ex Exchange6
		b, err := st.respond(context.Background(), relayed("fd00:77::2", hops), now, &ex)
		require.NoError(t, err)
		require.NotNil(t, b, "%d relays", hops)
		out, err := dhcpv6.FromBytes(b)
		require.NoError(t, err)
		require.Equal(t, dhcpv6.MessageTypeRelayReply, out.Type())
		adv, err := out.GetInnerMessage()
		require.NoError(t, err)
		assert.Equal(t, dhcpv6.MessageTypeAdvertise, adv.MessageType)
		assert.Equal(t, "tftp://[fd00:77::1]/ipxe.efi", adv.Options.BootFileURL())
		assert.True(t, netip.MustParsePrefix("fd00:77::/64").Contains(iaAddr(t, adv)))
		assert.Equal(t, mac, ex.MAC, "from option 79")
		assert.Equal(t, dhcpv6.MessageTypeSolicit, ex.Request)
		assert.Equal(t, dhcpv6.MessageTypeAdvertise, ex.Reply)
	}
	b, err := st.respond(context.Background(), relayed("fd00:99::2", 1), now, nil)
	assert.Nil(t, b)
	assert.ErrorIs(t, err, errNotForUs6)
	b, err = st.respond(context.Background(), relayed("::", 1), now, nil)
	require.NoError(t, err)
	assert.NotNil(t, b, "a relay that names no link")

	st.macs = newMACFilter(nil, []net.HardwareAddr{mac})
	_, err = st.respond(context.Background(), relayed("fd00:77::2", 1), now, nil)
	assert.ErrorIs(t, err, ErrIgnore, "Deny applies to the MAC a relay reports")
}

// The bindings a server keeps are bounded: past the limit, new clients get
// NoAddrsAvail until bindings expire; clients already bound keep theirs.
// A Confirm without addresses gets no reply.
func TestServer6BindingLimit(t *testing.T) {
	now := time.Now()
	st := testServer6(t, "fd00:77::/64")
	st.s.maxBindings = 3
	request := func(i int, at time.Time) *dhcpv6.Message {
		sol := solicit6(t, net.HardwareAddr{0x52, 0x54, 0, 0, 1, byte(i)})
		adv := exchange(t, st, sol, at)
		require.NotNil(t, adv)
		req, err := dhcpv6.NewRequestFromAdvertise(adv)
		require.NoError(t, err)
		rep := exchange(t, st, req, at)
		require.NotNil(t, rep)
		return rep
	}
	var first *dhcpv6.Message
	for i := range 3 {
		rep := request(i, now)
		assert.Nil(t, rep.Options.OneIANA().Options.Status(), "client %d", i)
		if i == 0 {
			first = rep
		}
	}
	full := request(3, now)
	require.NotNil(t, full.Options.OneIANA().Options.Status())
	assert.Equal(t, iana.StatusNoAddrsAvail, full.Options.OneIANA().Options.Status().StatusCode)
	assert.Len(t, st.s.bindings, 3)
	again := request(0, now)
	assert.Equal(t, iaAddr(t, first), iaAddr(t, again), "a bound client renews within the limit")
	later := request(3, now.Add(DefaultLifetime6+time.Minute))
	assert.Nil(t, later.Options.OneIANA().Options.Status(), "expired bindings make room")

	m, err := dhcpv6.NewMessage()
	require.NoError(t, err)
	m.MessageType = dhcpv6.MessageTypeConfirm
	m.AddOption(dhcpv6.OptClientID(&dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{0x52, 0x54, 0, 0, 1, 1}}))
	b, err := st.respond(context.Background(), m.ToBytes(), now, nil)
	assert.Nil(t, b)
	assert.ErrorIs(t, err, errUnserved6)
}
