package netboot

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nixboot/nixboot/pxe"
)

// DefaultHTTPStallTimeout is Server.HTTPStallTimeout's default: far above
// any live client's acknowledgement delay, far below the kernel's 15
// minutes for a client that is gone.
const DefaultHTTPStallTimeout = 30 * time.Second

// DHCPMode selects whether and how a Server answers DHCP.
type DHCPMode int

// DHCP modes. The zero value is off: a Server never answers DHCP unless told.
const (
	DHCPOff   DHCPMode = iota
	DHCPProxy          // proxyDHCP next to the network's own DHCP server (and the PXE boot server on 4011)
	DHCPFull           // a full DHCP server for DHCPNetwork
)

// Paths a Server serves besides HTTPHandler's.
const (
	StatePath   = "/state.json" // boot state of every machine, JSON
	MetricsPath = "/metrics"    // Prometheus metrics of this Server
)

// Server serves network boot: DHCP (through pxe, when enabled), TFTP for
// first-stage loaders, and HTTP for iPXE scripts, kernels and initrds, under
// one Serve call. It keeps each machine's boot state and Prometheus metrics.
//
// Set the exported fields before calling Serve and don't change them
// afterwards. A Server serves once.
//
// To serve inside a network namespace, create the sockets from a goroutine
// (or process) in that namespace and pass them in: sockets stay in the
// namespace they were created in, whichever goroutine later uses them.
type Server struct {
	// Inventory decides what machines boot. Required. It is also the DHCP
	// allow-list: a network-boot client it answers ErrUnknownMachine for
	// gets no DHCP reply at all (pxe.ErrIgnore), in full mode not even an
	// address.
	Inventory Inventory
	// Files serves loaders and other files over TFTP and HTTP (for example
	// FS of a root holding undionly.kpxe, ipxe.efi, snponly.efi). nil
	// serves none.
	Files Source

	// HTTPListener is the HTTP socket. nil disables HTTP. Serve closes it.
	HTTPListener net.Listener
	// AdminListener, when set, is the only socket serving StatePath and
	// MetricsPath: every machine's MAC, address and profile then stay off
	// the port the machines boot from, which any of them can reach. nil
	// serves both on HTTPListener. Serve closes it.
	AdminListener net.Listener
	// HTTPURL is the base URL machines reach HTTPListener at, e.g.
	// "http://10.0.0.1:8080". "" means: scripts use the Host header of each
	// request (right behind NAT, such as QEMU's user network), and DHCP and
	// the TFTP boot.ipxe use http://<listener address>, or
	// http://<ServerIP>:<port> when the listener is on a wildcard address.
	HTTPURL string
	// HTTPListener6 is a second HTTP socket serving the same, usually on
	// [ServerIP6], for machines that boot over IPv6 alone. nil serves none.
	// Serve closes it.
	HTTPListener6 net.Listener
	// HTTPURL6 is the base URL machines reach HTTPListener6 at, e.g.
	// "http://[fd00::1]:8080": scripts served there use it, and DHCPv6
	// hands out the script URL and UEFI HTTP boot URLs under it. "" means
	// http://[<listener address>]:<port> (ServerIP6 for a wildcard
	// address), or without HTTPListener6 the IPv4 HTTPURL.
	HTTPURL6 string

	// HTTPStallTimeout is how long a client may leave data the server sent
	// unacknowledged before its connection is dropped (TCP_USER_TIMEOUT,
	// Linux only). A machine that reboots or powers off in the middle of
	// a download never answers again; without this its connection, and
	// the handler writing to it, would last the kernel's full
	// retransmission time (about 15 minutes), and the previous boot's
	// connection could still be open when the machine comes back from the
	// same port. Live clients acknowledge within milliseconds whether they
	// read or not. 0 means DefaultHTTPStallTimeout; negative leaves the
	// kernel's behaviour.
	HTTPStallTimeout time.Duration
	// HTTPClient fetches the images the Inventory names by Image.Upstream
	// (HTTPHandler.Client); nil means http.DefaultClient.
	HTTPClient *http.Client

	// TFTPConn is the TFTP socket. nil disables TFTP. Serve closes it.
	TFTPConn net.PacketConn
	// TFTPConn6 is a second TFTP socket serving the same files, usually
	// on [ServerIP6]:69 for IPv6 firmware when TFTPConn is an IPv4 one.
	// nil serves none. Serve closes it.
	TFTPConn6 net.PacketConn
	// TFTPBlockSize caps TFTP block sizes; 0 means DefaultTFTPBlockSize.
	TFTPBlockSize int
	// TFTPMaxTransfers caps concurrent TFTP transfers; 0 means
	// DefaultTFTPMaxTransfers.
	TFTPMaxTransfers int
	// PXELinux serves per-machine PXELINUX configurations from Inventory
	// over TFTP, ahead of Files (see PXELinux), for BIOS machines given
	// lpxelinux.0 as their loader; kernels and initrds come over HTTP, so
	// HTTP must be on. false serves none (Files may still hold static
	// ones).
	PXELinux bool

	// DHCP is the DHCP mode; the zero value is DHCPOff.
	DHCP DHCPMode
	// DHCPInterface is the network device DHCP is served on (required
	// unless DHCPConn is set: sockets are bound to it). Binding to a
	// device is Linux-only (see pxe.ListenPacket): on other systems set
	// DHCPConn (and, in DHCPProxy, DHCPBootConn), for instance from
	// pxe.ListenPacket("", 67), or Serve fails with an error wrapping
	// errors.ErrUnsupported.
	DHCPInterface string
	// DHCPConn and DHCPBootConn are the DHCP (67) and PXE boot server
	// (4011) sockets; nil makes pxe open them on DHCPInterface. Serve
	// closes them.
	DHCPConn, DHCPBootConn net.PacketConn
	// ServerIP is this server's address on the boot network: DHCP option
	// 54 and next-server. Required when DHCP is on.
	ServerIP net.IP
	// DHCPv6 also serves DHCPv6 on DHCPInterface (pxe.Server6), with the
	// same boot decisions, allow and deny lists as DHCPv4: UEFI PXE over
	// IPv6 gets its loader as tftp://[ServerIP6]/<loader> (serve it with
	// TFTPConn6), UEFI HTTP boot and iPXE the HTTP URLs DHCPv4 gives, so
	// the machine must reach HTTPURL too. It is independent of DHCP.
	DHCPv6 bool
	// DHCPv6Prefix holds the addresses DHCPv6 gives out (see
	// pxe.Server6.Prefix); the zero value gives none, for links where
	// another server assigns IPv6 addresses.
	DHCPv6Prefix netip.Prefix
	// ServerIP6 is this server's IPv6 address on the boot network.
	// Required with DHCPv6.
	ServerIP6 net.IP
	// DHCPv6Conn is the DHCPv6 socket (547); nil makes pxe open it on
	// DHCPInterface (pxe.ListenPacket6). Serve closes it.
	DHCPv6Conn net.PacketConn
	// DHCPNetwork is the subnet, pool and options for DHCPFull.
	DHCPNetwork *pxe.Network
	// LeaseFile stores DHCPFull leases; "" keeps them in memory.
	LeaseFile string
	// DHCPAllow, when not empty, lists the only MACs DHCP answers (in
	// DHCPFull, the only machines that get an address, network-booting or
	// not); DHCPDeny lists MACs it never answers, and wins. They are
	// pxe.Server's Allow and Deny. An inventory that ignores unknown
	// machines withholds boot information only: plain DHCP clients still get
	// addresses in DHCPFull unless DHCPAllow says otherwise.
	DHCPAllow, DHCPDeny []net.HardwareAddr
	// DHCPPolicyTimeout bounds one boot decision at DHCP time (the
	// Inventory's Boot); zero means pxe's default of 2 s. A slower
	// Inventory answers the client's next try if it caches (PixiecoreAPI
	// does).
	DHCPPolicyTimeout time.Duration
	// DHCPWorkers is pxe.Server.Workers: DHCP packets handled at once per
	// socket; zero means pxe's default.
	DHCPWorkers int
	// UEFI chooses how proxyDHCP answers UEFI firmware; see pxe.UEFIProxy.
	UEFI pxe.UEFIProxy
	// Loaders is the DHCP boot policy: loader names per firmware.
	// ScriptURL and HTTPBase are filled from HTTPURL when empty (in the
	// copy Serve uses). A profile's loaders override them per machine.
	Loaders pxe.Loaders

	// State records boot phases; nil means a private Tracker. Either way it
	// is served at StatePath.
	State *Tracker
	// Metrics are registered on this registry; nil means a private
	// registry. Either way, when it is a prometheus.Gatherer, the metrics
	// are served at MetricsPath.
	Metrics prometheus.Registerer
	// Logger receives the log of every part; nil discards.
	Logger *slog.Logger
}

// Serve runs every enabled part until ctx is cancelled, then shuts them down,
// waits for in-flight transfers and returns nil. If any part fails, the
// others are stopped and the first error is returned.
func (s *Server) Serve(ctx context.Context) error {
	log := orDiscard(s.Logger)
	closeAll := func() {
		for _, c := range []io.Closer{s.HTTPListener, s.HTTPListener6, s.AdminListener, s.TFTPConn, s.TFTPConn6, s.DHCPConn, s.DHCPBootConn, s.DHCPv6Conn} {
			if c != nil {
				c.Close()
			}
		}
	}
	if s.Inventory == nil {
		closeAll()
		return fmt.Errorf("%w: Server.Inventory is nil", ErrConfig)
	}
	base, err := s.baseURL()
	if err != nil {
		closeAll()
		return err
	}
	if s.PXELinux && (s.HTTPListener == nil || base == "") {
		closeAll()
		return fmt.Errorf("%w: Server.PXELinux needs HTTP (HTTPListener)", ErrConfig)
	}
	reg := s.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	metrics, err := NewMetrics(reg)
	if err != nil {
		closeAll()
		return fmt.Errorf("netboot: registering metrics: %w", err)
	}
	tracker := s.State
	if tracker == nil {
		tracker = &Tracker{}
	}
	tracker.setHook(metrics.Phase)
	observer := ObserverFunc(func(ev Event) {
		metrics.Observe(ev)
		if ev.Proto == TFTP && ev.Err == nil && isLoader(ev.Name) {
			if mac := tracker.MACForIP(ev.Remote.Addr()); mac != nil {
				tracker.Mark(mac, ev.Remote.Addr(), "", PhaseLoader)
			} else if mac := arpLookupVia(s.TFTPConn, ev.Remote.Addr()); mac != nil {
				tracker.Mark(mac, ev.Remote.Addr(), "", PhaseLoader)
			}
		}
	})

	var dhcp *pxe.Server
	if s.DHCP != DHCPOff {
		dhcp, err = s.pxeServer(base, tracker, metrics, log)
		if err != nil {
			closeAll()
			return err
		}
	}
	base6, err := s.baseURL6(base)
	if err != nil {
		closeAll()
		return err
	}
	var dhcp6 *pxe.Server6
	if s.DHCPv6 {
		if s.ServerIP6.To16() == nil || s.ServerIP6.To4() != nil {
			closeAll()
			return fmt.Errorf("%w: Server.ServerIP6 %q: an IPv6 address is required with DHCPv6", ErrConfig, s.ServerIP6)
		}
		if s.DHCPv6Conn == nil && s.DHCPInterface == "" {
			closeAll()
			return fmt.Errorf("%w: Server.DHCPInterface (or DHCPv6Conn) is required with DHCPv6", ErrConfig)
		}
		dhcp6 = &pxe.Server6{
			Interface: s.DHCPInterface,
			Conn:      s.DHCPv6Conn,
			ServerIP:  s.ServerIP6,
			Prefix:    s.DHCPv6Prefix,
			Policy:    s.bootPolicy(base6, tracker),
			Allow:     s.DHCPAllow,
			Deny:      s.DHCPDeny,
			Logger:    log,
			Observer: func(ex pxe.Exchange6) {
				metrics.ObserveDHCPv6(ex)
				// The address lets the TFTP and HTTP requests that
				// follow from it be told apart by machine.
				if ex.Addr.IsValid() {
					tracker.Mark(ex.MAC, ex.Addr, "", PhaseDHCP)
				}
			},

			PolicyTimeout: s.DHCPPolicyTimeout,
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	fail := func(err error) {
		if err != nil && ctx.Err() == nil {
			once.Do(func() { first = err })
			cancel()
		}
	}

	for _, conn := range []net.PacketConn{s.TFTPConn, s.TFTPConn6} {
		if conn == nil {
			continue
		}
		t := &TFTPServer{
			Conn: conn, Files: s.tftpFiles(base, tracker), BlockSize: s.TFTPBlockSize, MaxTransfers: s.TFTPMaxTransfers,
			Logger: log, Observer: observer,
		}
		wg.Go(func() { fail(t.Serve(ctx)) })
	}
	var metricsHandler http.Handler
	if g, ok := reg.(prometheus.Gatherer); ok {
		metricsHandler = promhttp.HandlerFor(g, promhttp.HandlerOpts{})
	}
	// admin serves the state and metrics paths; ok is false for others.
	admin := func(w http.ResponseWriter, r *http.Request) (ok bool) {
		switch {
		case r.URL.Path == StatePath && r.Method == http.MethodGet:
			tracker.ServeHTTP(w, r)
		case r.URL.Path == MetricsPath && r.Method == http.MethodGet && metricsHandler != nil:
			metricsHandler.ServeHTTP(w, r)
		default:
			return false
		}
		return true
	}
	serveHTTP := func(l net.Listener, h http.Handler, stall time.Duration) {
		hs := &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			// Firmware fetches its files back to back, then starts a
			// kernel without closing its connections. A machine that
			// reboots within the idle timeout may reuse the same local
			// port (lwIP in lpxelinux counts its ports from a fixed
			// start) and meet the previous boot's connection still open
			// here. A short timeout closes it while the booted kernel
			// can still answer with a reset.
			IdleTimeout: 5 * time.Second,
			ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		}
		if stall > 0 {
			hs.ConnState = func(c net.Conn, state http.ConnState) {
				if state != http.StateNew {
					return
				}
				if err := setStallTimeout(c, stall); err != nil {
					log.Debug("netboot: http: stall timeout not set", "remote", c.RemoteAddr().String(), "err", err)
				}
			}
		}
		wg.Go(func() {
			err := hs.Serve(l)
			if !errors.Is(err, http.ErrServerClosed) {
				fail(fmt.Errorf("netboot: http on %s: %w", l.Addr(), err))
			}
		})
		wg.Go(func() {
			<-ctx.Done()
			sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer scancel()
			if err := hs.Shutdown(sctx); err != nil {
				hs.Close()
			}
		})
	}
	for _, l := range []struct {
		ln   net.Listener
		base string
	}{{s.HTTPListener, s.HTTPURL}, {s.HTTPListener6, s.HTTPURL6}} {
		if l.ln == nil {
			continue
		}
		h := &HTTPHandler{Inventory: s.Inventory, Files: s.Files, BaseURL: l.base, Client: s.HTTPClient, Tracker: tracker, Observer: observer, Logger: log}
		// Routed by hand, not with http.ServeMux: the mux answers paths such
		// as "//ipxe.efi" with a redirect, which some UEFI firmware cannot
		// follow; HTTPHandler cleans names itself.
		mux := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if s.AdminListener == nil && admin(w, r) {
				return
			}
			h.ServeHTTP(w, r)
		})
		serveHTTP(l.ln, mux, cmp.Or(s.HTTPStallTimeout, DefaultHTTPStallTimeout))
	}
	if s.AdminListener != nil {
		serveHTTP(s.AdminListener, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !admin(w, r) {
				http.NotFound(w, r)
			}
		}), -1)
	}
	if dhcp != nil {
		wg.Go(func() { fail(dhcp.Serve(ctx)) })
	}
	if dhcp6 != nil {
		wg.Go(func() { fail(dhcp6.Serve(ctx)) })
	}
	log.Info("netboot: serving", "http", base, "http6", base6, "tftp", addrOf(s.TFTPConn), "tftp6", addrOf(s.TFTPConn6), "dhcp", s.DHCP.String(), "dhcpv6", s.DHCPv6)
	<-ctx.Done()
	wg.Wait()
	return first
}

func addrOf(c net.PacketConn) string {
	if c == nil {
		return "off"
	}
	return c.LocalAddr().String()
}

// String names the mode.
func (m DHCPMode) String() string {
	switch m {
	case DHCPOff:
		return "off"
	case DHCPProxy:
		return "proxy"
	case DHCPFull:
		return "full"
	}
	return fmt.Sprintf("DHCPMode(%d)", int(m))
}

// baseURL6 is the HTTP base URL for machines on IPv6 (see HTTPURL6); base
// is the IPv4 one.
func (s *Server) baseURL6(base string) (string, error) {
	if s.HTTPURL6 != "" {
		return strings.TrimSuffix(s.HTTPURL6, "/"), nil
	}
	if s.HTTPListener6 == nil {
		return base, nil
	}
	return listenerURL(s.HTTPListener6, s.ServerIP6, "HTTPListener6", "HTTPURL6 or ServerIP6")
}

func (s *Server) baseURL() (string, error) {
	if s.HTTPURL != "" {
		return strings.TrimSuffix(s.HTTPURL, "/"), nil
	}
	if s.HTTPListener == nil {
		return "", nil
	}
	if s.DHCP == DHCPOff && s.TFTPConn == nil {
		return "", nil // only the HTTP handler needs it, and it has Host
	}
	return listenerURL(s.HTTPListener, s.ServerIP, "HTTPListener", "HTTPURL or ServerIP")
}

// listenerURL is the http:// base URL of ln, with the address ip in place
// of a wildcard one; the names are the fields for the error messages.
func listenerURL(ln net.Listener, ip net.IP, lnField, fix string) (string, error) {
	ap, err := netip.ParseAddrPort(ln.Addr().String())
	if err != nil {
		return "", fmt.Errorf("%w: cannot derive a URL from %s %s: %v", ErrConfig, lnField, ln.Addr(), err)
	}
	host := ap.Addr().Unmap()
	if host.IsUnspecified() {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return "", fmt.Errorf("%w: %s is on a wildcard address: set %s", ErrConfig, lnField, fix)
		}
		host = a.Unmap()
	}
	return "http://" + netip.AddrPortFrom(host, ap.Port()).String(), nil
}

// tftpFiles serves Files plus the generic iPXE script as "boot.ipxe", for
// iPXE builds that are pointed at TFTP, and with PXELinux per-machine
// PXELINUX configurations first.
func (s *Server) tftpFiles(base string, tracker *Tracker) Source {
	var pxelinux Source
	if s.PXELinux {
		pxelinux = &PXELinux{
			Inventory: s.Inventory,
			BaseURL:   base,
			MACForIP: func(ip netip.Addr) net.HardwareAddr {
				if mac := tracker.MACForIP(ip); mac != nil {
					return mac
				}
				return arpLookupVia(s.TFTPConn, ip)
			},
		}
	}
	return Chain(pxelinux, s.Files, Files{
		"boot.ipxe": SourceFunc(func(ctx context.Context, req *Request) (*File, error) {
			base, err := s.baseURL()
			if err != nil || base == "" {
				return nil, fmt.Errorf("%s: no HTTP server: %w", req.Name, os.ErrNotExist)
			}
			b, err := GenericScript(base)
			if err != nil {
				return nil, err
			}
			return BytesFile(b, time.Time{}), nil
		}),
	})
}

func (s *Server) pxeServer(base string, tracker *Tracker, metrics *Metrics, log *slog.Logger) (*pxe.Server, error) {
	if s.ServerIP == nil {
		return nil, fmt.Errorf("%w: Server.ServerIP is required with DHCP %s", ErrConfig, s.DHCP)
	}
	mode := pxe.ModeProxy
	if s.DHCP == DHCPFull {
		mode = pxe.ModeFull
	}
	return &pxe.Server{
		Interface: s.DHCPInterface,
		ServerIP:  s.ServerIP,
		Conn:      s.DHCPConn,
		BootConn:  s.DHCPBootConn,
		Mode:      mode,
		UEFI:      s.UEFI,
		Network:   s.DHCPNetwork,
		Policy:    s.bootPolicy(base, tracker),
		LeaseFile: s.LeaseFile,
		Logger:    log,

		Observer:      metrics.ObserveDHCP,
		Allow:         s.DHCPAllow,
		Deny:          s.DHCPDeny,
		PolicyTimeout: s.DHCPPolicyTimeout,
		Workers:       s.DHCPWorkers,
	}, nil
}

// bootPolicy is the DHCP boot decision, for DHCPv4 and DHCPv6 alike: the
// inventory decides whether the machine boots and may override its loader;
// Loaders, completed from the HTTP base URL, picks the boot file.
func (s *Server) bootPolicy(base string, tracker *Tracker) pxe.Policy {
	loaders := s.Loaders
	if loaders.ScriptURL == "" && base != "" {
		loaders.ScriptURL = base + ScriptPath
	}
	if loaders.HTTPBase == "" && base != "" {
		loaders.HTTPBase = base
	}
	return pxe.PolicyFunc(func(ctx context.Context, c pxe.Client) (pxe.Answer, error) {
		m := machineFromDHCP(c)
		b, err := s.Inventory.Boot(ctx, m)
		if errors.Is(err, ErrUnknownMachine) {
			// A machine the inventory does not serve gets no answer at
			// all, in full DHCP not even an address: the inventory is the
			// allow-list. (Its OS, a plain DHCP client, is not asked about.)
			return pxe.Answer{}, fmt.Errorf("%w: %w", pxe.ErrIgnore, err)
		}
		if err != nil {
			return pxe.Answer{}, err
		}
		l := loaders
		if name := b.Loaders[c.Firmware().String()]; name != "" {
			switch c.Firmware() {
			case pxe.FirmwareBIOS:
				l.BIOS = name
			case pxe.FirmwareEFI64:
				l.EFI64 = name
			case pxe.FirmwareEFI32:
				l.EFI32 = name
			case pxe.FirmwareEFIARM64:
				l.EFIARM64 = name
			}
		}
		a, err := l.Decide(ctx, c)
		if err == nil {
			tracker.Mark(c.MAC, netip.Addr{}, b.Profile, PhaseDHCP)
		}
		return a, err
	})
}

// machineFromDHCP describes a DHCP client to the inventory, with the same
// UUID and architecture spelling iPXE uses in the chain pattern's query.
func machineFromDHCP(c pxe.Client) *Machine {
	m := &Machine{MAC: c.MAC, Labels: map[string]string{"firmware": c.Firmware().String()}}
	if c.UUID != nil && !c.UUID.IsZero() {
		m.UUID = c.UUID.SMBIOSString()
	}
	switch c.Firmware() {
	case pxe.FirmwareBIOS, pxe.FirmwareEFI32:
		m.Arch = "i386"
	case pxe.FirmwareEFI64:
		m.Arch = "x86_64"
	case pxe.FirmwareEFIARM64, pxe.FirmwareUBootARM64:
		m.Arch = "arm64"
	case pxe.FirmwareEFIARM32, pxe.FirmwareUBootARM32:
		m.Arch = "arm32"
	case pxe.FirmwareEFIRISCV64:
		m.Arch = "riscv64"
	}
	return m
}

// arpLookupVia finds the MAC of a neighbour in the ARP table of the network
// namespace conn lives in, which need not be the process's: a caller may
// have created its sockets on a thread switched into another namespace.
func arpLookupVia(conn net.PacketConn, ip netip.Addr) net.HardwareAddr {
	var mac net.HardwareAddr
	inSocketNetns(conn, func() { mac = arpLookup(ip) })
	return mac
}

// arpLookup finds the MAC of a neighbour in the kernel's ARP table (of the
// network namespace the calling thread is in), for TFTP clients, which send
// no MAC.
func arpLookup(ip netip.Addr) net.HardwareAddr {
	if !ip.Is4() {
		return nil
	}
	// /proc/net is the thread group leader's view; thread-self is this
	// thread's, which is what inSocketNetns switches.
	f, err := os.Open("/proc/thread-self/net/arp")
	if err != nil {
		f, err = os.Open("/proc/net/arp")
	}
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 4 && fields[0] == ip.String() {
			if hw, err := net.ParseMAC(fields[3]); err == nil && fields[3] != "00:00:00:00:00:00" {
				return hw
			}
		}
	}
	return nil
}
