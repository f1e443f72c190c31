// Package e2e holds nixboot's end-to-end tests: real firmware (SeaBIOS with
// QEMU's iPXE ROM, OVMF's own PXE and HTTP boot, pxelinux, iPXE loaders
// from Debian) boots a real Debian kernel from nixboot's servers, running in
// a private network namespace, into an initrd built by nixboot's initrd
// package whose /init reports the command line and MAC it got.
//
// The package has no code of its own, only tests; internal/vmtest is the
// harness. Each scenario of issue 6 is one test. They need root, QEMU,
// OVMF, iPXE, pxelinux, dnsmasq and a kernel (see scripts/install-deps.sh):
// outside CI they skip without them, in CI (NIXBOOT_REQUIRE_ALL=1) they
// fail. VMs run one after another (there are two cores and TCG), except in
// scenario 7, whose point is machines booting at once.
//
// nixboot runs as netboot.Server inside the test network (vmtest.Nixboot),
// with an inventory that gives each machine its own token on the kernel
// command line; the guest reports the token and its MAC, and each test
// checks them. Scenario 3 serves PXELINUX configurations rendered from the
// same inventory, with kernel and initrd over TFTP (vmtest.PXELinuxSource),
// and once more through netboot.Server.PXELinux with lpxelinux.0 and HTTP;
// scenario 5 runs dnsmasq in a
// second namespace as the network's DHCP server (vmtest.Net.AddPeer).
//
// Non-goals: performance (bench/boot measures boot times against dnsmasq
// and nginx), and any traffic outside the namespaces the tests create.
package e2e
