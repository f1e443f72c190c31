package vmtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/nixboot/nixboot/netboot"
	"github.com/nixboot/nixboot/pxe"
)

// NixbootRole is the role name under which a test binary runs RunNixboot;
// register it in TestMain:
//
//	vmtest.Main(m, map[string]vmtest.Role{vmtest.NixbootRole: vmtest.RunNixboot})
const NixbootRole = "nixboot"

// Nixboot is what nixboot's netboot.Server serves in a Net, run by
// Net.Nixboot as a role inside the namespace (so that every socket it
// opens, pin/tftp's per-transfer ones included, is on the test network).
type Nixboot struct {
	// Inventory is the JSON inventory (profiles, machines, allow-list).
	Inventory netboot.Config
	// Files are host files served over TFTP and HTTP by name (loaders).
	Files netboot.HostFiles
	// DHCP is the mode; the zero value is off.
	DHCP netboot.DHCPMode
	// UEFI chooses how proxyDHCP answers UEFI PXE firmware.
	UEFI pxe.UEFIProxy
	// Loaders is the DHCP boot policy; ScriptURL and HTTPBase come from the
	// server's HTTP URL when empty.
	Loaders pxe.Loaders
	// PXELinuxTFTP serves, over TFTP, pxelinux.cfg/01-<mac> rendered from
	// the inventory's decision for that MAC (a menu, see PXELinuxConfig),
	// and the machine's kernel and initrds as nixboot/<mac>/kernel and
	// nixboot/<mac>/initrd<i> (see PXELinuxSource).
	PXELinuxTFTP bool
	// PXELinux turns on netboot.Server.PXELinux: the library's own
	// per-machine configurations over TFTP, kernels and initrds over HTTP
	// (for lpxelinux.0).
	PXELinux bool
	// DHCPv6 also serves IPv6 on the bridge: the address IPv6Server
	// (IPv6Prefix), DHCPv6 giving addresses from IPv6Prefix and the
	// Loaders' loader as tftp://[IPv6Server]/<loader> (or an HTTP URL on
	// IPv6Server for UEFI HTTP boot), TFTP on [IPv6Server]:69 and HTTP on
	// [IPv6Server]:80.
	DHCPv6 bool

	// Set by Net.Nixboot.
	Bridge string
	IP     string
	Prefix int
}

// The IPv6 network of a Nixboot with DHCPv6: a unique local prefix.
var (
	IPv6Prefix = netip.MustParsePrefix("fd00:6e62::/64")
	IPv6Server = netip.MustParseAddr("fd00:6e62::1")
)

// PXELinuxMenuTitle is the MENU TITLE of pxelinux configurations the
// nixboot role renders; the machine's MAC follows it.
const PXELinuxMenuTitle = "nixboot pxelinux menu for"

// Nixboot starts nixboot's netboot.Server in the namespace, on the bridge
// address (HTTP port 80, TFTP port 69, DHCP on the bridge if nb.DHCP is
// not off), and waits until it serves. It is stopped (SIGTERM) at test
// end; an error it returns fails the test. The test binary's TestMain must
// register NixbootRole.
func (n *Net) Nixboot(nb Nixboot) *Process {
	n.t.Helper()
	nb.Bridge, nb.IP, nb.Prefix = n.Bridge, n.IP().String(), n.Addr.Bits()
	cfg, err := json.Marshal(nb)
	if err != nil {
		n.t.Fatalf("vmtest: nixboot config: %v", err)
	}
	return n.StartRole(NixbootRole, cfg)
}

// RunNixboot is the nixboot role (see Net.Nixboot).
func RunNixboot(ctx context.Context, config []byte, ready func()) error {
	var nb Nixboot
	if err := json.Unmarshal(config, &nb); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ip, err := netip.ParseAddr(nb.IP)
	if err != nil {
		return err
	}
	inv, err := nb.Inventory.Compile()
	if err != nil {
		return err
	}
	base := "http://" + ip.String()
	s := &netboot.Server{
		Inventory: inv,
		HTTPURL:   base,
		DHCP:      nb.DHCP,
		UEFI:      nb.UEFI,
		Loaders:   nb.Loaders,
		PXELinux:  nb.PXELinux,
		ServerIP:  ip.AsSlice(),
		Logger:    log,
	}
	var files []netboot.Source
	if nb.PXELinuxTFTP {
		files = append(files, PXELinuxSource(inv))
	}
	if len(nb.Files) > 0 {
		files = append(files, nb.Files)
	}
	s.Files = netboot.Chain(files...)
	if s.HTTPListener, err = net.Listen("tcp4", net.JoinHostPort(ip.String(), "80")); err != nil {
		return err
	}
	if s.TFTPConn, err = net.ListenPacket("udp4", net.JoinHostPort(ip.String(), "69")); err != nil {
		s.HTTPListener.Close()
		return err
	}
	if nb.DHCP != netboot.DHCPOff {
		s.DHCPInterface = nb.Bridge
		prefix := netip.PrefixFrom(ip, nb.Prefix).Masked()
		host := func(i int) net.IP {
			a := prefix.Addr().As4()
			a[3] += byte(i)
			return net.IP(a[:])
		}
		s.DHCPNetwork = &pxe.Network{
			Subnet:     net.IPNet{IP: prefix.Addr().AsSlice(), Mask: net.CIDRMask(prefix.Bits(), 32)},
			RangeStart: host(100),
			RangeEnd:   host(199),
		}
		// Opened here rather than by Serve, so that ready means serving.
		c, err := pxe.ListenPacket(nb.Bridge, 67)
		if err != nil {
			s.HTTPListener.Close()
			s.TFTPConn.Close()
			return err
		}
		s.DHCPConn = c
		if nb.DHCP == netboot.DHCPProxy {
			bc, err := pxe.ListenPacket(nb.Bridge, 4011)
			if err != nil {
				s.HTTPListener.Close()
				s.TFTPConn.Close()
				s.DHCPConn.Close()
				return err
			}
			s.DHCPBootConn = bc
		}
	}
	if nb.DHCPv6 {
		if err := dhcpv6Parts(nb, s); err != nil {
			for _, c := range []io.Closer{s.HTTPListener, s.TFTPConn, s.DHCPConn, s.DHCPBootConn} {
				if c != nil {
					c.Close()
				}
			}
			return err
		}
	}
	ready()
	return s.Serve(ctx)
}

// dhcpv6Parts sets up Nixboot.DHCPv6 (see there) in s: the bridge's IPv6
// address, DHCPv6 on the bridge with addresses from IPv6Prefix, and a TFTP
// socket on [IPv6Server]:69.
func dhcpv6Parts(nb Nixboot, s *netboot.Server) error {
	out, err := exec.Command("ip", "-6", "addr", "add", netip.PrefixFrom(IPv6Server, IPv6Prefix.Bits()).String(),
		"dev", nb.Bridge, "nodad").CombinedOutput()
	if err != nil {
		return fmt.Errorf("vmtest: IPv6 address on %s: %w: %s", nb.Bridge, err, out)
	}
	s.DHCPv6, s.DHCPv6Prefix, s.ServerIP6, s.DHCPInterface = true, IPv6Prefix, IPv6Server.AsSlice(), nb.Bridge
	// Opened here rather than by Serve, so that ready means serving.
	if s.DHCPv6Conn, err = pxe.ListenPacket6(nb.Bridge); err != nil {
		return err
	}
	if s.TFTPConn6, err = net.ListenPacket("udp6", net.JoinHostPort(IPv6Server.String(), "69")); err != nil {
		s.DHCPv6Conn.Close()
		return err
	}
	if s.HTTPListener6, err = net.Listen("tcp6", net.JoinHostPort(IPv6Server.String(), "80")); err != nil {
		s.DHCPv6Conn.Close()
		s.TFTPConn6.Close()
		return err
	}
	s.HTTPURL6 = "http://[" + IPv6Server.String() + "]"
	return nil
}

// PXELinuxSource serves what PXELINUX asks for after pxelinux.0 and its
// modules: "pxelinux.cfg/01-<mac>", a menu rendered with
// pxe.RenderPXELinux from inv's decision for that MAC, and the kernel and
// initrds it names, "nixboot/<mac>/kernel" and "nixboot/<mac>/initrd<i>"
// (MACs with dashes: PXELINUX reads "::" in names as host::path). Other
// names, and machines the inventory does not serve, do not exist.
func PXELinuxSource(inv netboot.Inventory) netboot.Source {
	return netboot.SourceFunc(func(ctx context.Context, req *netboot.Request) (*netboot.File, error) {
		notExist := fmt.Errorf("%s: %w", req.Name, fs.ErrNotExist)
		var macStr, what string // what is "config", "kernel" or "initrd<i>"
		switch {
		case strings.HasPrefix(req.Name, "pxelinux.cfg/01-"):
			macStr, what = strings.TrimPrefix(req.Name, "pxelinux.cfg/01-"), "config"
		case strings.HasPrefix(req.Name, "nixboot/"):
			var ok bool
			macStr, what, ok = strings.Cut(strings.TrimPrefix(req.Name, "nixboot/"), "/")
			if !ok || what == "config" {
				return nil, notExist
			}
		default:
			return nil, notExist
		}
		mac, err := net.ParseMAC(strings.ReplaceAll(macStr, "-", ":"))
		if err != nil || len(mac) != 6 {
			return nil, notExist
		}
		b, err := inv.Boot(ctx, &netboot.Machine{MAC: mac, Arch: "i386", IP: req.Remote.Addr()})
		if errors.Is(err, netboot.ErrUnknownMachine) {
			return nil, fmt.Errorf("%w: %w", notExist, err)
		}
		if err != nil {
			return nil, err
		}
		dir := "nixboot/" + strings.ReplaceAll(mac.String(), ":", "-") + "/"
		switch {
		case what == "config":
			c, err := PXELinuxConfig(mac, b, dir)
			if err != nil {
				return nil, err
			}
			return netboot.BytesFile(c, time.Time{}), nil
		case what == "kernel":
			return netboot.OpenImage(b.Kernel)
		case strings.HasPrefix(what, "initrd"):
			i, err := strconv.Atoi(strings.TrimPrefix(what, "initrd"))
			if err != nil || i < 0 || i >= len(b.Initrds) {
				return nil, notExist
			}
			return netboot.OpenImage(b.Initrds[i])
		}
		return nil, notExist
	})
}

// PXELinuxConfig renders machine mac's pxelinux.cfg file for decision b:
// menu.c32 with a title naming the MAC, the profile as the default entry
// (booted after one second) and a second entry with the same kernel and
// "nbv.menu=verbose" added. Images are named under dir.
func PXELinuxConfig(mac net.HardwareAddr, b *netboot.Boot, dir string) ([]byte, error) {
	args, err := b.Args.Render()
	if err != nil {
		return nil, err
	}
	var initrds []string
	for i, img := range b.Initrds {
		if img.Path == "" {
			return nil, fmt.Errorf("vmtest: profile %q: initrd %d is not a local file", b.Profile, i)
		}
		initrds = append(initrds, dir+"initrd"+strconv.Itoa(i))
	}
	if b.Kernel.Path == "" {
		return nil, fmt.Errorf("vmtest: profile %q: kernel is not a local file", b.Profile)
	}
	return pxe.RenderPXELinux(pxe.PXELinuxConfig{
		UI:        "menu.c32",
		Default:   b.Profile,
		Timeout:   time.Second,
		MenuTitle: PXELinuxMenuTitle + " " + mac.String(),
		Labels: []pxe.PXELinuxLabel{
			{Name: b.Profile, MenuLabel: "nixboot profile " + b.Profile, Kernel: dir + "kernel", Initrd: initrds, Append: args},
			{Name: b.Profile + "-verbose", MenuLabel: "nixboot profile " + b.Profile + " (verbose)", Kernel: dir + "kernel", Initrd: initrds, Append: args + " nbv.menu=verbose"},
		},
	})
}
