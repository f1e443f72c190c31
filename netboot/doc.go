// Package netboot is nixboot's serving layer: it serves loaders, kernels,
// initrds and iPXE scripts over TFTP and HTTP, decides per machine what to
// hand out, and runs DHCP, TFTP and HTTP under one lifecycle.
//
// # Pieces
//
//   - [Source] opens files for a [Request]; [FS] serves an fs.FS (use
//     (*os.Root).FS for a directory), [Files] serves generated files by name,
//     [Chain] combines them. Every client-supplied name goes through
//     [CleanName] first: backslashes and leading slashes are accepted, NUL,
//     control characters and any ".." segment are refused.
//   - [TFTPServer] is a read-only TFTP server (RFC 1350, RFC 2347 options,
//     RFC 2348 blksize, RFC 2349 tsize and timeout). It checks and rewrites every
//     request so that block size negotiation is deterministic, caps
//     concurrent transfers, starts no second transfer for a request the
//     client sent again before it heard back, uses short timeouts suited to
//     firmware and never sends internal error text. On Linux it sends octet transfers itself,
//     over a blocking socket per transfer for up to GOMAXPROCS transfers at
//     once (as fast per transfer as tftpd-hpa) and through Go's netpoller
//     beyond that: lock-step, or in RFC 7440 windows of up to 64 blocks and
//     64 KiB when the client asks for windowsize (OVMF asks for 4);
//     github.com/pin/tftp/v3 dispatches requests and sends netascii
//     transfers, and everything on other systems (lock-step only).
//   - [HTTPHandler] serves the chain pattern (a generic /boot.ipxe that
//     chains to /boot.ipxe?mac=${mac}&uuid=${uuid}&arch=${buildarch}), the
//     per-machine boot script, kernel and initrds under the machine's own
//     URL (with Range, If-Modified-Since and ETag through
//     http.ServeContent), a progress beacon, and other files from a Source.
//     Images an inventory names by [Image] Upstream are fetched by the
//     server and streamed to the machine, ranges and validators passed on.
//   - [Inventory] decides what a [Machine] boots ([Boot]). [StaticInventory]
//     compiles a JSON [Config] (profiles, machines by MAC or UUID, groups
//     with selectors, a default, an allow-list switch); [FileInventory]
//     reloads it when the file changes and keeps the old one when the new
//     one is invalid; a profile can be a NixOS netboot directory
//     ([ReadNixOSNetboot]); a profile's overlay files are rendered per
//     machine into a gzip newc segment (built with initrd) and appended to its
//     last initrd as it is served, with a known length; [PixiecoreAPI] asks
//     a pixiecore API-mode server, with a timeout and a cache, and like
//     pixiecore streams the files it names to machines through this server
//     ([Image] Upstream). [InventoryFunc] plugs in anything else.
//   - [PXELinux] serves per-machine PXELINUX configurations from an
//     Inventory under the names PXELINUX tries, in its lookup order
//     (UUID, 01-MAC, hex address, default; see pxe.PXELinuxPaths), for
//     lpxelinux.0 booting kernels and initrds over HTTP;
//     [Server.PXELinux] serves them over TFTP.
//   - [Tracker] keeps each machine's boot phase (DHCP, loader, script,
//     kernel, initrd, done) and serves it as JSON.
//   - NixOS installs over the network: [SystemProfile] reads a profile's
//     system generations; [GenerationBoot] serves them as iPXE and
//     PXELINUX menus (newest first and default) with each generation's
//     kernel and initrd; [BinaryCache] serves their closures as a Nix
//     binary cache (narinfo signed with ed25519, NARs streamed) that the
//     real Nix client and [Substituter] fetch from. Substituter checks
//     every signature, hash and size before a store path becomes visible;
//     examples/netinstall runs it from inside an initrd.
//   - [Server] runs it all under one lifecycle: HTTP, TFTP (IPv4 and, with
//     TFTPConn6, IPv6), DHCP in proxy or full mode, and DHCPv6 (pxe.Server6)
//     with the same boot decisions, boot state and metrics.
//
// # Neighbours
//
// Scripts are rendered with [github.com/nixboot/nixboot/ipxe], which also
// parses NixOS's netboot.ipxe. DHCP comes from [github.com/nixboot/nixboot/pxe];
// initrd segments from [github.com/nixboot/nixboot/initrd]. Those packages
// never import this one.
//
// # Non-goals
//
// TFTP writes, and HTTPS termination (put a TLS proxy in front, or hand
// iPXE https:// URLs it fetches itself).
package netboot
