package netboot_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/internal/leaktest"
	"github.com/nixboot/nixboot/internal/testenv"
	"github.com/nixboot/nixboot/netboot"
)

// zeros is an endless io.ReaderAt of zero bytes.
type zeros struct{}

func (zeros) ReadAt(p []byte, _ int64) (int, error) {
	clear(p)
	return len(p), nil
}

// bigFiles serves "big", size bytes of zeros, without holding them in memory.
func bigFiles(size int64) netboot.Source {
	return netboot.Files{"big": netboot.SourceFunc(func(context.Context, *netboot.Request) (*netboot.File, error) {
		return &netboot.File{Content: io.NewSectionReader(zeros{}, 0, size), Size: size}, nil
	})}
}

// runTFTP starts srv on a loopback socket; stop cancels Serve and returns
// how long Serve took to return.
func runTFTP(t *testing.T, srv *netboot.TFTPServer) (addr string, stop func() time.Duration) {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	srv.Conn = conn
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	stopped := false
	stop = func() time.Duration {
		t.Helper()
		stopped = true
		start := time.Now()
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(60 * time.Second):
			t.Fatal("Serve did not return within 60 s of cancel")
		}
		return time.Since(start)
	}
	t.Cleanup(func() {
		if !stopped {
			cancel()
			assert.NoError(t, <-done)
		}
	})
	return conn.LocalAddr().String(), stop
}

// ackUntilEnd is a raw client: it asks for name, acknowledges every packet
// (after pace) until stopAfter blocks, then stays silent; it returns the
// number of DATA blocks received and the first other packet (nil if none
// came within 5 s). started is told the moment block startAt arrives.
func ackUntilEnd(c net.PacketConn, server net.Addr, req []byte, pace time.Duration, stopAfter, startAt int, started chan<- struct{}) (int, []byte, error) {
	if _, err := c.WriteTo(req, server); err != nil {
		return 0, nil, err
	}
	buf := make([]byte, 65536)
	blocks := 0
	for {
		if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			return blocks, nil, err
		}
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return blocks, nil, nil
		}
		switch binary.BigEndian.Uint16(buf) {
		case 3:
			if blocks == stopAfter {
				continue // silent: retransmissions are ignored
			}
			blocks++
			if blocks == startAt {
				close(started)
			}
		case 6: // OACK
		default:
			return blocks, append([]byte(nil), buf[:n]...), nil
		}
		time.Sleep(pace)
		ack := []byte{0, 4, buf[2], buf[3]}
		if binary.BigEndian.Uint16(buf) == 6 {
			ack[2], ack[3] = 0, 0
		}
		if _, err := c.WriteTo(ack, from); err != nil {
			return blocks, nil, err
		}
	}
}

// TestTFTPShutdownMidTransfer cancels Serve while a transfer is running:
// the transfer stops at once, the client gets an ERROR saying so, and Serve
// returns promptly even when the client is silent and the server is
// waiting out a long acknowledgement timeout.
func TestTFTPShutdownMidTransfer(t *testing.T) {
	const size = 2_000_000 // 3907 blocks of 512 bytes (the last one partial)
	for _, tc := range []struct {
		name      string
		mode      string
		stopAfter int // blocks the client acknowledges; -1: all
		wantCode  int
	}{
		{"acknowledging client", "octet", -1, 0},
		{"silent client", "octet", 10, 0},
		// pin/tftp sends netascii; it can only send code 1.
		{"acknowledging client netascii", "netascii", -1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			addr, stop := runTFTP(t, &netboot.TFTPServer{Files: bigFiles(size), Timeout: 2 * time.Second, Retries: 4})
			ua, err := net.ResolveUDPAddr("udp4", addr)
			require.NoError(t, err)
			c, err := net.ListenPacket("udp4", "127.0.0.1:0")
			require.NoError(t, err)
			defer c.Close()
			started := make(chan struct{})
			type result struct {
				blocks int
				last   []byte
				err    error
			}
			res := make(chan result, 1)
			go func() {
				// 2 ms per block: the whole file would take 8 s or more.
				n, last, err := ackUntilEnd(c, ua, rrq("big", tc.mode), 2*time.Millisecond, tc.stopAfter, 10, started)
				res <- result{n, last, err}
			}()
			select {
			case <-started:
			case <-time.After(5 * time.Second):
				t.Fatal("the transfer did not start")
			}
			if tc.stopAfter > 0 {
				time.Sleep(200 * time.Millisecond) // the server waits for block 10's ACK
			}
			took := stop()
			t.Logf("Serve returned %v after cancel", took.Round(time.Millisecond))
			assert.Less(t, took, 3*time.Second, "Serve returned %v after cancel", took)

			r := <-res
			require.NoError(t, r.err)
			assert.Less(t, r.blocks, size/512+1, "the whole file was sent")
			code, msg, isErr := tftpError(r.last)
			require.True(t, isErr, "want ERROR after %d blocks, got % x", r.blocks, r.last)
			assert.Equal(t, tc.wantCode, code)
			assert.Equal(t, "server shutting down", msg)
			c.Close()
			leaktest.Wait(t, before)
		})
	}
}

// TestTFTPShutdownRealClient cancels Serve while tftp-hpa and atftp download
// a large file; they report the server's ERROR.
func TestTFTPShutdownRealClient(t *testing.T) {
	const size = 256 << 20
	for _, client := range []string{"tftp-hpa", "atftp"} {
		t.Run(client, func(t *testing.T) {
			var bin string
			if client == "tftp-hpa" {
				bin = testenv.Command(t, "tftp")
			} else {
				bin = testenv.Command(t, "atftp")
			}
			before := runtime.NumGoroutine()
			addr, stop := runTFTP(t, &netboot.TFTPServer{Files: bigFiles(size)})
			host, port, _ := net.SplitHostPort(addr)
			out := filepath.Join(t.TempDir(), "big")
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			var cmd *exec.Cmd
			if client == "tftp-hpa" {
				cmd = exec.CommandContext(ctx, bin, "-m", "binary", host, port, "-c", "get", "big", out)
			} else {
				cmd = exec.CommandContext(ctx, bin, "--option", "blksize 1468", "--get", "-r", "big", "-l", out, host, port)
			}
			var output bytes.Buffer
			cmd.Stdout, cmd.Stderr = &output, &output
			require.NoError(t, cmd.Start())
			waited := make(chan error, 1)
			go func() { waited <- cmd.Wait() }()
			require.Eventually(t, func() bool {
				fi, err := os.Stat(out)
				return err == nil && fi.Size() > 1<<20
			}, 10*time.Second, 10*time.Millisecond, "the download did not start")
			took := stop()
			t.Logf("Serve returned %v after cancel", took.Round(time.Millisecond))
			assert.Less(t, took, 3*time.Second)
			<-waited
			fi, err := os.Stat(out)
			require.NoError(t, err)
			assert.Less(t, fi.Size(), int64(size))
			assert.Contains(t, output.String(), "server shutting down", "%s", &output)
			leaktest.Wait(t, before)
		})
	}
}
