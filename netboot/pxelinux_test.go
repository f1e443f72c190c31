package netboot_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/internal/testenv"
	"github.com/nixboot/nixboot/ipxe"
	"github.com/nixboot/nixboot/netboot"
	"github.com/nixboot/nixboot/pxe"
)

// pxelinuxLabel reads the KERNEL, INITRD and APPEND lines of a rendered
// one-label configuration.
func pxelinuxLabel(t *testing.T, cfg string) (kernel string, initrds []string, appendLine string) {
	t.Helper()
	for _, line := range strings.Split(cfg, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "KERNEL "):
			kernel = strings.TrimPrefix(line, "KERNEL ")
		case strings.HasPrefix(line, "INITRD "):
			initrds = strings.Split(strings.TrimPrefix(line, "INITRD "), ",")
		case strings.HasPrefix(line, "APPEND "):
			appendLine = strings.TrimPrefix(line, "APPEND ")
		}
	}
	require.NotEmpty(t, kernel, "no KERNEL line in\n%s", cfg)
	return kernel, initrds, appendLine
}

// TestPXELinuxLookupOrder walks PXELINUX's lookup order over TFTP against a
// Server and checks which name is answered, what the configuration says,
// and that its URLs serve the machine's kernel and initrds.
func TestPXELinuxLookupOrder(t *testing.T) {
	const uuidMachine = "8a0e2b34-aaaa-bbbb-cccc-0123456789ab"
	fx := newBootFixture(t, func(c *netboot.Config) {
		p := c.Profiles["linux"]
		p.Cmdline = "console=ttyS0 hostname={{.Hostname}}"
		c.Profiles["by-uuid"] = p
		c.Machines = append(c.Machines, netboot.MachineConfig{UUID: uuidMachine, Profile: "by-uuid", Hostname: "uuid1"})
		c.Default = ""
	})
	known := mustMAC(t, "52:54:00:12:34:56")
	ip := net.IPv4(127, 0, 0, 1)

	// first starts a server (every client here comes from 127.0.0.1, which
	// the server's boot state ties to the last MAC it saw) and returns the
	// first of PXELINUX's names it answers.
	var r *runningServer
	first := func(t *testing.T, uuid *pxe.UUID, mac net.HardwareAddr) (string, string) {
		t.Helper()
		r = startServer(t, &netboot.Server{Inventory: fx.inv, PXELinux: true})
		for _, name := range pxe.PXELinuxPaths(uuid, mac, ip) {
			got, _, err := pinGet(t, r.tftpAddr, name, 1468)
			if err != nil {
				require.Contains(t, err.Error(), "file not found", name)
				continue
			}
			return name, string(got)
		}
		return "", ""
	}

	t.Run("known MAC", func(t *testing.T) {
		u := mustUUID(t, "11111111-2222-3333-4444-555555555555")
		name, cfg := first(t, &u, known)
		assert.Equal(t, "pxelinux.cfg/01-52-54-00-12-34-56", name, "the UUID name must not be answered before the MAC is known")
		kernel, initrds, app := pxelinuxLabel(t, cfg)
		assert.Equal(t, "console=ttyS0 hostname=db1 role=db", app)
		assert.Contains(t, cfg, "DEFAULT nixboot\n")
		assert.Contains(t, cfg, "MENU LABEL Booting linux\n")
		require.Len(t, initrds, 2)
		_, got := get(t, kernel)
		assert.True(t, bytes.Equal(fx.kernel, got), "kernel from %s differs", kernel)
		_, got = get(t, initrds[0])
		assert.True(t, bytes.Equal(fx.initrd0, got), "initrd 0 differs")
		_, got = get(t, initrds[1])
		assert.True(t, bytes.Equal(fx.initrd1, got), "initrd 1 differs")
		assert.True(t, strings.HasPrefix(kernel, r.httpURL+"/m/52:54:00:12:34:56/kernel"), kernel)
	})
	t.Run("machine known by UUID only", func(t *testing.T) {
		u := wireUUID(t, uuidMachine)
		require.NotEqual(t, uuidMachine, u.String(), "wire and SMBIOS forms differ")
		name, cfg := first(t, &u, mustMAC(t, "52:54:00:00:00:99"))
		assert.Equal(t, "pxelinux.cfg/01-52-54-00-00-00-99", name)
		_, _, app := pxelinuxLabel(t, cfg)
		assert.Equal(t, "console=ttyS0 hostname=uuid1", app, "the UUID asked for first decides")
	})
	t.Run("unknown machine", func(t *testing.T) {
		u := mustUUID(t, "99999999-2222-3333-4444-555555555555")
		name, _ := first(t, &u, mustMAC(t, "52:54:00:00:00:01"))
		assert.Empty(t, name, "no default profile: nothing may be answered")
	})
	t.Run("tftp-hpa", func(t *testing.T) {
		bin := testenv.Command(t, "tftp")
		r := startServer(t, &netboot.Server{Inventory: fx.inv, PXELinux: true})
		host, port, _ := net.SplitHostPort(r.tftpAddr)
		out := filepath.Join(t.TempDir(), "cfg")
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		b, err := exec.CommandContext(ctx, bin, "-m", "binary", host, port, "-c", "get", "pxelinux.cfg/01-52-54-00-12-34-56", out).CombinedOutput()
		require.NoError(t, err, "%s", b)
		cfg, err := os.ReadFile(out)
		require.NoError(t, err)
		_, _, app := pxelinuxLabel(t, string(cfg))
		assert.Equal(t, "console=ttyS0 hostname=db1 role=db", app)
	})
}

// TestPXELinuxSource checks the names answered when the client's MAC is
// known from its address, and the NixOS profile's command line.
func TestPXELinuxSource(t *testing.T) {
	dir, err := filepath.Abs("testdata/nixos-netboot")
	require.NoError(t, err)
	c := &netboot.Config{
		Profiles:      map[string]netboot.ProfileConfig{"nixos": {NixOS: dir, Cmdline: "console=ttyS0"}},
		Machines:      []netboot.MachineConfig{{MAC: "52:54:00:aa:bb:cc", Profile: "nixos"}},
		IgnoreUnknown: true,
	}
	inv, err := c.Compile()
	require.NoError(t, err)
	srv := httptest.NewServer(&netboot.HTTPHandler{Inventory: inv})
	defer srv.Close()
	client := netip.MustParseAddr("10.0.0.5")
	src := &netboot.PXELinux{
		Inventory: inv,
		BaseURL:   srv.URL,
		MACForIP: func(ip netip.Addr) net.HardwareAddr {
			if ip == client {
				return mustMAC(t, "52:54:00:aa:bb:cc")
			}
			return nil
		},
	}
	open := func(name string, from netip.Addr) (string, error) {
		f, err := src.Open(t.Context(), &netboot.Request{Proto: netboot.TFTP, Name: name, Remote: netip.AddrPortFrom(from, 2000)})
		if err != nil {
			return "", err
		}
		var b bytes.Buffer
		_, err = b.ReadFrom(f.Content)
		require.NoError(t, err)
		assert.Equal(t, int64(b.Len()), f.Size)
		return b.String(), nil
	}
	stranger := netip.MustParseAddr("10.0.0.6")
	tests := []struct {
		name   string
		from   netip.Addr
		served bool
	}{
		{"pxelinux.cfg/8a0e2b34-aaaa-bbbb-cccc-0123456789ab", client, true},
		{"pxelinux.cfg/01-52-54-00-aa-bb-cc", client, true},
		{"pxelinux.cfg/0A000005", client, true},
		{"pxelinux.cfg/0A", client, true},
		{"pxelinux.cfg/default", client, true},
		{"pxelinux.cfg/01-52-54-00-aa-bb-cc", stranger, true}, // the name carries the MAC
		{"pxelinux.cfg/default", stranger, false},
		{"pxelinux.cfg/0A000006", stranger, false},
		{"pxelinux.cfg/01-52-54-00-aa-bb-cd", client, false}, // not in the allow-list
		{"pxelinux.cfg/01-zz", client, false},
		{"pxelinux.cfg/", client, false},
		{"pxelinux.cfg/a/default", client, false},
		{"pxelinux.0", client, false},
	}
	for _, tc := range tests {
		t.Run(tc.name+" from "+tc.from.String(), func(t *testing.T) {
			cfg, err := open(tc.name, tc.from)
			if !tc.served {
				require.Error(t, err)
				assert.ErrorIs(t, err, os.ErrNotExist)
				return
			}
			require.NoError(t, err)
			kernel, initrds, app := pxelinuxLabel(t, cfg)
			assert.Equal(t, "init=/nix/store/qw3x7bbqj5k0v4ml4hjb1b8wnaw1hjmz-nixos-system-nixos-24.11.20250101.abcdef0/init initrd=initrd nohibernate loglevel=4 console=ttyS0", app, "${cmdline} left out")
			require.Len(t, initrds, 1)
			want, err := os.ReadFile(filepath.Join(dir, "bzImage"))
			require.NoError(t, err)
			_, got := get(t, kernel)
			assert.Equal(t, want, got)
		})
	}
	t.Run("no config", func(t *testing.T) {
		_, err := (&netboot.PXELinux{}).Open(t.Context(), &netboot.Request{Name: "pxelinux.cfg/default"})
		assert.ErrorIs(t, err, netboot.ErrConfig)
	})
	t.Run("server without HTTP", func(t *testing.T) {
		tc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		require.NoError(t, err)
		err = (&netboot.Server{Inventory: inv, TFTPConn: tc, PXELinux: true}).Serve(t.Context())
		assert.ErrorIs(t, err, netboot.ErrConfig)
	})
}

// mustUUID returns the UUID whose wire bytes s spells.
func mustUUID(t *testing.T, s string) pxe.UUID {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	require.NoError(t, err)
	require.Len(t, b, 16)
	return pxe.UUID(b)
}

// wireUUID returns option 97's bytes for a machine whose SMBIOS UUID (as
// iPXE and dmidecode print it) is s.
func wireUUID(t *testing.T, s string) pxe.UUID {
	t.Helper()
	return mustUUID(t, mustUUID(t, s).SMBIOSString())
}

// FuzzPXELinuxName checks PXELinux against any requested name: only names
// in pxelinux.cfg/ are ever served, a 01-<mac> name is served with that
// machine's kernel, and the UUID remembered from one name never makes an
// unknown machine boot.
func FuzzPXELinuxName(f *testing.F) {
	for _, s := range []string{
		"pxelinux.cfg/01-52-54-00-12-34-56", "pxelinux.cfg/default", "pxelinux.cfg/C0A80001",
		"pxelinux.cfg/8a0e2b34-aaaa-bbbb-cccc-0123456789ab", "pxelinux.cfg/01-zz", "pxelinux.0", "pxelinux.cfg/a/b",
	} {
		f.Add(s)
	}
	inv := netboot.InventoryFunc(func(_ context.Context, m *netboot.Machine) (*netboot.Boot, error) {
		if len(m.MAC) == 0 || m.MAC[0] != 0x52 {
			return nil, netboot.ErrUnknownMachine
		}
		return &netboot.Boot{Profile: "p", Kernel: netboot.Image{Path: "/k"}}, nil
	})
	src := &netboot.PXELinux{Inventory: inv, BaseURL: "http://10.0.0.1"}
	f.Fuzz(func(t *testing.T, name string) {
		clean, err := netboot.CleanName(name)
		if err != nil {
			return // never reaches a Source
		}
		file, err := src.Open(t.Context(), &netboot.Request{Proto: netboot.TFTP, Name: clean, Remote: netip.MustParseAddrPort("10.0.0.5:2000")})
		if err != nil {
			assert.ErrorIs(t, err, os.ErrNotExist)
			return
		}
		rest, ok := strings.CutPrefix(clean, "pxelinux.cfg/01-")
		require.True(t, ok, "served %q", clean)
		mac, err := net.ParseMAC(strings.ReplaceAll(rest, "-", ":"))
		require.NoError(t, err, "served %q", clean)
		var b bytes.Buffer
		_, err = b.ReadFrom(file.Content)
		require.NoError(t, err)
		// The identity query may follow (a UUID the same address asked for).
		assert.Regexp(t, `(?m)^  KERNEL http://10\.0\.0\.1/m/`+regexp.QuoteMeta(mac.String())+`/kernel(\?uuid=[0-9a-f-]{36})?$`, b.String())
	})
}

func ExamplePXELinuxConfigFor() {
	m := &netboot.Machine{MAC: net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}}
	b := &netboot.Boot{
		Profile: "installer",
		Kernel:  netboot.Image{Path: "/srv/installer/bzImage"},
		Initrds: []netboot.Image{{Path: "/srv/installer/initrd"}},
		Args:    ipxe.Args{ipxe.KV("console", "ttyS0"), {Value: ipxe.Setting("cmdline").Value()}},
	}
	cfg, err := netboot.PXELinuxConfigFor("http://10.0.0.1:8080", m, b, "")
	if err != nil {
		panic(err)
	}
	out, err := pxe.RenderPXELinux(cfg)
	if err != nil {
		panic(err)
	}
	fmt.Print(string(out))
	// Output:
	// DEFAULT nixboot
	// PROMPT 0
	//
	// LABEL nixboot
	//   KERNEL http://10.0.0.1:8080/m/52:54:00:12:34:56/kernel
	//   INITRD http://10.0.0.1:8080/m/52:54:00:12:34:56/initrd/0
	//   APPEND console=ttyS0
}
