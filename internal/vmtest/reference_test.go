package vmtest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/internal/testenv"
)

// TestReferenceBoot boots VMs from dnsmasq (DHCP, TFTP) and nginx (HTTP) in
// a Net: the harness works end to end with servers that are not nixboot's,
// for each firmware path the e2e scenarios use, and RAs keep iPXE from
// waiting for IPv6. The same setups are the reference side of bench/boot.
func TestReferenceBoot(t *testing.T) {
	testenv.Root(t)
	testenv.Short(t)
	kernel := testenv.Kernel(t)
	initrd := Initrd(t, InitFiles(t))
	snponly := testenv.File(t, "/usr/lib/ipxe/snponly.efi")
	tests := []struct {
		name string
		fw   Firmware
		// dhcp are the dnsmasq lines choosing the first boot file; iPXE
		// (user class "iPXE") always gets the script.
		dhcp  []string
		noROM bool
		extra []string
	}{
		{name: "bios-ipxe-rom"},
		{
			name: "uefi-pxe", fw: OVMF, noROM: true,
			dhcp:  []string{"dhcp-match=set:efi64,option:client-arch,7", "dhcp-boot=tag:!ipxe,tag:efi64,snponly.efi"},
			extra: []string{"-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=no"},
		},
		{
			name: "uefi-http", fw: OVMF, noROM: true,
			dhcp: []string{"dhcp-vendorclass=set:http,HTTPClient", "dhcp-option-force=tag:http,60,HTTPClient",
				"dhcp-boot=tag:!ipxe,tag:http,http://{ip}/snponly.efi"},
			extra: OVMFHTTPBootOnly,
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := NewNet(t, NetConfig{NoRA: os.Getenv("NBV_NORA") == "1"})
			root := t.TempDir()
			link(t, kernel, filepath.Join(root, "vmlinuz"))
			link(t, initrd, filepath.Join(root, "initrd.cpio"))
			link(t, snponly, filepath.Join(root, "snponly.efi"))
			token := "ref-" + tt.name + "-" + n.Name
			base := "http://" + n.IP().String()
			script := fmt.Sprintf("#!ipxe\nkernel %s/vmlinuz initrd=initrd.cpio console=ttyS0 panic=-1 quiet nbv.token=%s\ninitrd --name initrd.cpio %s/initrd.cpio\nboot\n", base, token, base)
			require.NoError(t, os.WriteFile(filepath.Join(root, "boot.ipxe"), []byte(script), 0o644))
			n.Nginx(root, 80)
			opts := []string{"dhcp-userclass=set:ipxe,iPXE", "dhcp-boot=tag:ipxe," + base + "/boot.ipxe"}
			for _, o := range tt.dhcp {
				opts = append(opts, strings.ReplaceAll(o, "{ip}", n.IP().String()))
			}
			n.Dnsmasq(DnsmasqConfig{Pool: [2]netip.Addr{n.Host(100), n.Host(199)}, TFTPRoot: root, Options: opts})
			mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x6e, 0x62, byte(0x20 + i)}
			m := Start(t, Config{
				Name:     tt.name,
				Firmware: tt.fw,
				NICs:     []NIC{{Tap: n.AddTap(), MAC: mac, BootIndex: 1, NoROM: tt.noROM}},
				Netns:    n.Name,
				Extra:    tt.extra,
			})
			ctx, cancel := context.WithTimeout(t.Context(), 180*time.Second)
			defer cancel()
			got, err := m.WaitBoot(ctx)
			require.NoError(t, err)
			t.Logf("%s: marker after %s", tt.name, time.Since(m.Started).Round(time.Millisecond))
			assert.Equal(t, token, got.Token)
			assert.Equal(t, []string{mac.String()}, got.MACs)
		})
	}
}

// link makes src available at dst without copying when possible.
func link(t testing.TB, src, dst string) {
	t.Helper()
	if err := os.Link(src, dst); err == nil {
		return
	}
	b, err := os.ReadFile(src)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(dst, b, 0o644))
}
