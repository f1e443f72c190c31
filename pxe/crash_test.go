//go:build linux

package pxe_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/pxe"
)

const leaseHelperEnv = "NBP_LEASE_HELPER"

// TestMain doubles as the crash test's server process: with
// NBP_LEASE_HELPER=<lease file> set it serves full DHCP on the UDP socket
// inherited as fd 3 until killed.
func TestMain(m *testing.M) {
	if file := os.Getenv(leaseHelperEnv); file != "" {
		os.Exit(leaseHelper(file))
	}
	os.Exit(m.Run())
}

func leaseHelper(file string) int {
	pc, err := net.FilePacketConn(os.NewFile(3, "dhcp"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	s := &pxe.Server{Mode: pxe.ModeFull, Network: crashNetwork(), ServerIP: serverIP, Conn: pc, LeaseFile: file}
	fmt.Println("ready")
	if err := s.Serve(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func crashNetwork() *pxe.Network {
	n := testNetwork()
	n.RangeEnd = net.IPv4(10, 9, 0, 129).To4() // 30 addresses for 20 clients
	n.Reservations = nil
	n.LeaseTime = time.Hour
	return n
}

// TestLeaseCrashLoop kills the server with SIGKILL while clients get and
// renew leases, restarts it on the same socket and lease file, and checks
// after every round: the file is readable, every ACK a client received is
// in it, and no address was ever ACKed to two machines. Bounded: 12 rounds
// or 60 s.
func TestLeaseCrashLoop(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "leases.json")
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: serverIP})
	require.NoError(t, err)
	defer udp.Close()
	sock, err := udp.File()
	require.NoError(t, err)
	defer sock.Close()

	macs := make([]net.HardwareAddr, 20)
	for i := range macs {
		macs[i] = net.HardwareAddr{0x02, 0xcc, 0, 0, 0, byte(i)}
	}
	var (
		mu    sync.Mutex
		acked = map[string]string{} // mac → ip from every ACK seen
		owner = map[string]string{} // ip → mac
	)
	deadline := time.Now().Add(60 * time.Second)
	rounds := 0
	for round := 0; round < 12 && time.Now().Before(deadline); round++ {
		rounds++
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), leaseHelperEnv+"="+file)
		cmd.ExtraFiles = []*os.File{sock}
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		line, err := bufio.NewReader(out).ReadString('\n')
		require.NoError(t, err, "helper did not start")
		require.Equal(t, "ready\n", line)

		var wg sync.WaitGroup
		for _, mac := range macs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: serverIP})
				if err != nil {
					return
				}
				c, err := nclient4.NewWithConn(conn, mac, nclient4.WithServerAddr(udp.LocalAddr().(*net.UDPAddr)),
					nclient4.WithTimeout(300*time.Millisecond), nclient4.WithRetry(2))
				if err != nil {
					return
				}
				defer c.Close()
				for i := 0; i < 3; i++ { // DORA then renewals
					lease, err := c.Request(ctx)
					if err != nil {
						return
					}
					ip := lease.ACK.YourIPAddr.String()
					m := mac.String()
					mu.Lock()
					if prev, ok := owner[ip]; ok && prev != m {
						t.Errorf("round %d: %s ACKed to %s and to %s", round, ip, prev, m)
					}
					owner[ip] = m
					acked[m] = ip
					mu.Unlock()
				}
			}()
		}
		time.Sleep(time.Duration(10+rand.IntN(80)) * time.Millisecond)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		// The server was still serving when killed: it did not stop early,
		// say on a lease file it could not load.
		werr := cmd.Wait()
		var ee *exec.ExitError
		require.ErrorAs(t, werr, &ee, "round %d", round)
		ws, ok := ee.Sys().(syscall.WaitStatus)
		require.True(t, ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL, "round %d: server ended with %v, not by kill -9", round, werr)
		wg.Wait()
		cancel()

		ls, err := pxe.ReadLeaseFile(file)
		require.NoError(t, err, "round %d: lease file after kill -9", round)
		onDisk := map[string]string{}
		ipOwner := map[string]string{}
		for _, l := range ls {
			onDisk[l.MAC] = l.IP
			if prev, dup := ipOwner[l.IP]; dup {
				t.Errorf("round %d: %s on disk for %s and %s", round, l.IP, prev, l.MAC)
			}
			ipOwner[l.IP] = l.MAC
		}
		mu.Lock()
		for m, ip := range acked {
			assert.Equal(t, ip, onDisk[m], "round %d: ACKed lease of %s lost", round, m)
		}
		mu.Unlock()
	}
	t.Logf("%d rounds, %d machines got leases", rounds, len(acked))
	require.NotEmpty(t, acked, "no client ever got a lease: the test proved nothing")
}

func TestLeaseFileCorrupt(t *testing.T) {
	tests := []struct {
		name, content, want string
	}{
		{"garbage", "not json", "invalid character"},
		{"truncated", `{"version":1,"leases":[{"mac":"02:00:00:00:00:01","ip":"10.9.0.100"`, "unexpected EOF"},
		{"version", `{"version":2,"leases":[]}`, "version 2"},
		{"bad mac", `{"version":1,"leases":[{"mac":"zz","ip":"10.9.0.100","expires":"2030-01-01T00:00:00Z"}]}`, "bad MAC"},
		{"duplicate ip", `{"version":1,"leases":[{"mac":"02:00:00:00:00:01","ip":"10.9.0.100","expires":"2030-01-01T00:00:00Z"},{"mac":"02:00:00:00:00:02","ip":"10.9.0.100","expires":"2030-01-01T00:00:00Z"}]}`, "appears twice"},
		{"unknown field", `{"version":1,"leases":[],"x":1}`, "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "leases.json")
			require.NoError(t, os.WriteFile(file, []byte(tt.content), 0o600))
			conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: serverIP})
			require.NoError(t, err)
			s := &pxe.Server{Mode: pxe.ModeFull, Network: testNetwork(), ServerIP: serverIP, Conn: conn, LeaseFile: file}
			err = s.Serve(t.Context())
			require.ErrorIs(t, err, pxe.ErrLeaseFile)
			assert.ErrorContains(t, err, tt.want)
			assert.ErrorContains(t, err, file)
			b, err := os.ReadFile(file)
			require.NoError(t, err)
			assert.Equal(t, tt.content, string(b), "a corrupt lease file is never overwritten")
		})
	}
}

func TestLeaseFileLocked(t *testing.T) {
	file := filepath.Join(t.TempDir(), "leases.json")
	r := start(t, &pxe.Server{Mode: pxe.ModeFull, Network: testNetwork(), LeaseFile: file})
	// Once a lease is granted, Serve holds the lock.
	_, err := client(t, r, macPlain).Request(t.Context())
	require.NoError(t, err)
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: serverIP})
	require.NoError(t, err)
	err = (&pxe.Server{Mode: pxe.ModeFull, Network: testNetwork(), ServerIP: serverIP, Conn: conn, LeaseFile: file}).Serve(t.Context())
	assert.ErrorContains(t, err, "in use by another server")
}
