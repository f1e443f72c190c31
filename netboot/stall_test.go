//go:build linux

package netboot_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/nixboot/nixboot/internal/testenv"
	"github.com/nixboot/nixboot/netboot"
)

// A client that stops acknowledging in the middle of a download (a machine
// reset while it loads its initrd) loses its connection after
// HTTPStallTimeout, instead of holding it, and the handler writing to it,
// for the kernel's 15 minutes of retransmissions. The test takes the
// client's acknowledgements away with an nftables rule in a namespace of
// its own and watches the server's socket with ss.
func TestHTTPStallTimeout(t *testing.T) {
	testenv.Root(t)
	ip := testenv.Command(t, "ip")
	nft := testenv.Command(t, "nft")
	ss := testenv.Command(t, "ss")
	ns := fmt.Sprintf("nbstall%d-%d", os.Getpid(), nsCounter.Add(1))
	run := func(stdin string, name string, args ...string) {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s %v: %s", name, args, out)
	}
	run("", ip, "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command(ip, "netns", "del", ns).Run() })
	run("", ip, "-n", ns, "link", "set", "lo", "up")

	var ln net.Listener
	var err error
	inNamespace(t, ns, func() { ln, err = net.Listen("tcp4", "127.0.0.1:0") })
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	big := []byte(strings.Repeat("nixboot stall test ", 2<<20)) // 38 MiB
	srv := &netboot.Server{
		Inventory:        newBootFixture(t, nil).inv,
		Files:            netboot.FS(fstest.MapFS{"big": {Data: big}}),
		HTTPListener:     ln,
		HTTPStallTimeout: 2 * time.Second,
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(15 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})

	// A client with a small receive buffer, so the server is still
	// sending when the client goes silent.
	var c net.Conn
	inNamespace(t, ns, func() {
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096) })
			if err != nil {
				return err
			}
			return serr
		}}
		c, err = d.Dial("tcp4", ln.Addr().String())
	})
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, "GET /big HTTP/1.1\r\nHost: test\r\n\r\n")
	require.NoError(t, err)
	head := make([]byte, 64<<10)
	_, err = io.ReadFull(c, head)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(head), "HTTP/1.1 200 "), "%.80q", head)

	established := func() string {
		out, err := exec.Command(ip, "netns", "exec", ns, ss, "-tnH", "state", "established", fmt.Sprintf("( sport = :%d )", port)).CombinedOutput()
		require.NoError(t, err, "ss: %s", out)
		return strings.TrimSpace(string(out))
	}
	require.NotEmpty(t, established(), "the server's side of the download is not open")

	// From now on nothing the client sends reaches the server.
	clientPort := c.LocalAddr().(*net.TCPAddr).Port
	run(fmt.Sprintf(`table inet nbstall {
	chain in {
		type filter hook input priority 0; policy accept;
		tcp sport %d drop
	}
}
`, clientPort), ip, "netns", "exec", ns, nft, "-f", "-")
	start := time.Now()
	var left string
	for time.Since(start) < 20*time.Second {
		if left = established(); left == "" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.Empty(t, left, "the server still holds the stalled download after %v", time.Since(start).Round(time.Millisecond))
	t.Logf("server dropped the stalled connection %v after the client went silent (HTTPStallTimeout 2s)", time.Since(start).Round(10*time.Millisecond))
}
