package netboot

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/internal/nixtest"
)

type narCountingHandler struct {
	h    http.Handler
	nars atomic.Int32
	// corrupt replaces this text inside NAR bodies with the same
	// number of other bytes: the NAR stays well formed, its hash does not.
	corrupt string
}

func (c *narCountingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/nar/") {
		c.h.ServeHTTP(w, r)
		return
	}
	c.nars.Add(1)
	if c.corrupt == "" {
		c.h.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	c.h.ServeHTTP(rec, r)
	w.Write(bytes.ReplaceAll(rec.Body.Bytes(), []byte(c.corrupt), bytes.Repeat([]byte("X"), len(c.corrupt))))
}

func TestSubstituterInstallsAVerifiedClosure(t *testing.T) {
	c := nixtest.Build(t, "SUBST")
	infos, err := ParseRegistration(bytes.NewReader(c.Registration))
	require.NoError(t, err)
	sk, pk := c.GenerateKey(t, "nixboot-test-1")
	h := &narCountingHandler{h: &BinaryCache{StoreDir: c.StoreDir(), Paths: infos, Key: sk}}
	srv := httptest.NewServer(h)
	defer srv.Close()

	target := t.TempDir() // stands for the installed disk's root
	storeDir := filepath.Join(target, "nix", "store")
	s := &Substituter{CacheURL: srv.URL, TrustedKeys: []string{pk}}
	got, err := s.Realise(context.Background(), storeDir, c.Toplevel)
	require.NoError(t, err)
	require.Len(t, got, 3)
	assert.Equal(t, c.Toplevel, got[len(got)-1].Path, "dependencies come first")
	assert.EqualValues(t, 3, h.nars.Load())

	// Register with the real Nix and let it check every byte.
	var reg bytes.Buffer
	require.NoError(t, WriteRegistration(&reg, got))
	cmd := exec.Command("nix-store", "--store", target, "--load-db")
	cmd.Stdin = &reg
	cmd.Env = append(os.Environ(), "NIX_CONF_DIR="+filepath.Join(c.Dir, "conf"), "HOME="+c.Dir)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	out, err = c.NixErr("nix-store", "--store", target, "--verify", "--check-contents")
	require.NoError(t, err, "%s", out)
	q, err := c.NixErr("nix-store", "--store", target, "-qR", c.Toplevel)
	require.NoError(t, err)
	assert.ElementsMatch(t, c.Paths, strings.Fields(string(q)))
	if os.Geteuid() == 0 {
		run, err := exec.Command("chroot", target, c.Toplevel+"/init").CombinedOutput()
		require.NoError(t, err, "%s", run)
		assert.Equal(t, "SUBST from "+c.Toplevel+"/init\n", string(run))
	}

	// A second run, and a run after an interruption left a temporary
	// directory behind, fetch only what is missing.
	require.NoError(t, os.Mkdir(filepath.Join(storeDir, ".nixboot-tmp-leftover"), 0o755))
	_, err = s.Realise(context.Background(), storeDir, c.Toplevel)
	require.NoError(t, err)
	assert.EqualValues(t, 3, h.nars.Load(), "nothing fetched again")
}

func TestSubstituterRefusesBadPaths(t *testing.T) {
	c := nixtest.Build(t, "SUBST-BAD")
	infos, err := ParseRegistration(bytes.NewReader(c.Registration))
	require.NoError(t, err)
	sk, pk := c.GenerateKey(t, "signer-1")
	_, otherPK := c.GenerateKey(t, "other-1")

	t.Run("untrusted key", func(t *testing.T) {
		srv := httptest.NewServer(&BinaryCache{StoreDir: c.StoreDir(), Paths: infos, Key: sk})
		defer srv.Close()
		storeDir := filepath.Join(t.TempDir(), "nix", "store")
		_, err := (&Substituter{CacheURL: srv.URL, TrustedKeys: []string{otherPK}}).Realise(context.Background(), storeDir, c.Toplevel)
		require.ErrorIs(t, err, ErrUntrusted)
		entries, _ := os.ReadDir(storeDir)
		assert.Empty(t, entries, "nothing may be written")
	})
	t.Run("unsigned cache", func(t *testing.T) {
		srv := httptest.NewServer(&BinaryCache{StoreDir: c.StoreDir(), Paths: infos})
		defer srv.Close()
		_, err := (&Substituter{CacheURL: srv.URL, TrustedKeys: []string{pk}}).Realise(context.Background(), t.TempDir(), c.Toplevel)
		require.ErrorIs(t, err, ErrUntrusted)
	})
	t.Run("no trusted keys", func(t *testing.T) {
		_, err := (&Substituter{CacheURL: "http://127.0.0.1:1"}).Realise(context.Background(), t.TempDir(), c.Toplevel)
		require.ErrorIs(t, err, ErrUntrusted)
	})
	t.Run("corrupted NAR", func(t *testing.T) {
		srv := httptest.NewServer(&narCountingHandler{h: &BinaryCache{StoreDir: c.StoreDir(), Paths: infos, Key: sk}, corrupt: "SUBST-BAD"})
		defer srv.Close()
		storeDir := filepath.Join(t.TempDir(), "nix", "store")
		_, err := (&Substituter{CacheURL: srv.URL, TrustedKeys: []string{pk}}).Realise(context.Background(), storeDir, c.Toplevel)
		require.ErrorIs(t, err, ErrNarMismatch)
		entries, _ := os.ReadDir(storeDir)
		for _, e := range entries {
			assert.NotContains(t, e.Name(), "-etc", "a path that failed verification must not be left behind")
			assert.False(t, strings.HasPrefix(e.Name(), ".nixboot-tmp"), "no temporary directory left behind")
		}
	})
	t.Run("path missing from cache", func(t *testing.T) {
		srv := httptest.NewServer(&BinaryCache{StoreDir: c.StoreDir(), Paths: infos[:1], Key: sk})
		defer srv.Close()
		_, err := (&Substituter{CacheURL: srv.URL, TrustedKeys: []string{pk}}).Realise(context.Background(), t.TempDir(), c.Toplevel)
		require.ErrorIs(t, err, ErrSubstitute)
		assert.Contains(t, err.Error(), "404")
	})
}

// TestSubstituterResumesAfterAnInterruptedDownload cuts the connection in
// the middle of each NAR in turn (the machine losing power or network
// mid-install) and checks that nothing half-written is ever visible as a
// store path, and that the next run completes the closure.
func TestSubstituterResumesAfterAnInterruptedDownload(t *testing.T) {
	c := nixtest.Build(t, "SUBST-RESUME")
	infos, err := ParseRegistration(bytes.NewReader(c.Registration))
	require.NoError(t, err)
	sk, pk := c.GenerateKey(t, "nixboot-test-1")
	cache := &BinaryCache{StoreDir: c.StoreDir(), Paths: infos, Key: sk}
	var cutAfter atomic.Int32 // the NAR number whose body is cut; 0 cuts none
	var nars atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/nar/") {
			cache.ServeHTTP(w, r)
			return
		}
		n := nars.Add(1)
		if n != cutAfter.Load() {
			cache.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		cache.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body[:len(body)/2])
		// Returning now closes the connection short of Content-Length:
		// the client sees an unexpected EOF mid-NAR.
	}))
	defer srv.Close()

	storeDir := filepath.Join(t.TempDir(), "nix", "store")
	s := &Substituter{CacheURL: srv.URL, TrustedKeys: []string{pk}}
	for cut := 1; cut <= len(infos); cut++ {
		// The first run is cut in its first NAR; each later run completes
		// the path cut before and is cut in the next one.
		cutAfter.Store(nars.Load() + int32(min(cut, 2)))
		_, err := s.Realise(context.Background(), storeDir, c.Toplevel)
		require.Error(t, err, "cut %d", cut)
		entries, err := os.ReadDir(storeDir)
		require.NoError(t, err)
		require.Len(t, entries, cut-1, "complete paths after cut %d", cut)
		for _, e := range entries {
			assert.False(t, strings.HasPrefix(e.Name(), ".nixboot-tmp"), "no temporary directory left behind: %s", e.Name())
			// Whatever is visible is complete: it verifies against the
			// cache's own NAR hash.
			assertStorePathIntact(t, c, filepath.Join(storeDir, e.Name()))
		}
	}
	cutAfter.Store(0)
	got, err := s.Realise(context.Background(), storeDir, c.Toplevel)
	require.NoError(t, err)
	require.Len(t, got, len(infos))
	for _, p := range c.Paths {
		assertStorePathIntact(t, c, filepath.Join(storeDir, filepath.Base(p)))
	}
}

// assertStorePathIntact compares a fetched path with the original by NAR
// hash, as nix-store --dump | sha256sum would.
func assertStorePathIntact(t *testing.T, c *nixtest.Closure, dir string) {
	t.Helper()
	want, err := exec.Command("nix-store", "--dump", c.HostPath("/nix/store/"+filepath.Base(dir))).Output()
	require.NoError(t, err)
	got, err := exec.Command("nix-store", "--dump", dir).Output()
	require.NoError(t, err)
	assert.True(t, bytes.Equal(want, got), "%s differs from the original", filepath.Base(dir))
}
