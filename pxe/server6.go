package pxe

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
)

// DHCPv6 defaults for Server6.
const (
	DefaultLifetime6 = time.Hour
	// maxPrefixBits6 keeps at least 256 addresses in a Server6 prefix.
	maxPrefixBits6 = 120
	// probeLimit6 bounds the search for a free address after a collision.
	probeLimit6 = 1 << 16
)

// Server6 is a DHCPv6 server (RFC 8415) for network boot on one link: it
// gives clients addresses from Prefix (IA_NA) and, to those that ask for
// option 59, the boot file URL the Policy picks from their architecture
// (option 61), as Server does for DHCPv4 (see Reply6). UEFI PXE and HTTP
// boot over IPv6 and iPXE use it. Clients learn the prefix length and
// routes from router advertisements, which Server6 does not send: a router
// or radvd on the link must.
//
// A client's address is derived from its DUID and IAID (a hash into the
// host part of Prefix), so it gets the same address after the server
// restarts, with no lease file to lose or corrupt. Bindings are kept in
// memory for their valid lifetime, at most 65,536 of them (then clients
// without one get NoAddrsAvail until some expire); two clients whose hashes collide (about
// one pair in 2^63 for a /64, far more often in a small prefix) get
// different addresses, the second the next free one. An address a client
// declines is not given out again until the server restarts.
//
// A client the Policy answers with ErrIgnore gets no reply at all, as from
// Server; the Policy is asked only about clients that ask for option 59.
// Messages relayed (Relay-Forward, nested too) from a link inside Prefix,
// or from relays that name no link, are answered through the relays
// (Relay-Reply to the agent they came from); those from other links, and
// messages to another server, are not. Rapid commit is not offered: clients that ask for it get an
// Advertise and go on with a Request, as RFC 8415 lets them.
//
// Set the fields before calling Serve and don't change them afterwards.
type Server6 struct {
	// Interface is the network device to serve; Serve's socket is bound to
	// it and joins ff02::1:2 there. "" only with Conn given.
	Interface string
	// Conn is the DHCPv6 server socket (UDP port 547), which must receive
	// the link's ff02::1:2 traffic. nil makes Serve open
	// ListenPacket6(Interface). Serve closes it either way.
	Conn net.PacketConn
	// ServerIP is this server's IPv6 address on the link, for tftp:// boot
	// URLs of bare loader names (see BootFileURL6). Required.
	ServerIP net.IP
	// ServerID is the server's DUID (option 2). nil means a DUID-LL from
	// Interface's hardware address or, without an Interface, a DUID-UUID
	// derived from ServerIP; both stay the same across restarts.
	ServerID dhcpv6.DUID
	// Prefix holds the addresses given out, at most /120. The zero value
	// gives none: Solicits go unanswered and Information-Requests get boot
	// information only, for links where another server assigns addresses.
	Prefix netip.Prefix
	// Lifetime is the preferred and valid lifetime of addresses. Zero means
	// DefaultLifetime6. Renewal is asked at half of it (T1) and rebinding
	// at four fifths (T2).
	Lifetime time.Duration
	// DNS servers (option 23) for clients that ask.
	DNS []net.IP
	// Policy decides what clients boot. nil gives addresses only.
	Policy Policy
	// PolicyTimeout bounds one Policy call. Zero means 2 s.
	PolicyTimeout time.Duration
	// Allow, when not empty, lists the only MACs answered; Deny lists MACs
	// never answered and wins. A client's MAC comes from its DUID (types 1
	// and 3); a client whose DUID holds none is answered only when Allow
	// is empty.
	Allow []net.HardwareAddr
	Deny  []net.HardwareAddr
	// Logger receives Debug per message, Info per boot decision and Error
	// for the server's own failures. nil discards.
	Logger *slog.Logger
	// Observer, when set, is told about every message the server reads,
	// once it is handled (for metrics). It is called from the goroutine
	// that handled the message, several at once, and must not block.
	Observer func(Exchange6)

	mu       sync.Mutex
	started  atomic.Bool
	bindings map[netip.Addr]binding6
	declined map[netip.Addr]bool
	// maxBindings is maxBindings6 unless a test sets it.
	maxBindings int
}

// Exchange6 is one DHCPv6 message as Server6 handled it, for
// Server6.Observer.
type Exchange6 struct {
	// MAC is the client's hardware address from its DUID; nil when the
	// message did not parse or its DUID holds none.
	MAC net.HardwareAddr
	// Request is the client's message type (inside the Relay-Forward for a
	// relayed message); 0 when the message did not parse.
	Request dhcpv6.MessageType
	// Reply is the message type sent back (inside the Relay-Reply for a
	// relayed message); 0 for no reply.
	Reply dhcpv6.MessageType
	// Addr is the address the reply binds to the client (Request, Renew,
	// Rebind); the zero Addr when none.
	Addr netip.Addr
	// Err is why there was no reply, or ErrPoolExhausted when an address
	// was asked for and none was free.
	Err error
}

// binding6 is an address given to one identity association.
type binding6 struct {
	ia      string // client DUID and IAID
	expires time.Time
}

// Serve answers DHCPv6 until ctx is cancelled, then closes its socket,
// waits for messages in flight and returns nil. Any other return is the
// first real failure: invalid configuration (ErrConfig), a socket that
// cannot be opened, or a socket read error. Calling Serve twice is an
// error.
func (s *Server6) Serve(ctx context.Context) error {
	if s.started.Swap(true) {
		return fmt.Errorf("%w: Serve called twice", ErrConfig)
	}
	st, err := s.prepare()
	if err != nil {
		closeAll(s.Conn)
		return err
	}
	conn := s.Conn
	if conn == nil {
		if conn, err = ListenPacket6(s.Interface); err != nil {
			return err
		}
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	// A fixed set of workers each reads, answers and writes: a Policy call
	// (up to PolicyTimeout) holds one of them, not the link, and no
	// goroutine or buffer is made per message.
	var wg sync.WaitGroup
	errc := make(chan error, workers6)
	for range workers6 {
		wg.Go(func() { errc <- st.work(ctx, conn) })
	}
	wg.Wait()
	close(errc)
	if ctx.Err() != nil {
		return nil
	}
	// One worker's read error closed the socket under the others: report
	// the cause, not the closing.
	var closed error
	for err := range errc {
		switch {
		case errors.Is(err, net.ErrClosed):
			closed = err
		case err != nil:
			return err
		}
	}
	return closed
}

// workers6 is how many messages Server6 handles at once.
const workers6 = 32

// work answers messages from conn until it fails or is closed; the first
// real read error closes conn for the other workers too.
func (st *state6) work(ctx context.Context, conn net.PacketConn) error {
	buf := make([]byte, 1500)
	for {
		n, peer, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("pxe: DHCPv6 socket closed: %w", err)
			}
			conn.Close()
			return fmt.Errorf("pxe: DHCPv6 read: %w", err)
		}
		ex := Exchange6{}
		reply, err := st.respond(ctx, buf[:n], time.Now(), &ex)
		switch {
		case err != nil:
			st.log.Debug("pxe: DHCPv6 message not answered", "from", peer, "err", err)
			ex.Err = err
		case reply != nil:
			if _, err := conn.WriteTo(reply, peer); err != nil && ctx.Err() == nil {
				st.log.Error("pxe: DHCPv6 reply not sent", "to", peer, "err", err)
				ex.Reply, ex.Err = 0, err
			} else if st.log.Enabled(ctx, slog.LevelDebug) {
				st.log.Debug("pxe: DHCPv6", "from", peer, "mac", ex.MAC.String(), "request", ex.Request, "reply", ex.Reply, "addr", ex.Addr)
			}
		}
		if st.s.Observer != nil {
			st.s.Observer(ex)
		}
	}
}

// state6 is what Serve works from, with defaults filled in.
type state6 struct {
	s        *Server6
	log      *slog.Logger
	self     net.IP
	serverID dhcpv6.DUID
	timeout  time.Duration
	lifetime time.Duration
	macs     macFilter
}

func (s *Server6) prepare() (*state6, error) {
	st := &state6{s: s, log: s.Logger, timeout: s.PolicyTimeout, lifetime: s.Lifetime, serverID: s.ServerID}
	if st.log == nil {
		st.log = slog.New(slog.DiscardHandler)
	}
	if st.timeout <= 0 {
		st.timeout = 2 * time.Second
	}
	if st.lifetime == 0 {
		st.lifetime = DefaultLifetime6
	}
	if st.lifetime < time.Minute {
		return nil, fmt.Errorf("%w: Server6.Lifetime %v is under a minute", ErrConfig, s.Lifetime)
	}
	if s.ServerIP.To16() == nil || s.ServerIP.To4() != nil {
		return nil, fmt.Errorf("%w: Server6.ServerIP %q is not an IPv6 address", ErrConfig, s.ServerIP)
	}
	st.self = s.ServerIP
	if s.Prefix.IsValid() {
		if !s.Prefix.Addr().Is6() || s.Prefix.Addr().Is4In6() {
			return nil, fmt.Errorf("%w: Server6.Prefix %s is not IPv6", ErrConfig, s.Prefix)
		}
		if s.Prefix.Bits() > maxPrefixBits6 {
			return nil, fmt.Errorf("%w: Server6.Prefix %s holds fewer than 256 addresses (at most /%d)", ErrConfig, s.Prefix, maxPrefixBits6)
		}
	}
	for _, ip := range s.DNS {
		if ip.To16() == nil || ip.To4() != nil {
			return nil, fmt.Errorf("%w: Server6.DNS %q is not an IPv6 address", ErrConfig, ip)
		}
	}
	if st.serverID == nil && s.Interface == "" {
		// Stable for as long as the address is: a name-based UUID
		// (RFC 4122 version 5 layout) from ServerIP.
		sum := sha256.Sum256(append([]byte("nixboot DHCPv6 server "), s.ServerIP.To16()...))
		var u [16]byte
		copy(u[:], sum[:16])
		u[6] = u[6]&0x0f | 0x50
		u[8] = u[8]&0x3f | 0x80
		st.serverID = &dhcpv6.DUIDUUID{UUID: u}
	}
	if st.serverID == nil {
		ifi, err := net.InterfaceByName(s.Interface)
		if err != nil {
			return nil, fmt.Errorf("%w: Server6.Interface: %w", ErrConfig, err)
		}
		if len(ifi.HardwareAddr) == 0 {
			return nil, fmt.Errorf("%w: Server6.Interface %s has no hardware address for a DUID: set ServerID", ErrConfig, s.Interface)
		}
		st.serverID = &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: ifi.HardwareAddr}
	}
	st.macs = newMACFilter(s.Allow, s.Deny)
	return st, nil
}

// Reasons a DHCPv6 message gets no answer.
var (
	errNotForUs6   = errors.New("pxe: DHCPv6 message for another server")
	errUnserved6   = errors.New("pxe: DHCPv6 message not served")
	errNoClientID6 = errors.New("pxe: DHCPv6 message without a client identifier")
)

// respond answers one DHCPv6 packet; nil and no error means the message is
// not one to answer (an Advertise, say).
//
// ex, when not nil, gets the message's type and client MAC, and
// ErrPoolExhausted when an IA got no address.
func (st *state6) respond(ctx context.Context, pkt []byte, now time.Time, ex *Exchange6) ([]byte, error) {
	if ex == nil {
		ex = &Exchange6{}
	}
	msg, err := dhcpv6.FromBytes(pkt)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadOption, err)
	}
	req, ok := msg.(*dhcpv6.Message)
	var relay *dhcpv6.RelayMessage
	if !ok {
		relay, _ = msg.(*dhcpv6.RelayMessage)
		if relay == nil || relay.MessageType != dhcpv6.MessageTypeRelayForward {
			return nil, nil // a Relay-Reply: another server's
		}
		if req, err = relay.GetInnerMessage(); err != nil {
			return nil, fmt.Errorf("%w: relayed message: %w", ErrBadOption, err)
		}
		link, err := clientLink(relay)
		if err != nil {
			return nil, err
		}
		// The relay nearest the client names its link with a global or
		// unique local address; a link other than Prefix's is another
		// server's to serve. A relay with no such address sends :: or a
		// link-local one, which names no link.
		if st.s.Prefix.IsValid() && !link.IsUnspecified() && !link.IsLinkLocalUnicast() && !st.s.Prefix.Contains(link) {
			return nil, fmt.Errorf("%w: relayed from link %s, outside %s", errNotForUs6, link, st.s.Prefix)
		}
	}
	reply, err := st.reply(ctx, msg, req, now, ex)
	if reply == nil || err != nil {
		return nil, err
	}
	ex.Reply = reply.MessageType
	if relay == nil {
		return reply.ToBytes(), nil
	}
	out, err := dhcpv6.NewRelayReplFromRelayForw(relay, reply)
	if err != nil {
		return nil, fmt.Errorf("pxe: DHCPv6 relay reply: %w", err)
	}
	return out.ToBytes(), nil
}

// clientLink is the link-address of the relay agent nearest the client.
func clientLink(relay *dhcpv6.RelayMessage) (netip.Addr, error) {
	for {
		inner, err := dhcpv6.DecapsulateRelay(relay)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("%w: relayed message: %w", ErrBadOption, err)
		}
		next, ok := inner.(*dhcpv6.RelayMessage)
		if !ok {
			a, ok := netip.AddrFromSlice(relay.LinkAddr)
			if !ok {
				return netip.Addr{}, fmt.Errorf("%w: relay link-address %v", ErrBadOption, relay.LinkAddr)
			}
			return a.Unmap(), nil
		}
		relay = next
	}
}

// reply answers the client message req, which msg is or carries (relayed);
// nil and no error means no answer.
func (st *state6) reply(ctx context.Context, msg dhcpv6.DHCPv6, req *dhcpv6.Message, now time.Time, ex *Exchange6) (*dhcpv6.Message, error) {
	t := req.MessageType
	ex.Request = t
	switch t {
	case dhcpv6.MessageTypeSolicit, dhcpv6.MessageTypeRequest, dhcpv6.MessageTypeRenew,
		dhcpv6.MessageTypeRebind, dhcpv6.MessageTypeConfirm, dhcpv6.MessageTypeRelease,
		dhcpv6.MessageTypeDecline, dhcpv6.MessageTypeInformationRequest:
	default:
		return nil, nil // a server's message, or one no server answers
	}
	// For Release and Decline this is ErrNotRequest (nothing to boot), with
	// the MAC still read for Allow and Deny (from the DUID, or from a
	// relay's client link-layer address option).
	c, cerr := ClientFromMessage6(msg)
	ex.MAC = c.MAC
	if !st.macs.allowed(c.MAC) {
		return nil, fmt.Errorf("%w: %s not allowed", ErrIgnore, c.MAC)
	}
	clientID := req.Options.ClientID()
	sid := req.Options.ServerID()
	switch {
	case clientID == nil && t != dhcpv6.MessageTypeInformationRequest:
		return nil, errNoClientID6
	case sid != nil && !sid.Equal(st.serverID):
		return nil, errNotForUs6
	case sid == nil && (t == dhcpv6.MessageTypeRequest || t == dhcpv6.MessageTypeRenew ||
		t == dhcpv6.MessageTypeRelease || t == dhcpv6.MessageTypeDecline):
		return nil, fmt.Errorf("%w: %s without a server identifier", ErrBadOption, t)
	case sid != nil && (t == dhcpv6.MessageTypeSolicit || t == dhcpv6.MessageTypeRebind || t == dhcpv6.MessageTypeConfirm):
		return nil, fmt.Errorf("%w: %s with a server identifier", ErrBadOption, t)
	}
	if t == dhcpv6.MessageTypeSolicit && !st.s.Prefix.IsValid() {
		return nil, fmt.Errorf("%w: no Prefix to give addresses from", errUnserved6)
	}
	mods := []dhcpv6.Modifier{dhcpv6.WithServerID(st.serverID)}
	var reply *dhcpv6.Message
	var err error
	switch t {
	case dhcpv6.MessageTypeSolicit:
		mods = append(mods, st.addresses(req, clientID, now, false, ex)...)
		reply, err = dhcpv6.NewAdvertiseFromSolicit(req, mods...)
	case dhcpv6.MessageTypeRequest, dhcpv6.MessageTypeRenew, dhcpv6.MessageTypeRebind:
		mods = append(mods, st.addresses(req, clientID, now, true, ex)...)
		reply, err = dhcpv6.NewReplyFromMessage(req, mods...)
	case dhcpv6.MessageTypeConfirm:
		status := st.confirm(req)
		if status == nil {
			return nil, fmt.Errorf("%w: Confirm without addresses (RFC 8415 18.3.3)", errUnserved6)
		}
		mods = append(mods, dhcpv6.WithOption(status))
		reply, err = dhcpv6.NewReplyFromMessage(req, mods...)
	case dhcpv6.MessageTypeRelease, dhcpv6.MessageTypeDecline:
		st.release(req, clientID, t == dhcpv6.MessageTypeDecline)
		mods = append(mods, dhcpv6.WithOption(&dhcpv6.OptStatusCode{StatusCode: iana.StatusSuccess}))
		reply, err = dhcpv6.NewReplyFromMessage(req, mods...)
		if err != nil {
			return nil, fmt.Errorf("pxe: DHCPv6 %s reply: %w", t, err)
		}
		return reply, nil // no configuration options (RFC 8415 18.3.7)
	case dhcpv6.MessageTypeInformationRequest:
		if clientID == nil {
			// NewReplyFromMessage wants one to echo; RFC 8415 lets a
			// client leave it out here.
			reply = &dhcpv6.Message{MessageType: dhcpv6.MessageTypeReply, TransactionID: req.TransactionID}
			for _, m := range mods {
				m(reply)
			}
		} else {
			reply, err = dhcpv6.NewReplyFromMessage(req, mods...)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("pxe: DHCPv6 %s reply: %w", t, err)
	}
	if len(st.s.DNS) > 0 && req.IsOptionRequested(dhcpv6.OptionDNSRecursiveNameServer) {
		reply.UpdateOption(dhcpv6.OptDNS(st.s.DNS...))
	}
	if cerr == nil && req.IsOptionRequested(dhcpv6.OptionBootfileURL) {
		if err := st.boot(ctx, reply, c); errors.Is(err, ErrIgnore) {
			return nil, err
		}
	}
	return reply, nil
}

// boot adds the Policy's boot file URL to reply. An error wrapping
// ErrIgnore means the client gets no reply at all, as from Server.
func (st *state6) boot(ctx context.Context, reply *dhcpv6.Message, c Client) error {
	if st.s.Policy == nil {
		return nil
	}
	tctx, cancel := context.WithTimeout(ctx, st.timeout)
	a, err := st.s.Policy.Decide(tctx, c)
	cancel()
	if err != nil {
		st.log.Info("pxe: DHCPv6 client gets no boot information", "mac", c.MAC.String(), "archs", archNumbers(c.Archs), "err", err)
		return err
	}
	m, err := WithAnswer6(a, st.self)
	if err != nil {
		st.log.Error("pxe: DHCPv6 boot answer unusable", "mac", c.MAC.String(), "bootfile", a.BootFile, "err", err)
		return err
	}
	m(reply)
	st.log.Info("pxe: DHCPv6 boot", "mac", c.MAC.String(), "archs", archNumbers(c.Archs), "url", reply.Options.BootFileURL())
	return nil
}

// addresses answers each IA_NA of req: the IA's address with the
// lifetimes, or NoAddrsAvail. bind records the address (Request, Renew,
// Rebind); an Advertise only proposes it. An address the client holds that
// is no longer its own is returned with zero lifetimes, so it stops using
// it.
func (st *state6) addresses(req *dhcpv6.Message, clientID dhcpv6.DUID, now time.Time, bind bool, ex *Exchange6) []dhcpv6.Modifier {
	var mods []dhcpv6.Modifier
	lt := st.lifetime
	for _, ia := range req.Options.IANA() {
		out := &dhcpv6.OptIANA{IaId: ia.IaId}
		key := iaKey(clientID, ia.IaId)
		st.s.mu.Lock()
		a, ok := st.s.addressFor(key, st.self, now, bind, lt)
		st.s.mu.Unlock()
		if !ok {
			out.Options.Add(&dhcpv6.OptStatusCode{StatusCode: iana.StatusNoAddrsAvail, StatusMessage: "no address free"})
			st.log.Error("pxe: DHCPv6 prefix exhausted", "prefix", st.s.Prefix.String())
			ex.Err = fmt.Errorf("%w: %s", ErrPoolExhausted, st.s.Prefix)
			mods = append(mods, dhcpv6.WithOption(out))
			continue
		}
		out.T1, out.T2 = lt/2, lt*4/5
		out.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: net.IP(a.AsSlice()), PreferredLifetime: lt, ValidLifetime: lt})
		if bind && !ex.Addr.IsValid() {
			ex.Addr = a
		}
		for _, held := range ia.Options.Addresses() {
			if h, ok := netip.AddrFromSlice(held.IPv6Addr); ok && h.Unmap() != a {
				out.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: held.IPv6Addr})
			}
		}
		mods = append(mods, dhcpv6.WithOption(out))
	}
	return mods
}

// confirm answers a Confirm: whether every address the client holds is on
// this link (RFC 8415 section 18.3.3).
// A Confirm without addresses gets no reply (nil).
func (st *state6) confirm(req *dhcpv6.Message) *dhcpv6.OptStatusCode {
	found := false
	for _, ia := range req.Options.IANA() {
		for _, held := range ia.Options.Addresses() {
			found = true
			a, ok := netip.AddrFromSlice(held.IPv6Addr)
			if !ok || !st.s.Prefix.Contains(a) {
				return &dhcpv6.OptStatusCode{StatusCode: iana.StatusNotOnLink, StatusMessage: "not on this link"}
			}
		}
	}
	if !found {
		return nil
	}
	return &dhcpv6.OptStatusCode{StatusCode: iana.StatusSuccess}
}

// release ends the bindings of req's IAs; declined addresses are never
// given again.
func (st *state6) release(req *dhcpv6.Message, clientID dhcpv6.DUID, declined bool) {
	st.s.mu.Lock()
	defer st.s.mu.Unlock()
	for _, ia := range req.Options.IANA() {
		key := iaKey(clientID, ia.IaId)
		for _, held := range ia.Options.Addresses() {
			a, ok := netip.AddrFromSlice(held.IPv6Addr)
			if !ok {
				continue
			}
			a = a.Unmap()
			if b, ok := st.s.bindings[a]; ok && b.ia == key {
				delete(st.s.bindings, a)
				if declined {
					if st.s.declined == nil {
						st.s.declined = map[netip.Addr]bool{}
					}
					st.s.declined[a] = true
				}
			}
		}
	}
}

// iaKey identifies an identity association: the client's DUID and the IAID.
func iaKey(clientID dhcpv6.DUID, iaid [4]byte) string {
	return string(clientID.ToBytes()) + string(iaid[:])
}

// addressFor returns the address of the identity association key: the one
// bound to it, else the hashed one, else the next free one after it. With
// bind it records the binding until now+valid. The caller holds s.mu.
func (s *Server6) addressFor(key string, self net.IP, now time.Time, bind bool, valid time.Duration) (netip.Addr, bool) {
	if !s.Prefix.IsValid() {
		return netip.Addr{}, false
	}
	selfAddr, _ := netip.AddrFromSlice(self)
	selfAddr = selfAddr.Unmap()
	start := hashedAddr(s.Prefix, key)
	a := start
	for range probeLimit6 {
		b, taken := s.bindings[a]
		usable := a != s.Prefix.Masked().Addr() && a != selfAddr && !s.declined[a] &&
			(!taken || b.ia == key || now.After(b.expires))
		if usable {
			if bind {
				if !s.roomFor(a, now) {
					return netip.Addr{}, false
				}
				s.bindings[a] = binding6{ia: key, expires: now.Add(valid)}
			}
			return a, true
		}
		if a = nextInPrefix(s.Prefix, a); a == start {
			break
		}
	}
	return netip.Addr{}, false
}

// maxBindings6 bounds the bindings a Server6 keeps, whatever the size of
// its prefix: clients inventing DUIDs must not grow its memory without end.
const maxBindings6 = 1 << 16

// roomFor reports whether a binding for a may be stored: it replaces one,
// or there is room, after dropping expired ones if need be. The caller
// holds s.mu.
func (s *Server6) roomFor(a netip.Addr, now time.Time) bool {
	if s.bindings == nil {
		s.bindings = map[netip.Addr]binding6{}
	}
	limit := cmp.Or(s.maxBindings, maxBindings6)
	if _, ok := s.bindings[a]; ok || len(s.bindings) < limit {
		return true
	}
	for k, b := range s.bindings {
		if now.After(b.expires) {
			delete(s.bindings, k)
		}
	}
	return len(s.bindings) < limit
}

// hashedAddr puts a hash of key into the host part of p.
func hashedAddr(p netip.Prefix, key string) netip.Addr {
	sum := sha256.Sum256([]byte(key))
	base := p.Masked().Addr().As16()
	bits := p.Bits()
	for i := range 16 {
		keep := byte(0)
		switch {
		case bits >= (i+1)*8:
			keep = 0xff
		case bits > i*8:
			keep = byte(0xff << (8 - (bits - i*8)))
		}
		base[i] = base[i]&keep | sum[i]&^keep
	}
	return netip.AddrFrom16(base)
}

// nextInPrefix is a+1, wrapping to the start of p.
func nextInPrefix(p netip.Prefix, a netip.Addr) netip.Addr {
	n := a.Next()
	if !n.IsValid() || !p.Contains(n) {
		return p.Masked().Addr()
	}
	return n
}
