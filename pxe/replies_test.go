package pxe_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/pxe"
)

// memConn is a net.PacketConn in memory: ReadFrom returns what the test
// queues on in, WriteTo hands datagrams to out.
type memConn struct {
	in     chan memDatagram
	out    chan memDatagram
	closed chan struct{}
	once   sync.Once
}

type memDatagram struct {
	b    []byte
	addr net.Addr
}

func newMemConn() *memConn {
	return &memConn{in: make(chan memDatagram), out: make(chan memDatagram, 16), closed: make(chan struct{})}
}

func (c *memConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case d := <-c.in:
		return copy(b, d.b), d.addr, nil
	case <-c.closed:
		return 0, nil, net.ErrClosed
	}
}

func (c *memConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	select {
	case c.out <- memDatagram{b: append([]byte(nil), b...), addr: addr}:
		return len(b), nil
	case <-c.closed:
		return 0, net.ErrClosed
	}
}

func (c *memConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *memConn) LocalAddr() net.Addr              { return &net.UDPAddr{IP: serverIP, Port: 67} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// replyCase is one request sent to a server configuration, in order (the
// leases of earlier cases decide the addresses of later ones).
type replyCase struct {
	name string
	boot bool // to the port-4011 socket
	req  *dhcpv4.DHCPv4
}

func replyCases(t *testing.T) []replyCase {
	xid := func(i byte) dhcpv4.Modifier { return dhcpv4.WithTransactionID(dhcpv4.TransactionID{9, 8, 7, i}) }
	relay := dhcpv4.WithGatewayIP(net.IPv4(10, 9, 0, 254))
	var cs []replyCase
	for i, f := range firmwareFixtures() {
		b := byte(i * 10)
		cs = append(cs,
			replyCase{f.name + "/discover", false, discover(t, f, xid(b))},
			replyCase{f.name + "/discover-relayed-82-61", false, discover(t, f, xid(b+1), relay,
				dhcpv4.WithOption(dhcpv4.OptClientIdentifier(append([]byte{1}, f.mac...))),
				dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(1), []byte("port7")))))},
			replyCase{f.name + "/request", false, discover(t, f, xid(b+2), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(serverIP)),
				dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 9, 0, 100+byte(i)))))},
			replyCase{f.name + "/inform", false, discover(t, f, xid(b+3), dhcpv4.WithMessageType(dhcpv4.MessageTypeInform),
				dhcpv4.WithClientIP(net.IPv4(10, 9, 0, 33)))},
			replyCase{f.name + "/boot-request", true, discover(t, f, xid(b+4), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
				dhcpv4.WithClientIP(net.IPv4(10, 9, 0, 34)))},
		)
	}
	perf, err := dhcpv4.NewDiscovery(net.HardwareAddr{2, 0, 0, 0, 0, 7}, xid(200), relay)
	require.NoError(t, err)
	nak, err := dhcpv4.NewDiscovery(net.HardwareAddr{2, 0, 0, 0, 0, 8}, xid(201), relay,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 9, 0, 5))))
	require.NoError(t, err)
	return append(cs, replyCase{"perfdhcp-like/discover", false, perf}, replyCase{"relayed/request-nak", false, nak})
}

// TestServerRepliesGolden runs servers over in-memory sockets and records
// every reply they send, byte for byte, with its destination, for
// requests from every firmware fixture in every mode: the server's reply
// path, both the reader's inline answers and the workers', must keep
// producing exactly these bytes.
func TestServerRepliesGolden(t *testing.T) {
	configs := []struct {
		name string
		s    func(t *testing.T) *pxe.Server
	}{
		{"full", func(*testing.T) *pxe.Server {
			return &pxe.Server{Mode: pxe.ModeFull, Network: testNetwork(), Policy: testLoaders()}
		}},
		{"full-leasefile", func(t *testing.T) *pxe.Server {
			return &pxe.Server{Mode: pxe.ModeFull, Network: testNetwork(), Policy: testLoaders(), LeaseFile: filepath.Join(t.TempDir(), "leases")}
		}},
		{"full-nopolicy", func(*testing.T) *pxe.Server {
			return &pxe.Server{Mode: pxe.ModeFull, Network: testNetwork()}
		}},
		{"proxy", func(*testing.T) *pxe.Server {
			return &pxe.Server{Mode: pxe.ModeProxy, Policy: testLoaders()}
		}},
		{"proxy-steer", func(*testing.T) *pxe.Server {
			return &pxe.Server{Mode: pxe.ModeProxy, UEFI: pxe.UEFISteer, Policy: testLoaders()}
		}},
	}
	var got strings.Builder
	for _, cfg := range configs {
		s := cfg.s(t)
		conn, boot := newMemConn(), newMemConn()
		s.Conn, s.BootConn, s.ServerIP = conn, boot, serverIP
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- s.Serve(ctx) }()
		peer := &net.UDPAddr{IP: net.IPv4(10, 9, 0, 77), Port: 68}
		for _, rc := range replyCases(t) {
			c := conn
			if rc.boot {
				c = boot
			}
			c.in <- memDatagram{b: rc.req.ToBytes(), addr: peer}
			fmt.Fprintf(&got, "== %s %s: ", cfg.name, rc.name)
			select {
			case d := <-c.out:
				fmt.Fprintf(&got, "to %s\n%s", d.addr, hex.Dump(d.b))
			case <-time.After(200 * time.Millisecond):
				got.WriteString("no reply\n")
			}
		}
		cancel()
		require.NoError(t, <-done)
	}
	path := filepath.Join("testdata", "server-replies.golden")
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got.String()), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run with -update to create it")
	assert.Equal(t, string(want), got.String())
}

// TestServerRepliesUDP sends the replyCases that are answered to their
// source over real loopback sockets, where the reader batches with
// recvmmsg and sendmmsg, and checks each reply against the in-memory
// golden record.
func TestServerRepliesUDP(t *testing.T) {
	want, err := os.ReadFile(filepath.Join("testdata", "server-replies.golden"))
	require.NoError(t, err)
	golden := map[string]string{}
	for _, rec := range strings.Split(string(want), "== ")[1:] {
		head, body, _ := strings.Cut(rec, "\n")
		name, to, _ := strings.Cut(head, ": ")
		if to == "no reply" {
			body = ""
		}
		golden[name] = body
	}
	r := start(t, &pxe.Server{Mode: pxe.ModeFull, Network: testNetwork(), Policy: testLoaders()})
	n := 0
	for _, rc := range replyCases(t) {
		if rc.req.GatewayIPAddr != nil && !rc.req.GatewayIPAddr.IsUnspecified() {
			continue // answered to the relay, not to the source
		}
		addr := r.addr
		if rc.boot {
			addr = r.bootAddr
		}
		reply := exchangeRaw(t, addr, rc.req, 300*time.Millisecond)
		want, ok := golden["full "+rc.name]
		require.True(t, ok, rc.name)
		if reply == nil {
			assert.Equal(t, "", want, rc.name)
			continue
		}
		n++
		assert.Equal(t, want, hex.Dump(reply), rc.name)
	}
	assert.Positive(t, n)
}

// exchangeRaw is exchange returning the reply's bytes.
func exchangeRaw(t *testing.T, addr *net.UDPAddr, pkt *dhcpv4.DHCPv4, wait time.Duration) []byte {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: serverIP})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.WriteTo(pkt.ToBytes(), addr)
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(wait)))
	buf := make([]byte, 4096)
	n, _, err := c.ReadFrom(buf)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	require.NoError(t, err)
	return buf[:n]
}

// TestServerDualStackSocket: a caller's dual-stack "udp" socket (IPv6,
// taking IPv4 as mapped addresses) still gets unicast replies to the
// sender, as the IPv4 socket does; the reader must not lose the sender's
// address to the IPv6 form.
func TestServerDualStackSocket(t *testing.T) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{})
	require.NoError(t, err)
	s := &pxe.Server{Mode: pxe.ModeFull, Network: testNetwork(), Conn: conn, ServerIP: serverIP}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})
	addr := &net.UDPAddr{IP: serverIP, Port: conn.LocalAddr().(*net.UDPAddr).Port}
	req := discover(t, fixtureByName(t, "plain-dhcp-client"))
	b := exchangeRaw(t, addr, req, 2*time.Second)
	require.NotNil(t, b, "no unicast reply to the sender")
	reply, err := dhcpv4.FromBytes(b)
	require.NoError(t, err)
	assert.Equal(t, dhcpv4.MessageTypeOffer, reply.MessageType())
	assert.Equal(t, req.TransactionID, reply.TransactionID)
}
