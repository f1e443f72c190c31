// Package pxe answers DHCP for network boot: it classifies clients
// (firmware architecture, iPXE, UEFI HTTP boot), decides what each boots,
// builds full-DHCP and proxyDHCP replies, serves them, and renders pxelinux
// configuration with its file lookup order.
//
// The work is split in steps that callers can use, or replace, one by one:
//
//  1. Classify: [ClientFromRequest] turns a *dhcpv4.DHCPv4 into a [Client]
//     (options 93, 60, 77, 175, 94, 97, giaddr). Pure and fuzzed; unknown
//     architecture codes keep their number.
//  2. Decide: a [Policy] (one method, with the [PolicyFunc] adapter) maps a
//     Client to an [Answer]. [Loaders] is the usual policy: a first-stage
//     iPXE loader per firmware, the script URL for iPXE (so it never loads
//     the loader again), an HTTP URL with "HTTPClient" for UEFI HTTP boot.
//  3. Reply: dhcpv4.Modifier factories ([WithAnswer], [WithBootFile],
//     [WithPXEOptions], [WithNextServer], [WithNetwork], ...) add boot and
//     network information to a reply, and [Marshal] keeps it within the
//     client's maximum message size. [Reply6] does the same for DHCPv6
//     (option 59 chosen by option 61).
//  4. Serve: [Server] runs full DHCP or proxyDHCP (plus the PXE boot server
//     on port 4011) on one interface, with its own exclusive socket
//     ([ListenPacket]), bounded concurrency, MAC allow and deny lists and
//     crash-safe lease storage. [Server6] is its DHCPv6 counterpart for
//     UEFI PXE, UEFI HTTP boot and iPXE over IPv6 ([ListenPacket6]): it
//     gives addresses from a prefix, derived from each client's DUID and
//     IAID so they survive a restart without a lease file, and option 59
//     from the same Policy.
//
// [RenderPXELinux] and [PXELinuxPaths] cover PXELINUX: its configuration
// file and the names it looks up (UUID, 01-MAC, hex IP shortened one digit
// at a time, "default"); the netboot package serves them as TFTP files.
//
// # How it fits
//
// pxe imports no other nixboot package. [github.com/nixboot/nixboot/netboot]
// runs a Server next to its TFTP and HTTP servers and gives it a Policy
// that points iPXE at scripts rendered by [github.com/nixboot/nixboot/ipxe].
//
// # Choices
//
// Whether UEFI firmware in proxy mode is answered directly on port 67
// (option 54, siaddr and the boot file) or steered to the boot server on
// port 4011 is [Server.UEFI]; see [UEFIDirect] and [UEFISteer]. iPXE sends
// its port-4011 REQUEST unicast with xid 0, so the boot server never pairs
// requests by xid.
//
// Option 97's UUID is kept in wire order; see [UUID] for the SMBIOS byte
// order question. Option 77 is accepted both raw (as iPXE sends it) and in
// RFC 3004 encoding; see [UserClass].
//
// # Non-goals
//
// DHCP failover, DDNS, option overloading (option 52), multiple subnets per
// Server (run one Server per interface), sharing a port with another DHCP
// server (sockets are exclusive on purpose), and serving files.
//
// # Specifications
//
//   - RFC 2131 (DHCP): section 4.1 (reply destinations), 4.3 (server
//     behaviour), 3.4 (INFORM).
//   - RFC 2132 (options), section 9.10 (maximum message size, 576 minimum).
//   - RFC 4578 (PXE options 93, 94, 97), RFC 3004 (user class),
//     RFC 3396 (long options), RFC 5970 (DHCPv6 options 59, 61).
//   - PXE 2.1 specification, sections 2.2.2 (proxyDHCP and port 4011) and
//     2.2.6 (option 43 sub-options).
//   - UEFI 2.5+ section 24.7 (HTTP boot, "HTTPClient").
//   - PXELINUX documentation (syslinux wiki), "Configuration filename".
package pxe
