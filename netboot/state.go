package netboot

import (
	"container/list"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Phase is a step of a network boot, in the order machines go through them.
type Phase string

// Boot phases. A machine's phase only moves forward within one boot; a new
// DHCP request after Done starts the next boot.
const (
	PhaseDHCP   Phase = "dhcp"   // answered a DHCP request
	PhaseLoader Phase = "loader" // fetched a first-stage loader (TFTP or HTTP)
	PhaseScript Phase = "script" // fetched its per-machine iPXE script
	PhaseKernel Phase = "kernel" // fetched its kernel
	PhaseInitrd Phase = "initrd" // fetched an initrd
	PhaseDone   Phase = "done"   // reported that it is booting the kernel
)

var phaseOrder = []Phase{PhaseDHCP, PhaseLoader, PhaseScript, PhaseKernel, PhaseInitrd, PhaseDone}

// MachineState is one machine's progress, as served in JSON.
type MachineState struct {
	MAC     string              `json:"mac"`
	IP      string              `json:"ip,omitempty"`
	Profile string              `json:"profile,omitempty"`
	Phase   Phase               `json:"phase"`
	Updated time.Time           `json:"updated"`
	Phases  map[Phase]time.Time `json:"phases"` // when each phase of the current boot was reached
	Boots   int                 `json:"boots"`  // boots started (DHCP after done, or first seen)
}

// Tracker records each machine's boot phase. The zero Tracker is ready to use
// and safe for concurrent use. It is also an http.Handler serving the states
// as a JSON array sorted by MAC.
type Tracker struct {
	mu   sync.Mutex
	byMA map[string]*tracked
	ipTo map[netip.Addr]string // last known MAC per IP, for TFTP requests
	lru  list.List             // of *tracked, most recently marked first
	now  func() time.Time
	hook func(Phase) // counts phases reached, for metrics
}

// tracked is one machine's state and its place in the Tracker's
// least-recently-marked order.
type tracked struct {
	MachineState
	addr netip.Addr // MachineState.IP, parsed
	elem *list.Element
}

func (t *Tracker) setHook(h func(Phase)) {
	t.mu.Lock()
	t.hook = h
	t.mu.Unlock()
}

// MaxTracked bounds the number of machines a Tracker remembers; the least
// recently updated are forgotten first. Forgetting one costs the same
// whatever the number of machines, so a flood of made-up MACs (any HTTP
// client can send /beacon?mac=...) does not stall the marks of real ones.
const MaxTracked = 65536

// Mark records that mac reached phase. ip and profile are remembered when
// set. Going back to an earlier phase starts a new boot only from DHCP;
// other out-of-order marks (an initrd fetched again) keep the later phase.
func (t *Tracker) Mark(mac net.HardwareAddr, ip netip.Addr, profile string, phase Phase) {
	if len(mac) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	if t.now != nil {
		now = t.now()
	}
	if t.byMA == nil {
		t.byMA, t.ipTo = map[string]*tracked{}, map[netip.Addr]string{}
	}
	key := mac.String()
	tr := t.byMA[key]
	if tr == nil {
		if len(t.byMA) >= MaxTracked {
			t.forget(t.lru.Back().Value.(*tracked))
		}
		tr = &tracked{MachineState: MachineState{MAC: key, Phases: map[Phase]time.Time{}, Boots: 1}}
		tr.elem = t.lru.PushFront(tr)
		t.byMA[key] = tr
	} else {
		t.lru.MoveToFront(tr.elem)
	}
	s := &tr.MachineState
	if phase == PhaseDHCP && s.Phase != PhaseDHCP && s.Phase != "" {
		// iPXE asks DHCP again after the firmware did: same boot unless the
		// last one got to the kernel.
		if rank(s.Phase) >= rank(PhaseKernel) {
			s.Boots++
			s.Phases = map[Phase]time.Time{}
			s.Phase = ""
		}
	}
	if ip.IsValid() && ip != tr.addr {
		if t.ipTo[tr.addr] == key {
			delete(t.ipTo, tr.addr)
		}
		tr.addr, s.IP = ip, ip.String()
	}
	if ip.IsValid() {
		t.ipTo[ip] = key
	}
	if profile != "" {
		s.Profile = profile
	}
	if rank(phase) >= rank(s.Phase) {
		s.Phase = phase
	}
	if _, seen := s.Phases[phase]; !seen {
		s.Phases[phase] = now
		if t.hook != nil {
			t.hook(phase)
		}
	}
	s.Updated = now
}

// MACForIP returns the MAC last seen with ip, for requests (TFTP) that carry
// no MAC.
func (t *Tracker) MACForIP(ip netip.Addr) net.HardwareAddr {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.ipTo[ip]; ok {
		hw, _ := net.ParseMAC(s)
		return hw
	}
	return nil
}

// forget drops tr and the IP that still names it.
func (t *Tracker) forget(tr *tracked) {
	if t.ipTo[tr.addr] == tr.MAC {
		delete(t.ipTo, tr.addr)
	}
	t.lru.Remove(tr.elem)
	delete(t.byMA, tr.MAC)
}

func rank(p Phase) int { return slices.Index(phaseOrder, p) }

// States returns a copy of every machine's state, sorted by MAC.
func (t *Tracker) States() []MachineState {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]MachineState, 0, len(t.byMA))
	for _, tr := range t.byMA {
		s := &tr.MachineState
		c := *s
		c.Phases = make(map[Phase]time.Time, len(s.Phases))
		for k, v := range s.Phases {
			c.Phases[k] = v
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b MachineState) int {
		switch {
		case a.MAC < b.MAC:
			return -1
		case a.MAC > b.MAC:
			return 1
		}
		return 0
	})
	return out
}

// ServeHTTP writes States as JSON.
func (t *Tracker) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(t.States())
}
