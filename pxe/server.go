package pxe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// Mode selects what a Server answers on port 67.
type Mode int

const (
	// ModeProxy is proxyDHCP (PXE 2.1 section 2.2.2): another server
	// assigns addresses, this one only adds boot information for PXE and
	// HTTP boot clients, and also answers the PXE boot server port 4011.
	// It is the zero value because it cannot disturb an existing network.
	ModeProxy Mode = iota
	// ModeFull is a full DHCP server (RFC 2131) for Server.Network, with
	// boot information for clients that boot from the network. It is
	// authoritative for Network.Subnet: a REQUEST for an address it will
	// not grant gets a NAK, also in INIT-REBOOT from a machine it has no
	// record of (RFC 2131 section 4.3.2 asks a non-authoritative server
	// to stay silent there), so a machine moved between networks starts
	// over at once. Do not run it beside another DHCP server for the same
	// subnet (split scopes).
	ModeFull
)

// String returns "proxy" or "full".
func (m Mode) String() string {
	switch m {
	case ModeProxy:
		return "proxy"
	case ModeFull:
		return "full"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// UEFIProxy is how a proxyDHCP server answers UEFI PXE firmware that is
// not iPXE. Firmware disagrees here, hence an explicit choice.
type UEFIProxy int

const (
	// UEFIDirect (zero) puts the boot file, siaddr and option 54 in the
	// port-67 proxy OFFER, as for BIOS. Firmware that never contacts port
	// 4011 (reported for HP DL380 Gen9) boots this way, and EDK2/OVMF
	// accepts it.
	UEFIDirect UEFIProxy = iota
	// UEFISteer sends UEFI firmware a proxy OFFER with "PXEClient", option
	// 54 and siaddr but no boot file and no option 43, which EDK2 reads as
	// "ask the boot server": it then sends a REQUEST to port 4011, answered
	// with the boot file. This is what dnsmasq and Pixiecore do; it needs
	// the 4011 socket.
	UEFISteer
)

// String returns "direct" or "steer".
func (u UEFIProxy) String() string {
	if u == UEFISteer {
		return "steer"
	}
	return "direct"
}

// Server answers DHCP for network boot on one interface. Set the exported
// fields before calling Serve and do not change them afterwards; Serve
// reads them once and never writes defaults back. A Server serves once.
type Server struct {
	// Interface is the network device to serve. Sockets Serve opens are
	// bound to it (SO_BINDTODEVICE, needs CAP_NET_RAW), so replies leave
	// through it. "" binds to no device, which only makes sense with Conn
	// and BootConn given (tests on loopback). Binding to a device is
	// Linux-only (see ListenPacket): elsewhere Serve fails with an error
	// wrapping errors.ErrUnsupported unless Conn (and, in ModeProxy,
	// BootConn) is given, for instance from ListenPacket("", 67).
	Interface string
	// ServerIP is this server's IPv4 address on Interface: option 54 and
	// the default siaddr (next server). Required.
	ServerIP net.IP
	// Conn is the DHCP socket (port 67). nil makes Serve open
	// ListenPacket(Interface, 67). Serve closes it either way.
	Conn net.PacketConn
	// BootConn is the PXE boot server socket (port 4011), used in
	// ModeProxy. nil makes Serve open ListenPacket(Interface, 4011) in
	// ModeProxy and nothing in ModeFull. Serve closes it either way.
	BootConn net.PacketConn
	// Mode is proxyDHCP (zero) or full DHCP.
	Mode Mode
	// UEFI chooses how proxy mode answers UEFI PXE firmware; zero is
	// UEFIDirect. Ignored in ModeFull, whose OFFERs always carry the boot
	// file.
	UEFI UEFIProxy
	// Network is the subnet served in ModeFull; required there, ignored in
	// ModeProxy.
	Network *Network
	// Policy decides what clients boot. nil means no boot information: a
	// plain DHCP server in ModeFull, and no answers at all in ModeProxy.
	Policy Policy
	// PolicyTimeout bounds one Policy call, because firmware gives up
	// after a few seconds. Zero means 2 s.
	PolicyTimeout time.Duration
	// Allow, when not empty, is the list of MACs that get answers; others
	// are ignored. Empty (or nil) allows every MAC.
	Allow []net.HardwareAddr
	// Deny lists MACs that never get answers; it wins over Allow.
	Deny []net.HardwareAddr
	// LeaseFile stores ModeFull leases, rewritten atomically before each
	// ACK; "" keeps leases in memory only. A corrupt file makes Serve fail
	// with ErrLeaseFile and is never overwritten. While Serve runs it holds
	// an flock on LeaseFile + ".lock" (LockFileEx on Windows; on systems
	// with neither, a LeaseFile makes Serve fail with an error wrapping
	// errors.ErrUnsupported).
	LeaseFile string
	// Workers bounds the packets handled at once (per socket) that call
	// the Policy or write LeaseFile. Zero means 32. Packets beyond that
	// wait in the socket's kernel buffer, which drops what does not fit, as
	// a DHCP server must under overload. Packets that need neither (a
	// DISCOVER from a client that is not network-booting, say) are
	// answered by the socket's reader goroutine itself, one at a time.
	Workers int
	// Logger receives Debug per packet, Info per boot decision and Error
	// for the server's own failures. nil discards.
	Logger *slog.Logger
	// Observer, when set, is told about every packet the Server reads,
	// once it is handled (for metrics). It is called from the goroutine
	// that handled the packet, several at once, and must not block.
	Observer func(Exchange)

	mu      sync.Mutex
	started atomic.Bool
	table   *leaseTable
}

// Exchange is one packet as the Server handled it, for Server.Observer.
type Exchange struct {
	// MAC is the client's hardware address (chaddr); nil when the packet
	// did not parse. Its memory is reused after the call: copy it to keep
	// it.
	MAC net.HardwareAddr
	// Request is the packet's DHCP message type (option 53);
	// MessageTypeNone when it did not parse or had none.
	Request dhcpv4.MessageType
	// Reply is the message type sent back; MessageTypeNone for no reply.
	Reply dhcpv4.MessageType
	// BootServer reports a packet to the PXE boot server socket (4011).
	BootServer bool
	// Err is why there was no reply when that was not simply the
	// decision (no boot information for a proxy client, a DISCOVER for
	// another server's offer): a packet that did not parse, was refused,
	// or that the server failed to answer. ErrPoolExhausted and
	// ErrReplyTooLarge mark failures an operator must act on.
	Err error
}

// state is the configuration Serve works from, with defaults filled in.
type state struct {
	s       *Server
	self    net.IP
	log     *slog.Logger
	policy  Policy
	timeout time.Duration
	macs    macFilter
	table   *leaseTable
	// builtin is set when policy is Loaders, which neither blocks nor
	// reads its context: it is called without a per-call timer.
	builtin bool

	// Options every reply of a kind carries, built once by the package's
	// modifiers (see frozen), so that setting them costs no allocation.
	withOffer, withAck, withNak dhcpv4.Modifier
	withServerID                dhcpv4.Modifier
	withNetwork                 dhcpv4.Modifier // nil in ModeProxy
}

// Serve answers DHCP until ctx is cancelled, then closes its sockets,
// waits for packets in flight and returns nil. Any other return is the
// first real failure: invalid configuration (ErrConfig), a socket that
// cannot be opened (another server on the port: "address already in
// use"), an unusable lease file (ErrLeaseFile) or a socket read error.
// Calling Serve a second time is an error.
func (s *Server) Serve(ctx context.Context) error {
	if s.started.Swap(true) {
		return fmt.Errorf("%w: Serve called twice", ErrConfig)
	}

	st, err := s.prepare()
	if err != nil {
		closeAll(s.Conn, s.BootConn)
		return err
	}
	if st.table != nil && st.table.store != nil {
		defer st.table.store.close()
	}
	conns, err := s.open()
	if err != nil {
		return err
	}
	workers := s.Workers
	if workers <= 0 {
		workers = 32
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for _, pc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := st.serveConn(ctx, pc.conn, pc.boot, workers); err != nil {
				errOnce.Do(func() { firstErr = err })
				cancel()
			}
		}()
	}
	st.log.Info("pxe: serving", "interface", s.Interface, "mode", s.Mode.String(), "ip", st.self.String())
	<-ctx.Done()
	for _, pc := range conns {
		pc.conn.Close()
	}
	wg.Wait()
	return firstErr
}

type servedConn struct {
	conn net.PacketConn
	boot bool // the port-4011 boot server
}

func (s *Server) open() ([]servedConn, error) {
	conn := s.Conn
	if conn == nil {
		c, err := ListenPacket(s.Interface, dhcpv4.ServerPort)
		if err != nil {
			closeAll(s.BootConn)
			return nil, err
		}
		conn = c
	}
	conns := []servedConn{{conn: conn}}
	if s.Mode == ModeProxy {
		boot := s.BootConn
		if boot == nil {
			c, err := ListenPacket(s.Interface, PXEBootServerPort)
			if err != nil {
				conn.Close()
				return nil, err
			}
			boot = c
		}
		conns = append(conns, servedConn{conn: boot, boot: true})
	} else if s.BootConn != nil {
		conns = append(conns, servedConn{conn: s.BootConn, boot: true})
	}
	return conns, nil
}

// PXEBootServerPort is the UDP port of the PXE boot server (PXE 2.1
// section 2.2.2).
const PXEBootServerPort = 4011

func closeAll(cs ...net.PacketConn) {
	for _, c := range cs {
		if c != nil {
			c.Close()
		}
	}
}

func (s *Server) prepare() (*state, error) {
	st := &state{
		s:       s,
		log:     s.Logger,
		policy:  s.Policy,
		timeout: s.PolicyTimeout,
	}
	if st.log == nil {
		st.log = slog.New(slog.DiscardHandler)
	}
	if st.timeout <= 0 {
		st.timeout = 2 * time.Second
	}
	st.self = s.ServerIP.To4()
	if st.self == nil || st.self.IsUnspecified() {
		return nil, fmt.Errorf("%w: Server.ServerIP %q is not an IPv4 address", ErrConfig, s.ServerIP)
	}
	if s.Mode != ModeProxy && s.Mode != ModeFull {
		return nil, fmt.Errorf("%w: unknown Server.Mode %d", ErrConfig, int(s.Mode))
	}
	if s.Conn == nil && s.Interface == "" {
		return nil, fmt.Errorf("%w: Server needs Interface or Conn", ErrConfig)
	}
	st.macs = newMACFilter(s.Allow, s.Deny)
	switch s.Policy.(type) {
	case Loaders, *Loaders:
		st.builtin = true
	}
	st.withOffer = frozen(dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer))
	st.withAck = frozen(dhcpv4.WithMessageType(dhcpv4.MessageTypeAck))
	st.withNak = frozen(dhcpv4.WithMessageType(dhcpv4.MessageTypeNak))
	st.withServerID = frozen(WithServerID(st.self))
	if s.Mode == ModeFull {
		if s.Network == nil {
			return nil, fmt.Errorf("%w: ModeFull needs Server.Network", ErrConfig)
		}
		st.withNetwork = frozen(WithNetwork(s.Network))
		t, err := newLeaseTable(s.Network, st.self)
		if err != nil {
			return nil, err
		}
		if s.LeaseFile != "" {
			store, ls, err := openLeaseStore(s.LeaseFile)
			if err != nil {
				return nil, err
			}
			if err := t.load(ls, s.LeaseFile); err != nil {
				store.close()
				return nil, err
			}
			store.written = t.gen
			t.store = store
		}
		st.table = t
		s.mu.Lock()
		s.table = t
		s.mu.Unlock()
	}
	return st, nil
}

// Leases returns the committed leases of a running or finished ModeFull
// server, sorted by address; nil before Serve. Safe for concurrent use.
func (s *Server) Leases() []Lease {
	s.mu.Lock()
	t := s.table
	s.mu.Unlock()
	if t == nil {
		return nil
	}
	return t.leases()
}

// maxPacket is larger than any DHCP packet on an Ethernet (1500 MTU).
const maxPacket = 4096

// packet is one received datagram on its way to a worker, parsed and
// classified by the reader.
type packet struct {
	buf    []byte
	msg    dhcpv4.DHCPv4 // the parsed request, reused; it aliases buf
	from   net.UDPAddr   // the sender, when read in a batch
	fromIP [4]byte
	peer   net.Addr
	req    *dhcpv4.DHCPv4 // &msg once parsed
	c      Client
	cerr   error
}

// reset readies p for the next datagram, keeping its memory.
func (p *packet) reset() {
	p.peer, p.req, p.c, p.cerr = nil, nil, Client{}, nil
}

// scratch is the memory one goroutine (the reader or a worker) reuses for
// every reply it builds and sends one at a time.
type scratch struct {
	reply  dhcpv4.DHCPv4
	yiaddr [4]byte
	out    []byte
	dest   net.UDPAddr
}

func newScratch() *scratch {
	return &scratch{out: make([]byte, 0, maxPacket)}
}

// frozen applies mods, which may only set options, to an empty message
// and returns a modifier that sets the same option values in a reply. The
// values are shared by every reply and never written to, so a reply gets
// them without allocating.
func frozen(mods ...dhcpv4.Modifier) dhcpv4.Modifier {
	d := dhcpv4.DHCPv4{Options: dhcpv4.Options{}}
	for _, m := range mods {
		m(&d)
	}
	type option struct {
		code  uint8
		value []byte
	}
	var opts []option
	for code, v := range d.Options {
		opts = append(opts, option{code, v[:len(v):len(v)]})
	}
	return func(r *dhcpv4.DHCPv4) {
		if r.Options == nil {
			r.Options = dhcpv4.Options{}
		}
		for _, o := range opts {
			r.Options[o.code] = o.value
		}
	}
}

// readBatch is how many datagrams one recvmmsg call may return.
const readBatch = 32

// serveConn reads conn in one goroutine, the reader, which parses and
// classifies each packet. A packet that needs neither the policy nor the
// lease file (a plain DISCOVER, say) costs only CPU: the reader answers it
// at once, which saves waking a worker. Any other packet goes to a fixed
// set of workers over a channel as deep as the worker count: when all
// workers are busy the reader waits and further packets queue in the
// kernel, so memory and goroutines stay bounded and a slow policy holds
// up only the workers it occupies. On UDP sockets reads are batched with
// recvmmsg and the reader's replies to one batch go out with one sendmmsg
// (batchConn; on systems other than Linux a batch is one datagram), which
// matters under a boot storm; replies are built in
// memory the reader reuses (scratch, wire.go). It returns nil once
// conn is closed for shutdown, after the workers have finished.
func (st *state) serveConn(ctx context.Context, conn net.PacketConn, boot bool, workers int) error {
	free := make(chan *packet, workers+readBatch+1)
	jobs := make(chan *packet, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := newScratch()
			for p := range jobs {
				st.handle(ctx, conn, sc, p, boot)
				p.reset()
				select {
				case free <- p:
				default:
				}
			}
		}()
	}
	defer func() {
		close(jobs)
		wg.Wait()
	}()
	get := func() *packet {
		select {
		case p := <-free:
			return p
		default:
			return &packet{buf: make([]byte, maxPacket)}
		}
	}
	var bc *batchConn  // nil unless conn is a UDP socket
	sc := newScratch() // the reader's
	// The replies of one batch, sent together: slot k < outN holds bytes
	// outB[k] (in outBufs[k]'s memory) for outTo[k], which is &outAddrs[k]
	// for a relay.
	var (
		outN     int
		outBufs  [readBatch][]byte
		outB     [readBatch][]byte
		outTo    [readBatch]*net.UDPAddr
		outAddrs [readBatch]net.UDPAddr
	)
	flush := func() {
		st.sendBatch(ctx, bc, outB[:outN], outTo[:outN])
		clear(outB[:outN])
		clear(outTo[:outN])
		outN = 0
	}
	// dispatch answers p inline or passes it to a worker; it reports
	// whether p's buffer may be read into again at once. With batch set,
	// an inline reply is added to out instead of sent.
	dispatch := func(p *packet, n int, batch bool) bool {
		if err := parseInto(&p.msg, p.buf[:n]); err != nil {
			st.log.Debug("pxe: unparsable packet", "remote", p.peer.String(), "bytes", n, "err", err)
			if st.s.Observer != nil {
				st.s.Observer(Exchange{BootServer: boot, Err: err})
			}
			return true
		}
		req := &p.msg
		p.req = req
		if req.OpCode == dhcpv4.OpcodeBootRequest {
			p.c, p.cerr = ClientFromRequest(req)
		}
		if st.quick(p, boot) {
			if !batch {
				st.handle(ctx, conn, sc, p, boot)
				return true
			}
			k := outN
			if outBufs[k] == nil {
				outBufs[k] = make([]byte, 0, maxPacket)
			}
			b, dest := st.answer(ctx, sc, p, boot, outBufs[k][:0], &outAddrs[k])
			if b == nil {
				return true
			}
			outBufs[k] = b[:0]
			if to, ok := dest.(*net.UDPAddr); ok {
				outB[k], outTo[k] = b, to
				outN++
			} else if _, err := conn.WriteTo(b, dest); err != nil && ctx.Err() == nil {
				st.log.Error("pxe: send reply", "mac", p.req.ClientHWAddr.String(), "remote", dest.String(), "err", err)
			}
			return true
		}
		if outN > 0 {
			// Send what is ready before possibly waiting for a worker.
			flush()
		}
		jobs <- p
		return false
	}
	readErr := func(err error) error {
		if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
			return nil
		}
		return fmt.Errorf("pxe: read on %s: %w", conn.LocalAddr(), err)
	}

	if udp, ok := conn.(*net.UDPConn); ok {
		bc, _ = newBatchConn(udp, readBatch)
	}
	if bc == nil {
		p := get()
		for {
			n, peer, err := conn.ReadFrom(p.buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
					continue
				}
				return readErr(err)
			}
			p.peer = peer
			if dispatch(p, n, false) {
				p.reset()
			} else {
				p = get()
			}
		}
	}
	held := make([]*packet, readBatch)
	bufs := make([][]byte, readBatch)
	for {
		for i := range held {
			if held[i] == nil {
				held[i] = get()
				bufs[i] = held[i].buf
			}
		}
		n, err := bc.read(bufs)
		if err != nil {
			return readErr(err)
		}
		for i := 0; i < n; i++ {
			p := held[i]
			bc.from(i, &p.from, &p.fromIP)
			p.peer = &p.from
			if dispatch(p, bc.size(i), true) {
				p.reset()
			} else {
				held[i] = nil
			}
		}
		flush()
	}
}

// quick reports whether handling p costs only CPU: the policy is not
// asked and the lease file is not written. Those packets are answered by
// the reader itself.
func (st *state) quick(p *packet, boot bool) bool {
	c := p.c
	if st.policy != nil && p.cerr == nil && (c.IsPXE() || c.IsHTTPBoot() || c.IsIPXE()) {
		return false
	}
	if boot || st.s.Mode != ModeFull || st.table == nil || st.table.store == nil {
		return true
	}
	switch c.MessageType {
	case dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline:
		return false
	}
	return true
}

// handle answers one parsed packet, building the reply in sc.
func (st *state) handle(ctx context.Context, conn net.PacketConn, sc *scratch, p *packet, boot bool) {
	b, dest := st.answer(ctx, sc, p, boot, sc.out[:0], &sc.dest)
	if b == nil {
		return
	}
	if _, err := conn.WriteTo(b, dest); err != nil && ctx.Err() == nil {
		st.log.Error("pxe: send reply", "mac", p.req.ClientHWAddr.String(), "remote", dest.String(), "err", err)
	}
}

// answer computes the reply to one parsed packet, appended to dst, and
// where it goes (in *addr when that is a relay); b is nil for no reply.
func (st *state) answer(ctx context.Context, sc *scratch, p *packet, boot bool, dst []byte, addr *net.UDPAddr) (b []byte, dest net.Addr) {
	req, peer := p.req, p.peer
	b, err := st.respondClient(ctx, sc, req, p.c, p.cerr, boot, dst)
	if st.s.Observer != nil {
		ex := Exchange{MAC: req.ClientHWAddr, Request: p.c.MessageType, BootServer: boot, Err: err}
		if err == nil && b != nil {
			ex.Reply = sc.reply.MessageType()
		}
		st.s.Observer(ex)
	}
	if errors.Is(err, ErrPoolExhausted) || errors.Is(err, ErrReplyTooLarge) {
		st.log.Error("pxe: cannot answer", "mac", req.ClientHWAddr.String(), "remote", peer.String(), "err", err)
		return nil, nil
	}
	if err != nil {
		st.log.Debug("pxe: no reply", "mac", req.ClientHWAddr.String(), "remote", peer.String(), "err", err)
		return nil, nil
	}
	if b == nil {
		return nil, nil
	}
	return b, replyAddr(req, peer, addr)
}

// sendBatch sends bufs[i] to to[i] with sendmmsg, logging (and
// skipping) any that fail.
func (st *state) sendBatch(ctx context.Context, bc *batchConn, bufs [][]byte, to []*net.UDPAddr) {
	for len(bufs) > 0 {
		n, err := bc.write(bufs, to)
		if err == nil && n > 0 {
			bufs, to = bufs[n:], to[n:]
			continue
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			st.log.Error("pxe: send reply", "remote", to[0].String(), "err", err)
		}
		bufs, to = bufs[1:], to[1:]
	}
}

// replyAddr applies RFC 2131 section 4.1: relayed requests are answered
// to the relay's port 67; clients that have an address (a unicast source,
// as when renewing or asking the boot server) get a unicast reply to it;
// clients without one get a broadcast, since a UDP socket cannot send to an
// address the client does not yet answer ARP for.
// A relay's address is written to *addr, which is returned.
func replyAddr(req *dhcpv4.DHCPv4, peer net.Addr, addr *net.UDPAddr) net.Addr {
	if gi := req.GatewayIPAddr.To4(); gi != nil && !gi.IsUnspecified() {
		*addr = net.UDPAddr{IP: gi, Port: dhcpv4.ServerPort}
		return addr
	}
	if u, ok := peer.(*net.UDPAddr); ok && u.IP != nil && !u.IP.IsUnspecified() {
		return u
	}
	if ci := req.ClientIPAddr.To4(); ci != nil && !ci.IsUnspecified() {
		return &net.UDPAddr{IP: ci, Port: dhcpv4.ClientPort}
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
}

// respondClient computes the reply to req, classified as c, cerr (nil for
// no reply), building it in sc and serialising it into dst's memory.
func (st *state) respondClient(ctx context.Context, sc *scratch, req *dhcpv4.DHCPv4, c Client, cerr error, boot bool, dst []byte) ([]byte, error) {
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		return nil, ErrNotRequest
	}
	if !st.macs.allowed(c.MAC) {
		return nil, fmt.Errorf("pxe: %s not allowed", c.MAC)
	}
	if c.MessageType == dhcpv4.MessageTypeNone {
		return nil, ErrNoMessageType
	}
	// Per-packet logging is off in production; skip building its
	// arguments then, which is a good share of a DISCOVER's allocations.
	debug := st.log.Enabled(ctx, slog.LevelDebug)
	if debug {
		st.log.Debug("pxe: request", "mac", c.MAC.String(), "type", c.MessageType.String(), "arch", archNumbers(c.Archs), "vendor", c.Vendor.Raw, "ipxe", c.IsIPXE(), "relay", ipString(c.RelayAddr))
	}
	var r *dhcpv4.DHCPv4
	var err error
	switch {
	case boot:
		r, err = st.bootServer(ctx, sc, req, c, cerr)
	case st.s.Mode == ModeProxy:
		r, err = st.proxy(ctx, sc, req, c, cerr)
	default:
		r, err = st.full(ctx, sc, req, c, cerr)
	}
	if err != nil || r == nil {
		return nil, err
	}
	b, err := marshalTo(dst, r, SizeLimit(c))
	if err != nil {
		return nil, err
	}
	if debug {
		st.log.Debug("pxe: reply", "mac", c.MAC.String(), "type", r.MessageType().String(), "ip", ipString(r.YourIPAddr), "file", r.BootFileName, "bytes", len(b))
	}
	return b, nil
}

// decide runs the policy for network-boot clients. ok is false when the
// client gets no boot information.
func (st *state) decide(ctx context.Context, c Client, cerr error) (Answer, bool) {
	d := st.decision(ctx, c, cerr)
	return d.answer, d.ok
}

// verdict is what the policy decided for one request.
type verdict struct {
	answer Answer
	ok     bool // answer holds boot information
	ignore bool // no reply at all (ErrIgnore)
}

func (st *state) decision(ctx context.Context, c Client, cerr error) verdict {
	if st.policy == nil || !(c.IsPXE() || c.IsHTTPBoot() || c.IsIPXE()) {
		return verdict{}
	}
	if cerr != nil {
		st.log.Info("pxe: malformed boot options, no boot information", "mac", c.MAC.String(), "err", cerr)
		return verdict{}
	}
	var a Answer
	var err error
	if st.builtin {
		a, err = st.policy.Decide(ctx, c)
	} else {
		tctx, cancel := context.WithTimeout(ctx, st.timeout)
		a, err = st.policy.Decide(tctx, c)
		cancel()
	}
	arch, _ := c.Arch()
	switch {
	case errors.Is(err, ErrIgnore):
		st.log.Info("pxe: ignored", "mac", c.MAC.String(), "arch", int(arch), "err", err)
		return verdict{ignore: true}
	case errors.Is(err, ErrNoBoot):
		st.log.Info("pxe: nothing to boot", "mac", c.MAC.String(), "arch", int(arch), "err", err)
		return verdict{}
	case err != nil:
		st.log.Error("pxe: boot policy failed", "mac", c.MAC.String(), "arch", int(arch), "err", err)
		return verdict{}
	}
	if err := CheckBootFile(a.BootFile); err != nil {
		st.log.Error("pxe: boot policy answer unusable", "mac", c.MAC.String(), "err", err)
		return verdict{}
	}
	st.log.Info("pxe: boot", "mac", c.MAC.String(), "arch", int(arch), "firmware", c.Firmware().String(), "ipxe", c.IsIPXE(), "file", a.BootFile)
	return verdict{answer: a, ok: true}
}

// base resets sc's reply to a reply of type mt to req from this server.
func (st *state) base(sc *scratch, req *dhcpv4.DHCPv4, mt dhcpv4.MessageType) (*dhcpv4.DHCPv4, error) {
	d := &sc.reply
	resetReply(d, req)
	switch mt {
	case dhcpv4.MessageTypeOffer:
		st.withOffer(d)
	case dhcpv4.MessageTypeAck:
		st.withAck(d)
	case dhcpv4.MessageTypeNak:
		st.withNak(d)
	default:
		dhcpv4.WithMessageType(mt)(d)
	}
	st.withServerID(d)
	return d, nil
}

// newReply is dhcpv4.NewReplyFromRequest without its random transaction
// ID: that costs a getrandom call and a context timer per packet, and
// WithReply overwrites it with the request's at once.
func newReply(req *dhcpv4.DHCPv4, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	d := &dhcpv4.DHCPv4{}
	resetReply(d, req)
	for _, m := range mods {
		m(d)
	}
	return d
}

// resetReply makes d what newReply(req) returns, reusing d's option map:
// the fields as dhcpv4.New leaves them, then NewReplyFromRequest's
// modifiers. d then aliases req's chaddr, giaddr and copied options.
func resetReply(d, req *dhcpv4.DHCPv4) {
	opts := d.Options
	if opts == nil {
		opts = dhcpv4.Options{}
	} else {
		clear(opts)
	}
	*d = dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootRequest,
		HWType:        iana.HWTypeEthernet,
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: net.IPv4zero,
		Options:       opts,
	}
	dhcpv4.WithReply(req)(d)
	dhcpv4.WithGatewayIP(req.GatewayIPAddr)(d)
	dhcpv4.WithOptionCopied(req, dhcpv4.OptionRelayAgentInformation)(d)
	// RFC 6842: echo the client identifier.
	dhcpv4.WithOptionCopied(req, dhcpv4.OptionClientIdentifier)(d)
}

func (st *state) withAnswer(r *dhcpv4.DHCPv4, c Client, a Answer) error {
	m, err := WithAnswer(c, a, st.self)
	if err != nil {
		return err
	}
	m(r)
	return nil
}

// proxy answers port 67 in ModeProxy: a PXE DISCOVER gets an OFFER without
// an address; a REQUEST that selected this server gets the same as an ACK.
func (st *state) proxy(ctx context.Context, sc *scratch, req *dhcpv4.DHCPv4, c Client, cerr error) (*dhcpv4.DHCPv4, error) {
	var mt dhcpv4.MessageType
	switch c.MessageType {
	case dhcpv4.MessageTypeDiscover:
		mt = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		if !c.ServerID.Equal(st.self) {
			return nil, nil
		}
		mt = dhcpv4.MessageTypeAck
	default:
		return nil, nil
	}
	if !c.IsPXE() && !c.IsHTTPBoot() {
		return nil, nil
	}
	a, ok := st.decide(ctx, c, cerr)
	if !ok {
		return nil, nil
	}
	r, err := st.base(sc, req, mt)
	if err != nil {
		return nil, err
	}
	if st.steer(c) {
		// No boot file and no option 43: EDK2 then asks port 4011.
		WithVendorClass(vendorPXE)(r)
		WithNextServer(st.self, "")(r)
		return r, nil
	}
	return r, st.withAnswer(r, c, a)
}

func (st *state) steer(c Client) bool {
	return st.s.UEFI == UEFISteer && c.Firmware().IsEFI() && !c.IsIPXE() && !c.IsHTTPBoot()
}

// bootServer answers port 4011: a REQUEST (or INFORM) gets an ACK with the
// boot file and no address. iPXE sends it unicast with xid 0, so nothing
// is matched by xid.
func (st *state) bootServer(ctx context.Context, sc *scratch, req *dhcpv4.DHCPv4, c Client, cerr error) (*dhcpv4.DHCPv4, error) {
	if c.MessageType != dhcpv4.MessageTypeRequest && c.MessageType != dhcpv4.MessageTypeInform {
		return nil, nil
	}
	a, ok := st.decide(ctx, c, cerr)
	if !ok {
		return nil, nil
	}
	r, err := st.base(sc, req, dhcpv4.MessageTypeAck)
	if err != nil {
		return nil, err
	}
	return r, st.withAnswer(r, c, a)
}

// full answers port 67 in ModeFull.
func (st *state) full(ctx context.Context, sc *scratch, req *dhcpv4.DHCPv4, c Client, cerr error) (*dhcpv4.DHCPv4, error) {
	t := st.table
	if c.RelayAddr != nil {
		ip, _ := netip.AddrFromSlice(c.RelayAddr)
		if !t.prefix.Contains(ip) {
			return nil, fmt.Errorf("pxe: relay %s of %s is outside %s", c.RelayAddr, c.MAC, t.prefix)
		}
	}
	if n := len(c.MAC); n != 6 && n != 8 {
		// Leases are kept by hardware address. An empty one (hlen 0, as
		// IPoIB sends) would take a fresh address on every request, and
		// other lengths than Ethernet's and EUI-64's cannot be read back
		// from the lease file, which would stop the next start.
		return nil, fmt.Errorf("pxe: no lease for a %d-byte hardware address (htype %d)", n, req.HWType)
	}
	mac := c.MAC.String()
	now := time.Now()
	switch c.MessageType {
	case dhcpv4.MessageTypeDiscover:
		// The policy first: an ignored client must not take an address.
		v := st.decision(ctx, c, cerr)
		if v.ignore {
			return nil, nil
		}
		ip, err := t.offer(mac, addrOf(c.RequestedAddr), now)
		if err != nil {
			return nil, err
		}
		return st.lease(sc, req, v, c, dhcpv4.MessageTypeOffer, ip)
	case dhcpv4.MessageTypeRequest:
		if c.ServerID != nil && !c.ServerID.Equal(st.self) {
			t.forget(mac) // the client took another server's offer
			return nil, nil
		}
		v := st.decision(ctx, c, cerr)
		if v.ignore {
			return nil, nil
		}
		want := c.RequestedAddr
		if want == nil {
			want = c.ClientAddr
		}
		ip := addrOf(want)
		if !ip.IsValid() || !t.grantable(mac, ip, now) {
			if c.ServerID == nil && ip.IsValid() && !t.prefix.Contains(ip) && c.RelayAddr == nil {
				// INIT-REBOOT on another network: NAK so it restarts.
				return st.nak(sc, req, "wrong network")
			}
			return st.nak(sc, req, "address not available")
		}
		if err := t.commit(mac, ip, now, now.Add(st.s.Network.leaseTime())); err != nil {
			if errors.Is(err, ErrPoolExhausted) {
				return st.nak(sc, req, "address not available")
			}
			st.log.Error("pxe: store lease", "mac", mac, "ip", ip.String(), "err", err)
			return nil, err
		}
		st.log.Info("pxe: lease", "mac", mac, "ip", ip.String())
		return st.lease(sc, req, v, c, dhcpv4.MessageTypeAck, ip)
	case dhcpv4.MessageTypeRelease:
		if err := t.release(mac, addrOf(c.ClientAddr), now); err != nil {
			st.log.Error("pxe: store release", "mac", mac, "err", err)
		}
		return nil, nil
	case dhcpv4.MessageTypeDecline:
		// RFC 2131 section 4.3.3: a DECLINE names its server (option 54)
		// and the address (option 50); one for another server, or for an
		// address this machine does not hold, is ignored.
		ip := addrOf(c.RequestedAddr)
		if c.ServerID == nil || !c.ServerID.Equal(st.self) || !ip.IsValid() {
			return nil, nil
		}
		declined, err := t.decline(mac, ip, now)
		if err != nil {
			st.log.Error("pxe: store decline", "mac", mac, "err", err)
		}
		if declined {
			st.log.Info("pxe: address declined", "mac", mac, "ip", ip.String())
		} else {
			st.log.Info("pxe: ignored DECLINE of an address the machine does not hold", "mac", mac, "ip", ip.String())
		}
		return nil, nil
	case dhcpv4.MessageTypeInform:
		v := st.decision(ctx, c, cerr)
		if v.ignore {
			return nil, nil
		}
		r, err := st.base(sc, req, dhcpv4.MessageTypeAck)
		if err != nil {
			return nil, err
		}
		st.withNetwork(r)
		// RFC 2131 section 3.4: no lease time in an ACK to INFORM.
		dhcpv4.WithoutOption(dhcpv4.OptionIPAddressLeaseTime)(r)
		if v.ok {
			if err := st.withAnswer(r, c, v.answer); err != nil {
				return nil, err
			}
		}
		return r, nil
	}
	return nil, nil
}

func (st *state) lease(sc *scratch, req *dhcpv4.DHCPv4, v verdict, c Client, mt dhcpv4.MessageType, ip netip.Addr) (*dhcpv4.DHCPv4, error) {
	r, err := st.base(sc, req, mt)
	if err != nil {
		return nil, err
	}
	sc.yiaddr = ip.As4()
	dhcpv4.WithYourIP(net.IP(sc.yiaddr[:]))(r)
	st.withNetwork(r)
	if v.ok {
		if err := st.withAnswer(r, c, v.answer); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func (st *state) nak(sc *scratch, req *dhcpv4.DHCPv4, why string) (*dhcpv4.DHCPv4, error) {
	r, err := st.base(sc, req, dhcpv4.MessageTypeNak)
	if err != nil {
		return nil, err
	}
	dhcpv4.WithOption(dhcpv4.OptMessage(why))(r)
	// RFC 2131 section 4.3.2: a NAK through a relay sets the broadcast bit.
	if req.GatewayIPAddr.To4() != nil && !req.GatewayIPAddr.IsUnspecified() {
		r.SetBroadcast()
	}
	return r, nil
}

func addrOf(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok {
		return netip.Addr{}
	}
	return a
}

func ipString(ip net.IP) string {
	if ip == nil {
		return ""
	}
	return ip.String()
}

// archNumbers renders architectures as their numbers, since unknown codes
// have no name and numbers are what specifications and firmware use.
func archNumbers(as []iana.Arch) []int {
	out := make([]int, len(as))
	for i, a := range as {
		out[i] = int(a)
	}
	return out
}
