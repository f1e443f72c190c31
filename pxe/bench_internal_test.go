package pxe

import (
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
