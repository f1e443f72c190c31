package netboot_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/pin/tftp/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/internal/testenv"
	"github.com/nixboot/nixboot/netboot"
)

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

// startTFTP runs srv on a fresh loopback socket until the test ends and
// returns its address.
func startTFTP(t *testing.T, srv *netboot.TFTPServer) string {
	t.Helper()
	addr, _ := runTFTP(t, srv)
	return addr
}

// pinGet downloads name with the pin/tftp client.
func pinGet(t *testing.T, addr, name string, blksize int) ([]byte, int64, error) {
	t.Helper()
	c, err := tftp.NewClient(addr)
	require.NoError(t, err)
	c.SetTimeout(time.Second)
	c.SetRetries(3)
	if blksize > 0 {
		c.SetBlockSize(blksize)
	}
	c.RequestTSize(true)
	wt, err := c.Receive(name, "octet")
	if err != nil {
		return nil, 0, err
	}
	size, _ := wt.(tftp.IncomingTransfer).Size()
	var buf bytes.Buffer
	_, err = wt.WriteTo(&buf)
	return buf.Bytes(), size, err
}

func TestTFTPPinClient(t *testing.T) {
	files := fstest.MapFS{}
	sizes := []int{0, 1, 511, 512, 513, 1468, 1469, 100_000, 2_000_000}
	for _, n := range sizes {
		files[fmt.Sprintf("f%d.bin", n)] = &fstest.MapFile{Data: randomBytes(t, n), Mode: 0o644}
	}
	files["dir/ipxe.efi"] = &fstest.MapFile{Data: randomBytes(t, 70_000)}
	addr := startTFTP(t, &netboot.TFTPServer{Files: netboot.FS(files)})

	for _, n := range sizes {
		for _, bs := range []int{0, 512, 1432, 1468, 8192} {
			name := fmt.Sprintf("f%d.bin", n)
			t.Run(fmt.Sprintf("%s/blksize%d", name, bs), func(t *testing.T) {
				got, tsize, err := pinGet(t, addr, name, bs)
				require.NoError(t, err)
				assert.True(t, bytes.Equal(files[name].Data, got), "content differs")
				if n > 0 {
					assert.Equal(t, int64(n), tsize, "tsize")
				}
			})
		}
	}
	for _, name := range []string{"dir/ipxe.efi", "/dir/ipxe.efi", `\dir\ipxe.efi`, "dir//./ipxe.efi"} {
		t.Run("name "+name, func(t *testing.T) {
			got, _, err := pinGet(t, addr, name, 1468)
			require.NoError(t, err)
			assert.Equal(t, files["dir/ipxe.efi"].Data, got)
		})
	}
	t.Run("missing", func(t *testing.T) {
		_, _, err := pinGet(t, addr, "nope", 0)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "file not found")
	})
}

// rawRRQ sends an RRQ from an unconnected socket and returns the first reply
// from any port of the server.
func rawRRQ(t *testing.T, addr string, pkt []byte) []byte {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer c.Close()
	ua, err := net.ResolveUDPAddr("udp4", addr)
	require.NoError(t, err)
	_, err = c.WriteTo(pkt, ua)
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(3*time.Second)))
	buf := make([]byte, 65536)
	n, from, err := c.ReadFrom(buf)
	require.NoError(t, err, "no reply")
	reply := buf[:n]
	// Never leave a transfer hanging: answer DATA/OACK with an ERROR.
	if op := binary.BigEndian.Uint16(reply); op == 3 || op == 6 {
		_, _ = c.WriteTo([]byte{0, 5, 0, 0, 'x', 0}, from)
	}
	return reply
}

func rrq(name, mode string, opts ...string) []byte {
	b := []byte{0, 1}
	b = append(append(b, name...), 0)
	b = append(append(b, mode...), 0)
	for _, o := range opts {
		b = append(append(b, o...), 0)
	}
	return b
}

// tftpError decodes an ERROR packet; ok is false for any other packet.
func tftpError(p []byte) (code int, msg string, ok bool) {
	if len(p) < 5 || binary.BigEndian.Uint16(p) != 5 {
		return 0, "", false
	}
	return int(binary.BigEndian.Uint16(p[2:])), strings.TrimRight(string(p[4:]), "\x00"), true
}

// traversalAttempts are names a hostile client sends to escape the root.
var traversalAttempts = []string{
	"../secret.txt",
	"../../../../etc/passwd",
	"/../secret.txt",
	`..\secret.txt`,
	`\..\..\secret.txt`,
	"root/../../secret.txt",
	"a/b/../../../secret.txt",
	"./../secret.txt",
	"..",
	"//..//secret.txt",
	"%2e%2e/secret.txt", // not decoded by TFTP: must simply not exist
	"....//secret.txt",
	"escape/secret.txt", // a symlink out of the root
	"/etc/passwd",
}

func traversalRoot(t *testing.T) *os.Root {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "secret.txt"), []byte("SECRET"), 0o600))
	rootDir := filepath.Join(dir, "root")
	require.NoError(t, os.Mkdir(rootDir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(rootDir, "ok.txt"), []byte("fine"), 0o644))
	require.NoError(t, os.Symlink(dir, filepath.Join(rootDir, "escape")))
	root, err := os.OpenRoot(rootDir)
	require.NoError(t, err)
	t.Cleanup(func() { root.Close() })
	return root
}

func TestTFTPTraversal(t *testing.T) {
	root := traversalRoot(t)
	addr := startTFTP(t, &netboot.TFTPServer{Files: netboot.FS(root.FS())})
	for _, name := range traversalAttempts {
		t.Run(name, func(t *testing.T) {
			reply := rawRRQ(t, addr, rrq(name, "octet"))
			code, msg, ok := tftpError(reply)
			require.True(t, ok, "expected ERROR, got % x", reply)
			assert.Contains(t, []int{1, 2}, code)
			assert.NotContains(t, msg, "secret")
			assert.NotContains(t, msg, "/")
		})
	}
	t.Run("control", func(t *testing.T) {
		got, _, err := pinGet(t, addr, "ok.txt", 0)
		require.NoError(t, err)
		assert.Equal(t, "fine", string(got))
	})
}

func TestTFTPRequests(t *testing.T) {
	files := fstest.MapFS{"a.txt": {Data: []byte("line1\nline2\n")}}
	addr := startTFTP(t, &netboot.TFTPServer{Files: netboot.FS(files), BlockSize: 1468})
	tests := []struct {
		name     string
		pkt      []byte
		wantCode int // -1: expect DATA or OACK
		wantMsg  string
	}{
		{"octet", rrq("a.txt", "octet"), -1, ""},
		{"upper-case mode", rrq("a.txt", "OCTET"), -1, ""},
		{"netascii", rrq("a.txt", "NetAscii"), -1, ""},
		{"mail mode", rrq("a.txt", "mail"), 4, "illegal operation"},
		{"garbage mode", rrq("a.txt", "garbagemode"), 4, "illegal operation"},
		{"write request", append([]byte{0, 2}, rrq("a.txt", "octet")[2:]...), 2, "access violation"},
		{"no terminator", []byte{0, 1, 'a', 0, 'o', 'c'}, 4, "illegal operation"},
		{"control char", rrq("a\x01.txt", "octet"), 2, "access violation"},
		{"missing", rrq("b.txt", "octet"), 1, "file not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reply := rawRRQ(t, addr, tc.pkt)
			code, msg, isErr := tftpError(reply)
			if tc.wantCode < 0 {
				require.False(t, isErr, "got ERROR %d %q", code, msg)
				return
			}
			require.True(t, isErr, "expected ERROR, got % x", reply)
			assert.Equal(t, tc.wantCode, code)
			assert.Equal(t, tc.wantMsg, msg)
		})
	}
}

// TestTFTPOptions checks the OACK for what firmware sends: blksize clamped
// to the cap, tsize answered, windowsize granted up to 64 blocks and 64 KiB
// (on Linux, where the server sends the data itself; elsewhere left out),
// timeout left out.
func TestTFTPOptions(t *testing.T) {
	files := fstest.MapFS{"f": {Data: randomBytes(t, 5000)}}
	// windowsize and timeout are granted by the server's own sender (Linux).
	ownOnly := func(k, v string) map[string]string {
		if runtime.GOOS != "linux" {
			return map[string]string{}
		}
		return map[string]string{k: v}
	}
	window := func(w string) map[string]string { return ownOnly("windowsize", w) }
	with := func(a, b map[string]string) map[string]string {
		out := map[string]string{}
		maps.Copy(out, a)
		maps.Copy(out, b)
		return out
	}
	tests := []struct {
		cap  int
		opts []string
		want map[string]string
	}{
		{0, []string{"tsize", "0", "blksize", "1468", "windowsize", "4"}, with(map[string]string{"tsize": "5000", "blksize": "1468"}, window("4"))},
		{0, []string{"blksize", "1468", "windowsize", "1000"}, with(map[string]string{"blksize": "1468"}, window("44"))},
		{0, []string{"blksize", "512", "WINDOWSIZE", "200"}, with(map[string]string{"blksize": "512"}, window("64"))},
		{0, []string{"tsize", "0", "windowsize", "1"}, with(map[string]string{"tsize": "5000"}, window("1"))},
		{0, []string{"tsize", "0", "windowsize", "0"}, map[string]string{"tsize": "5000"}},
		{0, []string{"tsize", "0", "windowsize", "junk"}, map[string]string{"tsize": "5000"}},
		{0, []string{"tsize", "0", "windowsize", "65536"}, map[string]string{"tsize": "5000"}},
		{0, []string{"TSIZE", "0", "BLKSIZE", "65464"}, map[string]string{"tsize": "5000", "blksize": "1468"}},
		{0, []string{"blksize", "1432", "timeout", "3"}, with(map[string]string{"blksize": "1432"}, ownOnly("timeout", "3"))},
		{0, []string{"TIMEOUT", "255", "tsize", "0"}, with(map[string]string{"tsize": "5000"}, ownOnly("timeout", "255"))},
		{0, []string{"timeout", "0", "tsize", "0"}, map[string]string{"tsize": "5000"}},
		{0, []string{"timeout", "256", "tsize", "0"}, map[string]string{"tsize": "5000"}},
		{0, []string{"timeout", "1.5", "tsize", "0"}, map[string]string{"tsize": "5000"}},
		{0, []string{"timeout", "-1", "tsize", "0"}, map[string]string{"tsize": "5000"}},
		{1024, []string{"blksize", "1468"}, map[string]string{"blksize": "1024"}},
		{512, []string{"blksize", "1468", "tsize", "0"}, map[string]string{"tsize": "5000"}},
		{0, []string{"blksize", "8", "tsize", "0"}, map[string]string{"tsize": "5000"}},
		{0, []string{"blksize", "junk", "tsize", "0"}, map[string]string{"tsize": "5000"}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("cap%d %v", tc.cap, tc.opts), func(t *testing.T) {
			addr := startTFTP(t, &netboot.TFTPServer{Files: netboot.FS(files), BlockSize: tc.cap})
			reply := rawRRQ(t, addr, rrq("f", "octet", tc.opts...))
			require.Equal(t, uint16(6), binary.BigEndian.Uint16(reply), "want OACK, got % x", reply)
			parts := strings.Split(strings.TrimSuffix(string(reply[2:]), "\x00"), "\x00")
			got := map[string]string{}
			for i := 0; i+1 < len(parts); i += 2 {
				got[parts[i]] = parts[i+1]
			}
			assert.Equal(t, tc.want, got)
		})
	}
}

type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("read /srv/private/disk: input/output error")
	}
	n := min(len(p), f.n)
	f.n -= n
	return n, nil
}

func (f *failingReader) Seek(int64, int) (int64, error) { return 0, nil }

func TestTFTPErrorTextIsSafe(t *testing.T) {
	src := netboot.Files{
		"broken": netboot.SourceFunc(func(context.Context, *netboot.Request) (*netboot.File, error) {
			return &netboot.File{Content: &failingReader{n: 3000}, Size: 10000}, nil
		}),
		"denied": netboot.SourceFunc(func(context.Context, *netboot.Request) (*netboot.File, error) {
			return nil, errors.New("open /srv/private/key: permission denied")
		}),
	}
	var logBuf syncBuffer
	addr := startTFTP(t, &netboot.TFTPServer{Files: src, Logger: slog.New(slog.NewTextHandler(&logBuf, nil))})
	for _, tc := range []struct{ name, detail string }{
		{"broken", "read /srv/private/disk: input/output error"},
		{"denied", "open /srv/private/key: permission denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := pinGet(t, addr, tc.name, 512)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "cannot read file")
			assert.NotContains(t, err.Error(), "/srv/private")
			// The detail is in the log instead, at level ERROR.
			require.Eventually(t, func() bool { return strings.Contains(logBuf.String(), tc.detail) }, 3*time.Second, 20*time.Millisecond)
			for _, line := range strings.Split(logBuf.String(), "\n") {
				if strings.Contains(line, tc.detail) {
					assert.Contains(t, line, "level=ERROR")
					assert.Contains(t, line, "file="+tc.name)
				}
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestTFTPServeStops(t *testing.T) {
	srv := &netboot.TFTPServer{Files: netboot.FS(fstest.MapFS{})}
	_, stop := runTFTP(t, srv)
	assert.Less(t, stop(), 5*time.Second)
	// The socket is closed.
	_, err := srv.Conn.WriteTo([]byte{0}, srv.Conn.LocalAddr())
	assert.ErrorIs(t, err, net.ErrClosed)

	t.Run("bad config", func(t *testing.T) {
		for _, s := range []*netboot.TFTPServer{
			{Files: netboot.FS(fstest.MapFS{})},
			{Conn: mustListen(t)},
			{Conn: mustListen(t), Files: netboot.FS(fstest.MapFS{}), BlockSize: 100},
			{Conn: mustListen(t), Files: netboot.FS(fstest.MapFS{}), BlockSize: 70000},
		} {
			assert.ErrorIs(t, s.Serve(t.Context()), netboot.ErrConfig)
		}
	})
}

func mustListen(t *testing.T) net.PacketConn {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	return c
}

func TestTFTPConcurrent(t *testing.T) {
	data := randomBytes(t, 300_000)
	addr := startTFTP(t, &netboot.TFTPServer{Files: netboot.FS(fstest.MapFS{"f": {Data: data}})})
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			got, _, err := pinGet(t, addr, "f", 1468)
			if err == nil && !bytes.Equal(got, data) {
				err = errors.New("content differs")
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
}

// TestTFTPRealClients downloads with tftp-hpa (plain RFC 1350: it negotiates
// no options) and atftp (blksize and tsize).
func TestTFTPRealClients(t *testing.T) {
	data := randomBytes(t, 1_500_000)
	addr := startTFTP(t, &netboot.TFTPServer{Files: netboot.FS(fstest.MapFS{"boot/kernel": {Data: data}})})
	host, port, _ := net.SplitHostPort(addr)

	t.Run("tftp-hpa", func(t *testing.T) {
		bin := testenv.Command(t, "tftp")
		out := filepath.Join(t.TempDir(), "k")
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "-m", "binary", host, port, "-c", "get", "/boot/kernel", out)
		b, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", b)
		got, err := os.ReadFile(out)
		require.NoError(t, err)
		assert.True(t, bytes.Equal(data, got), "content differs")
	})
	for _, bs := range []string{"512", "1432", "1468", "8192"} {
		t.Run("atftp blksize "+bs, func(t *testing.T) {
			bin := testenv.Command(t, "atftp")
			out := filepath.Join(t.TempDir(), "k")
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "--trace", "--option", "blksize "+bs, "--option", "tsize 0",
				"--get", "-r", "boot/kernel", "-l", out, host, port)
			b, err := cmd.CombinedOutput()
			require.NoError(t, err, "%.500s", b)
			got, err := os.ReadFile(out)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(data, got), "content differs")
			var oack string
			for _, line := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(line, "received OACK") {
					oack = line
				}
			}
			want := bs
			if bs == "8192" {
				want = "1468" // capped
			}
			assert.Contains(t, oack, "tsize: 1500000,")
			assert.Contains(t, oack, "blksize: "+want+",")
		})
	}
	t.Run("atftp missing", func(t *testing.T) {
		bin := testenv.Command(t, "atftp")
		out := filepath.Join(t.TempDir(), "k")
		b, _ := exec.CommandContext(t.Context(), bin, "--get", "-r", "../../etc/passwd", "-l", out, host, port).CombinedOutput()
		assert.Contains(t, string(b), "access violation", "%s", b)
	})
}

// TestTFTPRetransmits checks the timeouts firmware needs: a client that
// stops acknowledging gets the block again every Timeout, Retries more
// times, then the transfer ends and its slot is free.
func TestTFTPRetransmits(t *testing.T) {
	const timeout, retries = 250 * time.Millisecond, 3
	files := fstest.MapFS{"f": {Data: randomBytes(t, 5000)}}
	addr := startTFTP(t, &netboot.TFTPServer{Files: netboot.FS(files), Timeout: timeout, Retries: retries, MaxTransfers: 1})
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer c.Close()
	ua, err := net.ResolveUDPAddr("udp4", addr)
	require.NoError(t, err)
	start := time.Now()
	_, err = c.WriteTo(rrq("f", "octet"), ua)
	require.NoError(t, err)
	var arrivals []time.Duration
	var final []byte
	buf := make([]byte, 2048)
	for {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(2*time.Second)))
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			break // silence: the server gave up
		}
		p := append([]byte(nil), buf[:n]...)
		if binary.BigEndian.Uint16(p) != 3 {
			final = p
			break
		}
		require.Equal(t, uint16(1), binary.BigEndian.Uint16(p[2:]), "only block 1 is ever sent")
		arrivals = append(arrivals, time.Since(start))
	}
	require.Len(t, arrivals, retries+1, "block 1 sent once and retransmitted Retries times: %v", arrivals)
	for i := 1; i < len(arrivals); i++ {
		gap := arrivals[i] - arrivals[i-1]
		assert.GreaterOrEqual(t, gap, timeout-20*time.Millisecond, "retransmission %d after %v", i, gap)
		assert.Less(t, gap, timeout+400*time.Millisecond, "retransmission %d after %v", i, gap)
	}
	if final != nil {
		_, _, isErr := tftpError(final)
		assert.True(t, isErr, "after the last retransmission only an ERROR may follow, got % x", final)
	}
	// The abandoned transfer no longer holds the only slot (released just
	// after its ERROR is sent, so allow a moment).
	require.Eventually(t, func() bool {
		got, _, err := pinGet(t, addr, "f", 1468)
		return err == nil && bytes.Equal(files["f"].Data, got)
	}, 3*time.Second, 50*time.Millisecond)
}

// TestTFTPNoSocketLeak sends requests that end in every kind of refusal and
// checks that no transfer socket stays open (pin/tftp leaks one whenever a
// handler returns nil without sending). The garbage collector is off while
// it runs: its finalizers would close leaked sockets and hide the leak.
func TestTFTPNoSocketLeak(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc/self/fd")
		}
		return len(ents)
	}
	src := netboot.Chain(netboot.FS(fstest.MapFS{"ok": {Data: []byte("x")}}), netboot.Files{
		"fail": netboot.SourceFunc(func(context.Context, *netboot.Request) (*netboot.File, error) {
			return nil, errors.New("no")
		}),
	})
	addr := startTFTP(t, &netboot.TFTPServer{Files: src})
	_, _, err := pinGet(t, addr, "ok", 0) // warm up
	require.NoError(t, err)
	before := fds()
	for i := range 60 {
		switch i % 4 {
		case 0:
			_, _, err = pinGet(t, addr, "missing", 0)
		case 1:
			_, _, err = pinGet(t, addr, "fail", 0)
		case 2:
			rawRRQ(t, addr, rrq("../x", "octet"))
			err = errors.New("refused")
		case 3:
			rawRRQ(t, addr, rrq("ok", "mail"))
			err = errors.New("refused")
		}
		require.Error(t, err)
	}
	assert.Eventually(t, func() bool { return fds() <= before+2 }, 3*time.Second, 50*time.Millisecond,
		"open descriptors %d, before %d", fds(), before)
}
