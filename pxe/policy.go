package pxe

import (
	"context"
	"fmt"
	"net"
	"strings"
)

// Answer is what a client is told to boot: the boot information of a DHCP
// reply. The zero Answer carries no boot information.
type Answer struct {
	// BootFile goes into option 67 and the BOOTP file field: a TFTP file
	// name ("undionly.kpxe") or a URL (an iPXE script, a UEFI HTTP boot
	// image). Names over 127 bytes are refused when the reply is built,
	// never truncated.
	BootFile string
	// NextServer is siaddr, the TFTP server PXE ROMs load BootFile from.
	// nil means the DHCP server's own address.
	NextServer net.IP
	// TFTPServerName is option 66. "" sends NextServer (or the server's own
	// address) in dotted form, which is what most ROMs expect.
	TFTPServerName string
	// VendorClass is echoed in option 60. "" means "PXEClient" for PXE
	// clients; UEFI HTTP boot needs "HTTPClient" here or it ignores the
	// URL.
	VendorClass string
}

// Policy decides what a classified client boots. It returns ErrNoBoot
// (wrapped or not) when the client should get no boot information; any
// other error is a failure of the policy itself (a backend down) and is
// logged by the server. Implementations must be safe for concurrent use
// and should honour ctx, which the server cancels on shutdown.
type Policy interface {
	Decide(ctx context.Context, c Client) (Answer, error)
}

// PolicyFunc adapts a function to Policy, the way http.HandlerFunc does.
type PolicyFunc func(ctx context.Context, c Client) (Answer, error)

// Decide calls f.
func (f PolicyFunc) Decide(ctx context.Context, c Client) (Answer, error) { return f(ctx, c) }

// Loaders is the usual policy: firmware gets a first-stage iPXE loader over
// TFTP, iPXE gets the script URL (so it never loads the loader again), and
// UEFI HTTP boot gets the loader over HTTP. Each field's zero value is
// documented; the struct is read-only once in use and safe for concurrent
// use. Callers replace any step by wrapping it in a PolicyFunc.
type Loaders struct {
	// BIOS is the loader for x86 BIOS PXE ROMs. "" means "undionly.kpxe".
	BIOS string
	// EFI64 is the loader for x86-64 UEFI (codes 7 and 9). "" means
	// "ipxe.efi"; "snponly.efi" uses the firmware's network driver instead
	// of iPXE's own and works on more NICs.
	EFI64 string
	// EFI32 is the loader for 32-bit x86 UEFI. "" means "ipxe-i386.efi".
	EFI32 string
	// EFIARM64 is the loader for arm64 UEFI. "" means "ipxe-arm64.efi".
	EFIARM64 string
	// Other maps further firmware to loaders (say FirmwareEFIRISCV64). Nil
	// means none: such clients get ErrNoBoot.
	Other map[Firmware]string
	// ScriptURL is what iPXE clients boot: an http(s) URL of an iPXE
	// script. "" means iPXE clients get ErrNoBoot, which also prevents a
	// loop (an iPXE ROM would otherwise be handed the iPXE loader again).
	ScriptURL string
	// HTTPBase is the URL prefix UEFI HTTP boot clients load their loader
	// from (HTTPBase + "/" + loader name). "" means HTTP boot clients get
	// ErrNoBoot.
	HTTPBase string
	// UserClass is this deployment's own iPXE marker (option 77), set by
	// the embedded script of a loader we build. When ChainIPXE is true,
	// only iPXE that sends this marker gets ScriptURL; any other iPXE (a
	// NIC's ROM) is first given our loader. "" with ChainIPXE true is a
	// configuration error.
	UserClass string
	// ChainIPXE makes iPXE clients without UserClass load our loader first.
	// Zero (false) hands every iPXE the script directly. Only set it when
	// the loaders really set UserClass, or clients loop.
	ChainIPXE bool
}

// Decide implements Policy. The order is: iPXE (by user class or option
// 175) → ScriptURL; UEFI HTTP boot → HTTPBase + loader, with HTTPClient in
// option 60; PXE firmware → the loader for its firmware.
func (l Loaders) Decide(_ context.Context, c Client) (Answer, error) {
	if c.IsIPXE() {
		if l.ChainIPXE && l.UserClass == "" {
			return Answer{}, fmt.Errorf("%w: Loaders.ChainIPXE needs Loaders.UserClass", ErrConfig)
		}
		if !l.ChainIPXE || c.UserClass.Has(l.UserClass) {
			if l.ScriptURL == "" {
				return Answer{}, fmt.Errorf("%w: %s is iPXE and no script URL is set", ErrNoBoot, c.MAC)
			}
			return Answer{BootFile: l.ScriptURL}, nil
		}
	}
	fw := c.Firmware()
	name := l.loader(fw)
	if name == "" {
		arch, _ := c.Arch()
		return Answer{}, fmt.Errorf("%w: no loader for %s (arch %d)", ErrNoBoot, fw, uint16(arch))
	}
	if c.IsHTTPBoot() {
		if l.HTTPBase == "" {
			return Answer{}, fmt.Errorf("%w: %s uses HTTP boot and no HTTP base URL is set", ErrNoBoot, c.MAC)
		}
		return Answer{BootFile: strings.TrimSuffix(l.HTTPBase, "/") + "/" + name, VendorClass: vendorHTTP}, nil
	}
	return Answer{BootFile: name}, nil
}

func (l Loaders) loader(fw Firmware) string {
	pick := func(v, def string) string {
		if v != "" {
			return v
		}
		return def
	}
	switch fw {
	case FirmwareBIOS:
		return pick(l.BIOS, "undionly.kpxe")
	case FirmwareEFI64:
		return pick(l.EFI64, "ipxe.efi")
	case FirmwareEFI32:
		return pick(l.EFI32, "ipxe-i386.efi")
	case FirmwareEFIARM64:
		return pick(l.EFIARM64, "ipxe-arm64.efi")
	}
	return l.Other[fw]
}
