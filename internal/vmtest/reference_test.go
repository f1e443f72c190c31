package vmtest

import (
	"context"
	"net"
	"os"
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
	for i, bp := range []BootPath{BIOSiPXE, UEFIPXE, UEFIHTTP} {
		t.Run(bp.Name, func(t *testing.T) {
			n := NewNet(t, NetConfig{NoRA: os.Getenv("NBV_NORA") == "1"})
			token := "ref-" + bp.Name + "-" + n.Name
			n.ServeReference(bp, Payload{
				Kernel: kernel, Initrd: initrd, SnpOnly: snponly,
				Cmdline: "console=ttyS0 panic=-1 quiet nbv.token=" + token,
			})
			mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x6e, 0x62, byte(0x20 + i)}
			m := Start(t, Config{
				Name:     bp.Name,
				Firmware: bp.Firmware,
				NICs:     []NIC{{Tap: n.AddTap(), MAC: mac, BootIndex: 1, NoROM: bp.NoROM}},
				Netns:    n.Name,
				Extra:    bp.Extra,
			})
			ctx, cancel := context.WithTimeout(t.Context(), 180*time.Second)
			defer cancel()
			got, err := m.WaitBoot(ctx)
			require.NoError(t, err)
			t.Logf("%s: marker after %s", bp.Name, time.Since(m.Started).Round(time.Millisecond))
			assert.Equal(t, token, got.Token)
			assert.Equal(t, []string{mac.String()}, got.MACs)
		})
	}
}
