package e2e

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/internal/vmtest"
	"github.com/nixboot/nixboot/netboot"
	"github.com/nixboot/nixboot/pxe"
)

// Scenario 1: SeaBIOS with QEMU's iPXE NIC ROM; full DHCP from nixboot
// hands iPXE the script URL; script, kernel and initrd come over HTTP.
func TestBIOSiPXEROM(t *testing.T) {
	e := newEnv(t)
	m := machine{name: "bios-ipxe", mac: newMAC(1), token: "s1-" + e.net.Name}
	e.serve(vmtest.Nixboot{Inventory: e.inventory(m)})
	e.boot(m)
}

// Scenario 2: OVMF's own PXE (virtio-net without option ROM) loads
// snponly.efi from Debian's ipxe package over nixboot's TFTP; iPXE comes
// back with its user class and gets the script over HTTP.
func TestUEFIPXE(t *testing.T) {
	e := newEnv(t)
	e.addFile("snponly.efi", "/usr/lib/ipxe/snponly.efi")
	m := machine{
		name: "uefi-pxe", mac: newMAC(2), token: "s2-" + e.net.Name,
		fw: vmtest.OVMF, noROM: true, extra: vmtest.OVMFNoPXEv6,
	}
	srv := e.serve(vmtest.Nixboot{Inventory: e.inventory(m)})
	e.boot(m)
	// OVMF asks for RFC 7440 windows of 4 blocks, and got them.
	sent := logLines(srv, "tftp: sent", "file=snponly.efi")
	require.NotEmpty(t, sent, "no completed TFTP transfer of snponly.efi in the server's log")
	for _, l := range sent {
		assert.Contains(t, l, "windowsize=4", "OVMF's transfer: %s", l)
		t.Log(l)
	}
}

// pxelinuxFiles are PXELINUX and the modules its menu needs (Debian's
// pxelinux and syslinux-common).
var pxelinuxFiles = map[string]string{
	"pxelinux.0":   "/usr/lib/PXELINUX/pxelinux.0",
	"lpxelinux.0":  "/usr/lib/PXELINUX/lpxelinux.0",
	"ldlinux.c32":  "/usr/lib/syslinux/modules/bios/ldlinux.c32",
	"menu.c32":     "/usr/lib/syslinux/modules/bios/menu.c32",
	"libutil.c32":  "/usr/lib/syslinux/modules/bios/libutil.c32",
	"libcom32.c32": "/usr/lib/syslinux/modules/bios/libcom32.c32",
}

// pxelinuxEnv is a scenario 3 environment: the PXELINUX files served, and
// an inventory whose profile gives BIOS machines loader.
func pxelinuxEnv(t *testing.T, m *machine, loader string) (*env, netboot.Config) {
	e := newEnv(t)
	for name, src := range pxelinuxFiles {
		e.addFile(name, src)
	}
	m.token = "s3-" + e.net.Name
	inv := e.inventory(*m)
	p := inv.Profiles["test"]
	p.Loaders = map[string]string{pxe.FirmwareBIOS.String(): loader}
	inv.Profiles["test"] = p
	return e, inv
}

// pxelinuxLoaders make QEMU's BIOS NIC ROM, which is iPXE, get the
// profile's BIOS loader rather than an iPXE script: only iPXE with a user
// class of ours would get the script.
var pxelinuxLoaders = pxe.Loaders{ChainIPXE: true, UserClass: "nixboot-e2e"}

// Scenario 3: SeaBIOS whose iPXE ROM is handed pxelinux.0 (the profile's
// BIOS loader); PXELINUX loads its modules, the pxelinux.cfg/01-<mac>
// nixboot renders for this machine from the inventory (a menu,
// vmtest.PXELinuxSource), and the kernel and initrd, all over nixboot's
// TFTP.
func TestBIOSPXELinux(t *testing.T) {
	m := machine{name: "bios-pxelinux", mac: newMAC(3)}
	e, inv := pxelinuxEnv(t, &m, "pxelinux.0")
	srv := e.serve(vmtest.Nixboot{Inventory: inv, Loaders: pxelinuxLoaders, PXELinuxTFTP: true})
	vm := e.start(m)
	got := e.expectBoot(vm, m)
	assert.Contains(t, vm.Console(), vmtest.PXELinuxMenuTitle+" "+m.mac.String(), "PXELINUX showed nixboot's menu")
	assert.NotContains(t, got.Cmdline, "nbv.menu=verbose", "the default entry booted")

	// Everything came over nixboot's TFTP, nothing over HTTP.
	dashed := strings.ReplaceAll(m.mac.String(), ":", "-")
	for _, f := range []string{"pxelinux.0", "ldlinux.c32", "menu.c32", "pxelinux.cfg/01-" + dashed,
		"nixboot/" + dashed + "/kernel", "nixboot/" + dashed + "/initrd0"} {
		assert.NotEmpty(t, logLines(srv, "tftp: sent", "file="+f+" "), "%s sent over TFTP", f)
	}
	assert.Empty(t, logLines(srv, "http: kernel"), "no kernel over HTTP")
}

// Scenario 3, the library's way: netboot.Server.PXELinux renders the
// machine's configuration (served over TFTP) and lpxelinux.0 loads the
// kernel and initrd from nixboot's HTTP handler.
func TestBIOSPXELinuxServer(t *testing.T) {
	m := machine{name: "bios-lpxelinux", mac: newMAC(0x33)}
	e, inv := pxelinuxEnv(t, &m, "lpxelinux.0")
	srv := e.serve(vmtest.Nixboot{Inventory: inv, Loaders: pxelinuxLoaders, PXELinux: true})
	e.boot(m)
	dashed := strings.ReplaceAll(m.mac.String(), ":", "-")
	for _, f := range []string{"lpxelinux.0", "ldlinux.c32", "pxelinux.cfg/01-" + dashed} {
		assert.NotEmpty(t, logLines(srv, "tftp: sent", "file="+f+" "), "%s sent over TFTP", f)
	}
	for _, what := range []string{"http: kernel", "http: initrd"} {
		assert.NotEmpty(t, logLines(srv, what, "mac="+m.mac.String()), "%s over HTTP", what)
	}
}

// Scenario 4: OVMF HTTP boot: nixboot answers HTTPClient with the loader's
// URL, OVMF fetches snponly.efi over HTTP, then iPXE as in scenario 2.
func TestUEFIHTTPBoot(t *testing.T) {
	e := newEnv(t)
	e.addFile("snponly.efi", "/usr/lib/ipxe/snponly.efi")
	m := machine{
		name: "uefi-http", mac: newMAC(4), token: "s4-" + e.net.Name,
		fw: vmtest.OVMF, noROM: true, extra: vmtest.OVMFHTTPBootOnly,
	}
	e.serve(vmtest.Nixboot{Inventory: e.inventory(m)})
	e.boot(m)
}

// Scenario 5: proxyDHCP. dnsmasq in a second namespace (joined to the
// bridge by a veth pair) hands out addresses and no boot information;
// nixboot answers only boot information, on ports 67 and 4011. Both BIOS
// (iPXE ROM) and UEFI (OVMF's own PXE, then snponly.efi) boot; each
// machine's address is from dnsmasq's pool.
func TestProxyDHCP(t *testing.T) {
	for _, tt := range []struct {
		name string
		m    machine
	}{
		{"bios", machine{name: "proxy-bios", mac: newMAC(0x51)}},
		{"uefi", machine{name: "proxy-uefi", mac: newMAC(0x52), fw: vmtest.OVMF, noROM: true, extra: vmtest.OVMFNoPXEv6}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.addFile("snponly.efi", "/usr/lib/ipxe/snponly.efi")
			m := tt.m
			m.token = "s5-" + tt.name + "-" + e.net.Name
			peer := e.net.AddPeer(netip.PrefixFrom(e.net.Host(2), e.net.Addr.Bits()))
			dm := peer.Dnsmasq(vmtest.DnsmasqConfig{Pool: [2]netip.Addr{e.net.Host(200), e.net.Host(220)}})
			srv := e.serve(vmtest.Nixboot{Inventory: e.inventory(m), DHCP: netboot.DHCPProxy})
			e.boot(m)

			// The address came from dnsmasq; nixboot handed out none.
			assert.NotEmpty(t, logLines(dm, "DHCPACK", m.mac.String()), "dnsmasq acknowledged %s", m.mac)
			for _, l := range logLines(srv, "pxe: reply", "mac="+m.mac.String()) {
				assert.Contains(t, l, "ip=0.0.0.0", "nixboot's reply carries no address: %s", l)
			}
			assert.NotEmpty(t, logLines(srv, "pxe: boot", "mac="+m.mac.String()), "nixboot answered boot information")
		})
	}
}

// Scenario 7: two VMs at once with different MACs get different profiles
// and their own tokens; a third, unknown MAC, with the inventory's
// allow-list on (ignoreUnknown, and a default profile it would otherwise
// get), gets no DHCP answer at all (not even an address) and does not
// reach the marker.
func TestTwoMachinesAndUnknown(t *testing.T) {
	e := newEnv(t)
	a := machine{name: "known-a", mac: newMAC(0x71), token: "s7a-" + e.net.Name}
	b := machine{name: "known-b", mac: newMAC(0x72), token: "s7b-" + e.net.Name}
	unknown := machine{name: "unknown", mac: newMAC(0x73)}
	pa, pb := e.profile(), e.profile()
	pa.Cmdline += " nbv.profile=alpha"
	pb.Cmdline += " nbv.profile=beta"
	srv := e.serve(vmtest.Nixboot{Inventory: netboot.Config{
		Profiles:      map[string]netboot.ProfileConfig{"alpha": pa, "beta": pb},
		Machines:      []netboot.MachineConfig{a.entry("alpha"), b.entry("beta")},
		Default:       "alpha",
		IgnoreUnknown: true,
	}})

	vms := map[string]*vmtest.Machine{}
	for _, m := range []machine{a, b, unknown} {
		vms[m.name] = e.start(m)
	}
	var wg sync.WaitGroup
	markers := map[string]vmtest.Marker{}
	var mu sync.Mutex
	for _, m := range []machine{a, b} {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), bootTimeout)
			defer cancel()
			got, err := vms[m.name].WaitBoot(ctx)
			if !assert.NoError(t, err, "%s did not boot", m.name) {
				return
			}
			t.Logf("%s: marker after %s", m.name, time.Since(vms[m.name].Started).Round(time.Millisecond))
			mu.Lock()
			markers[m.name] = got
			mu.Unlock()
		})
	}
	// The unknown machine: within the same bound, no marker. SeaBIOS gives
	// up ("No bootable device") once iPXE finds nothing to boot.
	wg.Go(func() {
		ctx, cancel := context.WithTimeout(t.Context(), bootTimeout)
		defer cancel()
		got, err := vms[unknown.name].WaitBoot(ctx)
		assert.Error(t, err, "unknown machine booted: %+v", got)
		assert.True(t, errors.Is(err, vmtest.ErrNoBoot) || errors.Is(err, context.DeadlineExceeded), "unknown machine: %v", err)
		t.Logf("unknown: no boot after %s: %v", time.Since(vms[unknown.name].Started).Round(time.Millisecond), err)
	})
	wg.Wait()
	require.Len(t, markers, 2)
	for _, c := range []struct {
		m       machine
		profile string
	}{{a, "alpha"}, {b, "beta"}} {
		got := markers[c.m.name]
		assert.Equal(t, c.m.token, got.Token, "%s: its own token", c.m.name)
		assert.Equal(t, []string{c.m.mac.String()}, got.MACs, "%s: MAC", c.m.name)
		assert.Contains(t, strings.Fields(got.Cmdline), "nbv.profile="+c.profile, "%s: its profile", c.m.name)
	}
	assert.NotEqual(t, markers[a.name].Cmdline, markers[b.name].Cmdline)

	// nixboot never gave the unknown MAC anything: no address, no boot
	// information, no script, kernel or initrd.
	mac := "mac=" + unknown.mac.String()
	assert.NotEmpty(t, logLines(srv, "pxe: ignored", mac), "nixboot saw the unknown machine and ignored it")
	assert.Empty(t, logLines(srv, "pxe: boot", mac))
	require.NotEmpty(t, logLines(srv, "pxe: reply", "mac="+a.mac.String()), "replies are logged (so their absence below means something)")
	assert.Empty(t, logLines(srv, "pxe: reply", mac), "no DHCP reply at all, not even an address")
	assert.Empty(t, logLines(srv, "pxe: lease", mac))
	assert.Empty(t, logLines(srv, "http: boot script", mac))
	assert.Empty(t, logLines(srv, "http: kernel", mac))
}

// Scenario 2 over IPv6: OVMF's own PXEv6 gets an address and the boot file
// URL tftp://[fd00:6e62::1]/snponly.efi from nixboot's DHCPv6 server
// (pxe.Server6) and loads snponly.efi over nixboot's TFTP on IPv6; iPXE
// then boots the machine's profile as in scenario 2.
func TestUEFIPXEv6(t *testing.T) {
	e := newEnv(t)
	e.addFile("snponly.efi", "/usr/lib/ipxe/snponly.efi")
	m := machine{
		name: "uefi-pxe6", mac: newMAC(7), token: "s2v6-" + e.net.Name,
		fw: vmtest.OVMF, noROM: true, extra: vmtest.OVMFPXEv6First,
	}
	srv := e.serve(vmtest.Nixboot{Inventory: e.inventory(m), DHCPv6: true})
	e.boot(m)
	boot := logLines(srv, "DHCPv6 boot", m.mac.String())
	require.NotEmpty(t, boot, "no DHCPv6 boot decision for %s in the server's log", m.mac)
	assert.Contains(t, boot[0], "url=tftp://[fd00:6e62::1]/snponly.efi")
	sent := logLines(srv, "tftp: sent", "file=snponly.efi", "fd00:6e62::")
	require.NotEmpty(t, sent, "no TFTP transfer of snponly.efi over IPv6 in the server's log")
	for _, l := range logLines(srv, "") {
		if strings.Contains(l, "DHCPv6") || strings.Contains(l, "tftp") {
			t.Log(l)
		}
	}
}
