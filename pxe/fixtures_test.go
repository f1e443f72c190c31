package pxe_test

import (
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/stretchr/testify/require"
)

// The fixtures below rebuild, option by option, the first DHCP packet of
// each client measured in ../shared/notes/e2e-facts.md (QEMU 7.2, OVMF
// 2022.11, Debian iPXE). testdata/README.md describes their provenance.

var (
	macBIOS  = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x01}
	macUEFI  = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x02}
	macHTTP  = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x03}
	macIPXE  = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x04}
	macPlain = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x05}
)

// uuidOVMF is a non-zero SMBIOS UUID in wire order, as an OVMF guest with
// -uuid 00112233-4455-6677-8899-aabbccddeeff sends it (first three fields
// little-endian).
var uuidOVMF = []byte{0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}

// ipxeFeatures is option 175 as Debian's iPXE sends it: a few feature
// sub-options (19 = HTTP, 24 = bzImage, 39 = EFI image, ...), one byte each.
var ipxeFeatures = []byte{0x13, 0x01, 0x01, 0x18, 0x01, 0x01, 0x11, 0x01, 0x01, 0x27, 0x01, 0x01}

type fixture struct {
	name string
	mac  net.HardwareAddr
	mods []dhcpv4.Modifier
}

func netbootPRL() dhcpv4.Modifier {
	return dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer,
		dhcpv4.OptionDomainName, dhcpv4.OptionVendorSpecificInformation, dhcpv4.OptionClassIdentifier,
		dhcpv4.OptionTFTPServerName, dhcpv4.OptionBootfileName, dhcpv4.OptionClientMachineIdentifier, dhcpv4.OptionEtherboot)
}

func uuidOpt(u []byte) dhcpv4.Modifier {
	return dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, append([]byte{0}, u...))
}

// firmwareFixtures are the first packets of the clients in e2e-facts.md.
func firmwareFixtures() []fixture {
	return []fixture{
		{"qemu-ipxe-bios-rom", macBIOS, []dhcpv4.Modifier{
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
			dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
			dhcpv4.WithGeneric(dhcpv4.OptionClientNetworkInterfaceIdentifier, []byte{1, 2, 1}),
			uuidOpt(make([]byte, 16)),
			dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")),
			dhcpv4.WithGeneric(dhcpv4.OptionEtherboot, ipxeFeatures),
			dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(1472)),
			netbootPRL(),
		}},
		{"ovmf-ipxe-efi", macIPXE, []dhcpv4.Modifier{
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003010")),
			dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)),
			dhcpv4.WithGeneric(dhcpv4.OptionClientNetworkInterfaceIdentifier, []byte{1, 3, 10}),
			uuidOpt(make([]byte, 16)),
			dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")),
			dhcpv4.WithGeneric(dhcpv4.OptionEtherboot, ipxeFeatures),
			dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(1472)),
			netbootPRL(),
		}},
		{"ovmf-native-pxe", macUEFI, []dhcpv4.Modifier{
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003000")),
			dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)),
			dhcpv4.WithGeneric(dhcpv4.OptionClientNetworkInterfaceIdentifier, []byte{1, 3, 0}),
			uuidOpt(uuidOVMF),
			dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(1472)),
			dhcpv4.WithBroadcast(true),
			netbootPRL(),
		}},
		{"ovmf-native-http", macHTTP, []dhcpv4.Modifier{
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier("HTTPClient:Arch:00016:UNDI:003000")),
			dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64_HTTP)),
			dhcpv4.WithGeneric(dhcpv4.OptionClientNetworkInterfaceIdentifier, []byte{1, 3, 0}),
			uuidOpt(uuidOVMF),
			dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(1472)),
			dhcpv4.WithBroadcast(true),
			netbootPRL(),
		}},
		{"plain-dhcp-client", macPlain, []dhcpv4.Modifier{
			dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer, dhcpv4.OptionDomainName),
		}},
	}
}

// discover builds a DISCOVER like the fixture's firmware.
func discover(t testing.TB, f fixture, extra ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	d, err := dhcpv4.NewDiscovery(f.mac, append(append([]dhcpv4.Modifier{}, f.mods...), extra...)...)
	require.NoError(t, err)
	return d
}

func fixtureByName(t testing.TB, name string) fixture {
	t.Helper()
	for _, f := range firmwareFixtures() {
		if f.name == name {
			return f
		}
	}
	t.Fatalf("no fixture %q", name)
	return fixture{}
}

func archs(codes ...uint16) []iana.Arch {
	out := make([]iana.Arch, len(codes))
	for i, c := range codes {
		out[i] = iana.Arch(c)
	}
	return out
}
