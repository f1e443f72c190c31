//go:build linux

package netboot_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/pin/tftp/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/nixboot/nixboot/internal/testenv"
	"github.com/nixboot/nixboot/netboot"
)

var nsCounter atomic.Int32

// lossyNamespace creates a network namespace whose loopback drops
// percent% of all packets, and deletes it when the test ends. It uses tc
// netem, or, on kernels built without netem (CONFIG_NET_SCH_NETEM), an
// nftables rule dropping the same share of packets at random.
func lossyNamespace(t *testing.T, percent int) string {
	t.Helper()
	testenv.Root(t)
	ip := testenv.Command(t, "ip")
	tc := testenv.Command(t, "tc")
	name := fmt.Sprintf("nbnloss%d-%d", os.Getpid(), nsCounter.Add(1))
	run := func(stdin string, args ...string) ([]byte, error) {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stdin = strings.NewReader(stdin)
		return cmd.CombinedOutput()
	}
	out, err := run("", ip, "netns", "add", name)
	require.NoError(t, err, "%s", out)
	t.Cleanup(func() { _ = exec.Command(ip, "netns", "del", name).Run() })
	out, err = run("", ip, "netns", "exec", name, ip, "link", "set", "lo", "up")
	require.NoError(t, err, "%s", out)
	out, err = run("", ip, "netns", "exec", name, tc, "qdisc", "add", "dev", "lo", "root", "netem", "loss", fmt.Sprintf("%d%%", percent))
	if err == nil {
		t.Logf("namespace %s: tc netem loss %d%% on lo", name, percent)
		return name
	}
	t.Logf("tc netem unavailable (%s); using nftables", bytes.TrimSpace(out))
	nft := testenv.Command(t, "nft")
	// The input hook, not output: a packet dropped on output fails the
	// sender's sendto(2) with EPERM, which clients treat as fatal, whereas
	// real loss is silent.
	rules := fmt.Sprintf(`table inet nbnloss {
	chain in {
		type filter hook input priority 0; policy accept;
		numgen random mod 100 < %d drop
	}
}
`, percent)
	out, err = run(rules, ip, "netns", "exec", name, nft, "-f", "-")
	require.NoError(t, err, "nft: %s", out)
	t.Logf("namespace %s: nftables drops %d%% of packets on input", name, percent)
	return name
}

// inNamespace runs fn on an OS thread switched into the named network
// namespace; sockets fn creates stay in that namespace.
func inNamespace(t *testing.T, name string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if !assert.NoError(t, err) {
			return
		}
		defer self.Close()
		target, err := os.Open(filepath.Join("/var/run/netns", name))
		if !assert.NoError(t, err) {
			return
		}
		defer target.Close()
		if !assert.NoError(t, unix.Setns(int(target.Fd()), unix.CLONE_NEWNET)) {
			return
		}
		fn()
		// Only a thread that made it back may be reused; otherwise it dies
		// with this goroutine.
		if assert.NoError(t, unix.Setns(int(self.Fd()), unix.CLONE_NEWNET)) {
			runtime.UnlockOSThread()
		}
	}()
	<-done
}

// TestPacketLoss transfers files over TFTP and HTTP through a loopback that
// loses 10% of packets and checks they arrive byte-identical.
//
// Two TFTP servers differ only in their retransmission timeout, because
// clients recover from loss in two ways. tftp-hpa and pin/tftp acknowledge
// every duplicate block, so a server that retransmits quickly (100 ms) drives
// recovery. atftp acknowledges a duplicate block only once and otherwise
// waits for its own timeout (1 s at least), which every packet it receives
// restarts: a server retransmitting faster than that would keep it waiting
// until the server gives up. Against atftp the server waits 1.2 s, as
// firmware-facing servers do (the default is 1 s).
func TestPacketLoss(t *testing.T) {
	testenv.Short(t)
	ns := lossyNamespace(t, 10)
	ipBin := testenv.Command(t, "ip")
	atftp := testenv.Command(t, "atftp")
	tftpHPA := testenv.Command(t, "tftp")
	curlBin := testenv.Command(t, "curl")

	small := randomBytes(t, 300_000) // TFTP is lock-step: every loss costs a timeout
	tiny := randomBytes(t, 100_000)
	big := randomBytes(t, 4_000_000)
	files := netboot.FS(fstest.MapFS{"small.bin": {Data: small}, "tiny.bin": {Data: tiny}, "big.bin": {Data: big}})

	var fastUDP, slowUDP net.PacketConn
	var tcp net.Listener
	var listenErr error
	inNamespace(t, ns, func() {
		if fastUDP, listenErr = net.ListenPacket("udp4", "127.0.0.1:0"); listenErr != nil {
			return
		}
		if slowUDP, listenErr = net.ListenPacket("udp4", "127.0.0.1:0"); listenErr != nil {
			return
		}
		tcp, listenErr = net.Listen("tcp4", "127.0.0.1:0")
	})
	require.NoError(t, listenErr)

	ctx, cancel := context.WithCancel(t.Context())
	tftpDone := make(chan error, 2)
	for _, srv := range []*netboot.TFTPServer{
		// 50 retries: 5 s of patience, for clients stalled by a loaded
		// machine (-race), not for the loss.
		{Conn: fastUDP, Files: files, Timeout: 100 * time.Millisecond, Retries: 50},
		{Conn: slowUDP, Files: files, Timeout: 1200 * time.Millisecond, Retries: 8},
	} {
		go func() { tftpDone <- srv.Serve(ctx) }()
	}
	hs := &http.Server{Handler: &netboot.HTTPHandler{Files: files}}
	httpDone := make(chan error, 1)
	go func() { httpDone <- hs.Serve(tcp) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-tftpDone)
		assert.NoError(t, <-tftpDone)
		hs.Close()
		<-httpDone
	})
	_, fastPort, _ := net.SplitHostPort(fastUDP.LocalAddr().String())
	_, slowPort, _ := net.SplitHostPort(slowUDP.LocalAddr().String())
	httpAddr := tcp.Addr().String()

	inNS := func(t *testing.T, timeout time.Duration, args ...string) {
		t.Helper()
		cctx, ccancel := context.WithTimeout(t.Context(), timeout)
		defer ccancel()
		out, err := exec.CommandContext(cctx, ipBin, append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
		require.NoError(t, err, "%v: %.500s", args, out)
	}
	check := func(t *testing.T, path string, want []byte) {
		t.Helper()
		got, err := os.ReadFile(path)
		require.NoError(t, err)
		assert.True(t, bytes.Equal(want, got), "%s: %d bytes, want %d, content differs", path, len(got), len(want))
	}

	t.Run("tftp atftp blksize 1468", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out")
		inNS(t, 120*time.Second, atftp, "--tftp-timeout", "1", "--option", "blksize 1468", "--option", "tsize 0",
			"--get", "-r", "tiny.bin", "-l", out, "127.0.0.1", slowPort)
		check(t, out, tiny)
	})
	// RFC 7440 windows: a lost block makes atftp acknowledge the last
	// one it has in order, and the window starts again after it.
	t.Run("tftp atftp blksize 1468 windowsize 8", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out")
		inNS(t, 120*time.Second, atftp, "--tftp-timeout", "1", "--option", "blksize 1468", "--option", "windowsize 8",
			"--get", "-r", "small.bin", "-l", out, "127.0.0.1", slowPort)
		check(t, out, small)
	})
	t.Run("tftp tftp-hpa 512", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out")
		inNS(t, 120*time.Second, tftpHPA, "-m", "binary", "127.0.0.1", fastPort, "-c", "get", "small.bin", out)
		check(t, out, small)
	})
	t.Run("tftp pin client blksize 1468", func(t *testing.T) {
		var got []byte
		var tsize int64
		var err error
		inNamespace(t, ns, func() {
			var c *tftp.Client
			if c, err = tftp.NewClient(net.JoinHostPort("127.0.0.1", fastPort)); err != nil {
				return
			}
			c.SetTimeout(300 * time.Millisecond)
			c.SetRetries(20)
			c.SetBlockSize(1468)
			c.RequestTSize(true)
			var wt io.WriterTo
			if wt, err = c.Receive("tiny.bin", "octet"); err != nil {
				return
			}
			tsize, _ = wt.(tftp.IncomingTransfer).Size()
			var buf bytes.Buffer
			_, err = wt.WriteTo(&buf)
			got = buf.Bytes()
		})
		require.NoError(t, err)
		assert.Equal(t, int64(len(tiny)), tsize)
		assert.True(t, bytes.Equal(tiny, got), "%d bytes, want %d, content differs", len(got), len(tiny))
	})
	t.Run("http curl", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out")
		inNS(t, 120*time.Second, curlBin, "-sS", "--fail", "-o", out, "http://"+httpAddr+"/big.bin")
		check(t, out, big)
	})
	t.Run("http curl ranges", func(t *testing.T) {
		dir := t.TempDir()
		a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
		inNS(t, 120*time.Second, curlBin, "-sS", "--fail", "-r", "0-1999999", "-o", a, "http://"+httpAddr+"/big.bin")
		inNS(t, 120*time.Second, curlBin, "-sS", "--fail", "-r", "2000000-", "-o", b, "http://"+httpAddr+"/big.bin")
		check(t, a, big[:2_000_000])
		check(t, b, big[2_000_000:])
	})
}
