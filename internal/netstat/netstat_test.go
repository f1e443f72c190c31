package netstat

import (
	"os"
	"testing"
)

func TestUDPRcvbufErrors(t *testing.T) {
	snmp := []byte("Ip: Forwarding DefaultTTL\nIp: 1 64\n" +
		"Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n" +
		"Udp: 100 2 5 90 38 0 0 0 0\n" +
		"UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\nUdpLite: 0 0 0 0 7 0\n")
	n, err := UDPRcvbufErrors(snmp)
	if err != nil || n != 38 {
		t.Fatalf("got %d, %v; want 38", n, err)
	}
	for _, bad := range []string{"", "Udp: InDatagrams\nUdp: 1\n", "Udp: RcvbufErrors\nUdp: x\n"} {
		if _, err := UDPRcvbufErrors([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	// The machine's own file parses.
	if b, err := os.ReadFile("/proc/net/snmp"); err == nil {
		if _, err := UDPRcvbufErrors(b); err != nil {
			t.Errorf("/proc/net/snmp: %v", err)
		}
	}
}

func TestUDP6RcvbufErrors(t *testing.T) {
	n, err := UDP6RcvbufErrors([]byte("Udp6InDatagrams                 \t12\nUdp6RcvbufErrors                \t7\nUdp6SndbufErrors\t0\n"))
	if err != nil || n != 7 {
		t.Fatalf("got %d, %v; want 7", n, err)
	}
	for _, bad := range []string{"", "Udp6RcvbufErrors x\n", "Udp6InDatagrams 1\n"} {
		if _, err := UDP6RcvbufErrors([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if b, err := os.ReadFile("/proc/net/snmp6"); err == nil {
		if _, err := UDP6RcvbufErrors(b); err != nil {
			t.Errorf("/proc/net/snmp6: %v", err)
		}
	}
}
