// Package boot times real network boots: from QEMU's start to the test
// guest's marker line, for the boot paths of e2e scenarios 1 (SeaBIOS with
// QEMU's iPXE ROM, HTTP), 2 (OVMF's own PXE, snponly.efi over TFTP, then
// HTTP) and 4 (OVMF HTTP boot), once with nixboot's netboot.Server serving
// and once with the reference servers, dnsmasq (DHCP and TFTP) and nginx
// (HTTP), serving the same kernel, initrd and snponly.efi, in the same run.
//
//	sudo go test -run '^$' -bench . -benchtime 3x ./bench/boot/
//
// Each iteration boots one VM per server, alternating which goes first, each
// in a fresh network namespace (vmtest.Net) with router advertisements,
// under TCG unless KVM is real. The benchmark reports the median seconds per
// server ("nixboot-s", "ref-s") and their ratio ("ratio", nixboot over
// reference; the goal is at most 1.0), the same ratio for the network phase
// alone, from VM start until iPXE has loaded the initrd ("net-ratio"; the
// rest is the kernel booting, identical work on both sides), and prints a
// table. It needs root,
// QEMU, OVMF, iPXE, dnsmasq, nginx and a kernel (scripts/install-deps.sh);
// without them it skips.
//
// What differs between the sides is what the servers are: nixboot answers
// DHCP from its inventory, hands iPXE its chain script (boot.ipxe, then
// boot.ipxe?mac=...), and serves the kernel and initrd under the machine's
// own URL; dnsmasq points iPXE at a static boot.ipxe on nginx, and sends
// iPXE's no-pxedhcp option, without which iPXE waits about 3 s for a
// ProxyDHCP offer after dnsmasq's (see vmtest.ServeReference). The boot
// files, kernel command line, NIC and firmware are the same. On a loaded
// machine (two shared cores here) single boots vary by seconds; use more
// iterations and compare the medians of one run.
package boot
