package netboot_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/internal/testenv"
	"github.com/nixboot/nixboot/netboot"
)

// These tests drive the data phase of read transfers packet by packet, as
// a client would, and check the Event each transfer ends with.

// events returns an Observer that passes TFTP transfer events (those with
// a name that was served or refused after admission) to a channel.
func events(t *testing.T) (netboot.Observer, <-chan netboot.Event) {
	ch := make(chan netboot.Event, 16)
	return netboot.ObserverFunc(func(ev netboot.Event) {
		select {
		case ch <- ev:
		default:
			t.Errorf("event dropped: %+v", ev)
		}
	}), ch
}

func nextEvent(t *testing.T, ch <-chan netboot.Event, within time.Duration) netboot.Event {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(within):
		t.Fatalf("no transfer event within %v", within)
		return netboot.Event{}
	}
}

// tftpPeer is a raw client socket for one transfer.
type tftpPeer struct {
	t      *testing.T
	c      net.PacketConn
	server net.Addr // the transfer's address, once the server answered
	buf    []byte
}

func newPeer(t *testing.T, addr string, req []byte) *tftpPeer {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	ua, err := net.ResolveUDPAddr("udp4", addr)
	require.NoError(t, err)
	_, err = c.WriteTo(req, ua)
	require.NoError(t, err)
	return &tftpPeer{t: t, c: c, buf: make([]byte, 65536)}
}

// recv returns the next packet, or nil after wait without one.
func (p *tftpPeer) recv(wait time.Duration) []byte {
	require.NoError(p.t, p.c.SetReadDeadline(time.Now().Add(wait)))
	n, from, err := p.c.ReadFrom(p.buf)
	if err != nil {
		return nil
	}
	if p.server == nil {
		p.server = from
	}
	assert.Equal(p.t, p.server.String(), from.String(), "every packet comes from the transfer's address")
	return append([]byte(nil), p.buf[:n]...)
}

func (p *tftpPeer) send(pkt ...byte) {
	_, err := p.c.WriteTo(pkt, p.server)
	require.NoError(p.t, err)
}

func (p *tftpPeer) ack(block uint16) { p.send(0, 4, byte(block>>8), byte(block)) }

func dataBlock(t *testing.T, pkt []byte) (uint16, []byte) {
	t.Helper()
	require.GreaterOrEqual(t, len(pkt), 4, "packet % x", pkt)
	require.Equal(t, uint16(3), binary.BigEndian.Uint16(pkt), "want DATA, got % x", pkt[:min(len(pkt), 32)])
	return binary.BigEndian.Uint16(pkt[2:]), pkt[4:]
}

// TestTFTPDuplicateAckIgnored: a duplicated acknowledgement must not make
// the server send the next block twice (the Sorcerer's Apprentice bug,
// which doubles every later block once a packet is delayed).
func TestTFTPDuplicateAckIgnored(t *testing.T) {
	data := randomBytes(t, 1500)
	obs, evc := events(t)
	addr := startTFTP(t, &netboot.TFTPServer{Files: netboot.FS(fstest.MapFS{"f": {Data: data}}), Observer: obs, Timeout: 2 * time.Second})
	p := newPeer(t, addr, rrq("f", "octet"))
	var got []byte
	n, b := dataBlock(t, p.recv(2*time.Second))
	require.Equal(t, uint16(1), n)
	got = append(got, b...)
	p.ack(1)
	p.ack(1)
	n, b = dataBlock(t, p.recv(2*time.Second))
	require.Equal(t, uint16(2), n)
	got = append(got, b...)
	assert.Nil(t, p.recv(500*time.Millisecond), "block 2 was sent again after the duplicate ACK 1")
	p.ack(2)
	n, b = dataBlock(t, p.recv(2*time.Second))
	require.Equal(t, uint16(3), n)
	got = append(got, b...)
	p.ack(3)
	assert.Equal(t, data, got)
	ev := nextEvent(t, evc, 3*time.Second)
	require.NoError(t, ev.Err)
	assert.Equal(t, int64(1500), ev.Bytes)
	assert.Equal(t, "f", ev.Name)
}

// TestTFTPClientAbortFreesSlot is what OVMF does: ask for tsize, read it
// from the OACK, then end the transfer with ERROR 8. The slot is free at
// once, not after the timeouts.
func TestTFTPClientAbortFreesSlot(t *testing.T) {
	data := randomBytes(t, 4000)
	obs, evc := events(t)
	addr := startTFTP(t, &netboot.TFTPServer{
		Files: netboot.FS(fstest.MapFS{"f": {Data: data}, "empty": {}}), Observer: obs,
		MaxTransfers: 1, Timeout: 5 * time.Second,
	})
	p := newPeer(t, addr, rrq("f", "octet", "tsize", "0", "blksize", "1468"))
	oack := p.recv(2 * time.Second)
	require.Equal(t, append([]byte{0, 6}, "blksize\x001468\x00tsize\x004000\x00"...), oack)
	p.send(append([]byte{0, 5, 0, 8}, "tsize only\x00"...)...)
	ev := nextEvent(t, evc, 2*time.Second)
	require.ErrorIs(t, ev.Err, netboot.ErrAborted)
	assert.Contains(t, ev.Err.Error(), "code=8")
	assert.Nil(t, p.recv(300*time.Millisecond), "nothing is sent after the client's ERROR")

	got, size, err := pinGet(t, addr, "f", 1468)
	require.NoError(t, err, "the only slot is free again")
	assert.Equal(t, data, got)
	assert.Equal(t, int64(4000), size)
	require.NoError(t, nextEvent(t, evc, 2*time.Second).Err)

	// An empty file still gets its tsize: 0.
	p = newPeer(t, addr, rrq("empty", "octet", "tsize", "0"))
	require.Equal(t, append([]byte{0, 6}, "tsize\x000\x00"...), p.recv(2*time.Second))
	p.ack(0)
	n, b := dataBlock(t, p.recv(2*time.Second))
	assert.Equal(t, uint16(1), n)
	assert.Empty(t, b)
	p.ack(1)
	require.NoError(t, nextEvent(t, evc, 2*time.Second).Err)
}

// TestTFTPClientGone: when the client's port closes, the kernel's ICMP
// "port unreachable" ends the transfer at the next retransmission instead
// of after every retry.
func TestTFTPClientGone(t *testing.T) {
	const timeout, retries = 300 * time.Millisecond, 20
	obs, evc := events(t)
	addr := startTFTP(t, &netboot.TFTPServer{
		Files:    netboot.FS(fstest.MapFS{"f": {Data: randomBytes(t, 5000)}}),
		Observer: obs, Timeout: timeout, Retries: retries,
	})
	p := newPeer(t, addr, rrq("f", "octet"))
	n, _ := dataBlock(t, p.recv(2*time.Second))
	require.Equal(t, uint16(1), n)
	start := time.Now()
	require.NoError(t, p.c.Close())
	ev := nextEvent(t, evc, retries*timeout)
	require.ErrorIs(t, ev.Err, netboot.ErrAborted)
	assert.Less(t, time.Since(start), 5*timeout, "ended after %v: %v", time.Since(start), ev.Err)
}

// TestTFTPNetascii: netascii transfers convert line ends (pin/tftp sends
// them); octet transfers send bytes unchanged.
func TestTFTPNetascii(t *testing.T) {
	addr := startTFTP(t, &netboot.TFTPServer{Files: netboot.FS(fstest.MapFS{"a.txt": {Data: []byte("line1\nline2\n")}})})
	for mode, want := range map[string]string{"netascii": "line1\r\nline2\r\n", "octet": "line1\nline2\n"} {
		p := newPeer(t, addr, rrq("a.txt", mode))
		_, b := dataBlock(t, p.recv(2*time.Second))
		assert.Equal(t, want, string(b), mode)
		p.ack(1)
	}
}

// TestTFTPBlockNumberWraps sends a file of more than 65535 blocks of 512
// bytes, which tftp-hpa (no options) and the pin/tftp client both fetch
// across the block-number wrap from 65535 to 0.
func TestTFTPBlockNumberWraps(t *testing.T) {
	data := randomBytes(t, 512*65536+700)
	addr := startTFTP(t, &netboot.TFTPServer{Files: netboot.FS(fstest.MapFS{"big": {Data: data}})})
	got, _, err := pinGet(t, addr, "big", 512)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(data, got), "pin/tftp client: content differs (%d bytes of %d)", len(got), len(data))

	bin := testenv.Command(t, "tftp")
	host, port, _ := net.SplitHostPort(addr)
	out := filepath.Join(t.TempDir(), "big")
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	b, err := exec.CommandContext(ctx, bin, "-m", "binary", host, port, "-c", "get", "big", out).CombinedOutput()
	require.NoError(t, err, "%s", b)
	fromHPA, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(data, fromHPA), "tftp-hpa: content differs (%d bytes of %d)", len(fromHPA), len(data))
}

// TestTFTPIPv6 serves over IPv6 loopback.
func TestTFTPIPv6(t *testing.T) {
	conn, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	data := randomBytes(t, 10_000)
	srv := &netboot.TFTPServer{Conn: conn, Files: netboot.FS(fstest.MapFS{"f": {Data: data}})}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() { cancel(); assert.NoError(t, <-done) }()
	got, size, err := pinGet(t, conn.LocalAddr().String(), "f", 1468)
	require.NoError(t, err)
	assert.Equal(t, data, got)
	assert.Equal(t, int64(len(data)), size)
}
