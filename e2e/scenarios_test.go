package e2e

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

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

// ovmfNoPXEv6 keeps OVMF from trying PXEv6 (a minute) if v4 failed: these
// tests are about v4.
var ovmfNoPXEv6 = []string{"-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=no"}

// Scenario 2: OVMF's own PXE (virtio-net without option ROM) loads
// snponly.efi from Debian's ipxe package over nixboot's TFTP; iPXE comes
// back with its user class and gets the script over HTTP.
func TestUEFIPXE(t *testing.T) {
	e := newEnv(t)
	e.addFile("snponly.efi", "/usr/lib/ipxe/snponly.efi")
	m := machine{
		name: "uefi-pxe", mac: newMAC(2), token: "s2-" + e.net.Name,
		fw: vmtest.OVMF, noROM: true, extra: ovmfNoPXEv6,
	}
	e.serve(vmtest.Nixboot{Inventory: e.inventory(m)})
	e.boot(m)
}

// pxelinuxFiles are PXELINUX and the modules its menu needs (Debian's
// pxelinux and syslinux-common).
var pxelinuxFiles = map[string]string{
	"pxelinux.0":   "/usr/lib/PXELINUX/pxelinux.0",
	"ldlinux.c32":  "/usr/lib/syslinux/modules/bios/ldlinux.c32",
	"menu.c32":     "/usr/lib/syslinux/modules/bios/menu.c32",
	"libutil.c32":  "/usr/lib/syslinux/modules/bios/libutil.c32",
	"libcom32.c32": "/usr/lib/syslinux/modules/bios/libcom32.c32",
}

// Scenario 3: SeaBIOS whose iPXE ROM is handed pxelinux.0 (the policy
// chains iPXE without nixboot's user class to the BIOS loader, and the
// profile names pxelinux.0); PXELINUX loads its modules, the
// pxelinux.cfg/01-<mac> nixboot renders for this machine (a menu) and the
// kernel and initrd, all over nixboot's TFTP.
func TestBIOSPXELinux(t *testing.T) {
	e := newEnv(t)
	for name, src := range pxelinuxFiles {
		e.addFile(name, src)
	}
	m := machine{name: "bios-pxelinux", mac: newMAC(3), token: "s3-" + e.net.Name}
	inv := e.inventory(m)
	p := inv.Profiles["test"]
	p.Loaders = map[string]string{pxe.FirmwareBIOS.String(): "pxelinux.0"}
	inv.Profiles["test"] = p
	srv := e.serve(vmtest.Nixboot{
		Inventory: inv,
		// QEMU's BIOS NIC ROM is iPXE: without a user class of ours it gets
		// the BIOS loader, pxelinux.0, rather than an iPXE script.
		Loaders:  pxe.Loaders{ChainIPXE: true, UserClass: "nixboot-e2e"},
		PXELinux: true,
	})
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
		{"uefi", machine{name: "proxy-uefi", mac: newMAC(0x52), fw: vmtest.OVMF, noROM: true, extra: ovmfNoPXEv6}},
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
