package vmtest

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/internal/testenv"
)

func TestMain(m *testing.M) {
	Main(m, map[string]Role{"late-socket": lateSocketRole})
}

// lateSocketRole answers each UDP datagram on the address in config from a
// socket it opens only then, the way a TFTP server opens one per transfer.
func lateSocketRole(ctx context.Context, config []byte, ready func()) error {
	c, err := net.ListenPacket("udp4", string(config))
	if err != nil {
		return err
	}
	go func() { <-ctx.Done(); c.Close() }()
	ready()
	buf := make([]byte, 512)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		reply, err := net.DialUDP("udp4", nil, from.(*net.UDPAddr))
		if err != nil {
			return err
		}
		_, err = reply.Write(append([]byte("late:"), buf[:n]...))
		reply.Close()
		if err != nil {
			return err
		}
	}
}

// TestStartRole runs a server as a role inside the namespace and checks
// that replies from the sockets it opens late reach a client on the test
// network: they would not if those sockets were in the host's namespace.
func TestStartRole(t *testing.T) {
	testenv.Root(t)
	n := NewNet(t, NetConfig{})
	addr := net.JoinHostPort(n.IP().String(), "7007")
	n.StartRole("late-socket", []byte(addr))

	// The client sits on the bridge's subnet but at another address, so the
	// reply has to be routed inside the namespace.
	n.run("-n", n.Name, "addr", "add", n.Host(9).String()+"/32", "dev", n.Bridge)
	c := n.ListenPacket("udp4", net.JoinHostPort(n.Host(9).String(), "0"))
	dst, err := net.ResolveUDPAddr("udp4", addr)
	require.NoError(t, err)
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = c.WriteTo([]byte("ping"), dst)
	require.NoError(t, err)
	buf := make([]byte, 64)
	nb, from, err := c.ReadFrom(buf)
	require.NoError(t, err)
	assert.Equal(t, "late:ping", string(buf[:nb]))
	assert.NotEqual(t, 7007, from.(*net.UDPAddr).Port, "the reply comes from the late socket")
}
