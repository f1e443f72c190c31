// Package vmtest boots real firmware and kernels under QEMU against servers
// running in a private network namespace, for nixboot's end-to-end tests
// (package e2e) and boot benchmarks (bench/boot).
//
// The pieces:
//   - Net: a network namespace with a bridge (STP off, forward delay 0, a
//     fixed MAC, 10.77.0.1/24 by default), tap devices for VMs, IPv6 router
//     advertisements so that iPXE does not wait 15 s for IPv6, and ways to
//     serve from inside it: Do (run Go code on a thread in the namespace, so
//     sockets opened there belong to it), Listen, ListenPacket, ListenDHCP,
//     Go (a server goroutine stopped at test end), Start (a program run
//     with `ip netns exec`, killed by PID at test end) and StartRole (the
//     test binary itself re-executed in the namespace to run a server, for
//     servers that open sockets after they start, such as TFTP; its
//     TestMain calls Main). AddPeer adds a second namespace joined to the
//     bridge by a veth pair, for a peer server (dnsmasq handing out
//     addresses next to a proxyDHCP server).
//   - Servers: Nixboot runs nixboot's netboot.Server as a role (inventory,
//     host files, DHCP off/proxy/full, loaders, and optionally PXELINUX
//     configurations rendered per machine from the inventory, with kernels
//     and initrds over TFTP: PXELinuxSource); Dnsmasq and Nginx run the
//     reference servers, and ServeReference serves a Payload for a BootPath
//     (BIOSiPXE, UEFIPXE, UEFIHTTP) from them the way an administrator
//     would without nixboot.
//   - Start and Machine: QEMU with SeaBIOS or OVMF (a private copy of the
//     variable store), NICs on taps with or without iPXE option ROMs, TCG
//     unless KVM is real (Accel), the serial console captured to memory and
//     a file, WaitLine and WaitBoot to wait for a line until a deadline, and
//     QEMU killed by PID when the test ends, with the console logged if it
//     failed.
//   - testinit (a subdirectory, package main): the guest's /init. BuildInit
//     compiles it statically; InitFiles adds the NIC driver modules; the
//     guest prints "NIXBOOT-E2E-OK token=... mac=... cmdline=..." (parsed by
//     ParseMarker) and powers off.
//
// Everything needs root, QEMU, iproute2 and a kernel (internal/testenv): tests
// skip without them outside CI and fail inside CI.
//
// Non-goals: a general VM library. Only what boot tests need, on Linux/amd64.
// All traffic stays inside namespaces this package creates and deletes.
package vmtest
