package netboot_test

import (
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/netboot"
)

// TestTFTPSlotFreedWithoutSocket: when no transfer socket can be opened
// (the process is out of descriptors), neither the package's sender nor
// pin/tftp starts a transfer, and the request gives its slot back instead
// of holding it for good.
func TestTFTPSlotFreedWithoutSocket(t *testing.T) {
	data := randomBytes(t, 5000)
	var logBuf syncBuffer
	addr := startTFTP(t, &netboot.TFTPServer{
		Files: netboot.FS(fstest.MapFS{"f": {Data: data}}), MaxTransfers: 1,
		Logger: slog.New(slog.NewTextHandler(&logBuf, nil)),
	})
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer c.Close()
	ua, err := net.ResolveUDPAddr("udp4", addr)
	require.NoError(t, err)
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}

	// Lower the descriptor limit and use up what is left.
	var orig syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig))
	low := orig
	low.Cur = uint64(len(ents) + 32)
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low))
	var fillers []*os.File
	release := func() {
		for _, f := range fillers {
			f.Close()
		}
		fillers = nil
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig)
	}
	defer release()
	for range 64 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			break
		}
		fillers = append(fillers, f)
	}
	_, err = c.WriteTo(rrq("f", "octet"), ua)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return strings.Contains(logBuf.String(), "tftp: transfer not started") },
		3*time.Second, 10*time.Millisecond, "%s", &logBuf)
	release()

	assert.Empty(t, silence(t, c, 100*time.Millisecond), "the request was answered")
	got, _, err := pinGet(t, addr, "f", 1468)
	require.NoError(t, err, "the only slot is free again")
	assert.Equal(t, data, got)
}
