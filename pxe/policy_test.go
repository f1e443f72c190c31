package pxe_test

import (
	"context"
	"errors"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/pxe"
)

func classify(t *testing.T, name string, extra ...dhcpv4.Modifier) pxe.Client {
	t.Helper()
	c, err := pxe.ClientFromRequest(discover(t, fixtureByName(t, name), extra...))
	require.NoError(t, err)
	return c
}

func TestLoadersDecide(t *testing.T) {
	marker := dhcpv4.WithOption(dhcpv4.OptRFC3004UserClass([]string{"iPXE", "nixboot"}))
	tests := []struct {
		name    string
		loaders pxe.Loaders
		client  pxe.Client
		want    pxe.Answer
		err     error
	}{
		{"bios rom is ipxe: script", testLoaders(), classify(t, "qemu-ipxe-bios-rom"), pxe.Answer{BootFile: "http://10.9.0.1/boot.ipxe"}, nil},
		{"efi ipxe: script", testLoaders(), classify(t, "ovmf-ipxe-efi"), pxe.Answer{BootFile: "http://10.9.0.1/boot.ipxe"}, nil},
		{"native uefi: ipxe.efi", testLoaders(), classify(t, "ovmf-native-pxe"), pxe.Answer{BootFile: "ipxe.efi"}, nil},
		{"native uefi: snponly", pxe.Loaders{EFI64: "snponly.efi"}, classify(t, "ovmf-native-pxe"), pxe.Answer{BootFile: "snponly.efi"}, nil},
		{"http boot", testLoaders(), classify(t, "ovmf-native-http"), pxe.Answer{BootFile: "http://10.9.0.1/loaders/ipxe.efi", VendorClass: "HTTPClient"}, nil},
		{"http boot without base", pxe.Loaders{}, classify(t, "ovmf-native-http"), pxe.Answer{}, pxe.ErrNoBoot},
		{"ipxe without script: no loop", pxe.Loaders{}, classify(t, "qemu-ipxe-bios-rom"), pxe.Answer{}, pxe.ErrNoBoot},
		{"bios arch 0 without ipxe", pxe.Loaders{}, pxe.Client{Archs: archs(0)}, pxe.Answer{BootFile: "undionly.kpxe"}, nil},
		{"arch 9 is x86-64", pxe.Loaders{}, pxe.Client{Archs: archs(9)}, pxe.Answer{BootFile: "ipxe.efi"}, nil},
		{"arm64", pxe.Loaders{}, pxe.Client{Archs: archs(11)}, pxe.Answer{BootFile: "ipxe-arm64.efi"}, nil},
		{"arm64 own", pxe.Loaders{EFIARM64: "snp-arm64.efi"}, pxe.Client{Archs: archs(11)}, pxe.Answer{BootFile: "snp-arm64.efi"}, nil},
		{"ia32", pxe.Loaders{}, pxe.Client{Archs: archs(6)}, pxe.Answer{BootFile: "ipxe-i386.efi"}, nil},
		{"riscv via Other", pxe.Loaders{Other: map[pxe.Firmware]string{pxe.FirmwareEFIRISCV64: "ipxe-riscv64.efi"}}, pxe.Client{Archs: archs(27)}, pxe.Answer{BootFile: "ipxe-riscv64.efi"}, nil},
		{"riscv without loader", pxe.Loaders{}, pxe.Client{Archs: archs(27)}, pxe.Answer{}, pxe.ErrNoBoot},
		{"chain: rom ipxe gets our loader", pxe.Loaders{ScriptURL: "http://s/x", UserClass: "nixboot", ChainIPXE: true}, classify(t, "ovmf-ipxe-efi"), pxe.Answer{BootFile: "ipxe.efi"}, nil},
		{"chain: our ipxe gets the script", pxe.Loaders{ScriptURL: "http://s/x", UserClass: "nixboot", ChainIPXE: true}, classify(t, "ovmf-ipxe-efi", marker), pxe.Answer{BootFile: "http://s/x"}, nil},
		{"chain without marker is a config error", pxe.Loaders{ScriptURL: "http://s/x", ChainIPXE: true}, classify(t, "ovmf-ipxe-efi"), pxe.Answer{}, pxe.ErrConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.loaders.Decide(t.Context(), tt.client)
			if tt.err != nil {
				require.ErrorIs(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// A caller replaces one step by wrapping the default policy.
func TestPolicyFuncWraps(t *testing.T) {
	base := testLoaders()
	p := pxe.PolicyFunc(func(ctx context.Context, c pxe.Client) (pxe.Answer, error) {
		if c.MAC.String() == macUEFI.String() {
			return pxe.Answer{}, errors.New("backend down")
		}
		a, err := base.Decide(ctx, c)
		a.TFTPServerName = "boot.lab"
		return a, err
	})
	a, err := p.Decide(t.Context(), classify(t, "qemu-ipxe-bios-rom"))
	require.NoError(t, err)
	assert.Equal(t, "boot.lab", a.TFTPServerName)
	_, err = p.Decide(t.Context(), classify(t, "ovmf-native-pxe"))
	assert.ErrorContains(t, err, "backend down")
}
