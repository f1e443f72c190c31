package vmtest

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// BootPath is one way firmware boots from the network: the firmware, its
// NIC, and what a DHCP server must say to non-iPXE clients. The iPXE that
// ends every path then fetches a script, kernel and initrd over HTTP.
type BootPath struct {
	Name     string
	Firmware Firmware
	// NoROM: the firmware's own network stack instead of QEMU's iPXE ROM.
	NoROM bool
	// Extra are QEMU arguments for this path.
	Extra []string
	// Dnsmasq are the dnsmasq lines that choose the first boot file for
	// clients that are not iPXE; "{ip}" stands for the server's address.
	Dnsmasq []string
}

// OVMFNoPXEv6 keeps OVMF from trying PXEv6 (about a minute) when PXEv4
// fails: the tests are about v4.
var OVMFNoPXEv6 = []string{"-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=no"}

// OVMFPXEv6First turns off OVMF's PXEv4, so that PXEv6 is its first
// network boot option.
var OVMFPXEv6First = []string{"-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=no"}

// The boot paths of e2e scenarios 1, 2 and 4, which bench/boot times.
var (
	// BIOSiPXE is SeaBIOS with QEMU's iPXE NIC ROM (scenario 1).
	BIOSiPXE = BootPath{Name: "bios-ipxe"}
	// UEFIPXE is OVMF's own PXE loading snponly.efi over TFTP (scenario 2).
	UEFIPXE = BootPath{
		Name: "uefi-pxe", Firmware: OVMF, NoROM: true, Extra: OVMFNoPXEv6,
		Dnsmasq: []string{"dhcp-match=set:efi64,option:client-arch,7", "dhcp-boot=tag:!ipxe,tag:efi64,snponly.efi"},
	}
	// UEFIHTTP is OVMF's HTTP boot loading snponly.efi over HTTP
	// (scenario 4).
	UEFIHTTP = BootPath{
		Name: "uefi-http", Firmware: OVMF, NoROM: true, Extra: OVMFHTTPBootOnly,
		Dnsmasq: []string{"dhcp-vendorclass=set:http,HTTPClient", "dhcp-option-force=tag:http,60,HTTPClient",
			"dhcp-boot=tag:!ipxe,tag:http,http://{ip}/snponly.efi"},
	}
)

// Payload is what every boot path ends in: the kernel and initrd iPXE
// loads, with a command line carrying a token, and snponly.efi for UEFI.
type Payload struct {
	Kernel, Initrd, SnpOnly string // host paths
	Cmdline                 string // e.g. "console=ttyS0 panic=-1 quiet nbv.token=T"
}

// ServeReference serves p for path bp from the reference servers, the way
// a careful administrator would without nixboot: dnsmasq (DHCP and TFTP, the pool
// Host(100)-Host(199)) and nginx (HTTP) on the bridge, both serving one
// directory holding the kernel, the initrd, snponly.efi and a static
// boot.ipxe that iPXE clients (user class "iPXE") are pointed at.
func (n *Net) ServeReference(bp BootPath, p Payload) {
	n.t.Helper()
	root := n.t.TempDir()
	for name, src := range map[string]string{"vmlinuz": p.Kernel, "initrd.cpio": p.Initrd, "snponly.efi": p.SnpOnly} {
		if err := linkOrCopy(src, filepath.Join(root, name)); err != nil {
			n.t.Fatalf("vmtest: reference files: %v", err)
		}
	}
	base := "http://" + n.IP().String()
	script := fmt.Sprintf("#!ipxe\nkernel %s/vmlinuz initrd=initrd.cpio %s\ninitrd --name initrd.cpio %s/initrd.cpio\nboot\n", base, p.Cmdline, base)
	if err := os.WriteFile(filepath.Join(root, "boot.ipxe"), []byte(script), 0o644); err != nil {
		n.t.Fatalf("vmtest: reference script: %v", err)
	}
	n.Nginx(root, 80)
	opts := []string{
		"dhcp-userclass=set:ipxe,iPXE", "dhcp-boot=tag:ipxe," + base + "/boot.ipxe",
		// iPXE's no-pxedhcp (175.176): without it iPXE waits about 3 s for
		// a ProxyDHCP offer after dnsmasq's, which does not say PXEClient.
		// The reference is meant to be well configured.
		"dhcp-option=tag:ipxe,encap:175,176,1b",
	}
	for _, o := range bp.Dnsmasq {
		opts = append(opts, strings.ReplaceAll(o, "{ip}", n.IP().String()))
	}
	n.Dnsmasq(DnsmasqConfig{Pool: [2]netip.Addr{n.Host(100), n.Host(199)}, TFTPRoot: root, Options: opts})
}

// linkOrCopy makes src available at dst, without copying when possible.
func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}
