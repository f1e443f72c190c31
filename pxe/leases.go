package pxe

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/nixboot/nixboot/internal/filelock"
)

// Lease is one address handed to one machine, as stored in the lease file.
type Lease struct {
	MAC     string    `json:"mac"` // net.HardwareAddr.String form
	IP      string    `json:"ip"`
	Expires time.Time `json:"expires"`
	// Declined marks an address a client reported in use (DHCPDECLINE); it
	// is not handed out before Expires.
	Declined bool `json:"declined,omitempty"`
}

// leaseFileVersion is the format version written and accepted.
const leaseFileVersion = 1

type leaseFileData struct {
	Version int     `json:"version"`
	Leases  []Lease `json:"leases"`
}

// How long an OFFERed address stays set aside for the client, and how long
// a declined address stays out of use.
const (
	offerHold   = 30 * time.Second
	declineHold = 10 * time.Minute
	// Expired leases are kept this long so that a returning machine gets its
	// old address back; after that they are dropped from the file.
	expiredKeep = 7 * 24 * time.Hour
)

type lease struct {
	mac      string
	ip       netip.Addr
	expires  time.Time
	declined bool
}

type offer struct {
	ip    netip.Addr
	until time.Time
}

// leaseTable is the address state of one Network: committed leases (on
// disk before any ACK goes out) and pending offers (memory only).
type leaseTable struct {
	net      *Network
	prefix   netip.Prefix
	start    netip.Addr // pool, invalid when none
	end      netip.Addr
	reserved map[string]netip.Addr // mac → ip
	resIPs   map[netip.Addr]string // ip → mac
	// infra are the server's own address and the routers and DNS servers
	// it hands out: never given to a client, even inside the pool.
	infra map[netip.Addr]bool

	mu       sync.Mutex
	byIP     map[netip.Addr]*lease
	byMAC    map[string]*lease
	offers   map[string]offer
	offerIPs map[netip.Addr]string
	cursor   netip.Addr
	gen      uint64 // bumped on each committed change

	store *leaseStore // nil = memory only
}

func newLeaseTable(n *Network, self net.IP) (*leaseTable, error) {
	ones, bits := n.Subnet.Mask.Size()
	base, ok := netip.AddrFromSlice(n.Subnet.IP.To4())
	if !ok || bits != 32 {
		return nil, fmt.Errorf("%w: Network.Subnet %q is not an IPv4 subnet", ErrConfig, n.Subnet.String())
	}
	t := &leaseTable{
		net:      n,
		prefix:   netip.PrefixFrom(base, ones).Masked(),
		reserved: map[string]netip.Addr{},
		resIPs:   map[netip.Addr]string{},
		byIP:     map[netip.Addr]*lease{},
		byMAC:    map[string]*lease{},
		offers:   map[string]offer{},
		offerIPs: map[netip.Addr]string{},
		infra:    map[netip.Addr]bool{},
	}
	for _, ip := range append(append([]net.IP{self}, n.Router...), n.DNS...) {
		if a, ok := netip.AddrFromSlice(ip.To4()); ok {
			t.infra[a] = true
		}
	}
	if n.RangeStart != nil || n.RangeEnd != nil {
		s, ok1 := netip.AddrFromSlice(n.RangeStart.To4())
		e, ok2 := netip.AddrFromSlice(n.RangeEnd.To4())
		if !ok1 || !ok2 || !t.prefix.Contains(s) || !t.prefix.Contains(e) || e.Less(s) {
			return nil, fmt.Errorf("%w: range %s-%s is not inside %s", ErrConfig, n.RangeStart, n.RangeEnd, t.prefix)
		}
		t.start, t.end, t.cursor = s, e, s
	}
	for _, r := range n.Reservations {
		ip, ok := netip.AddrFromSlice(r.IP.To4())
		if !ok || !t.prefix.Contains(ip) || len(r.MAC) == 0 {
			return nil, fmt.Errorf("%w: reservation %s → %s is not inside %s", ErrConfig, r.MAC, r.IP, t.prefix)
		}
		if t.infra[ip] {
			return nil, fmt.Errorf("%w: reservation %s → %s: that is the server's, a router's or a DNS server's address", ErrConfig, r.MAC, r.IP)
		}
		if other, dup := t.resIPs[ip]; dup && other != r.MAC.String() {
			return nil, fmt.Errorf("%w: %s reserved for both %s and %s", ErrConfig, ip, other, r.MAC)
		}
		t.reserved[r.MAC.String()] = ip
		t.resIPs[ip] = r.MAC.String()
	}
	return t, nil
}

// usable reports whether ip may go to mac now: inside the subnet, not the
// network or broadcast address, not the server's, a router's or a DNS
// server's, not reserved for or leased or offered to someone else, not
// declined.
func (t *leaseTable) usable(ip netip.Addr, mac string, now time.Time) bool {
	if !t.prefix.Contains(ip) || ip == t.prefix.Addr() || ip == lastAddr(t.prefix) || t.infra[ip] {
		return false
	}
	if m, ok := t.resIPs[ip]; ok && m != mac {
		return false
	}
	if l := t.byIP[ip]; l != nil && (l.mac != mac || l.declined) && now.Before(l.expires) {
		return false
	}
	if m, ok := t.offerIPs[ip]; ok && m != mac && now.Before(t.offers[m].until) {
		return false
	}
	return true
}

func (t *leaseTable) inPool(ip netip.Addr) bool {
	return t.start.IsValid() && !ip.Less(t.start) && !t.end.Less(ip)
}

// offer picks an address for mac and sets it aside; requested is option
// 50, a hint. Order: reservation, the client's lease (even expired),
// its pending offer, the requested address, then a free pool address
// (never used first, then the longest expired).
func (t *leaseTable) offer(mac string, requested netip.Addr, now time.Time) (netip.Addr, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pick := func(ip netip.Addr) netip.Addr {
		if old, ok := t.offers[mac]; ok && old.ip != ip {
			delete(t.offerIPs, old.ip)
		}
		// An expired offer of ip to another machine ends here, so the
		// offer maps never outgrow the pool, whatever MACs arrive.
		if m, ok := t.offerIPs[ip]; ok && m != mac {
			delete(t.offers, m)
		}
		t.offers[mac] = offer{ip: ip, until: now.Add(offerHold)}
		t.offerIPs[ip] = mac
		return ip
	}
	if ip, ok := t.reserved[mac]; ok {
		if !t.usable(ip, mac, now) {
			return netip.Addr{}, fmt.Errorf("%w: reserved %s for %s is in use", ErrPoolExhausted, ip, mac)
		}
		return pick(ip), nil
	}
	if l := t.byMAC[mac]; l != nil && t.inPool(l.ip) && t.usable(l.ip, mac, now) {
		return pick(l.ip), nil
	}
	if o, ok := t.offers[mac]; ok && t.usable(o.ip, mac, now) {
		return pick(o.ip), nil
	}
	if requested.IsValid() && t.inPool(requested) && t.usable(requested, mac, now) {
		return pick(requested), nil
	}
	if !t.start.IsValid() {
		return netip.Addr{}, fmt.Errorf("%w: no pool and no reservation for %s", ErrPoolExhausted, mac)
	}
	// First pass: addresses never leased, from the cursor round the pool.
	var oldest netip.Addr
	var oldestExp time.Time
	ip := t.cursor
	for {
		if t.usable(ip, mac, now) {
			l := t.byIP[ip]
			if l == nil {
				t.cursor = t.nextInPool(ip)
				return pick(ip), nil
			}
			if !oldest.IsValid() || l.expires.Before(oldestExp) {
				oldest, oldestExp = ip, l.expires
			}
		}
		ip = t.nextInPool(ip)
		if ip == t.cursor {
			break
		}
	}
	if oldest.IsValid() {
		return pick(oldest), nil
	}
	return netip.Addr{}, fmt.Errorf("%w: %s-%s", ErrPoolExhausted, t.start, t.end)
}

func (t *leaseTable) nextInPool(ip netip.Addr) netip.Addr {
	if ip == t.end {
		return t.start
	}
	return ip.Next()
}

// grantable reports whether a REQUEST of ip by mac can be ACKed.
func (t *leaseTable) grantable(mac string, ip netip.Addr, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.grantableLocked(mac, ip, now)
}

func (t *leaseTable) grantableLocked(mac string, ip netip.Addr, now time.Time) bool {
	if !t.usable(ip, mac, now) {
		return false
	}
	if r, ok := t.reserved[mac]; ok {
		return r == ip
	}
	if l := t.byMAC[mac]; l != nil && l.ip == ip {
		return true
	}
	return t.inPool(ip)
}

// commit records a lease of ip to mac until expires and returns once it is
// on disk (when there is a store). It fails when the address is no longer
// grantable.
func (t *leaseTable) commit(mac string, ip netip.Addr, now, expires time.Time) error {
	t.mu.Lock()
	if !t.grantableLocked(mac, ip, now) {
		t.mu.Unlock()
		return fmt.Errorf("%w: %s not available for %s", ErrPoolExhausted, ip, mac)
	}
	t.setLocked(&lease{mac: mac, ip: ip, expires: expires})
	if o, ok := t.offers[mac]; ok {
		delete(t.offerIPs, o.ip)
		delete(t.offers, mac)
	}
	gen := t.gen
	t.mu.Unlock()
	return t.sync(gen)
}

// setLocked replaces whatever mac and ip had with l.
func (t *leaseTable) setLocked(l *lease) {
	if old := t.byMAC[l.mac]; old != nil && l.mac != "" {
		delete(t.byIP, old.ip)
	}
	if old := t.byIP[l.ip]; old != nil {
		delete(t.byMAC, old.mac)
	}
	t.byIP[l.ip] = l
	if l.mac != "" {
		t.byMAC[l.mac] = l
	}
	t.gen++
}

// release ends mac's lease of ip (DHCPRELEASE). The record is kept,
// expired, so the machine gets the same address next time.
func (t *leaseTable) release(mac string, ip netip.Addr, now time.Time) error {
	t.mu.Lock()
	l := t.byMAC[mac]
	if l == nil || l.ip != ip || !now.Before(l.expires) {
		t.mu.Unlock()
		return nil
	}
	t.setLocked(&lease{mac: mac, ip: ip, expires: now})
	gen := t.gen
	t.mu.Unlock()
	return t.sync(gen)
}

// decline takes ip out of use for declineHold (DHCPDECLINE: the client
// found it in use by someone else). Only the machine the address is offered
// or leased to can decline it; from any other MAC it changes nothing, so a
// stray or forged DECLINE cannot end another machine's lease.
func (t *leaseTable) decline(mac string, ip netip.Addr, now time.Time) (bool, error) {
	t.mu.Lock()
	l := t.byMAC[mac]
	leased := l != nil && l.ip == ip && now.Before(l.expires)
	o, offered := t.offers[mac]
	offered = offered && o.ip == ip
	if !t.prefix.Contains(ip) || (!leased && !offered) {
		t.mu.Unlock()
		return false, nil
	}
	if l != nil && l.ip == ip {
		delete(t.byMAC, mac)
	}
	if offered {
		delete(t.offerIPs, ip)
		delete(t.offers, mac)
	}
	t.setLocked(&lease{ip: ip, expires: now.Add(declineHold), declined: true})
	gen := t.gen
	t.mu.Unlock()
	return true, t.sync(gen)
}

// forget drops mac's pending offer (the client chose another server).
func (t *leaseTable) forget(mac string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if o, ok := t.offers[mac]; ok {
		delete(t.offerIPs, o.ip)
		delete(t.offers, mac)
	}
}

func (t *leaseTable) snapshot(now time.Time) (uint64, []Lease) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Lease, 0, len(t.byIP))
	for _, l := range t.byIP {
		if now.Sub(l.expires) > expiredKeep {
			continue
		}
		out = append(out, Lease{MAC: l.mac, IP: l.ip.String(), Expires: l.expires.UTC(), Declined: l.declined})
	}
	slices.SortFunc(out, func(a, b Lease) int {
		x, _ := netip.ParseAddr(a.IP)
		y, _ := netip.ParseAddr(b.IP)
		return x.Compare(y)
	})
	return t.gen, out
}

// Leases returns the committed leases, sorted by address.
func (t *leaseTable) leases() []Lease {
	_, l := t.snapshot(time.Now())
	return l
}

func (t *leaseTable) sync(gen uint64) error {
	if t.store == nil {
		return nil
	}
	return t.store.sync(gen, t.snapshot)
}

// load fills the table from ls (validated against the network).
func (t *leaseTable) load(ls []Lease, path string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, l := range ls {
		ip, err := netip.ParseAddr(l.IP)
		if err != nil || !ip.Is4() {
			return fmt.Errorf("%w: %s: lease %d: bad address %q", ErrLeaseFile, path, i, l.IP)
		}
		if l.MAC != "" {
			if _, err := net.ParseMAC(l.MAC); err != nil {
				return fmt.Errorf("%w: %s: lease %d: bad MAC %q", ErrLeaseFile, path, i, l.MAC)
			}
		} else if !l.Declined {
			return fmt.Errorf("%w: %s: lease %d: no MAC", ErrLeaseFile, path, i)
		}
		if _, dup := t.byIP[ip]; dup {
			return fmt.Errorf("%w: %s: address %s appears twice", ErrLeaseFile, path, ip)
		}
		if _, dup := t.byMAC[l.MAC]; dup && l.MAC != "" {
			return fmt.Errorf("%w: %s: MAC %s appears twice", ErrLeaseFile, path, l.MAC)
		}
		// Leases outside today's subnet are kept (and rewritten) so that a
		// configuration change never silently drops what is on disk.
		t.setLocked(&lease{mac: l.MAC, ip: ip, expires: l.Expires, declined: l.Declined})
	}
	return nil
}

// leaseStore writes the lease table to one file, atomically: a temporary
// file in the same directory, fsync, rename, fsync of the directory. A
// crash at any point leaves either the old or the new file. An flock on
// "<path>.lock" keeps a second server off the same file.
type leaseStore struct {
	path string
	lock *os.File

	mu      sync.Mutex
	written uint64
}

func openLeaseStore(path string) (*leaseStore, []Lease, error) {
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("pxe: lease lock %s: %w", path, err)
	}
	if err := filelock.TryLock(lock); err != nil {
		lock.Close()
		if errors.Is(err, errors.ErrUnsupported) {
			return nil, nil, fmt.Errorf("pxe: lease file %s: %w", path, err)
		}
		return nil, nil, fmt.Errorf("pxe: lease file %s is in use by another server: %w", path, err)
	}
	ls, err := readLeaseFile(path)
	if err != nil {
		lock.Close()
		return nil, nil, err
	}
	return &leaseStore{path: path, lock: lock}, ls, nil
}

// ReadLeaseFile parses a lease file. A missing file is no leases; anything
// unreadable is ErrLeaseFile (wrapped, naming the file), and the file is
// left as it is.
func ReadLeaseFile(path string) ([]Lease, error) { return readLeaseFile(path) }

func readLeaseFile(path string) ([]Lease, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pxe: read lease file %s: %w", path, err)
	}
	var d leaseFileData
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrLeaseFile, path, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: %s: data after the lease list", ErrLeaseFile, path)
	}
	if d.Version != leaseFileVersion {
		return nil, fmt.Errorf("%w: %s: version %d, want %d", ErrLeaseFile, path, d.Version, leaseFileVersion)
	}
	return d.Leases, nil
}

// sync writes the table if generation gen is not on disk yet. Concurrent
// callers share writes: whoever holds the lock writes the newest snapshot,
// which covers every change before it (group commit).
func (s *leaseStore) sync(gen uint64, snap func(time.Time) (uint64, []Lease)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.written >= gen {
		return nil
	}
	cur, ls := snap(time.Now())
	if err := writeFileAtomic(s.path, leaseFileData{Version: leaseFileVersion, Leases: ls}); err != nil {
		return err
	}
	s.written = cur
	return nil
}

func (s *leaseStore) close() error { return s.lock.Close() }

func writeFileAtomic(path string, d leaseFileData) error {
	b, err := json.MarshalIndent(d, "", " ")
	if err != nil {
		return fmt.Errorf("pxe: encode leases for %s: %w", path, err)
	}
	b = append(b, '\n')
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("pxe: write leases %s: %w", tmp, err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pxe: write leases %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("pxe: replace lease file %s: %w", path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("pxe: sync directory of %s: %w", path, err)
	}
	return nil
}

// syncDir makes a rename in dir durable by fsyncing the directory. On
// Windows it does nothing: os.Open opens a directory read-only there, and
// FlushFileBuffers fails on a handle without write access; NTFS journals
// the rename itself.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	v := binary.BigEndian.Uint32(a[:]) | (1<<(32-p.Bits()) - 1)
	var out [4]byte
	binary.BigEndian.PutUint32(out[:], v)
	return netip.AddrFrom4(out)
}
