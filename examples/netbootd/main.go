// Command netbootd is a complete network boot server built on nixboot's
// netboot package: DHCP (proxy or full, only when asked) and DHCPv6, TFTP for
// the iPXE loaders, and HTTP for iPXE scripts, kernels and initrds, with the
// machines described in a JSON inventory file (see netboot.Config) or
// decided by a pixiecore API server.
//
//	go run ./examples/netbootd                      # safe demo on loopback, DHCP off
//	go run ./examples/netbootd -inventory inv.json  # your machines
//	go run ./examples/netbootd -api http://127.0.0.1:8081  # a pixiecore API server decides
//	go run ./examples/netbootd -interface br0 -dhcp proxy -http 0.0.0.0:8080 -tftp 0.0.0.0:69
//	go run ./examples/netbootd -interface br0 -dhcp full -range 10.0.0.100-10.0.0.200 \
//	  -dhcp6 fd00:77::/64 -http 10.0.0.1:8080 -tftp 10.0.0.1:69  # IPv4 and IPv6
//
// Run with no arguments it answers no DHCP and listens only on loopback
// (HTTP 127.0.0.1:8069, TFTP 127.0.0.1:6969), serving a built-in demo profile
// (the host's kernel and a tiny busybox initrd that prints a greeting and
// powers off) and printing how to boot a QEMU VM from it. iPXE loaders are
// served from /usr/lib/ipxe (Debian's ipxe package) unless -loaders says
// otherwise. State is at /state.json and metrics at /metrics.
//
// The network install flow (see examples/netinstall) serves a NixOS system
// profile's generations: an iPXE menu at /nixos/menu.ipxe (which iPXE
// clients are sent to) and a PXELINUX menu at pxelinux.cfg/default, each
// with the newest generation first and default; a Nix binary cache of their
// closures, signed with -cache-key; and the disk layout at /layout.json:
//
//	netbootd -interface br0 -dhcp full -range 10.0.0.100-10.0.0.200 \
//	  -http 10.0.0.1:8080 -tftp 10.0.0.1:69 -url http://10.0.0.1:8080 \
//	  -generations /nix/var/nix/profiles -cache-key /etc/nixboot/cache.sk \
//	  -layout /etc/nixboot/layout.json -bios-loader lpxelinux.0 -assets /srv/pxelinux \
//	  -install-args 'console=ttyS0'
//
// The generations' kernel-params, init= and the installer's nixboot.server,
// nixboot.cache and nixboot.key settings are on every entry's command line;
// the generation's initrd must run the installer. -assets names a directory
// holding lpxelinux.0, ldlinux.c32, menu.c32 and libutil.c32 (Debian's
// pxelinux and syslinux-common) for BIOS machines.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/nixboot/nixboot/initrd"
	"github.com/nixboot/nixboot/netboot"
	"github.com/nixboot/nixboot/pxe"
)

type options struct {
	inventory  string
	api        string
	apiFiles   string
	apiDirect  bool
	httpAddr   string
	adminAddr  string
	httpURL    string
	tftpAddr   string
	loaders    string
	assets     string
	iface      string
	dhcp       string
	serverIP   string
	dhcp6      string
	serverIP6  string
	subnet     string
	pool       string
	router     string
	dns        string
	leaseFile  string
	allow      string
	deny       string
	blksize    int
	verbose    bool
	demoKernel string
	pxelinux   bool
	install    installOptions
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		os.Exit(2) // the problem and the usage are printed
	}
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, log); err != nil {
		fmt.Fprintln(os.Stderr, "netbootd:", err)
		os.Exit(1)
	}
}

// parseFlags reads the command line; with no arguments the options are
// the safe loopback demo.
func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("netbootd", flag.ContinueOnError)
	fs.StringVar(&o.inventory, "inventory", "", "JSON inventory file (reloaded when it changes); empty serves the built-in demo profile")
	fs.StringVar(&o.api, "api", "", "pixiecore API-mode server URL to ask about every machine (GET URL/v1/boot/MAC), instead of -inventory; the kernel and initrds it names are streamed to machines through this server")
	fs.StringVar(&o.apiFiles, "api-files", "", "with -api: directory whose files the API may name with file:// URLs (default: none)")
	fs.BoolVar(&o.apiDirect, "api-direct", false, "with -api: machines fetch the API's http:// URLs themselves instead of through this server")
	fs.StringVar(&o.httpAddr, "http", "127.0.0.1:8069", "HTTP listen address; empty disables HTTP")
	fs.StringVar(&o.adminAddr, "admin", "", "listen address for "+netboot.StatePath+" and "+netboot.MetricsPath+" alone (say 127.0.0.1:9069), so the boot port does not serve them; empty serves them on -http")
	fs.StringVar(&o.httpURL, "url", "", "base URL machines reach the HTTP server at (default: from each request's Host, or the listen address)")
	fs.StringVar(&o.tftpAddr, "tftp", "127.0.0.1:6969", "TFTP listen address; empty disables TFTP")
	fs.StringVar(&o.loaders, "loaders", "/usr/lib/ipxe", "directory of iPXE loaders (undionly.kpxe, ipxe.efi, snponly.efi) served over TFTP and HTTP")
	fs.StringVar(&o.assets, "assets", "", "optional directory of further files served over TFTP and HTTP")
	fs.StringVar(&o.iface, "interface", "", "network interface to answer DHCP on; DHCP stays off without it")
	fs.StringVar(&o.dhcp, "dhcp", "", "DHCP mode with -interface: proxy (default) or full; off disables")
	fs.StringVar(&o.serverIP, "server-ip", "", "this server's IPv4 address on -interface (default: the interface's first)")
	fs.StringVar(&o.dhcp6, "dhcp6", "", "with -interface: also serve DHCPv6 (UEFI PXE and HTTP boot over IPv6), giving addresses from this prefix (say fd00:77::/64), or \"info\" for boot information only; loaders, scripts and kernels go over TFTP and HTTP on [-server-ip6] at -tftp's and -http's ports")
	fs.StringVar(&o.serverIP6, "server-ip6", "", "this server's IPv6 address on -interface for -dhcp6 (default: the interface's first that is not link-local)")
	fs.StringVar(&o.subnet, "subnet", "", "full DHCP: subnet in CIDR form (default: the interface's)")
	fs.StringVar(&o.pool, "range", "", "full DHCP: address pool FIRST-LAST")
	fs.StringVar(&o.router, "router", "", "full DHCP: default gateway")
	fs.StringVar(&o.dns, "dns", "", "full DHCP: comma-separated DNS servers")
	fs.StringVar(&o.leaseFile, "leases", "", "full DHCP: lease file (default: in memory)")
	fs.StringVar(&o.allow, "dhcp-allow", "", "comma-separated MACs: the only machines DHCP answers (in full mode, the only ones that get an address)")
	fs.StringVar(&o.deny, "dhcp-deny", "", "comma-separated MACs DHCP never answers (wins over -dhcp-allow)")
	fs.IntVar(&o.blksize, "blksize", 0, "TFTP block size cap (default 1468)")
	fs.StringVar(&o.demoKernel, "demo-kernel", "", "kernel for the demo profile (default: $NIXBOOT_KERNEL, /var/cache/nixboot/vmlinuz, newest /boot/vmlinuz-*)")
	fs.BoolVar(&o.verbose, "v", false, "log every request (debug level)")
	fs.BoolVar(&o.pxelinux, "pxelinux", false, "serve per-machine PXELINUX configurations (pxelinux.cfg/...) from the inventory over TFTP, for BIOS machines given PXELINUX by -bios-loader")
	o.install.register(fs)
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		err := fmt.Errorf("unexpected arguments %q", fs.Args())
		fmt.Fprintln(fs.Output(), err)
		fs.Usage()
		return options{}, err
	}
	return o, nil
}

func run(ctx context.Context, o options, log *slog.Logger) error {
	s := &netboot.Server{HTTPURL: o.httpURL, TFTPBlockSize: o.blksize, PXELinux: o.pxelinux, Logger: log}
	if o.pxelinux && o.install.generations != "" {
		// Both would answer pxelinux.cfg names, with different menus.
		return errors.New("-pxelinux and -generations both serve PXELINUX configurations: choose one")
	}

	// Inventory: the file, or the demo profile.
	var watch func(context.Context) error
	var summary []string
	if o.api != "" && o.inventory != "" {
		return errors.New("-api and -inventory both decide what machines boot: choose one")
	}
	if (o.apiFiles != "" || o.apiDirect) && o.api == "" {
		return errors.New("-api-files and -api-direct need -api")
	}
	if o.api != "" {
		u, err := url.Parse(o.api)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("-api %q is not an http:// or https:// URL", o.api)
		}
		// pixiecore's {{ URL }} in a cmdline needs the URL machines reach
		// this server at: -url, or -http when it names an address.
		serverURL := o.httpURL
		if host, _, err := net.SplitHostPort(o.httpAddr); serverURL == "" && err == nil {
			if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
				serverURL = "http://" + o.httpAddr
			}
		}
		s.Inventory = &netboot.PixiecoreAPI{BaseURL: o.api, ServerURL: serverURL, FileRoot: o.apiFiles, Direct: o.apiDirect, Logger: log}
		summary = append(summary, "inventory  pixiecore API "+o.api)
	} else if o.inventory != "" {
		fi := &netboot.FileInventory{Path: o.inventory, Logger: log}
		if err := fi.Load(); err != nil {
			return err
		}
		s.Inventory, watch = fi, fi.Watch
		summary = append(summary, "inventory  "+o.inventory+" (reloaded when it changes)")
	} else if o.install.generations != "" {
		// The install flow without an inventory file serves every
		// machine: the menus are the same for all.
		s.Inventory = netboot.InventoryFunc(func(context.Context, *netboot.Machine) (*netboot.Boot, error) {
			return &netboot.Boot{Profile: "generations"}, nil
		})
		summary = append(summary, "inventory  every machine (no -inventory)")
	} else {
		inv, desc, cleanup, err := demoInventory(ctx, o.demoKernel)
		if err != nil {
			return err
		}
		defer cleanup()
		s.Inventory = inv
		summary = append(summary, desc...)
	}

	// Files: the install flow's menus and images, loaders, then assets.
	var sources []netboot.Source
	var inst *install
	if o.install.generations != "" {
		base := o.httpURL
		if base == "" {
			if host, _, err := net.SplitHostPort(o.httpAddr); err == nil && host != "" && !net.ParseIP(host).IsUnspecified() {
				base = "http://" + o.httpAddr
			}
		}
		var err error
		if inst, err = newInstall(ctx, o.install, o.httpAddr, base, log); err != nil {
			return err
		}
		defer inst.cacheLn.Close()
		sources = append(sources, inst.files)
		summary = append(summary, inst.summary...)
		s.Loaders.ScriptURL = inst.menuURL
	}
	if o.install.biosLoader != "" {
		s.Loaders.BIOS = o.install.biosLoader
	}
	if o.loaders != "" {
		loaders, err := loaderFiles(o.loaders)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			log.Warn("no iPXE loaders: install Debian's ipxe package or pass -loaders", "dir", o.loaders)
		case err != nil:
			return err
		default:
			sources = append(sources, loaders)
			summary = append(summary, "loaders    "+o.loaders+" ("+strings.Join(sortedKeys(loaders), ", ")+")")
		}
	}
	if o.assets != "" {
		root, err := os.OpenRoot(o.assets)
		if err != nil {
			return err
		}
		defer root.Close()
		sources = append(sources, netboot.FS(root.FS()))
		summary = append(summary, "assets     "+o.assets)
	}
	s.Files = netboot.Chain(sources...)

	// Sockets. The Server closes them.
	if o.httpAddr != "" {
		ln, err := net.Listen("tcp", o.httpAddr)
		if err != nil {
			return err
		}
		s.HTTPListener = ln
	}
	if o.adminAddr != "" {
		ln, err := net.Listen("tcp", o.adminAddr)
		if err != nil {
			if s.HTTPListener != nil {
				s.HTTPListener.Close()
			}
			return err
		}
		s.AdminListener = ln
	}
	if o.tftpAddr != "" {
		pc, err := net.ListenPacket("udp4", o.tftpAddr)
		if err != nil {
			for _, l := range []net.Listener{s.HTTPListener, s.AdminListener} {
				if l != nil {
					l.Close()
				}
			}
			return err
		}
		s.TFTPConn = pc
	}
	if err := configureDHCP(s, o); err != nil {
		return err
	}
	if err := configureDHCPv6(s, o); err != nil {
		return err
	}
	if s.DHCPv6 && s.TFTPConn != nil {
		_, port, _ := net.SplitHostPort(o.tftpAddr)
		pc, err := net.ListenPacket("udp6", net.JoinHostPort(s.ServerIP6.String(), port))
		if err != nil {
			return fmt.Errorf("TFTP over IPv6 for -dhcp6: %w", err)
		}
		s.TFTPConn6 = pc
	}
	if s.DHCPv6 && s.HTTPListener != nil {
		_, port, _ := net.SplitHostPort(o.httpAddr)
		ln, err := net.Listen("tcp6", net.JoinHostPort(s.ServerIP6.String(), port))
		if err != nil {
			return fmt.Errorf("HTTP over IPv6 for -dhcp6: %w", err)
		}
		s.HTTPListener6 = ln
	}
	printSummary(s, o, summary)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watchDone := make(chan error, 1)
	if watch != nil {
		go func() { watchDone <- watch(ctx) }()
	} else {
		watchDone <- nil
	}
	cacheDone := make(chan error, 1)
	if inst != nil {
		go func() {
			err := inst.serve(ctx)
			if err != nil {
				cancel() // the cache failing stops the server too
			}
			cacheDone <- err
		}()
	} else {
		cacheDone <- nil
	}
	err := s.Serve(ctx)
	cancel()
	<-watchDone
	if cerr := <-cacheDone; err == nil {
		err = cerr
	}
	return err
}

func configureDHCP(s *netboot.Server, o options) error {
	mode := o.dhcp
	if o.iface == "" {
		if mode != "" && mode != "off" {
			return fmt.Errorf("-dhcp %s needs -interface: DHCP is only answered on a named interface", mode)
		}
		return nil
	}
	switch mode {
	case "", "proxy":
		s.DHCP = netboot.DHCPProxy
	case "full":
		s.DHCP = netboot.DHCPFull
	case "off":
		return nil
	default:
		return fmt.Errorf("-dhcp %q: want proxy, full or off", mode)
	}
	s.DHCPInterface = o.iface
	var err error
	if s.DHCPAllow, err = parseMACs("dhcp-allow", o.allow); err != nil {
		return err
	}
	if s.DHCPDeny, err = parseMACs("dhcp-deny", o.deny); err != nil {
		return err
	}
	ipnet, err := interfaceAddr(o.iface, func(ip net.IP) bool { return ip.To4() != nil })
	if err != nil {
		return err
	}
	switch {
	case o.serverIP != "":
		s.ServerIP = net.ParseIP(o.serverIP).To4()
		if s.ServerIP == nil {
			return fmt.Errorf("-server-ip %q is not an IPv4 address", o.serverIP)
		}
	case ipnet != nil:
		s.ServerIP = ipnet.IP.To4()
	default:
		return fmt.Errorf("interface %s has no IPv4 address: pass -server-ip", o.iface)
	}
	if s.DHCP != netboot.DHCPFull {
		return nil
	}
	n := &pxe.Network{}
	switch {
	case o.subnet != "":
		_, sn, err := net.ParseCIDR(o.subnet)
		if err != nil {
			return fmt.Errorf("-subnet: %w", err)
		}
		n.Subnet = *sn
	case ipnet != nil:
		n.Subnet = net.IPNet{IP: ipnet.IP.Mask(ipnet.Mask), Mask: ipnet.Mask}
	default:
		return errors.New("full DHCP needs -subnet")
	}
	if o.pool != "" {
		first, last, ok := strings.Cut(o.pool, "-")
		n.RangeStart, n.RangeEnd = net.ParseIP(first).To4(), net.ParseIP(last).To4()
		if !ok || n.RangeStart == nil || n.RangeEnd == nil {
			return fmt.Errorf("-range %q: want FIRST-LAST", o.pool)
		}
	}
	if o.router != "" {
		ip := net.ParseIP(o.router).To4()
		if ip == nil {
			return fmt.Errorf("-router %q is not an IPv4 address", o.router)
		}
		n.Router = []net.IP{ip}
	}
	for _, d := range strings.Split(o.dns, ",") {
		if d = strings.TrimSpace(d); d == "" {
			continue
		}
		ip := net.ParseIP(d).To4()
		if ip == nil {
			return fmt.Errorf("-dns: %q is not an IPv4 address", d)
		}
		n.DNS = append(n.DNS, ip)
	}
	s.DHCPNetwork, s.LeaseFile = n, o.leaseFile
	return nil
}

// configureDHCPv6 turns -dhcp6 and -server-ip6 into the Server's fields.
func configureDHCPv6(s *netboot.Server, o options) error {
	if o.dhcp6 == "" {
		if o.serverIP6 != "" {
			return errors.New("-server-ip6 needs -dhcp6")
		}
		return nil
	}
	if o.iface == "" {
		return errors.New("-dhcp6 needs -interface: DHCPv6 is only answered on a named interface")
	}
	if o.dhcp6 != "info" {
		p, err := netip.ParsePrefix(o.dhcp6)
		if err != nil || !p.Addr().Is6() || p.Addr().Is4In6() {
			return fmt.Errorf("-dhcp6 %q: want an IPv6 prefix such as fd00:77::/64, or info", o.dhcp6)
		}
		s.DHCPv6Prefix = p.Masked()
	}
	s.DHCPv6, s.DHCPInterface = true, o.iface
	// The lists apply to DHCPv6 too, also when DHCPv4 is off.
	var err error
	if s.DHCPAllow, err = parseMACs("dhcp-allow", o.allow); err != nil {
		return err
	}
	if s.DHCPDeny, err = parseMACs("dhcp-deny", o.deny); err != nil {
		return err
	}
	if o.serverIP6 != "" {
		ip := net.ParseIP(o.serverIP6)
		if ip == nil || ip.To4() != nil {
			return fmt.Errorf("-server-ip6 %q is not an IPv6 address", o.serverIP6)
		}
		s.ServerIP6 = ip
		return nil
	}
	ipnet, err := interfaceAddr(o.iface, func(ip net.IP) bool { return ip.To4() == nil && !ip.IsLinkLocalUnicast() })
	if err != nil {
		return err
	}
	if ipnet == nil {
		return fmt.Errorf("interface %s has no IPv6 address that is not link-local: pass -server-ip6", o.iface)
	}
	s.ServerIP6 = ipnet.IP
	return nil
}

// interfaceAddr is the first address of the interface named iface that
// want accepts, or nil.
func interfaceAddr(iface string, want func(net.IP) bool) (*net.IPNet, error) {
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, err
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && want(n.IP) {
			return n, nil
		}
	}
	return nil, nil
}

// parseMACs reads a comma-separated list of MAC addresses given to -flag.
func parseMACs(flag, list string) ([]net.HardwareAddr, error) {
	var out []net.HardwareAddr
	for _, f := range strings.Split(list, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		hw, err := net.ParseMAC(f)
		if err != nil || len(hw) != 6 {
			return nil, fmt.Errorf("-%s: %q is not a MAC address", flag, f)
		}
		out = append(out, hw)
	}
	return out, nil
}

// loaderFiles lists the loaders in dir. Debian links some of them out of
// the directory (ipxe.efi -> /boot/ipxe.efi), so they are served as
// operator-chosen host files rather than through os.Root, which would refuse
// those links.
func loaderFiles(dir string) (netboot.HostFiles, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	files := netboot.HostFiles{}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".efi") && !strings.HasSuffix(name, "pxe") && !strings.HasSuffix(name, ".lkrn") {
			continue
		}
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			files[name] = p
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no loaders: %w", dir, fs.ErrNotExist)
	}
	return files, nil
}

func sortedKeys(m netboot.HostFiles) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func printSummary(s *netboot.Server, o options, summary []string) {
	fmt.Println("netbootd: serving network boot")
	for _, l := range summary {
		fmt.Println("  " + l)
	}
	httpPort := ""
	if s.HTTPListener != nil {
		_, httpPort, _ = net.SplitHostPort(s.HTTPListener.Addr().String())
		if s.AdminListener == nil {
			fmt.Printf("  http       %s  (boot script /boot.ipxe, state %s, metrics %s)\n", s.HTTPListener.Addr(), netboot.StatePath, netboot.MetricsPath)
		} else {
			fmt.Printf("  http       %s  (boot script /boot.ipxe)\n", s.HTTPListener.Addr())
		}
	}
	if s.AdminListener != nil {
		fmt.Printf("  admin      %s  (state %s, metrics %s)\n", s.AdminListener.Addr(), netboot.StatePath, netboot.MetricsPath)
	}
	if s.TFTPConn != nil {
		fmt.Printf("  tftp       %s  (loaders, and boot.ipxe chaining to HTTP)\n", s.TFTPConn.LocalAddr())
	}
	if s.HTTPListener6 != nil {
		fmt.Printf("  http6      %s\n", s.HTTPListener6.Addr())
	}
	if s.TFTPConn6 != nil {
		fmt.Printf("  tftp6      %s\n", s.TFTPConn6.LocalAddr())
	}
	fmt.Printf("  dhcp       %s\n", s.DHCP)
	if s.DHCPv6 {
		prefix := "boot information only"
		if s.DHCPv6Prefix.IsValid() {
			prefix = "addresses from " + s.DHCPv6Prefix.String()
		}
		fmt.Printf("  dhcpv6     on %s as %s, %s\n", s.DHCPInterface, s.ServerIP6, prefix)
	}
	if s.DHCP == netboot.DHCPOff && !s.DHCPv6 && httpPort != "" {
		fmt.Println()
		fmt.Println("Boot a QEMU VM from it (QEMU's user network reaches the host's loopback as 10.0.2.2;")
		fmt.Println("its iPXE ROM fetches the script over HTTP):")
		fmt.Printf("  qemu-system-x86_64 -accel tcg -m 1024 -nographic -machine graphics=off \\\n")
		fmt.Printf("    -netdev user,id=n0,bootfile=http://10.0.2.2:%s/boot.ipxe -device virtio-net-pci,netdev=n0 -boot n\n", httpPort)
		fmt.Println("Look at it:")
		fmt.Printf("  curl http://127.0.0.1:%s/boot.ipxe\n", httpPort)
		fmt.Printf("  curl 'http://127.0.0.1:%s/boot.ipxe?mac=52:54:00:12:34:56'\n", httpPort)
		if s.AdminListener != nil {
			fmt.Printf("  curl http://%s%s\n", s.AdminListener.Addr(), netboot.StatePath)
		} else {
			fmt.Printf("  curl http://127.0.0.1:%s%s\n", httpPort, netboot.StatePath)
		}
		if s.TFTPConn != nil {
			_, tport, _ := net.SplitHostPort(s.TFTPConn.LocalAddr().String())
			fmt.Printf("  tftp 127.0.0.1 %s -m binary -c get undionly.kpxe\n", tport)
		}
		fmt.Println("On a real network, name an interface: -interface br0 (proxyDHCP beside your DHCP server).")
	}
}

// demoInventory builds the built-in demo profile: the host's kernel and a
// small busybox initrd, with the machine's name in a per-machine overlay.
func demoInventory(ctx context.Context, kernel string) (netboot.Inventory, []string, func(), error) {
	noop := func() {}
	if kernel == "" {
		kernel = findKernel()
	}
	if kernel == "" {
		return nil, nil, noop, errors.New("demo profile: no kernel found; pass -demo-kernel or -inventory")
	}
	dir, err := os.MkdirTemp("", "netbootd-demo-")
	if err != nil {
		return nil, nil, noop, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	initrdPath := filepath.Join(dir, "demo-initrd")
	if err := writeDemoInitrd(ctx, initrdPath); err != nil {
		cleanup()
		return nil, nil, noop, err
	}
	c := &netboot.Config{
		Profiles: map[string]netboot.ProfileConfig{
			"demo": {
				Kernel:  kernel,
				Initrds: []string{initrdPath},
				Cmdline: "console=tty0 console=ttyS0 panic=-1 quiet",
				Message: "nixboot demo: booting the host kernel with a busybox initrd",
				Overlay: map[string]string{"etc/nixboot-machine": "mac={{.MAC}} arch={{.Arch}}\n"},
			},
		},
		Default: "demo",
	}
	inv, err := c.Compile()
	if err != nil {
		cleanup()
		return nil, nil, noop, err
	}
	return inv, []string{"profile    demo: kernel " + kernel + ", initrd " + initrdPath + " (busybox; prints a greeting and powers off)"}, cleanup, nil
}

func findKernel() string {
	cands := []string{os.Getenv("NIXBOOT_KERNEL"), "/var/cache/nixboot/vmlinuz"}
	boot, _ := filepath.Glob("/boot/vmlinuz-*")
	sort.Sort(sort.Reverse(sort.StringSlice(boot)))
	for _, p := range append(cands, boot...) {
		if p == "" {
			continue
		}
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

const demoInit = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev 2>/dev/null
echo
echo "=== nixboot demo: booted over the network ==="
/bin/busybox cat /etc/nixboot-machine 2>/dev/null
echo "kernel: $(/bin/busybox uname -r)"
echo "cmdline: $(/bin/busybox cat /proc/cmdline)"
echo "=== powering off ==="
/bin/busybox sleep 1
/bin/busybox poweroff -f
`

func writeDemoInitrd(ctx context.Context, path string) error {
	entries := []initrd.Entry{
		{Header: initrd.Header{Name: "init", Type: initrd.TypeReg, Mode: 0o755, Size: int64(len(demoInit))}, Data: []byte(demoInit)},
		{Header: initrd.Header{Name: "dev/console", Type: initrd.TypeChar, Mode: 0o600, Devmajor: 5, Devminor: 1}},
	}
	if bb := "/bin/busybox"; fileExists(bb) {
		e, err := initrd.File(bb, "bin/busybox")
		if err != nil {
			return err
		}
		entries = append(entries, e)
	}
	planned, err := initrd.Plan(entries, initrd.PlanOptions{RootOwner: true, ClampTime: time.Unix(0, 0)})
	if err != nil {
		return err
	}
	_, err = initrd.WriteFile(ctx, path, []initrd.Segment{{Compression: initrd.Gzip, Entries: planned}}, initrd.WriteOptions{})
	return err
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}
