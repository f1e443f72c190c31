//go:build unix

package netboot_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/nixboot/nixboot/netboot"
)

// A named pipe in a served directory does not exist for clients, and
// asking for it costs nothing: opening a FIFO for reading would wait for a
// writer, holding a thread per request.
func TestFSNamedPipe(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, unix.Mkfifo(filepath.Join(dir, "pipe"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ok.txt"), []byte("fine"), 0o644))
	root, err := os.OpenRoot(dir)
	require.NoError(t, err)
	t.Cleanup(func() { root.Close() })
	// Should a request still wait on the pipe, a writer ends it, so that a
	// failing test fails instead of hanging.
	unblock := func() {
		if w, err := os.OpenFile(filepath.Join(dir, "pipe"), os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
	}
	files := netboot.FS(root.FS())

	t.Run("http", func(t *testing.T) {
		srv := httptest.NewServer(&netboot.HTTPHandler{Files: files})
		defer srv.Close()
		defer unblock()
		c := &http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get(srv.URL + "/pipe")
		require.NoError(t, err, "the request for a FIFO did not finish")
		resp.Body.Close()
		assert.Equal(t, http.StatusNotFound, resp.StatusCode)
		resp, err = c.Get(srv.URL + "/ok.txt")
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode)
	})
	t.Run("tftp", func(t *testing.T) {
		addr := startTFTP(t, &netboot.TFTPServer{Files: files})
		t.Cleanup(unblock)
		code, _, ok := tftpError(rawRRQ(t, addr, rrq("pipe", "octet")))
		require.True(t, ok, "expected a TFTP ERROR for the FIFO")
		assert.Equal(t, 1, code, "file not found")
	})
}
