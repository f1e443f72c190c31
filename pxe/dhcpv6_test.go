package pxe_test

import (
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/pxe"
)

var self6 = net.ParseIP("fd00::1")

// solicit builds a Solicit as UEFI firmware sends it for network boot:
// option 61 with the architecture, ORO with 59 and 60.
func solicit(t testing.TB, mac net.HardwareAddr, arch iana.Arch, mods ...dhcpv6.Modifier) *dhcpv6.Message {
	t.Helper()
	m, err := dhcpv6.NewSolicit(mac, append([]dhcpv6.Modifier{dhcpv6.WithArchType(arch), dhcpv6.WithNetboot}, mods...)...)
	require.NoError(t, err)
	return m
}

func TestReply6(t *testing.T) {
	serverID := dhcpv6.WithServerID(&dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1}})
	httpVC := dhcpv6.WithOption(&dhcpv6.OptVendorClass{EnterpriseNumber: 343, Data: [][]byte{[]byte("HTTPClient:Arch:00016:UNDI:003000")}})
	tests := []struct {
		name    string
		req     *dhcpv6.Message
		wantURL string
		wantVC  string
	}{
		{"uefi pxe over tftp", solicit(t, macUEFI, iana.EFI_X86_64), "tftp://[fd00::1]/ipxe.efi", ""},
		{"arch 9 like 7", solicit(t, macUEFI, iana.EFI_BC), "tftp://[fd00::1]/ipxe.efi", ""},
		{"http boot", solicit(t, macHTTP, iana.EFI_X86_64_HTTP, httpVC), "http://10.9.0.1/loaders/ipxe.efi", "HTTPClient"},
		{"ipxe user class", solicit(t, macIPXE, iana.EFI_X86_64, dhcpv6.WithUserClass([]byte("iPXE"))), "http://10.9.0.1/boot.ipxe", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Through the wire format.
			req, err := dhcpv6.MessageFromBytes(tt.req.ToBytes())
			require.NoError(t, err)
			reply, err := pxe.Reply6(t.Context(), testLoaders(), req, self6, serverID)
			require.NoError(t, err)
			back, err := dhcpv6.MessageFromBytes(reply.ToBytes())
			require.NoError(t, err)
			assert.Equal(t, dhcpv6.MessageTypeAdvertise, back.MessageType)
			assert.Equal(t, req.TransactionID, back.TransactionID)
			assert.Equal(t, tt.wantURL, back.Options.BootFileURL())
			if tt.wantVC != "" {
				assert.Equal(t, [][]byte{[]byte(tt.wantVC)}, back.Options.VendorClass(343))
			} else {
				assert.Nil(t, back.Options.VendorClass(343))
			}
		})
	}
	t.Run("no option 59 requested", func(t *testing.T) {
		m, err := dhcpv6.NewSolicit(macUEFI, dhcpv6.WithArchType(iana.EFI_X86_64))
		require.NoError(t, err)
		_, err = pxe.Reply6(t.Context(), testLoaders(), m, self6, serverID)
		require.ErrorIs(t, err, pxe.ErrNoBoot)
	})
	t.Run("ipv4 self for a tftp name", func(t *testing.T) {
		_, err := pxe.Reply6(t.Context(), testLoaders(), solicit(t, macUEFI, iana.EFI_X86_64), net.IPv4(10, 0, 0, 1), serverID)
		require.ErrorIs(t, err, pxe.ErrConfig)
	})
}

func FuzzClientFromMessage6(f *testing.F) {
	f.Add(solicit(f, macUEFI, iana.EFI_X86_64).ToBytes())
	f.Add(solicit(f, macIPXE, iana.EFI_X86_64, dhcpv6.WithUserClass([]byte("iPXE"))).ToBytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		msg, err := dhcpv6.FromBytes(b)
		if err != nil {
			return
		}
		c, err := pxe.ClientFromMessage6(msg)
		if err != nil {
			return
		}
		inner, err := msg.GetInnerMessage()
		require.NoError(t, err)
		assert.Equal(t, len(inner.Options.ArchTypes()), len(c.Archs))
		assert.Equal(t, len(inner.Options.UserClasses()), len(c.UserClass.Classes))
	})
}
