package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pin/tftp/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/internal/nixtest"
	"github.com/nixboot/nixboot/internal/testenv"
	"github.com/nixboot/nixboot/netboot"
)

// freeAddr returns a loopback address with a port free right now.
func freeAddr(t *testing.T, network string) string {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		require.NoError(t, err)
		defer c.Close()
		return c.LocalAddr().String()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// serve runs netbootd with o until the test ends, and waits until url
// answers.
func serve(t *testing.T, o options, url string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, o, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("netbootd did not stop")
		}
	})
	require.Eventually(t, func() bool {
		r, err := http.Get(url)
		if err == nil {
			r.Body.Close()
		}
		return err == nil
	}, 20*time.Second, 50*time.Millisecond)
}

const testLayout = `{"partitions":[{"name":"root","type":"root-x86-64","size":"rest","filesystem":{"type":"ext4","label":"nixos"}}]}`

// TestInstallFlow runs netbootd with -generations over a real Nix system
// closure on loopback: the menus offer the profile's generation, the
// images are the closure's own kernel and initrd, the layout is served and
// a broken edit of it is refused, and the real Nix client substitutes the
// closure from the binary cache with signature checking on.
func TestInstallFlow(t *testing.T) {
	dir := t.TempDir()
	kernel, initrdFile := filepath.Join(dir, "bzImage"), filepath.Join(dir, "initrd")
	require.NoError(t, os.WriteFile(kernel, []byte("kernel bytes"), 0o644))
	require.NoError(t, os.WriteFile(initrdFile, []byte("initrd bytes"), 0o644))
	c := nixtest.BuildSystem(t, "NETBOOTD", kernel, initrdFile, "console=ttyS0")
	t.Setenv("NIX_CONF_DIR", filepath.Join(c.Dir, "conf"))
	t.Setenv("HOME", c.Dir)
	sk, pk := c.GenerateKey(t, "netbootd-test-1")
	profiles := filepath.Join(dir, "profiles")
	require.NoError(t, os.MkdirAll(profiles, 0o755))
	require.NoError(t, os.Symlink(c.Toplevel, filepath.Join(profiles, "system-3-link")))
	keyFile, layoutFile := filepath.Join(dir, "key.sk"), filepath.Join(dir, "layout.json")
	require.NoError(t, os.WriteFile(keyFile, []byte(sk), 0o600))
	require.NoError(t, os.WriteFile(layoutFile, []byte(testLayout), 0o644))

	httpAddr, tftpAddr, cacheAddr := freeAddr(t, "tcp"), freeAddr(t, "udp"), freeAddr(t, "tcp")
	o := options{httpAddr: httpAddr, tftpAddr: tftpAddr, install: installOptions{
		generations: profiles, storeRoot: c.Store, cacheAddr: cacheAddr, keyFile: keyFile,
		layout: layoutFile, args: "console=ttyS0 nixboot.poweroff=1",
	}}
	base := "http://" + httpAddr
	serve(t, o, base+"/layout.json")

	code, menu := get(t, base+"/nixos/menu.ipxe")
	require.Equal(t, http.StatusOK, code, menu)
	assert.Contains(t, menu, "choose --default gen3 ")
	assert.Contains(t, menu, "kernel "+base+"/nixos/3/kernel init="+c.Toplevel+"/init console=ttyS0 nixboot.server="+base+
		" nixboot.cache=http://"+cacheAddr+"/nix-cache nixboot.key="+pk+" console=ttyS0 nixboot.poweroff=1 initrd=initrd\n")
	code, body := get(t, base+"/nixos/3/kernel")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "kernel bytes", body)
	code, _ = get(t, base+"/nixos/4/kernel")
	assert.Equal(t, http.StatusNotFound, code)

	// PXELINUX reads its menu over TFTP.
	cl, err := tftp.NewClient(tftpAddr)
	require.NoError(t, err)
	wt, err := cl.Receive("pxelinux.cfg/default", "octet")
	require.NoError(t, err)
	var cfg bytes.Buffer
	_, err = wt.WriteTo(&cfg)
	require.NoError(t, err)
	assert.Contains(t, cfg.String(), "DEFAULT gen3\n")
	assert.Contains(t, cfg.String(), "KERNEL "+base+"/nixos/3/kernel\n")

	// The layout, and a broken edit refused with the old one kept.
	_, body = get(t, base+"/layout.json")
	assert.JSONEq(t, testLayout, body)
	require.NoError(t, os.WriteFile(layoutFile, []byte(`{"partitions":[{"name":"root","size":"lots"}]}`), 0o644))
	_, body = get(t, base+"/layout.json")
	assert.JSONEq(t, testLayout, body)

	// The real Nix client installs the closure from the cache, checking
	// signatures, and verifies what it got.
	to := c.NewStore(t, "client")
	out, err := c.NixErr("nix", "copy", "--from", "http://"+cacheAddr+"/nix-cache", "--to", to, c.Toplevel,
		"--option", "trusted-public-keys", pk)
	require.NoError(t, err, "%s", out)
	out, err = c.NixErr("nix-store", "--store", to, "--verify", "--check-contents")
	require.NoError(t, err, "%s", out)
	link, err := os.Readlink(filepath.Join(to, c.Toplevel, "kernel"))
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(to, link))
	require.NoError(t, err)
	assert.Equal(t, "kernel bytes", string(b), "the kernel came with the closure")
}

func TestInstallFlowErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "profiles")
	require.NoError(t, os.MkdirAll(empty, 0o755))
	key := filepath.Join(dir, "k")
	require.NoError(t, os.WriteFile(key, []byte("nope"), 0o600))
	for name, tc := range map[string]struct {
		o    installOptions
		want string
	}{
		"no key":         {installOptions{generations: empty}, "-cache-key"},
		"no generations": {installOptions{generations: empty, keyFile: key}, "no generations"},
		"missing dir":    {installOptions{generations: filepath.Join(dir, "nope"), keyFile: key}, "nope"},
	} {
		t.Run(name, func(t *testing.T) {
			o := options{httpAddr: freeAddr(t, "tcp"), install: tc.o}
			err := run(context.Background(), o, slog.New(slog.DiscardHandler))
			require.Error(t, err)
			assert.True(t, strings.Contains(err.Error(), tc.want), err.Error())
		})
	}
}

// TestNoArguments: with no arguments netbootd is the safe demo (loopback
// only, DHCP off) and serves the demo profile's script and iPXE loaders.
func TestNoArguments(t *testing.T) {
	o, err := parseFlags(nil)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:8069", o.httpAddr)
	assert.Equal(t, "127.0.0.1:6969", o.tftpAddr)
	assert.Empty(t, o.iface, "DHCP stays off")
	o.demoKernel = testenv.Kernel(t)
	testenv.File(t, "/usr/lib/ipxe/undionly.kpxe")
	// Free ports in place of the fixed ones, so a netbootd already running
	// on this machine does not make the test fail.
	o.httpAddr, o.tftpAddr = freeAddr(t, "tcp"), freeAddr(t, "udp")
	base := "http://" + o.httpAddr
	serve(t, o, base+"/boot.ipxe")
	code, script := get(t, base+"/boot.ipxe?mac=52:54:00:12:34:56&arch=x86_64")
	require.Equal(t, http.StatusOK, code, script)
	assert.True(t, strings.HasPrefix(script, "#!ipxe\n"), script)
	assert.Contains(t, script, "kernel ")
	cl, err := tftp.NewClient(o.tftpAddr)
	require.NoError(t, err)
	wt, err := cl.Receive("undionly.kpxe", "octet")
	require.NoError(t, err)
	var b bytes.Buffer
	_, err = wt.WriteTo(&b)
	require.NoError(t, err)
	want, err := os.ReadFile("/usr/lib/ipxe/undionly.kpxe")
	require.NoError(t, err)
	assert.True(t, bytes.Equal(want, b.Bytes()), "undionly.kpxe served byte-identical")

	_, err = parseFlags([]string{"stray"})
	require.Error(t, err)
	_, err = parseFlags([]string{"-pxelinux", "-generations", "/x"})
	require.NoError(t, err)
	err = run(context.Background(), options{pxelinux: true, install: installOptions{generations: "/x"}}, slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, "choose one")
}

// TestAdminFlag: -admin moves the state and metrics off the boot port.
func TestAdminFlag(t *testing.T) {
	admin, httpAddr := freeAddr(t, "tcp"), freeAddr(t, "tcp")
	o, err := parseFlags([]string{"-admin", admin, "-http", httpAddr, "-tftp", ""})
	require.NoError(t, err)
	o.demoKernel = testenv.Kernel(t)
	testenv.File(t, "/usr/lib/ipxe/undionly.kpxe")
	serve(t, o, "http://"+httpAddr+"/boot.ipxe")
	code, _ := get(t, "http://"+httpAddr+"/boot.ipxe?mac=52:54:00:12:34:56&arch=x86_64")
	require.Equal(t, http.StatusOK, code)
	code, _ = get(t, "http://"+httpAddr+"/state.json")
	assert.Equal(t, http.StatusNotFound, code, "state on the boot port")
	code, body := get(t, "http://"+admin+"/state.json")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "52:54:00:12:34:56")
	code, body = get(t, "http://"+admin+"/metrics")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "nixboot_")
}

// TestDHCPFlags: configureDHCP turns the DHCP flags into the Server's
// fields, and refuses values it cannot use, naming the flag. It only reads
// the loopback interface's addresses; nothing is served.
func TestDHCPFlags(t *testing.T) {
	base := options{iface: "lo", dhcp: "full", pool: "127.0.9.10-127.0.9.20"}
	with := func(f func(o *options)) (*netboot.Server, error) {
		o := base
		f(&o)
		s := &netboot.Server{}
		return s, configureDHCP(s, o)
	}
	s, err := with(func(o *options) {
		o.allow, o.deny, o.router, o.dns = "52:54:00:00:00:01, 52:54:00:00:00:02", "52:54:00:00:00:02", "127.0.0.1", "127.0.0.53,127.0.0.54"
	})
	require.NoError(t, err)
	assert.Equal(t, netboot.DHCPFull, s.DHCP)
	assert.Equal(t, []net.HardwareAddr{{0x52, 0x54, 0, 0, 0, 1}, {0x52, 0x54, 0, 0, 0, 2}}, s.DHCPAllow)
	assert.Equal(t, []net.HardwareAddr{{0x52, 0x54, 0, 0, 0, 2}}, s.DHCPDeny)
	assert.Equal(t, "127.0.0.1", s.DHCPNetwork.Router[0].String())
	assert.Len(t, s.DHCPNetwork.DNS, 2)

	for _, c := range []struct {
		set  func(o *options)
		want string
	}{
		{func(o *options) { o.allow = "52:54:00:00:00:01,nope" }, `-dhcp-allow: "nope" is not a MAC address`},
		{func(o *options) { o.deny = "52:54:00:00:00:00:00:01" }, `-dhcp-deny: "52:54:00:00:00:00:00:01"`},
		{func(o *options) { o.router = "gateway" }, `-router "gateway" is not an IPv4 address`},
		{func(o *options) { o.dns = "127.0.0.53,dns.example" }, `-dns: "dns.example" is not an IPv4 address`},
		{func(o *options) { o.pool = "127.0.9.10" }, `-range "127.0.9.10": want FIRST-LAST`},
	} {
		_, err := with(c.set)
		assert.ErrorContains(t, err, c.want)
	}
}

// TestAPIFlag: with -api, a pixiecore API server decides, and the machine
// gets the kernel it names from netbootd's own URL, byte for byte; the
// API's file server is never the machine's business.
func TestAPIFlag(t *testing.T) {
	kernel := []byte(strings.Repeat("not really a kernel ", 50_000))
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/boot/52:54:00:12:34:56":
			io.WriteString(w, `{"kernel":"/files/kernel","cmdline":"console=ttyS0 cfg={{ URL \"/files/kernel\" }}"}`)
		case "/files/kernel":
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(kernel))
		default:
			http.NotFound(w, r)
		}
	}))
	defer api.Close()
	httpAddr := freeAddr(t, "tcp")
	o, err := parseFlags([]string{"-api", api.URL, "-http", httpAddr, "-tftp", "", "-loaders", t.TempDir()})
	require.NoError(t, err)
	base := "http://" + httpAddr
	serve(t, o, base+"/boot.ipxe")
	code, script := get(t, base+"/boot.ipxe?mac=52:54:00:12:34:56&arch=x86_64")
	require.Equal(t, http.StatusOK, code, script)
	kernelURL := base + "/m/52:54:00:12:34:56/kernel?arch=x86_64"
	assert.Contains(t, script, "kernel "+kernelURL+" console=ttyS0 cfg="+base+"/m/52:54:00:12:34:56/file/0\n")
	assert.NotContains(t, script, api.URL)
	code, got := get(t, kernelURL)
	require.Equal(t, http.StatusOK, code)
	assert.True(t, string(kernel) == got, "%d bytes of %d, content differs", len(got), len(kernel))
	code, _ = get(t, base+"/boot.ipxe?mac=52:54:00:00:00:99&arch=x86_64")
	assert.NotEqual(t, http.StatusOK, code, "a machine the API does not know")

	for _, args := range [][]string{
		{"-api", api.URL, "-inventory", "inv.json"},
		{"-api-files", "/srv"},
		{"-api", "ftp://x"},
	} {
		o, err := parseFlags(args)
		require.NoError(t, err)
		assert.Error(t, run(context.Background(), o, slog.New(slog.DiscardHandler)), "%v", args)
	}
}

// TestDHCPv6Flags: -dhcp6 and -server-ip6 become the Server's DHCPv6
// fields, and bad values are refused by flag name. It only reads the
// loopback interface's addresses; nothing is served.
func TestDHCPv6Flags(t *testing.T) {
	with := func(o options) (*netboot.Server, error) {
		s := &netboot.Server{}
		return s, configureDHCPv6(s, o)
	}
	s, err := with(options{iface: "lo", dhcp6: "fd00:77::1/64", serverIP6: "fd00:77::1"})
	require.NoError(t, err)
	assert.True(t, s.DHCPv6)
	assert.Equal(t, "fd00:77::/64", s.DHCPv6Prefix.String())
	assert.Equal(t, "fd00:77::1", s.ServerIP6.String())
	assert.Equal(t, "lo", s.DHCPInterface)
	s, err = with(options{iface: "lo", dhcp6: "info", serverIP6: "fd00:77::1", deny: "52:54:00:00:00:02"})
	require.NoError(t, err)
	assert.True(t, s.DHCPv6)
	assert.False(t, s.DHCPv6Prefix.IsValid(), "info: no addresses")
	assert.Equal(t, []net.HardwareAddr{{0x52, 0x54, 0, 0, 0, 2}}, s.DHCPDeny, "-dhcp-deny applies to DHCPv6")
	s, err = with(options{})
	require.NoError(t, err)
	assert.False(t, s.DHCPv6)

	for _, c := range []struct {
		o    options
		want string
	}{
		{options{dhcp6: "fd00:77::/64"}, "-dhcp6 needs -interface"},
		{options{iface: "lo", dhcp6: "10.0.0.0/8"}, `-dhcp6 "10.0.0.0/8"`},
		{options{iface: "lo", dhcp6: "everything"}, `-dhcp6 "everything"`},
		{options{iface: "lo", dhcp6: "info", serverIP6: "10.0.0.1"}, `-server-ip6 "10.0.0.1" is not an IPv6 address`},
		{options{serverIP6: "fd00::1"}, "-server-ip6 needs -dhcp6"},
		{options{iface: "lo", dhcp6: "info", serverIP6: "fd00::1", allow: "nope"}, `-dhcp-allow: "nope"`},
	} {
		_, err := with(c.o)
		require.Error(t, err, "%+v", c.o)
		assert.Contains(t, err.Error(), c.want)
	}
}
