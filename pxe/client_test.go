package pxe_test

import (
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/pxe"
)

func TestClientFromFirmware(t *testing.T) {
	tests := []struct {
		fixture   string
		firmware  pxe.Firmware
		archs     []iana.Arch
		ipxe, pxe bool
		http      bool
		undi      *pxe.UNDI
		vendor    pxe.VendorClass
		uuid      string
		smbios    string
	}{
		{
			fixture: "qemu-ipxe-bios-rom", firmware: pxe.FirmwareBIOS, archs: []iana.Arch{0}, ipxe: true, pxe: true,
			undi:   &pxe.UNDI{Type: 1, Major: 2, Minor: 1},
			vendor: pxe.VendorClass{Raw: "PXEClient:Arch:00000:UNDI:002001", Kind: pxe.VendorPXE, Arch: 0, HasArch: true, UNDI: pxe.UNDI{Major: 2, Minor: 1}, HasUNDI: true},
			uuid:   "00000000-0000-0000-0000-000000000000", smbios: "00000000-0000-0000-0000-000000000000",
		},
		{
			fixture: "ovmf-ipxe-efi", firmware: pxe.FirmwareEFI64, archs: []iana.Arch{7}, ipxe: true, pxe: true,
			undi:   &pxe.UNDI{Type: 1, Major: 3, Minor: 10},
			vendor: pxe.VendorClass{Raw: "PXEClient:Arch:00007:UNDI:003010", Kind: pxe.VendorPXE, Arch: 7, HasArch: true, UNDI: pxe.UNDI{Major: 3, Minor: 10}, HasUNDI: true},
			uuid:   "00000000-0000-0000-0000-000000000000", smbios: "00000000-0000-0000-0000-000000000000",
		},
		{
			fixture: "ovmf-native-pxe", firmware: pxe.FirmwareEFI64, archs: []iana.Arch{7}, pxe: true,
			undi:   &pxe.UNDI{Type: 1, Major: 3, Minor: 0},
			vendor: pxe.VendorClass{Raw: "PXEClient:Arch:00007:UNDI:003000", Kind: pxe.VendorPXE, Arch: 7, HasArch: true, UNDI: pxe.UNDI{Major: 3}, HasUNDI: true},
			uuid:   "33221100-5544-7766-8899-aabbccddeeff", smbios: "00112233-4455-6677-8899-aabbccddeeff",
		},
		{
			fixture: "ovmf-native-http", firmware: pxe.FirmwareEFI64, archs: []iana.Arch{16}, http: true,
			undi:   &pxe.UNDI{Type: 1, Major: 3, Minor: 0},
			vendor: pxe.VendorClass{Raw: "HTTPClient:Arch:00016:UNDI:003000", Kind: pxe.VendorHTTP, Arch: 16, HasArch: true, UNDI: pxe.UNDI{Major: 3}, HasUNDI: true},
			uuid:   "33221100-5544-7766-8899-aabbccddeeff", smbios: "00112233-4455-6677-8899-aabbccddeeff",
		},
		{fixture: "plain-dhcp-client", firmware: pxe.FirmwareUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			f := fixtureByName(t, tt.fixture)
			// Through the wire format, as the server sees it.
			req, err := dhcpv4.FromBytes(discover(t, f).ToBytes())
			require.NoError(t, err)
			c, err := pxe.ClientFromRequest(req)
			require.NoError(t, err)
			assert.Equal(t, f.mac, c.MAC)
			assert.Equal(t, dhcpv4.MessageTypeDiscover, c.MessageType)
			assert.Equal(t, tt.firmware, c.Firmware())
			assert.Equal(t, tt.archs, c.Archs)
			assert.Equal(t, tt.ipxe, c.IsIPXE())
			assert.Equal(t, tt.pxe, c.IsPXE())
			assert.Equal(t, tt.http, c.IsHTTPBoot())
			assert.Equal(t, tt.undi, c.UNDI)
			assert.Equal(t, tt.vendor, c.Vendor)
			if tt.uuid == "" {
				assert.Nil(t, c.UUID)
			} else {
				require.NotNil(t, c.UUID)
				assert.Equal(t, tt.uuid, c.UUID.String())
				assert.Equal(t, tt.smbios, c.UUID.SMBIOSString())
			}
			assert.Nil(t, c.RelayAddr)
			if tt.ipxe {
				assert.Equal(t, []byte{1}, c.IPXE[19], "option 175 feature HTTP")
			}
		})
	}
}

func TestArchInfoAllCodes(t *testing.T) {
	want := map[iana.Arch]pxe.Arch{
		0: {Firmware: pxe.FirmwareBIOS}, 6: {Firmware: pxe.FirmwareEFI32},
		7: {Firmware: pxe.FirmwareEFI64}, 9: {Firmware: pxe.FirmwareEFI64},
		10: {Firmware: pxe.FirmwareEFIARM32}, 11: {Firmware: pxe.FirmwareEFIARM64},
		15: {Firmware: pxe.FirmwareEFI32, HTTP: true}, 16: {Firmware: pxe.FirmwareEFI64, HTTP: true},
		17: {Firmware: pxe.FirmwareEFI64, HTTP: true}, 18: {Firmware: pxe.FirmwareEFIARM32, HTTP: true},
		19: {Firmware: pxe.FirmwareEFIARM64, HTTP: true}, 20: {Firmware: pxe.FirmwareBIOS, HTTP: true},
		21: {Firmware: pxe.FirmwareUBootARM32}, 22: {Firmware: pxe.FirmwareUBootARM64},
		23: {Firmware: pxe.FirmwareUBootARM32, HTTP: true}, 24: {Firmware: pxe.FirmwareUBootARM64, HTTP: true},
		26: {HTTP: true}, 27: {Firmware: pxe.FirmwareEFIRISCV64}, 28: {Firmware: pxe.FirmwareEFIRISCV64, HTTP: true},
		30: {HTTP: true},
	}
	// Every code 0..65535 is classified without loss of its number; the
	// ones above are checked exactly, the rest have no firmware.
	for code := 0; code <= 0xffff; code++ {
		a := iana.Arch(code)
		got := pxe.ArchInfo(a)
		w := want[a]
		w.Code = a
		if got != w {
			t.Fatalf("ArchInfo(%d) = %+v, want %+v", code, got, w)
		}
	}
}

func TestClientUnknownArchKeepsNumber(t *testing.T) {
	req, err := dhcpv4.NewDiscovery(macBIOS,
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.Arch(41), iana.Arch(0xbeef))),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00041:UNDI:003000")))
	require.NoError(t, err)
	c, err := pxe.ClientFromRequest(req)
	require.NoError(t, err)
	assert.Equal(t, []iana.Arch{41, 0xbeef}, c.Archs)
	assert.Equal(t, pxe.FirmwareUnknown, c.Firmware())
	_, err = pxe.Loaders{}.Decide(t.Context(), c)
	require.ErrorIs(t, err, pxe.ErrNoBoot)
	assert.ErrorContains(t, err, "arch 41", "unknown codes are reported as numbers")
}

func TestParseUserClass(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		classes []string
		rfc     bool
	}{
		{"absent", nil, nil, false},
		{"raw iPXE", []byte("iPXE"), []string{"iPXE"}, false},
		{"rfc3004 iPXE", []byte("\x04iPXE"), []string{"iPXE"}, true},
		{"rfc3004 two", []byte("\x04iPXE\x07nixboot"), []string{"iPXE", "nixboot"}, true},
		{"rfc3004 bad length", []byte("\x09iPXE"), []string{"\x09iPXE"}, false},
		{"zero length item", []byte("\x00iPXE"), []string{"\x00iPXE"}, false},
		{"raw marker", []byte("nixboot"), []string{"nixboot"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := pxe.ParseUserClass(tt.in)
			assert.Equal(t, tt.classes, u.Classes)
			assert.Equal(t, tt.rfc, u.RFC3004)
			for _, c := range tt.classes {
				assert.True(t, u.Has(c))
			}
			assert.False(t, u.Has("other"))
		})
	}
}

func TestParseVendorClass(t *testing.T) {
	tests := []struct {
		in   string
		want pxe.VendorClass
	}{
		{"PXEClient", pxe.VendorClass{Kind: pxe.VendorPXE}},
		{"PXEClient:Arch:00009:UNDI:003016", pxe.VendorClass{Kind: pxe.VendorPXE, Arch: 9, HasArch: true, UNDI: pxe.UNDI{Major: 3, Minor: 16}, HasUNDI: true}},
		{"HTTPClient:Arch:00019", pxe.VendorClass{Kind: pxe.VendorHTTP, Arch: 19, HasArch: true}},
		{"PXEClient:Arch:7:UNDI:3", pxe.VendorClass{Kind: pxe.VendorPXE}}, // wrong widths: ignored
		{"PXEClient:Arch:99999", pxe.VendorClass{Kind: pxe.VendorPXE}},    // out of range
		{"MSFT 5.0", pxe.VendorClass{Kind: pxe.VendorOther}},
		{"HW-Client", pxe.VendorClass{Kind: pxe.VendorOther}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			tt.want.Raw = tt.in
			assert.Equal(t, tt.want, pxe.ParseVendorClass(tt.in))
		})
	}
}

func TestClientMalformedOptions(t *testing.T) {
	tests := []struct {
		name string
		code dhcpv4.OptionCode
		val  []byte
	}{
		{"odd arch", dhcpv4.OptionClientSystemArchitectureType, []byte{0, 7, 1}},
		{"empty arch", dhcpv4.OptionClientSystemArchitectureType, []byte{}},
		{"short undi", dhcpv4.OptionClientNetworkInterfaceIdentifier, []byte{1, 3}},
		{"uuid type 1", dhcpv4.OptionClientMachineIdentifier, append([]byte{1}, make([]byte, 16)...)},
		{"short uuid", dhcpv4.OptionClientMachineIdentifier, []byte{0, 1, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := dhcpv4.NewDiscovery(macBIOS, dhcpv4.WithGeneric(tt.code, tt.val))
			require.NoError(t, err)
			c, err := pxe.ClientFromRequest(req)
			require.ErrorIs(t, err, pxe.ErrBadOption)
			assert.ErrorContains(t, err, macBIOS.String())
			assert.Equal(t, macBIOS, c.MAC, "the MAC is still known")
		})
	}
	t.Run("empty uuid is absent", func(t *testing.T) {
		req, err := dhcpv4.NewDiscovery(macBIOS, dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, nil))
		require.NoError(t, err)
		c, err := pxe.ClientFromRequest(req)
		require.NoError(t, err)
		assert.Nil(t, c.UUID)
	})
	t.Run("reply is not a request", func(t *testing.T) {
		req, err := dhcpv4.NewDiscovery(macBIOS)
		require.NoError(t, err)
		reply, err := dhcpv4.NewReplyFromRequest(req)
		require.NoError(t, err)
		_, err = pxe.ClientFromRequest(reply)
		require.ErrorIs(t, err, pxe.ErrNotRequest)
		_, err = pxe.ClientFromRequest(nil)
		require.ErrorIs(t, err, pxe.ErrNotRequest)
	})
}

func TestClientRelayed(t *testing.T) {
	req := discover(t, fixtureByName(t, "ovmf-native-pxe"), dhcpv4.WithGatewayIP(net.IPv4(10, 9, 0, 1)))
	c, err := pxe.ClientFromRequest(req)
	require.NoError(t, err)
	assert.Equal(t, "10.9.0.1", c.RelayAddr.String())
	assert.Equal(t, uint16(1472), c.MaxMessageSize)
	assert.True(t, c.Broadcast)
}
