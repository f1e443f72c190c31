package pxe

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// BenchmarkRespondDiscover measures one DISCOVER → OFFER in full mode
// without sockets: parse, classify, allocate, build, serialise.
func BenchmarkRespondDiscover(b *testing.B) {
	s := &Server{Mode: ModeFull, ServerIP: net.IPv4(10, 78, 0, 1), Conn: nil, Interface: "x", Network: &Network{
		Subnet:     net.IPNet{IP: net.IPv4(10, 78, 0, 0).To4(), Mask: net.CIDRMask(16, 32)},
		RangeStart: net.IPv4(10, 78, 1, 0), RangeEnd: net.IPv4(10, 78, 255, 254),
		Router: []net.IP{net.IPv4(10, 78, 0, 1)}, LeaseTime: time.Hour,
	}}
	st, err := s.prepare()
	if err != nil {
		b.Fatal(err)
	}
	pkts := make([][]byte, 20000)
	for i := range pkts {
		d, _ := dhcpv4.NewDiscovery(net.HardwareAddr{2, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)}, dhcpv4.WithGatewayIP(net.IPv4(10, 78, 0, 2)))
		pkts[i] = d.ToBytes()
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req, err := dhcpv4.FromBytes(pkts[i%len(pkts)])
		if err != nil {
			b.Fatal(err)
		}
		if r, err := st.respond(ctx, req, false); err != nil || r == nil {
			b.Fatal(err)
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
