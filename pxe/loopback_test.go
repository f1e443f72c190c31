package pxe_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/pxe"
)

// The helpers below run a Server on loopback sockets. They build on every
// system; the tests that drive nclient4 or network namespaces, and their
// own helpers, are Linux-only.

var serverIP = net.IPv4(127, 0, 0, 1)

func testNetwork() *pxe.Network {
	return &pxe.Network{
		Subnet:     net.IPNet{IP: net.IPv4(10, 9, 0, 0).To4(), Mask: net.CIDRMask(24, 32)},
		RangeStart: net.IPv4(10, 9, 0, 100).To4(),
		RangeEnd:   net.IPv4(10, 9, 0, 109).To4(),
		Router:     []net.IP{net.IPv4(10, 9, 0, 1).To4()},
		DNS:        []net.IP{net.IPv4(10, 9, 0, 2).To4()},
		Domain:     "lab.example",
		LeaseTime:  10 * time.Minute,
		Reservations: []pxe.Reservation{
			{MAC: macUEFI, IP: net.IPv4(10, 9, 0, 50).To4()},
		},
	}
}

func testLoaders() pxe.Loaders {
	return pxe.Loaders{ScriptURL: "http://10.9.0.1/boot.ipxe", HTTPBase: "http://10.9.0.1/loaders"}
}

type running struct {
	addr, bootAddr *net.UDPAddr
	done           chan error
	cancel         context.CancelFunc
}

// start runs s on loopback sockets until the test ends, and checks that
// Serve returns nil after cancellation.
func start(t *testing.T, s *pxe.Server) *running {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: serverIP})
	require.NoError(t, err)
	boot, err := net.ListenUDP("udp4", &net.UDPAddr{IP: serverIP})
	require.NoError(t, err)
	s.Conn, s.BootConn = conn, boot
	if s.ServerIP == nil {
		s.ServerIP = serverIP
	}
	ctx, cancel := context.WithCancel(t.Context())
	r := &running{addr: conn.LocalAddr().(*net.UDPAddr), bootAddr: boot.LocalAddr().(*net.UDPAddr), done: make(chan error, 1), cancel: cancel}
	go func() { r.done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-r.done:
			assert.NoError(t, err, "Serve after cancel")
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return r
}
