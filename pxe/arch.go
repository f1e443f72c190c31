package pxe

import (
	"strconv"

	"github.com/insomniacslk/dhcp/iana"
)

// Firmware is the kind of first-stage loader a client can run. Several
// architecture codes map to one Firmware (7 and 9 are both x86-64 UEFI, and
// the HTTP codes share their PXE sibling's firmware).
type Firmware int

const (
	// FirmwareUnknown is any code without a known loader. The code itself is
	// kept in Client.Archs and logged as a number.
	FirmwareUnknown Firmware = iota
	// FirmwareBIOS is legacy x86 PC BIOS (code 0, and 20 for HTTP).
	FirmwareBIOS
	// FirmwareEFI32 is 32-bit x86 UEFI (6, 15).
	FirmwareEFI32
	// FirmwareEFI64 is x86-64 UEFI. IANA assigns 7 (and 16 for HTTP), but
	// EDK2-derived firmware has long sent 9 ("EFI BC") for it, so 9 and 17
	// are treated alike, as firmware vendors and iPXE do.
	FirmwareEFI64
	// FirmwareEFIARM32 is 32-bit ARM UEFI (10, 18).
	FirmwareEFIARM32
	// FirmwareEFIARM64 is 64-bit ARM UEFI (11, 19).
	FirmwareEFIARM64
	// FirmwareEFIRISCV64 is 64-bit RISC-V UEFI (27, 28).
	FirmwareEFIRISCV64
	// FirmwareUBootARM32 is 32-bit ARM U-Boot (21, 23).
	FirmwareUBootARM32
	// FirmwareUBootARM64 is 64-bit ARM U-Boot (22, 24).
	FirmwareUBootARM64
)

var firmwareNames = [...]string{
	FirmwareUnknown:    "unknown",
	FirmwareBIOS:       "bios",
	FirmwareEFI32:      "efi-ia32",
	FirmwareEFI64:      "efi-x86_64",
	FirmwareEFIARM32:   "efi-arm32",
	FirmwareEFIARM64:   "efi-arm64",
	FirmwareEFIRISCV64: "efi-riscv64",
	FirmwareUBootARM32: "uboot-arm32",
	FirmwareUBootARM64: "uboot-arm64",
}

// String returns a short stable name ("bios", "efi-x86_64", ...) used in
// logs; out-of-range values print as "firmware(N)".
func (f Firmware) String() string {
	if f >= 0 && int(f) < len(firmwareNames) {
		return firmwareNames[f]
	}
	return "firmware(" + strconv.Itoa(int(f)) + ")"
}

// IsEFI reports whether the firmware is UEFI of any CPU.
func (f Firmware) IsEFI() bool {
	switch f {
	case FirmwareEFI32, FirmwareEFI64, FirmwareEFIARM32, FirmwareEFIARM64, FirmwareEFIRISCV64:
		return true
	}
	return false
}

// Arch describes one option 93 code.
type Arch struct {
	Code     iana.Arch
	Firmware Firmware
	// HTTP reports a code that means "boot from HTTP" (RFC 4578 as updated
	// by the IANA registry: 15-20, 23, 24, 26, 28, 30).
	HTTP bool
}

// ArchInfo returns what is known about an architecture code. Codes nobody
// assigned give FirmwareUnknown; they are never rejected, so the policy can
// still decide (and logs show the number).
func ArchInfo(a iana.Arch) Arch {
	info := Arch{Code: a}
	switch a {
	case iana.INTEL_X86PC:
		info.Firmware = FirmwareBIOS
	case iana.INTEL_X86PC_HTTP:
		info.Firmware, info.HTTP = FirmwareBIOS, true
	case iana.EFI_IA32:
		info.Firmware = FirmwareEFI32
	case iana.EFI_X86_HTTP:
		info.Firmware, info.HTTP = FirmwareEFI32, true
	case iana.EFI_X86_64, iana.EFI_BC:
		info.Firmware = FirmwareEFI64
	case iana.EFI_X86_64_HTTP, iana.EFI_BC_HTTP:
		info.Firmware, info.HTTP = FirmwareEFI64, true
	case iana.EFI_ARM32:
		info.Firmware = FirmwareEFIARM32
	case iana.EFI_ARM32_HTTP:
		info.Firmware, info.HTTP = FirmwareEFIARM32, true
	case iana.EFI_ARM64:
		info.Firmware = FirmwareEFIARM64
	case iana.EFI_ARM64_HTTP:
		info.Firmware, info.HTTP = FirmwareEFIARM64, true
	case iana.EFI_RISCV64:
		info.Firmware = FirmwareEFIRISCV64
	case iana.EFI_RISCV64_HTTP:
		info.Firmware, info.HTTP = FirmwareEFIRISCV64, true
	case iana.UBOOT_ARM32:
		info.Firmware = FirmwareUBootARM32
	case iana.UBOOT_ARM32_HTTP:
		info.Firmware, info.HTTP = FirmwareUBootARM32, true
	case iana.UBOOT_ARM64:
		info.Firmware = FirmwareUBootARM64
	case iana.UBOOT_ARM64_HTTP:
		info.Firmware, info.HTTP = FirmwareUBootARM64, true
	case iana.EFI_RISCV32_HTTP, iana.EFI_RISCV128_HTTP:
		info.HTTP = true
	}
	return info
}
