package netboot_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/internal/testenv"
	"github.com/nixboot/nixboot/netboot"
)

// A pixiecore API whose files only the server can reach: the machine gets
// them from the server's own URLs, whole, in ranges, conditionally, and
// fails visibly when the upstream fails.
func TestPixiecoreAPIProxy(t *testing.T) {
	kernel := randomBytes(t, 3<<20)
	initrd := randomBytes(t, 1<<20+3)
	modTime := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var upstreamReqs []*http.Request
	reqs := make(chan *http.Request, 100)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqs <- r.Clone(context.Background())
		switch r.URL.Path {
		case "/v1/boot/52:54:00:00:00:01":
			w.Write([]byte(`{"kernel":"/files/kernel","initrd":["/files/initrd","/files/broken","/files/gzip","/files/cut"],"cmdline":"console=ttyS0 cfg={{ URL \"/files/initrd\" }}"}`))
		case "/files/kernel":
			w.Header().Set("ETag", `"k1"`)
			http.ServeContent(w, r, "", modTime, bytes.NewReader(kernel))
		case "/files/initrd":
			http.ServeContent(w, r, "", modTime, bytes.NewReader(initrd))
		case "/files/gzip":
			w.Header().Set("Content-Encoding", "gzip")
			w.Write([]byte("not what the machine asked for"))
		case "/files/cut":
			w.Header().Set("Content-Length", "1000")
			w.Write(make([]byte, 500)) // the handler returns: the connection closes short
		default:
			http.Error(w, "boom", http.StatusInternalServerError)
		}
	}))
	defer upstream.Close()
	api := &netboot.PixiecoreAPI{BaseURL: upstream.URL}
	h := &netboot.HTTPHandler{Inventory: api}
	srv := httptest.NewServer(h)
	defer srv.Close()
	api.ServerURL = srv.URL
	m := &netboot.Machine{MAC: mustMAC(t, "52:54:00:00:00:01")}
	b, err := h.Inventory.Boot(t.Context(), m)
	require.NoError(t, err)
	spec := netboot.BootSpecFor(srv.URL, m, b)
	require.True(t, strings.HasPrefix(spec.Kernel, srv.URL+"/m/"), spec.Kernel)
	drain := func() {
		upstreamReqs = upstreamReqs[:0]
		for {
			select {
			case r := <-reqs:
				upstreamReqs = append(upstreamReqs, r)
			default:
				return
			}
		}
	}
	get := func(t *testing.T, method, url string, header ...string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
		require.NoError(t, err)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, body
	}

	t.Run("whole, with curl", func(t *testing.T) {
		curl := testenv.Command(t, "curl")
		out := filepath.Join(t.TempDir(), "kernel")
		b, err := exec.CommandContext(t.Context(), curl, "-fsS", "-o", out, spec.Kernel).CombinedOutput()
		require.NoError(t, err, "%s", b)
		got, err := os.ReadFile(out)
		require.NoError(t, err)
		assert.True(t, bytes.Equal(kernel, got), "%d bytes of %d, content differs", len(got), len(kernel))
	})
	t.Run("range", func(t *testing.T) {
		drain()
		resp, body := get(t, http.MethodGet, spec.Initrds[0].URL, "Range", "bytes=1000-1999", "Cookie", "secret=1")
		assert.Equal(t, http.StatusPartialContent, resp.StatusCode)
		assert.Equal(t, initrd[1000:2000], body)
		assert.Equal(t, "bytes 1000-1999/1048579", resp.Header.Get("Content-Range"))
		drain()
		require.Len(t, upstreamReqs, 1)
		assert.Equal(t, "bytes=1000-1999", upstreamReqs[0].Header.Get("Range"))
		assert.Empty(t, upstreamReqs[0].Header.Get("Cookie"), "the machine's other headers stay with the server")
		assert.Equal(t, "identity", upstreamReqs[0].Header.Get("Accept-Encoding"))
	})
	t.Run("a file the cmdline names", func(t *testing.T) {
		cfg, ok := b.Args.Get("cfg")
		require.True(t, ok, "%s", b.Args)
		require.Equal(t, srv.URL+"/m/52:54:00:00:00:01/file/0", cfg.String())
		resp, body := get(t, http.MethodGet, cfg.String())
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.True(t, bytes.Equal(initrd, body), "%d bytes", len(body))
		resp, _ = get(t, http.MethodGet, srv.URL+"/m/52:54:00:00:00:01/file/1")
		assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	})
	t.Run("head and conditional", func(t *testing.T) {
		resp, body := get(t, http.MethodHead, spec.Kernel)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, int64(len(kernel)), resp.ContentLength)
		assert.Empty(t, body)
		assert.Equal(t, `"k1"`, resp.Header.Get("ETag"))
		resp, body = get(t, http.MethodGet, spec.Kernel, "If-None-Match", `"k1"`)
		assert.Equal(t, http.StatusNotModified, resp.StatusCode)
		assert.Empty(t, body)
	})
	t.Run("upstream failures", func(t *testing.T) {
		for i := 1; i <= 2; i++ { // an error status, a compressed answer
			resp, body := get(t, http.MethodGet, spec.Initrds[i].URL)
			assert.Equal(t, http.StatusBadGateway, resp.StatusCode, "initrd %d: %s", i, body)
			assert.NotContains(t, string(body), "not what the machine asked for")
		}
		// Cut short: the machine's body is short of its length, so its
		// client fails instead of taking a truncated initrd.
		curl := testenv.Command(t, "curl")
		out, err := exec.CommandContext(t.Context(), curl, "-fsS", "-o", os.DevNull, spec.Initrds[3].URL).CombinedOutput()
		require.Error(t, err, "curl took a truncated file: %s", out)
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit)
		assert.Equal(t, 18, exit.ExitCode(), "curl's partial-file exit: %s", out)
	})
}

func TestPixiecoreAPIFiles(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(root, "kernel"), []byte("kernel"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o600))
	require.NoError(t, os.Symlink(filepath.Join(outside, "secret"), filepath.Join(root, "escape")))
	require.NoError(t, os.Mkdir(filepath.Join(root, "dir"), 0o755))
	answers := map[string]string{
		"52:54:00:00:00:01": `{"kernel":"file://` + root + `/kernel"}`,
		"52:54:00:00:00:02": `{"kernel":"file://` + root + `/../` + filepath.Base(outside) + `/secret"}`,
		"52:54:00:00:00:03": `{"kernel":"file://` + root + `/escape"}`,
		"52:54:00:00:00:04": `{"kernel":"file://` + root + `/dir"}`,
		"52:54:00:00:00:05": `{"kernel":"file://otherhost` + root + `/kernel"}`,
		"52:54:00:00:00:06": `{"kernel":"/k","cmdline":"cloud-config-url={{ URL \"https://files.local/cc\" }}"}`,
		"52:54:00:00:00:07": `{"kernel":"https://files.local/k"}`,
	}
	api := fakeAPI(t, answers)
	boot := func(p *netboot.PixiecoreAPI, mac string) (*netboot.Boot, error) {
		return p.Boot(t.Context(), &netboot.Machine{MAC: mustMAC(t, mac)})
	}
	p := &netboot.PixiecoreAPI{BaseURL: api.URL, FileRoot: root}
	b, err := boot(p, "52:54:00:00:00:01")
	require.NoError(t, err)
	want, err := filepath.EvalSymlinks(filepath.Join(root, "kernel"))
	require.NoError(t, err)
	assert.Equal(t, want, b.Kernel.Path)
	for mac, why := range map[string]string{
		"52:54:00:00:00:02": "outside FileRoot",
		"52:54:00:00:00:03": "outside FileRoot",
		"52:54:00:00:00:04": "not a regular file",
		"52:54:00:00:00:05": "another host",
		"52:54:00:00:00:06": "needs PixiecoreAPI.ServerURL",
	} {
		_, err := boot(p, mac)
		require.ErrorIs(t, err, netboot.ErrBackend, mac)
		assert.Contains(t, err.Error(), why, mac)
	}
	_, err = boot(&netboot.PixiecoreAPI{BaseURL: api.URL}, "52:54:00:00:00:01")
	require.ErrorIs(t, err, netboot.ErrBackend)
	assert.Contains(t, err.Error(), "FileRoot is not set")

	b, err = boot(p, "52:54:00:00:00:07")
	require.NoError(t, err)
	assert.Equal(t, "https://files.local/k", b.Kernel.Upstream, "HTTPS is the server's business, not the machine's")
	_, err = boot(&netboot.PixiecoreAPI{BaseURL: api.URL, Direct: true}, "52:54:00:00:00:07")
	assert.ErrorIs(t, err, netboot.ErrBackend, "a machine told to fetch HTTPS itself")
}

// pixiecore's {{ URL "..." }} becomes a URL on this server for each file,
// relative ones resolved against the API; with Direct an http:// one stays
// itself; anything else in braces is refused.
func TestPixiecoreAPITemplates(t *testing.T) {
	answers := map[string]string{
		"52:54:00:00:00:01": `{"kernel":"/k","cmdline":"a={{ URL \"https://files.local/cc\" }} b={{URL ` + "`/rel`" + `}}"}`,
		"52:54:00:00:00:02": `{"kernel":"/k","cmdline":"a={{ ID \"x\" }}"}`,
		"52:54:00:00:00:03": `{"kernel":"/k","cmdline":"a={{ URL \"ftp://x/y\" }}"}`,
		"52:54:00:00:00:04": `{"kernel":"/k","cmdline":"a={{ URL \"http://files.local/cc\" }}"}`,
		"52:54:00:00:00:05": `{"kernel":"/k","cmdline":"a={{ URL \"unterminated }}"}`,
		"52:54:00:00:00:06": `{"kernel":"/k","cmdline":"` + strings.Repeat(`{{ URL \"/f\" }} `, 17) + `"}`,
	}
	api := fakeAPI(t, answers)
	boot := func(p *netboot.PixiecoreAPI, mac string) (*netboot.Boot, error) {
		return p.Boot(t.Context(), &netboot.Machine{MAC: mustMAC(t, mac)})
	}
	p := &netboot.PixiecoreAPI{BaseURL: api.URL, ServerURL: "http://10.0.0.1:8080/"}
	b, err := boot(p, "52:54:00:00:00:01")
	require.NoError(t, err)
	assert.Equal(t, "a=http://10.0.0.1:8080/m/52:54:00:00:00:01/file/0 b=http://10.0.0.1:8080/m/52:54:00:00:00:01/file/1", b.Args.String())
	require.Len(t, b.Files, 2)
	assert.Equal(t, "https://files.local/cc", b.Files[0].Upstream)
	assert.Equal(t, api.URL+"/rel", b.Files[1].Upstream)
	for mac, why := range map[string]string{
		"52:54:00:00:00:02": "other than URL",
		"52:54:00:00:00:03": "not an http URL",
		"52:54:00:00:00:05": "other than URL",
		"52:54:00:00:00:06": "more than 16",
	} {
		_, err := boot(p, mac)
		require.ErrorIs(t, err, netboot.ErrBackend, mac)
		assert.Contains(t, err.Error(), why, mac)
	}
	direct := &netboot.PixiecoreAPI{BaseURL: api.URL, ServerURL: "http://10.0.0.1:8080", Direct: true}
	b, err = boot(direct, "52:54:00:00:00:04")
	require.NoError(t, err)
	assert.Equal(t, "a=http://files.local/cc", b.Args.String())
	assert.Empty(t, b.Files)
}

// fakeAPI is a pixiecore API server answering /v1/boot/<mac> from answers
// (404 for others) until the test ends.
func fakeAPI(t *testing.T, answers map[string]string) *httptest.Server {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := answers[strings.TrimPrefix(r.URL.Path, "/v1/boot/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(a))
	}))
	t.Cleanup(api.Close)
	return api
}
