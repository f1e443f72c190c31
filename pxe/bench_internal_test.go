package pxe

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// benchState is a full-mode server state like bench/dhcp's, and
// DISCOVERs from n clients, relayed as perfdhcp sends them.
func benchState(b *testing.B, n int) (*state, [][]byte) {
	s := &Server{Mode: ModeFull, ServerIP: net.IPv4(10, 78, 0, 1), Conn: nil, Interface: "x", Network: &Network{
		Subnet:     net.IPNet{IP: net.IPv4(10, 78, 0, 0).To4(), Mask: net.CIDRMask(16, 32)},
		RangeStart: net.IPv4(10, 78, 1, 0), RangeEnd: net.IPv4(10, 78, 255, 254),
		Router: []net.IP{net.IPv4(10, 78, 0, 1)}, LeaseTime: time.Hour,
	}}
	st, err := s.prepare()
	if err != nil {
		b.Fatal(err)
	}
	pkts := make([][]byte, n)
	for i := range pkts {
		d, _ := dhcpv4.NewDiscovery(net.HardwareAddr{2, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)}, dhcpv4.WithGatewayIP(net.IPv4(10, 78, 0, 2)))
		pkts[i] = d.ToBytes()
	}
	return st, pkts
}

// BenchmarkRespondDiscover measures the reply path of one DISCOVER →
// OFFER in full mode: allow-list, address offer, building and serialising
// the reply. The requests are parsed and classified before the timer.
func BenchmarkRespondDiscover(b *testing.B) {
	st, pkts := benchState(b, 20000)
	reqs := make([]*dhcpv4.DHCPv4, len(pkts))
	cs := make([]Client, len(pkts))
	for i, p := range pkts {
		req, err := dhcpv4.FromBytes(p)
		if err != nil {
			b.Fatal(err)
		}
		reqs[i] = req
		if cs[i], err = ClientFromRequest(req); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	sc := newScratch()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j := i % len(reqs)
		if r, err := st.respondClient(ctx, sc, reqs[j], cs[j], nil, false, sc.out); err != nil || r == nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReaderDiscover measures what the socket reader does per
// DISCOVER, system calls aside: parse the datagram, classify it, answer
// it inline and serialise the OFFER.
func BenchmarkReaderDiscover(b *testing.B) {
	st, pkts := benchState(b, 20000)
	ctx := context.Background()
	peer := &net.UDPAddr{IP: net.IPv4(10, 78, 0, 2), Port: 67}
	p := &packet{buf: make([]byte, maxPacket)}
	sc := newScratch()
	var dest net.UDPAddr
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n := copy(p.buf, pkts[i%len(pkts)])
		p.reset()
		if err := parseInto(&p.msg, p.buf[:n]); err != nil {
			b.Fatal(err)
		}
		p.req, p.peer = &p.msg, peer
		p.c, p.cerr = ClientFromRequest(p.req)
		if !st.quick(p, false) {
			b.Fatal("not answered inline")
		}
		if out, _ := st.answer(ctx, sc, p, false, sc.out, &dest); out == nil {
			b.Fatal("no reply")
		}
	}
}

// TestNewReplyMatchesLibrary: newReply builds, byte for byte, what
// dhcpv4.NewReplyFromRequest builds (relay agent information and client
// identifier echoed, giaddr, xid, flags and chaddr copied).
func TestNewReplyMatchesLibrary(t *testing.T) {
	tests := []struct {
		name string
		mods []dhcpv4.Modifier
	}{
		{"plain", nil},
		{"relayed with client id", []dhcpv4.Modifier{
			dhcpv4.WithGatewayIP(net.IPv4(10, 9, 0, 1)),
			dhcpv4.WithBroadcast(true),
			dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{1, 2, 0, 0, 0, 0, 9})),
			dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(1), []byte("port7")))),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := dhcpv4.NewDiscovery(net.HardwareAddr{2, 0, 0, 0, 0, 1}, tt.mods...)
			if err != nil {
				t.Fatal(err)
			}
			mods := []dhcpv4.Modifier{dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer), WithServerID(net.IPv4(10, 9, 0, 2))}
			want, err := dhcpv4.NewReplyFromRequest(req, mods...)
			if err != nil {
				t.Fatal(err)
			}
			got := newReply(req, mods...)
			if !bytes.Equal(want.ToBytes(), got.ToBytes()) {
				t.Errorf("newReply:\n%s\nNewReplyFromRequest:\n%s", got.Summary(), want.Summary())
			}
		})
	}
}
