package vmtest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/internal/testenv"
)

// TestReferenceBootBIOS boots a BIOS VM with QEMU's iPXE ROM from dnsmasq
// (DHCP) and nginx (HTTP) in a Net: the harness works end to end with
// servers that are not nixboot's, and RAs keep iPXE from waiting for IPv6.
// The same setup is the reference side of bench/boot.
func TestReferenceBootBIOS(t *testing.T) {
	testenv.Root(t)
	testenv.Short(t)
	kernel := testenv.Kernel(t)
	initrd := Initrd(t, InitFiles(t))
	n := NewNet(t, NetConfig{NoRA: os.Getenv("NBV_NORA") == "1"})

	root := t.TempDir()
	link(t, kernel, filepath.Join(root, "vmlinuz"))
	link(t, initrd, filepath.Join(root, "initrd.cpio"))
	token := "ref-" + n.Name
	base := "http://" + n.IP().String()
	script := fmt.Sprintf("#!ipxe\nkernel %s/vmlinuz initrd=initrd.cpio console=ttyS0 panic=-1 quiet nbv.token=%s\ninitrd --name initrd.cpio %s/initrd.cpio\nboot\n", base, token, base)
	require.NoError(t, os.WriteFile(filepath.Join(root, "boot.ipxe"), []byte(script), 0o644))

	n.Nginx(root, 80)
	n.Dnsmasq(DnsmasqConfig{
		Pool:    [2]netip.Addr{n.Host(100), n.Host(199)},
		Options: []string{"dhcp-userclass=set:ipxe,iPXE", "dhcp-boot=tag:ipxe," + base + "/boot.ipxe"},
	})
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x6e, 0x62, 0x20}
	m := Start(t, Config{
		Name:  "bios-ipxe",
		NICs:  []NIC{{Tap: n.AddTap(), MAC: mac, BootIndex: 1}},
		Netns: n.Name,
	})
	ctx, cancel := context.WithTimeout(t.Context(), 180*time.Second)
	defer cancel()
	got, err := m.WaitBoot(ctx)
	require.NoError(t, err)
	t.Logf("marker after %s", time.Since(m.Started).Round(time.Millisecond))
	assert.Equal(t, token, got.Token)
	assert.Equal(t, []string{mac.String()}, got.MACs)
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
