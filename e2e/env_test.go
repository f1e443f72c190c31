package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/internal/testenv"
	"github.com/nixboot/nixboot/internal/vmtest"
	"github.com/nixboot/nixboot/ipxe"
	"github.com/nixboot/nixboot/netboot"
	"github.com/nixboot/nixboot/pxe"
)

// bootTimeout bounds one VM boot: 8-21 s under TCG, up to 2x more under load.
const bootTimeout = 180 * time.Second

// env is one scenario's world: a private network and the files to serve.
type env struct {
	t      *testing.T
	net    *vmtest.Net
	kernel string // host path of the Debian kernel
	initrd string // host path of the test initrd (testinit + NIC modules)
	files  string // directory served over TFTP and HTTP (loaders)
}

func newEnv(t *testing.T) *env {
	t.Helper()
	testenv.Root(t)
	testenv.Short(t)
	e := &env{
		t:      t,
		kernel: testenv.Kernel(t),
		initrd: vmtest.Initrd(t, vmtest.InitFiles(t)),
		files:  t.TempDir(),
	}
	e.net = vmtest.NewNet(t, vmtest.NetConfig{})
	return e
}

// addFile puts a host file (a loader from Debian) into the served directory.
func (e *env) addFile(name, src string) {
	e.t.Helper()
	b, err := os.ReadFile(src)
	require.NoError(e.t, err)
	dst := filepath.Join(e.files, filepath.FromSlash(name))
	require.NoError(e.t, os.MkdirAll(filepath.Dir(dst), 0o755))
	require.NoError(e.t, os.WriteFile(dst, b, 0o644))
}

// machine is one VM of a scenario.
type machine struct {
	name  string
	mac   net.HardwareAddr
	token string // expected on its command line; "" means it must not boot
	fw    vmtest.Firmware
	noROM bool     // firmware's own network stack instead of QEMU's iPXE ROM
	extra []string // more QEMU arguments
}

func newMAC(i int) net.HardwareAddr { return net.HardwareAddr{0x52, 0x54, 0x00, 0x6e, 0x62, byte(i)} }

// start boots m on a new tap of the env's network.
func (e *env) start(m machine) *vmtest.Machine {
	e.t.Helper()
	return vmtest.Start(e.t, vmtest.Config{
		Name:     m.name,
		Firmware: m.fw,
		NICs:     []vmtest.NIC{{Tap: e.net.AddTap(), MAC: m.mac, NoROM: m.noROM, BootIndex: 1}},
		Netns:    e.net.Name,
		Extra:    m.extra,
	})
}

// boot starts m, waits for testinit's marker and checks that the VM got
// its own token and MAC. It returns the time from VM start to marker.
func (e *env) boot(m machine) time.Duration {
	e.t.Helper()
	vm := e.start(m)
	return e.expectBoot(vm, m)
}

func (e *env) expectBoot(vm *vmtest.Machine, m machine) time.Duration {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), bootTimeout)
	defer cancel()
	got, err := vm.WaitBoot(ctx)
	require.NoError(e.t, err, "%s did not boot", m.name)
	d := time.Since(vm.Started)
	e.t.Logf("%s: marker after %s", m.name, d.Round(time.Millisecond))
	assert.Equal(e.t, m.token, got.Token, "%s: token on its command line", m.name)
	assert.Equal(e.t, []string{m.mac.String()}, got.MACs, "%s: MAC", m.name)
	return d
}

// nixboot is what nixboot serves in a scenario. It runs as the "nixboot"
// role (see TestMain): the test binary re-executed inside the namespace, so
// that every socket it opens, including pin/tftp's per-transfer ones, is on
// the test network.
//
// For now the role composes the serving packages that have landed:
// pxe.Server (DHCP), netboot.TFTPServer (TFTP) and a per-machine iPXE
// script rendered by the ipxe package over net/http. It moves to
// netboot.Server once that exists.
type nixboot struct {
	Bridge string // device to serve DHCP on
	IP     string // the bridge's address
	Prefix int    // the subnet's prefix length
	Files  string // served over TFTP and HTTP
	Kernel string
	Initrd string
	// Tokens maps each known MAC to its command-line token.
	Tokens map[string]string
	// AllowList makes unknown MACs get no DHCP answer at all.
	AllowList bool
	// Proxy runs proxyDHCP (addresses from another server) instead of full
	// DHCP.
	Proxy bool
}

func (e *env) serve(nb *nixboot) *vmtest.Process {
	e.t.Helper()
	nb.Bridge, nb.IP, nb.Prefix = e.net.Bridge, e.net.IP().String(), e.net.Addr.Bits()
	nb.Files, nb.Kernel, nb.Initrd = e.files, e.kernel, e.initrd
	cfg, err := json.Marshal(nb)
	require.NoError(e.t, err)
	return e.net.StartRole("nixboot", cfg)
}

func TestMain(m *testing.M) {
	vmtest.Main(m, map[string]vmtest.Role{"nixboot": runNixboot})
}

// runNixboot is the nixboot role.
func runNixboot(ctx context.Context, config []byte, ready func()) error {
	var nb nixboot
	if err := json.Unmarshal(config, &nb); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ip, err := netip.ParseAddr(nb.IP)
	if err != nil {
		return err
	}
	prefix := netip.PrefixFrom(ip, nb.Prefix).Masked()
	host := func(i int) net.IP {
		a := prefix.Addr().As4()
		a[3] += byte(i)
		return net.IP(a[:])
	}
	base := "http://" + ip.String()

	// HTTP: /boot.ipxe chains to /boot.ipxe?mac=${net0/mac}; with a MAC it
	// is that machine's script; anything else is a file.
	mux := http.NewServeMux()
	mux.HandleFunc("/boot.ipxe", func(w http.ResponseWriter, r *http.Request) {
		mac := r.URL.Query().Get("mac")
		if mac == "" {
			fmt.Fprintf(w, "#!ipxe\nchain %s/boot.ipxe?mac=${net0/mac}\n", base)
			return
		}
		token, ok := nb.Tokens[mac]
		if !ok {
			http.NotFound(w, r)
			return
		}
		args, err := ipxe.ParseArgs("console=ttyS0 panic=-1 quiet nbv.token=" + token)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		spec := ipxe.BootSpec{
			Kernel:  base + "/vmlinuz",
			Initrds: []ipxe.ImageRef{{URL: base + "/initrd", Name: "initrd"}},
			Args:    args,
		}
		s, err := spec.Script()
		if err == nil {
			_, err = s.WriteTo(w)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	serveHost := func(path string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, path) }
	}
	mux.HandleFunc("/vmlinuz", serveHost(nb.Kernel))
	mux.HandleFunc("/initrd", serveHost(nb.Initrd))
	mux.Handle("/", http.FileServer(http.Dir(nb.Files)))
	hl, err := net.Listen("tcp4", net.JoinHostPort(ip.String(), "80"))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux}

	// TFTP: the loaders directory.
	root, err := os.OpenRoot(nb.Files)
	if err != nil {
		return err
	}
	defer root.Close()
	tconn, err := net.ListenPacket("udp4", net.JoinHostPort(ip.String(), "69"))
	if err != nil {
		return err
	}
	tftp := &netboot.TFTPServer{Conn: tconn, Files: netboot.FS(root.FS()), Logger: log}

	// DHCP.
	var allow []net.HardwareAddr
	var res []pxe.Reservation
	macs := make([]string, 0, len(nb.Tokens))
	for mac := range nb.Tokens {
		macs = append(macs, mac)
	}
	slices.Sort(macs)
	for i, mac := range macs {
		hw, err := net.ParseMAC(mac)
		if err != nil {
			return err
		}
		if nb.AllowList {
			allow = append(allow, hw)
		}
		res = append(res, pxe.Reservation{MAC: hw, IP: host(50 + i)})
	}
	conn, err := pxe.ListenPacket(nb.Bridge, 67)
	if err != nil {
		return err
	}
	dhcp := &pxe.Server{
		Interface: nb.Bridge,
		ServerIP:  ip.AsSlice(),
		Conn:      conn,
		Mode:      pxe.ModeFull,
		Network: &pxe.Network{
			Subnet:       net.IPNet{IP: prefix.Addr().AsSlice(), Mask: net.CIDRMask(prefix.Bits(), 32)},
			RangeStart:   host(100),
			RangeEnd:     host(199),
			Reservations: res,
		},
		Policy: pxe.Loaders{EFI64: "snponly.efi", ScriptURL: base + "/boot.ipxe", HTTPBase: base},
		Allow:  allow,
		Logger: log,
	}
	if nb.Proxy {
		dhcp.Mode = pxe.ModeProxy
		if dhcp.BootConn, err = pxe.ListenPacket(nb.Bridge, 4011); err != nil {
			return err
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 3)
	go func() {
		go func() { <-ctx.Done(); _ = srv.Close() }()
		if err := srv.Serve(hl); err != http.ErrServerClosed {
			errc <- fmt.Errorf("http: %w", err)
			return
		}
		errc <- nil
	}()
	go func() { errc <- tftp.Serve(ctx) }()
	go func() { errc <- dhcp.Serve(ctx) }()
	ready()
	var first error
	for range 3 {
		if err := <-errc; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}
