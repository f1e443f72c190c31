package vmtest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// raSource is the bridge's link-local address RAs come from.
const raSource = "fe80::1"

// raInterval is how often an RA goes out. iPXE asks with a router
// solicitation when it opens the NIC; answering those would need a receive
// loop, so periodic RAs stand in, often enough that iPXE waits at most this.
const raInterval = 300 * time.Millisecond

// RouterAdvertisement renders an ICMPv6 router advertisement (RFC 4861
// section 4.2) from a default router (lifetime 30 minutes), with no
// managed/other flags, a source link-layer address option and IPv6Prefix as
// on-link but not for autoconfiguration (L set, A clear). It is just enough
// for iPXE to finish IPv6 autoconfiguration at once instead of waiting
// about 15 s. The router matters to OVMF's PXEv6: after DHCPv6 it waits up
// to 10 s for a default route (PxeBcCheckRouteTable in EDK2) before it
// fetches the boot file, and there is none on a link without a router. The
// checksum is left 0: the kernel fills it in for raw ICMPv6 sockets.
func RouterAdvertisement(src net.HardwareAddr) []byte {
	b := []byte{
		134, 0, 0, 0, // type, code, checksum
		64,         // cur hop limit
		0,          // flags: neither M nor O, so no DHCPv6
		0x07, 0x08, // router lifetime 1800 s
		0, 0, 0, 0, // reachable time
		0, 0, 0, 0, // retrans timer
	}
	if len(src) == 6 {
		b = append(b, 1, 1) // option 1 (source link-layer address), length 1 (8 bytes)
		b = append(b, src...)
	}
	b = append(b,
		3, 4, // option 3 (prefix information), length 4 (32 bytes)
		byte(IPv6Prefix.Bits()),
		0x80,             // flags: on-link, not autonomous
		0, 0, 0x0e, 0x10, // valid lifetime 3600 s
		0, 0, 0x0e, 0x10, // preferred lifetime 3600 s
		0, 0, 0, 0, // reserved
	)
	a := IPv6Prefix.Addr().As16()
	return append(b, a[:]...)
}

// startRA sends router advertisements on the bridge until the test ends.
func (n *Net) startRA() {
	n.t.Helper()
	var fd int
	err := n.Do(func() error {
		ifi, err := net.InterfaceByName(n.Bridge)
		if err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
		if err != nil {
			return fmt.Errorf("raw ICMPv6 socket: %w", err)
		}
		for _, o := range []struct{ opt, v int }{
			{unix.IPV6_MULTICAST_HOPS, 255}, // RFC 4861: receivers drop RAs with any other hop limit
			{unix.IPV6_UNICAST_HOPS, 255},
			{unix.IPV6_MULTICAST_IF, ifi.Index},
			{unix.IPV6_MULTICAST_LOOP, 0},
		} {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, o.opt, o.v); err != nil {
				unix.Close(fd)
				return fmt.Errorf("setsockopt %d: %w", o.opt, err)
			}
		}
		src := netip.MustParseAddr(raSource).As16()
		if err := unix.Bind(fd, &unix.SockaddrInet6{Addr: src, ZoneId: uint32(ifi.Index)}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind %s%%%s: %w", raSource, n.Bridge, err)
		}
		return nil
	})
	if err != nil {
		n.t.Fatalf("vmtest: router advertisements in %s: %v", n.Name, err)
	}
	ifi := 0
	_ = n.Do(func() error {
		i, err := net.InterfaceByName(n.Bridge)
		if err == nil {
			ifi = i.Index
		}
		return err
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		msg := RouterAdvertisement(n.MAC)
		dst := &unix.SockaddrInet6{Addr: netip.MustParseAddr("ff02::1").As16(), ZoneId: uint32(ifi)}
		tick := time.NewTicker(raInterval)
		defer tick.Stop()
		for {
			// Errors (no carrier before the first VM starts) are expected and
			// harmless: the next tick tries again.
			_ = unix.Sendto(fd, msg, 0, dst)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	n.t.Cleanup(func() {
		cancel()
		wg.Wait()
		unix.Close(fd)
	})
}
