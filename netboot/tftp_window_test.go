//go:build linux

package netboot_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/internal/testenv"
	"github.com/nixboot/nixboot/netboot"
)

// RFC 7440 windows: these tests play the client packet by packet.

// oackOptions returns the options of an OACK.
func oackOptions(t *testing.T, pkt []byte) map[string]string {
	t.Helper()
	require.GreaterOrEqual(t, len(pkt), 2)
	require.Equal(t, uint16(6), binary.BigEndian.Uint16(pkt), "want OACK, got % x", pkt[:min(len(pkt), 32)])
	parts := strings.Split(strings.TrimSuffix(string(pkt[2:]), "\x00"), "\x00")
	got := map[string]string{}
	for i := 0; i+1 < len(parts); i += 2 {
		got[parts[i]] = parts[i+1]
	}
	return got
}

// recvBlocks receives n DATA blocks and returns their numbers and data.
func (p *tftpPeer) recvBlocks(n int) ([]uint16, [][]byte) {
	p.t.Helper()
	var nums []uint16
	var data [][]byte
	for range n {
		pkt := p.recv(2 * time.Second)
		require.NotNil(p.t, pkt, "block %d of %d of the window did not come", len(nums)+1, n)
		b, d := dataBlock(p.t, pkt)
		nums = append(nums, b)
		data = append(data, d)
	}
	return nums, data
}

// A window of 8 blocks of 512 bytes: the client acknowledges the end of
// each window, and once acknowledges an earlier block, as RFC 7440's
// receiver does when it sees a gap; the next window starts right after
// the block it acknowledged.
func TestTFTPWindow(t *testing.T) {
	data := randomBytes(t, 512*20+100) // 21 blocks, the last of 100 bytes
	obs, evc := events(t)
	addr := startTFTP(t, &netboot.TFTPServer{Files: netboot.FS(fstest.MapFS{"f": {Data: data}}), Observer: obs, Timeout: 2 * time.Second})
	p := newPeer(t, addr, rrq("f", "octet", "blksize", "512", "windowsize", "8", "tsize", "0"))
	assert.Equal(t, map[string]string{"blksize": "512", "windowsize": "8", "tsize": "10340"}, oackOptions(t, p.recv(2*time.Second)))
	p.ack(0)
	block := func(n int) []byte { return data[(n-1)*512 : min(n*512, len(data))] }

	nums, got := p.recvBlocks(8)
	assert.Equal(t, []uint16{1, 2, 3, 4, 5, 6, 7, 8}, nums)
	for i, d := range got {
		assert.Equal(t, block(i+1), d, "block %d", i+1)
	}
	p.ack(8)
	nums, _ = p.recvBlocks(8)
	assert.Equal(t, []uint16{9, 10, 11, 12, 13, 14, 15, 16}, nums)
	// As if 11 had been lost: the client acknowledges 10.
	p.ack(10)
	nums, got = p.recvBlocks(8)
	assert.Equal(t, []uint16{11, 12, 13, 14, 15, 16, 17, 18}, nums)
	assert.Equal(t, block(11), got[0])
	p.ack(18)
	nums, got = p.recvBlocks(3)
	assert.Equal(t, []uint16{19, 20, 21}, nums)
	assert.Equal(t, block(21), got[2])
	assert.Nil(t, p.recv(300*time.Millisecond), "nothing after the last block")
	p.ack(21)
	ev := nextEvent(t, evc, 3*time.Second)
	require.NoError(t, ev.Err)
	assert.Equal(t, int64(len(data)), ev.Bytes)
}

// Without an acknowledgement the window is sent again after the timeout,
// and a repeated acknowledgement of the block before the window sends it
// again at once, but only the first time: a client that answers every
// duplicate block must not multiply the traffic.
func TestTFTPWindowRetransmit(t *testing.T) {
	data := randomBytes(t, 512*10) // 10 full blocks, then an empty one
	obs, evc := events(t)
	const timeout = time.Second // long enough that a loaded machine does not blur the checks below
	addr := startTFTP(t, &netboot.TFTPServer{Files: netboot.FS(fstest.MapFS{"f": {Data: data}}), Observer: obs, Timeout: timeout, Retries: 2})
	p := newPeer(t, addr, rrq("f", "octet", "windowsize", "4"))
	assert.Equal(t, map[string]string{"windowsize": "4"}, oackOptions(t, p.recv(2*time.Second)))
	p.ack(0)
	nums, _ := p.recvBlocks(4)
	assert.Equal(t, []uint16{1, 2, 3, 4}, nums)
	start := time.Now()
	nums, _ = p.recvBlocks(4) // no ACK: after the timeout, the same window
	assert.Equal(t, []uint16{1, 2, 3, 4}, nums)
	assert.GreaterOrEqual(t, time.Since(start), timeout*3/4)
	p.ack(4)
	nums, _ = p.recvBlocks(4)
	assert.Equal(t, []uint16{5, 6, 7, 8}, nums)
	p.ack(4)
	p.ack(4)
	nums, _ = p.recvBlocks(4)
	assert.Equal(t, []uint16{5, 6, 7, 8}, nums, "the first repeated ACK 4 sends the window again")
	assert.Nil(t, p.recv(timeout/2), "the second one does not")
	p.ack(8)
	nums, got := p.recvBlocks(3)
	assert.Equal(t, []uint16{9, 10, 11}, nums)
	assert.Empty(t, got[2], "a file of whole blocks ends with an empty one")
	p.ack(11)
	ev := nextEvent(t, evc, 3*time.Second)
	require.NoError(t, ev.Err)
	assert.Equal(t, int64(len(data)), ev.Bytes)

	// A client that stops acknowledging ends the transfer after the
	// retries, with a timeout.
	p = newPeer(t, addr, rrq("f", "octet", "windowsize", "4"))
	oackOptions(t, p.recv(2*time.Second))
	p.ack(0)
	ev = nextEvent(t, evc, 10*timeout)
	require.Error(t, ev.Err)
	assert.Contains(t, ev.Err.Error(), "no acknowledgement")
}

// Block numbers wrap from 65535 to 0 inside windows as in lock-step: a
// file of more than 65536 blocks of 512 bytes in windows of 64.
func TestTFTPWindowBlockNumberWraps(t *testing.T) {
	data := randomBytes(t, 512*65600+33)
	obs, evc := events(t)
	addr := startTFTP(t, &netboot.TFTPServer{Files: netboot.FS(fstest.MapFS{"big": {Data: data}}), Observer: obs, Timeout: 2 * time.Second})
	p := newPeer(t, addr, rrq("big", "octet", "windowsize", "64"))
	assert.Equal(t, map[string]string{"windowsize": "64"}, oackOptions(t, p.recv(2*time.Second)))
	p.ack(0)
	got := make([]byte, 0, len(data))
	want := uint16(1)
	for done := false; !done; {
		for i := 0; i < 64; i++ {
			b, d := dataBlock(t, p.recv(2*time.Second))
			require.Equal(t, want, b)
			got = append(got, d...)
			want++
			if len(d) < 512 {
				done = true
				break
			}
		}
		p.ack(want - 1)
	}
	assert.True(t, bytes.Equal(data, got), "content differs (%d bytes of %d)", len(got), len(data))
	ev := nextEvent(t, evc, 3*time.Second)
	require.NoError(t, ev.Err)
	assert.Equal(t, int64(len(data)), ev.Bytes)
}

// atftp (0.8) asks for windowsize when told to, and fetches the file
// intact in windows of what it asked for, at every block size firmware
// uses; the server caps what it grants by the data a window holds.
func TestTFTPWindowAtftp(t *testing.T) {
	bin := testenv.Command(t, "atftp")
	data := randomBytes(t, 3_000_000)
	addr := startTFTP(t, &netboot.TFTPServer{Files: netboot.FS(fstest.MapFS{"f": {Data: data}}), BlockSize: 8192})
	host, port, _ := net.SplitHostPort(addr)
	for _, tc := range []struct {
		blksize, window int
		granted         int // by the server
	}{{1468, 4, 4}, {1432, 16, 16}, {512, 64, 64}, {8192, 64, 8} /* 64 KiB a window */} {
		t.Run(fmt.Sprintf("blksize %d windowsize %d", tc.blksize, tc.window), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			b, err := exec.CommandContext(ctx, bin, "--trace", "--option", fmt.Sprintf("blksize %d", tc.blksize),
				"--option", fmt.Sprintf("windowsize %d", tc.window), "--get", "-r", "f", "-l", out, host, port).CombinedOutput()
			require.NoError(t, err, "%.2000s", b)
			got, err := os.ReadFile(out)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(data, got), "%d bytes of %d, content differs", len(got), len(data))
			// atftp's trace shows what was granted and every ACK it sent.
			trace := string(b)
			oack := fmt.Sprintf("received OACK <windowsize: %d, blksize: %d,", tc.granted, tc.blksize)
			assert.True(t, strings.Contains(trace, oack), "no %q in atftp's trace: %.300s", oack, trace)
			blocks := len(data)/tc.blksize + 1
			acks := strings.Count(trace, "sent ACK")
			assert.LessOrEqual(t, acks, blocks/tc.granted+3, "%d ACKs for %d blocks in windows of %d", acks, blocks, tc.granted)
			t.Logf("%d blocks, %d ACKs", blocks, acks)
		})
	}
}

// More transfers at once than GOMAXPROCS: the first ones get blocking
// sockets, the others go through the netpoller (see dialTransfer); all
// arrive intact, lock-step and windowed.
func TestTFTPManyTransfers(t *testing.T) {
	n := runtime.GOMAXPROCS(0) + 4
	data := randomBytes(t, 512*30+7)
	var logBuf syncBuffer
	obs, evc := events(t)
	addr := startTFTP(t, &netboot.TFTPServer{Files: netboot.FS(fstest.MapFS{"f": {Data: data}}), Observer: obs,
		Timeout: 5 * time.Second, Logger: slog.New(slog.NewTextHandler(&logBuf, nil))})
	peers := make([]*tftpPeer, n)
	windowed := func(i int) bool { return i%2 == 1 }
	for i := range peers {
		opts := []string{"blksize", "512"}
		if windowed(i) {
			opts = append(opts, "windowsize", "4")
		}
		peers[i] = newPeer(t, addr, rrq("f", "octet", opts...))
		oackOptions(t, peers[i].recv(2*time.Second)) // every transfer is under way
	}
	for i, p := range peers {
		p.ack(0)
		var got []byte
		w := 1
		if windowed(i) {
			w = 4
		}
		for block := uint16(1); ; {
			_, bufs := p.recvBlocks(min(w, 31-int(block)+1))
			for _, b := range bufs {
				got = append(got, b...)
			}
			block += uint16(len(bufs))
			p.ack(block - 1)
			if len(bufs[len(bufs)-1]) < 512 {
				break
			}
		}
		assert.True(t, bytes.Equal(data, got), "transfer %d: %d bytes of %d", i, len(got), len(data))
	}
	for range n {
		require.NoError(t, nextEvent(t, evc, 3*time.Second).Err)
	}
	log := logBuf.String()
	assert.Equal(t, n, strings.Count(log, `msg="tftp: sent"`), "%s", log)
	assert.Equal(t, runtime.GOMAXPROCS(0), strings.Count(log, "blocking=true"), "%s", log)
	assert.Equal(t, 4, strings.Count(log, "blocking=false"), "%s", log)
}

// A read request sent again from the same port before the client heard
// anything back is the same request, retransmitted: it starts no second
// transfer. Once the client has answered, the same request from the same
// port is a new transfer (a client fetching the file again).
func TestTFTPRetransmittedRequest(t *testing.T) {
	data := randomBytes(t, 2000)
	obs, evc := events(t)
	addr := startTFTP(t, &netboot.TFTPServer{Files: netboot.FS(fstest.MapFS{"f": {Data: data}}), Observer: obs, Timeout: 3 * time.Second})
	req := rrq("f", "octet", "blksize", "1468", "tsize", "0")
	p := newPeer(t, addr, req)
	ua, err := net.ResolveUDPAddr("udp4", addr)
	require.NoError(t, err)
	for range 3 {
		_, err = p.c.WriteTo(req, ua) // as if the first answer were late
		require.NoError(t, err)
	}
	assert.Equal(t, map[string]string{"blksize": "1468", "tsize": "2000"}, oackOptions(t, p.recv(2*time.Second)))
	// recv fails the test if a packet comes from another transfer.
	assert.Nil(t, p.recv(500*time.Millisecond), "a second transfer answered")
	first := p.server
	p.ack(0)
	_, got := dataBlock(t, p.recv(2*time.Second))
	p.ack(1)
	_, rest := dataBlock(t, p.recv(2*time.Second))
	p.ack(2)
	assert.Equal(t, data, append(got, rest...))
	require.NoError(t, nextEvent(t, evc, 3*time.Second).Err)
	select {
	case ev := <-evc:
		t.Fatalf("a second transfer: %+v", ev)
	case <-time.After(300 * time.Millisecond):
	}

	// The same request from the same port, after the client answered: a
	// new transfer, from a new port of the server's.
	_, err = p.c.WriteTo(req, ua)
	require.NoError(t, err)
	p.server = nil
	oackOptions(t, p.recv(2*time.Second))
	assert.NotEqual(t, first.String(), p.server.String())
	p.send(append([]byte{0, 5, 0, 8}, "enough\x00"...)...)
	require.ErrorIs(t, nextEvent(t, evc, 3*time.Second).Err, netboot.ErrAborted)
}

// RFC 2349 timeout: a client that asks for 1 s gets the OACK retransmitted
// every second, not at the server's Timeout of 3 s, still Retries times,
// and then an ERROR.
func TestTFTPClientTimeout(t *testing.T) {
	const retries = 2
	addr := startTFTP(t, &netboot.TFTPServer{Files: netboot.FS(fstest.MapFS{"f": {Data: randomBytes(t, 5000)}}),
		Timeout: 3 * time.Second, Retries: retries})
	start := time.Now()
	p := newPeer(t, addr, rrq("f", "octet", "timeout", "1", "tsize", "0"))
	var arrivals []time.Duration
	for {
		pkt := p.recv(5 * time.Second)
		require.NotNil(t, pkt, "neither another OACK nor an ERROR within 5 s")
		if _, msg, isErr := tftpError(pkt); isErr {
			assert.Equal(t, "timeout", msg)
			break
		}
		assert.Equal(t, map[string]string{"timeout": "1", "tsize": "5000"}, oackOptions(t, pkt))
		arrivals = append(arrivals, time.Since(start))
	}
	require.Len(t, arrivals, retries+1, "the OACK sent once and retransmitted Retries times: %v", arrivals)
	for i := 1; i < len(arrivals); i++ {
		gap := arrivals[i] - arrivals[i-1]
		assert.GreaterOrEqual(t, gap, time.Second-20*time.Millisecond, "retransmission %d after %v", i, gap)
		assert.Less(t, gap, 2*time.Second, "retransmission %d after %v: the server's Timeout, not the client's", i, gap)
	}
}

// atftp asks for a timeout and gets it; the transfer is intact.
func TestTFTPClientTimeoutAtftp(t *testing.T) {
	bin := testenv.Command(t, "atftp")
	data := randomBytes(t, 300_000)
	addr := startTFTP(t, &netboot.TFTPServer{Files: netboot.FS(fstest.MapFS{"f": {Data: data}})})
	host, port, _ := net.SplitHostPort(addr)
	out := filepath.Join(t.TempDir(), "out")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	b, err := exec.CommandContext(ctx, bin, "--trace", "--option", "timeout 2", "--option", "blksize 1468",
		"--get", "-r", "f", "-l", out, host, port).CombinedOutput()
	require.NoError(t, err, "%.2000s", b)
	got, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(data, got), "%d bytes of %d, content differs", len(got), len(data))
	assert.Contains(t, string(b), "received OACK <timeout: 2, blksize: 1468,")
}
