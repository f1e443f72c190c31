package netboot

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/internal/nixtest"
)

func TestParseRegistrationFromNix(t *testing.T) {
	c := nixtest.Build(t, "REG")
	infos, err := ParseRegistration(bytes.NewReader(c.Registration))
	require.NoError(t, err)
	require.Len(t, infos, len(c.Paths))
	for i, info := range infos {
		assert.Equal(t, c.Paths[i], info.Path)
		assert.True(t, strings.HasPrefix(info.NarHash, "sha256:"), info.NarHash)
		// Nix's own hash in nix32 must match.
		want := strings.TrimSpace(string(c.Nix(t, "nix-store", "--store", c.Store, "-q", "--hash", info.Path)))
		assert.Equal(t, want, info.NarHash)
	}
}

func TestParseRegistrationErrors(t *testing.T) {
	good := "/nix/store/mbb6b5q23q5by5s8gamc1cnlr4hh6kgr-busybox\n" + strings.Repeat("a", 64) + "\n10\n\n0\n"
	_, err := ParseRegistration(strings.NewReader(good))
	require.NoError(t, err)
	for name, bad := range map[string]string{
		"relative path": "nix/store/x\n",
		"short hash":    "/nix/store/mbb6b5q23q5by5s8gamc1cnlr4hh6kgr-busybox\nabc\n10\n\n0\n",
		"size":          "/nix/store/mbb6b5q23q5by5s8gamc1cnlr4hh6kgr-busybox\n" + strings.Repeat("a", 64) + "\n-1\n\n0\n",
		"truncated":     "/nix/store/mbb6b5q23q5by5s8gamc1cnlr4hh6kgr-busybox\n" + strings.Repeat("a", 64) + "\n10\n\n2\n/nix/store/mbb6b5q23q5by5s8gamc1cnlr4hh6kgr-busybox\n",
		"bad ref":       "/nix/store/mbb6b5q23q5by5s8gamc1cnlr4hh6kgr-busybox\n" + strings.Repeat("a", 64) + "\n10\n\n1\n/etc/passwd\n",
	} {
		_, err := ParseRegistration(strings.NewReader(bad))
		assert.ErrorIs(t, err, ErrRegistration, name)
	}
}

// TestBinaryCacheWithRealNix serves a real closure and lets the real Nix
// client substitute it with signature checking on, into a fresh store,
// then verifies the contents.
func TestBinaryCacheWithRealNix(t *testing.T) {
	c := nixtest.Build(t, "CACHE")
	infos, err := ParseRegistration(bytes.NewReader(c.Registration))
	require.NoError(t, err)
	sk, pk := c.GenerateKey(t, "nixboot-test-1")
	derived, err := (&BinaryCache{StoreDir: c.StoreDir(), Key: sk}).PublicKey()
	require.NoError(t, err)
	assert.Equal(t, pk, derived, "the public key nix-store made")

	tests := []struct {
		name   string
		paths  []StorePathInfo
		client func(url, store string) ([]byte, error)
	}{
		{"nix copy, hashes from registration", infos, func(url, store string) ([]byte, error) {
			return c.NixErr("nix", "copy", "--from", url, "--to", store, c.Toplevel,
				"--option", "trusted-public-keys", pk, "--option", "narinfo-cache-negative-ttl", "0")
		}},
		{"nix-store -r, hashes computed by the cache", withoutHashes(infos), func(url, store string) ([]byte, error) {
			return c.NixErr("nix-store", "--store", store, "-r", c.Toplevel,
				"--option", "substituters", url, "--option", "trusted-public-keys", pk,
				"--option", "narinfo-cache-negative-ttl", "0")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(&BinaryCache{StoreDir: c.StoreDir(), Paths: tt.paths, Key: sk})
			defer srv.Close()
			store := c.NewStore(t, "client-"+strings.ReplaceAll(tt.name, " ", "-"))
			out, err := tt.client(srv.URL, store)
			require.NoError(t, err, "%s", out)
			out, err = c.NixErr("nix-store", "--store", store, "--verify", "--check-contents")
			require.NoError(t, err, "%s", out)
			got, err := c.NixErr("nix-store", "--store", store, "-qR", c.Toplevel)
			require.NoError(t, err)
			assert.ElementsMatch(t, c.Paths, strings.Fields(string(got)))
			init, err := os.ReadFile(filepath.Join(store, c.Toplevel, "init"))
			require.NoError(t, err)
			assert.Contains(t, string(init), "/bin/sh")
		})
	}
}

func withoutHashes(in []StorePathInfo) []StorePathInfo {
	out := make([]StorePathInfo, len(in))
	for i, p := range in {
		p.NarHash, p.NarSize = "", 0
		out[i] = p
	}
	return out
}

// TestBinaryCacheRefusals: a wrong key is rejected by the real client,
// paths outside the configured set are 404, and hostile names go nowhere.
func TestBinaryCacheRefusals(t *testing.T) {
	c := nixtest.Build(t, "REFUSE")
	infos, err := ParseRegistration(bytes.NewReader(c.Registration))
	require.NoError(t, err)
	sk, pk := c.GenerateKey(t, "signer-1")
	_, otherPK := c.GenerateKey(t, "other-1")

	// Every path, signed with a key the client does not trust.
	full := httptest.NewServer(&BinaryCache{StoreDir: c.StoreDir(), Paths: infos, Key: sk})
	defer full.Close()
	store := c.NewStore(t, "client-wrong-key")
	out, err := c.NixErr("nix", "copy", "--from", full.URL, "--to", store, c.Toplevel,
		"--option", "trusted-public-keys", otherPK, "--option", "narinfo-cache-negative-ttl", "0")
	require.Error(t, err, "%s", out)
	assert.Contains(t, err.Error(), "signature")

	// Serve only the toplevel: its dependencies are not in the set, so the
	// client cannot complete the closure even with the right key.
	var top []StorePathInfo
	for _, p := range infos {
		if p.Path == c.Toplevel {
			top = append(top, p)
		}
	}
	srv := httptest.NewServer(&BinaryCache{StoreDir: c.StoreDir(), Paths: top, Key: sk})
	defer srv.Close()
	store = c.NewStore(t, "client-partial")
	out, err = c.NixErr("nix", "copy", "--from", srv.URL, "--to", store, c.Toplevel,
		"--option", "trusted-public-keys", pk, "--option", "narinfo-cache-negative-ttl", "0")
	require.Error(t, err, "%s", out)
	assert.Contains(t, err.Error(), filepath.Base(c.Paths[0]))

	for _, p := range []string{
		"/" + strings.TrimPrefix(filepath.Base(c.Paths[0]), "")[:32] + ".narinfo", // a dependency: not served
		"/nar/" + filepath.Base(c.Paths[0])[:32] + ".nar",
		"/../../etc/passwd",
		"/nar/../../etc/passwd.nar",
		"/00000000000000000000000000000000.narinfo",
		"/.narinfo",
	} {
		resp, err := http.Get(srv.URL + p)
		require.NoError(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if p == "/../../etc/passwd" {
			assert.NotEqual(t, http.StatusOK, resp.StatusCode, p)
			continue
		}
		assert.Equal(t, http.StatusNotFound, resp.StatusCode, p)
	}
	resp, err := http.Post(srv.URL+"/nix-cache-info", "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

func TestBinaryCacheConfigErrors(t *testing.T) {
	for name, bc := range map[string]*BinaryCache{
		"no store dir": {},
		"bad key":      {StoreDir: "/nix/store", Key: "nope"},
		"bad path":     {StoreDir: "/nix/store", Paths: []StorePathInfo{{Path: "/etc/passwd"}}},
	} {
		rec := httptest.NewRecorder()
		bc.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/nix-cache-info", nil))
		assert.Equal(t, http.StatusInternalServerError, rec.Code, name)
		require.ErrorIs(t, bc.init(), ErrBinaryCache, name)
		_, err := bc.PublicKey()
		require.ErrorIs(t, err, ErrBinaryCache, name)
	}
	_, err := (&BinaryCache{StoreDir: "/nix/store"}).PublicKey()
	require.ErrorIs(t, err, ErrBinaryCache, "no key")
}

func TestNixClosure(t *testing.T) {
	c := nixtest.Build(t, "CLOSURE")
	cmdEnvFromClosure(t, c)
	infos, err := NixClosure(t.Context(), c.Store, c.Toplevel)
	require.NoError(t, err)
	want, err := ParseRegistration(bytes.NewReader(c.Registration))
	require.NoError(t, err)
	assert.Equal(t, want, infos)
	_, err = NixClosure(t.Context(), c.Store, "/nix/store/00000000000000000000000000000000-nope")
	require.Error(t, err)
}

// cmdEnvFromClosure points the process's Nix configuration at the
// closure's private one for the test's duration.
func cmdEnvFromClosure(t *testing.T, c *nixtest.Closure) {
	t.Setenv("NIX_CONF_DIR", filepath.Join(c.Dir, "conf"))
	t.Setenv("XDG_CACHE_HOME", filepath.Join(c.Dir, "xdg-cache"))
	t.Setenv("HOME", c.Dir)
}
