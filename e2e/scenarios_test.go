package e2e

import (
	"testing"

	"github.com/nixboot/nixboot/internal/testenv"
	"github.com/nixboot/nixboot/internal/vmtest"
)

// Scenario 1: SeaBIOS with QEMU's iPXE NIC ROM; full DHCP from nixboot
// hands iPXE the script URL; script, kernel and initrd come over HTTP.
func TestBIOSiPXEROM(t *testing.T) {
	e := newEnv(t)
	m := machine{name: "bios-ipxe", mac: newMAC(1), token: "s1-" + e.net.Name}
	e.serve(&nixboot{Tokens: map[string]string{m.mac.String(): m.token}})
	e.boot(m)
}

// Scenario 2: OVMF's own PXE (virtio-net without option ROM) loads
// snponly.efi from Debian's ipxe package over nixboot's TFTP; iPXE comes
// back with its user class and gets the script over HTTP.
func TestUEFIPXE(t *testing.T) {
	e := newEnv(t)
	e.addFile("snponly.efi", testenv.File(t, "/usr/lib/ipxe/snponly.efi"))
	m := machine{
		name: "uefi-pxe", mac: newMAC(2), token: "s2-" + e.net.Name,
		fw: vmtest.OVMF, noROM: true,
		// PXEv6 would cost a minute if v4 failed; this test is about v4.
		extra: []string{"-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=no"},
	}
	e.serve(&nixboot{Tokens: map[string]string{m.mac.String(): m.token}})
	e.boot(m)
}

// Scenario 4: OVMF HTTP boot: nixboot answers HTTPClient with the loader's
// URL, OVMF fetches snponly.efi over HTTP, then iPXE as in scenario 2.
func TestUEFIHTTPBoot(t *testing.T) {
	e := newEnv(t)
	e.addFile("snponly.efi", testenv.File(t, "/usr/lib/ipxe/snponly.efi"))
	m := machine{
		name: "uefi-http", mac: newMAC(4), token: "s4-" + e.net.Name,
		fw: vmtest.OVMF, noROM: true, extra: vmtest.OVMFHTTPBootOnly,
	}
	e.serve(&nixboot{Tokens: map[string]string{m.mac.String(): m.token}})
	e.boot(m)
}
