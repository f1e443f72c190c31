package vmtest

import (
	"os"

	"golang.org/x/sys/unix"
)

// Accel returns the QEMU accelerator to use: "kvm" when /dev/kvm is usable
// and is a real hardware hypervisor, "tcg" otherwise. The kvm_pvm module is
// a software nested hypervisor: guests under it are more than 50 times
// slower than TCG and `-cpu host` fails, so its presence means TCG.
func Accel() string {
	if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil {
		return "tcg"
	}
	if unix.Access("/dev/kvm", unix.R_OK|unix.W_OK) != nil {
		return "tcg"
	}
	_, intel := os.Stat("/sys/module/kvm_intel")
	_, amd := os.Stat("/sys/module/kvm_amd")
	if intel != nil && amd != nil {
		return "tcg"
	}
	return "kvm"
}
