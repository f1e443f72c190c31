package netboot_test

import (
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/netboot"
)

func trackerMAC(i int) net.HardwareAddr {
	return net.HardwareAddr{2, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
}

func trackerIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

func TestTrackerForgetsLeastRecentlyMarked(t *testing.T) {
	tr := &netboot.Tracker{}
	for i := range netboot.MaxTracked {
		tr.Mark(trackerMAC(i), trackerIP(i), "", netboot.PhaseDHCP)
	}
	// Machine 0 comes back; machine 1 is now the least recently marked.
	tr.Mark(trackerMAC(0), netip.Addr{}, "", netboot.PhaseLoader)
	tr.Mark(trackerMAC(netboot.MaxTracked), trackerIP(netboot.MaxTracked), "", netboot.PhaseDHCP)

	states := tr.States()
	require.Len(t, states, netboot.MaxTracked)
	macs := map[string]netboot.Phase{}
	for _, s := range states {
		macs[s.MAC] = s.Phase
	}
	assert.Equal(t, netboot.PhaseLoader, macs[trackerMAC(0).String()], "marked again, kept")
	assert.NotContains(t, macs, trackerMAC(1).String(), "least recently marked, forgotten")
	assert.Contains(t, macs, trackerMAC(netboot.MaxTracked).String())

	assert.Equal(t, trackerMAC(0), tr.MACForIP(trackerIP(0)))
	assert.Nil(t, tr.MACForIP(trackerIP(1)), "a forgotten machine's IP names nobody")
	assert.Equal(t, trackerMAC(2), tr.MACForIP(trackerIP(2)))
}

func TestTrackerIPMovesWithTheMachine(t *testing.T) {
	tr := &netboot.Tracker{}
	a, b := trackerMAC(1), trackerMAC(2)
	tr.Mark(a, trackerIP(10), "", netboot.PhaseDHCP)
	tr.Mark(a, trackerIP(11), "", netboot.PhaseDHCP)
	assert.Nil(t, tr.MACForIP(trackerIP(10)), "a's old address")
	assert.Equal(t, a, tr.MACForIP(trackerIP(11)))

	// b takes a's address; a's later move must not drop b's entry.
	tr.Mark(b, trackerIP(11), "", netboot.PhaseDHCP)
	tr.Mark(a, trackerIP(12), "", netboot.PhaseDHCP)
	assert.Equal(t, b, tr.MACForIP(trackerIP(11)))
	assert.Equal(t, a, tr.MACForIP(trackerIP(12)))
}

// BenchmarkTrackerMarkFull is the cost of a mark from a new MAC when the
// Tracker is full, so each one forgets a machine.
func BenchmarkTrackerMarkFull(b *testing.B) {
	tr := &netboot.Tracker{}
	for i := range netboot.MaxTracked {
		tr.Mark(trackerMAC(i), netip.Addr{}, "", netboot.PhaseDone)
	}
	i := netboot.MaxTracked
	for b.Loop() {
		tr.Mark(trackerMAC(i), netip.Addr{}, "", netboot.PhaseDone)
		i++
	}
}
