// Package nixboot is the root of a Go library for booting machines over the
// network, NixOS first. The root package holds no code; it documents how the
// packages below it fit together.
//
// Each package is usable on its own and none of the leaf packages imports
// another; callers (and the netboot package) wire them together:
//
//   - [github.com/nixboot/nixboot/pxe] recognises network-boot clients in DHCP
//     requests (firmware architecture, iPXE, UEFI HTTP boot), decides what each
//     one boots, builds the DHCP replies (full DHCP and proxyDHCP) and serves
//     them, and serves DHCPv6 for firmware booting over IPv6; it also renders pxelinux configuration and computes the file names
//     PXELINUX looks up.
//   - [github.com/nixboot/nixboot/ipxe] models iPXE scripts, renders them so
//     that no value can inject a command, and parses the subset that NixOS and
//     similar builders emit (netboot.ipxe) into a boot spec.
//   - [github.com/nixboot/nixboot/initrd] assembles cpio (newc) initramfs images
//     the way the Linux kernel unpacks them: from directory trees, single files,
//     manifests and Nix store closures, compressed segment by segment,
//     reproducibly and in bounded memory.
//   - [github.com/nixboot/nixboot/disk] checks a local disk against a declared
//     partition layout, plans the change and applies it without losing data.
//   - [github.com/nixboot/nixboot/netboot] is the serving layer: TFTP and HTTP
//     handlers, the machine inventory, and a Server that runs DHCP, TFTP and
//     HTTP under one lifecycle. It also serves NixOS system generations as
//     iPXE and PXELINUX menus (newest first) and their closures as a signed
//     Nix binary cache, and holds the client that installs a closure from it.
//
// The programs under examples/ show full servers and command-line tools built
// only from the exported API.
//
// A typical boot served by nixboot: the firmware broadcasts a DHCP DISCOVER;
// pxe classifies it (say, x86-64 UEFI without iPXE) and offers the iPXE loader
// over TFTP; iPXE comes back with its own user class and is handed the URL of
// a per-machine script, which netboot renders with ipxe from the inventory;
// the script loads a kernel and an initrd that initrd assembled, and on first
// boot a program inside that initrd (examples/netinstall) uses disk to lay out
// the local disk and fetches the generation's Nix closure from netboot's
// binary cache onto it; later boots find both in place and change nothing.
package nixboot
