package netboot_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
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

// holder is a raw client that keeps a transfer going, acknowledging every
// block a little late, until release is closed; then it acknowledges at
// once and so ends the transfer.
type holder struct {
	c       net.PacketConn
	first   chan struct{} // closed at the first DATA: the slot is taken
	release chan struct{}
	done    chan error // the transfer's end: nil once the last block is acknowledged
}

func startHolder(t *testing.T, addr, name, mode string) *holder {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	ua, err := net.ResolveUDPAddr("udp4", addr)
	require.NoError(t, err)
	_, err = c.WriteTo(rrq(name, mode), ua)
	require.NoError(t, err)
	h := &holder{c: c, first: make(chan struct{}), release: make(chan struct{}), done: make(chan error, 1)}
	go func() { h.done <- h.run() }()
	return h
}

func (h *holder) run() error {
	buf := make([]byte, 2048)
	for first := true; ; first = false {
		if err := h.c.SetReadDeadline(time.Now().Add(3 * time.Second)); err != nil {
			return err
		}
		n, from, err := h.c.ReadFrom(buf)
		if err != nil {
			return err
		}
		if n < 4 || binary.BigEndian.Uint16(buf) != 3 {
			return fmt.Errorf("holder: want DATA, got % x", buf[:min(n, 32)])
		}
		if first {
			close(h.first)
		}
		select {
		case <-h.release:
		case <-time.After(20 * time.Millisecond):
		}
		if _, err := h.c.WriteTo([]byte{0, 4, buf[2], buf[3]}, from); err != nil {
			return err
		}
		if n < 4+512 {
			return nil
		}
	}
}

// waitBusy waits for an Event reporting a refused request.
func waitBusy(t *testing.T, evc <-chan netboot.Event, within time.Duration) netboot.Event {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case ev := <-evc:
			if errors.Is(ev.Err, netboot.ErrBusy) {
				return ev
			}
		case <-deadline:
			t.Fatalf("no busy event within %v", within)
		}
	}
}

// silence reads from c for d and returns every packet that arrived.
func silence(t *testing.T, c net.PacketConn, d time.Duration) [][]byte {
	t.Helper()
	var got [][]byte
	buf := make([]byte, 2048)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(d)))
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return got
		}
		got = append(got, append([]byte(nil), buf[:n]...))
	}
}

// TestTFTPBusyRealClient: with every transfer slot taken, a read request
// gets no answer (firmware treats an ERROR packet as fatal) and the client's
// retransmission is served once the slot is free. The slot is held by a
// transfer sent by the package's own sender (octet) or by pin/tftp's
// (netascii).
func TestTFTPBusyRealClient(t *testing.T) {
	data := randomBytes(t, 300_000)
	files := fstest.MapFS{"boot/kernel": {Data: data}, "hold": {Data: randomBytes(t, 100_000)}}
	for _, tc := range []struct{ client, holdMode string }{
		{"tftp-hpa", "octet"},
		{"tftp-hpa", "netascii"},
		{"atftp", "octet"},
	} {
		t.Run(tc.client+" held by "+tc.holdMode, func(t *testing.T) {
			bin := testenv.Command(t, map[string]string{"tftp-hpa": "tftp", "atftp": "atftp"}[tc.client])
			obs, evc := busyEvents()
			addr := startTFTP(t, &netboot.TFTPServer{Files: netboot.FS(files), MaxTransfers: 1, Observer: obs})
			host, port, _ := net.SplitHostPort(addr)
			h := startHolder(t, addr, "hold", tc.holdMode)
			select {
			case <-h.first:
			case err := <-h.done:
				t.Fatalf("holder ended: %v", err)
			case <-time.After(3 * time.Second):
				t.Fatal("holder got no DATA")
			}

			// A raw request while the slot is taken: no answer at all, in
			// particular no ERROR code 1.
			raw, err := net.ListenPacket("udp4", "127.0.0.1:0")
			require.NoError(t, err)
			defer raw.Close()
			ua, err := net.ResolveUDPAddr("udp4", addr)
			require.NoError(t, err)
			_, err = raw.WriteTo(rrq("boot/kernel", "octet"), ua)
			require.NoError(t, err)
			ev := waitBusy(t, evc, 2*time.Second)
			assert.Equal(t, "boot/kernel", ev.Name)
			for _, p := range silence(t, raw, 300*time.Millisecond) {
				code, msg, isErr := tftpError(p)
				assert.False(t, isErr, "a busy server sent ERROR %d %q", code, msg)
				assert.Fail(t, "a busy server answered", "% x", p[:min(len(p), 16)])
			}

			out := filepath.Join(t.TempDir(), "kernel")
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			var cmd *exec.Cmd
			if tc.client == "tftp-hpa" {
				// Interactive, to retransmit after 1 s instead of 5 s; trace
				// prints every packet received.
				cmd = exec.CommandContext(ctx, bin, "-m", "binary", host, port)
				cmd.Stdin = strings.NewReader("trace\nrexmt 1\ntimeout 20\nget boot/kernel " + out + "\nquit\n")
			} else {
				cmd = exec.CommandContext(ctx, bin, "--trace", "--tftp-timeout", "1", "--option", "blksize 1468",
					"--get", "-r", "boot/kernel", "-l", out, host, port)
			}
			var output bytes.Buffer
			cmd.Stdout, cmd.Stderr = &output, &output
			require.NoError(t, cmd.Start())
			// The real client's request is dropped too, then the holder ends.
			waitBusy(t, evc, 3*time.Second)
			close(h.release)
			require.NoError(t, <-h.done, "the holder's transfer completes")
			require.NoError(t, cmd.Wait(), "%s", &output)
			got, err := os.ReadFile(out)
			require.NoError(t, err, "%s", &output)
			assert.True(t, bytes.Equal(data, got), "content differs (%d bytes of %d): %s", len(got), len(data), &output)
			assert.NotContains(t, strings.ToLower(output.String()), "error", "%s", &output)

			// The raw client's retransmission is served now.
			_, err = raw.WriteTo(rrq("boot/kernel", "octet"), ua)
			require.NoError(t, err)
			require.NoError(t, raw.SetReadDeadline(time.Now().Add(2*time.Second)))
			buf := make([]byte, 2048)
			n, from, err := raw.ReadFrom(buf)
			require.NoError(t, err)
			block, _ := dataBlock(t, buf[:n])
			assert.Equal(t, uint16(1), block)
			_, _ = raw.WriteTo([]byte{0, 5, 0, 0, 'x', 0}, from)
		})
	}
}

// busyEvents is events without the failure on overflow: a busy server
// reports every dropped retransmission.
func busyEvents() (netboot.Observer, <-chan netboot.Event) {
	ch := make(chan netboot.Event, 64)
	return netboot.ObserverFunc(func(ev netboot.Event) {
		select {
		case ch <- ev:
		default:
		}
	}), ch
}

// TestTFTPBusyDropCostsNothing: requests dropped while the only slot is
// taken start nothing (no goroutine stays, no slot is taken), and a client
// that asked and went silent holds the slot for Timeout × (Retries+1).
func TestTFTPBusyDropCostsNothing(t *testing.T) {
	const timeout, retries = 300 * time.Millisecond, 2
	files := fstest.MapFS{"f": {Data: randomBytes(t, 100_000)}}
	obs, evc := busyEvents()
	addr := startTFTP(t, &netboot.TFTPServer{
		Files: netboot.FS(files), MaxTransfers: 1, Observer: obs,
		Timeout: timeout, Retries: retries,
	})
	ua, err := net.ResolveUDPAddr("udp4", addr)
	require.NoError(t, err)
	// A client that asks and then never acknowledges holds the only slot.
	silent := newPeer(t, addr, rrq("f", "octet"))
	start := time.Now()
	n, _ := dataBlock(t, silent.recv(2*time.Second))
	require.Equal(t, uint16(1), n)

	before := runtime.NumGoroutine()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer c.Close()
	const dropped = 50
	for range dropped {
		_, err = c.WriteTo(rrq("f", "octet", "blksize", "1468"), ua)
		require.NoError(t, err)
	}
	for range dropped {
		waitBusy(t, evc, 2*time.Second)
	}
	assert.LessOrEqual(t, runtime.NumGoroutine(), before, "dropped requests left goroutines")
	assert.Empty(t, silence(t, c, 100*time.Millisecond), "dropped requests were answered")

	// The silent client's transfer ends after Timeout × (Retries+1), with an
	// ERROR; then the slot is free, so none of the dropped requests took one.
	var last []byte
	for {
		p := silent.recv(2 * time.Second)
		require.NotNil(t, p, "the silent transfer never ended")
		if binary.BigEndian.Uint16(p) != 3 {
			last = p
			break
		}
	}
	held := time.Since(start)
	code, msg, isErr := tftpError(last)
	require.True(t, isErr, "% x", last)
	assert.Equal(t, 0, code)
	assert.Equal(t, "timeout", msg)
	t.Logf("a silent client held the slot for %v (Timeout %v × %d tries)", held.Round(time.Millisecond), timeout, retries+1)
	assert.GreaterOrEqual(t, held, timeout*(retries+1)-20*time.Millisecond)
	assert.Less(t, held, timeout*(retries+1)+time.Second)
	got, _, err := pinGet(t, addr, "f", 1468)
	require.NoError(t, err, "the slot is free")
	assert.Equal(t, files["f"].Data, got)
}
