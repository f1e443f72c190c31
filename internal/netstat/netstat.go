// Package netstat reads the kernel's UDP counters, for tests and
// benchmarks that need to know where datagrams were lost.
package netstat

import (
	"errors"
	"slices"
	"strconv"
	"strings"
)

// UDPRcvbufErrors returns the RcvbufErrors counter from the content of
// /proc/net/snmp (or /proc/thread-self/net/snmp, for the namespace of the
// reading thread): datagrams dropped because a socket's receive buffer was
// full.
func UDPRcvbufErrors(snmp []byte) (int, error) {
	var names []string
	for line := range strings.SplitSeq(string(snmp), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		i := slices.Index(names, "RcvbufErrors")
		if i < 1 || i >= len(f) {
			return 0, errors.New("netstat: no RcvbufErrors among the Udp counters")
		}
		return strconv.Atoi(f[i])
	}
	return 0, errors.New("netstat: no Udp counters")
}

// UDP6RcvbufErrors returns the Udp6RcvbufErrors counter from the content
// of /proc/net/snmp6 (or /proc/thread-self/net/snmp6): the IPv6 datagrams
// dropped because a socket's receive buffer was full.
func UDP6RcvbufErrors(snmp6 []byte) (int, error) {
	for line := range strings.SplitSeq(string(snmp6), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "Udp6RcvbufErrors" {
			return strconv.Atoi(f[1])
		}
	}
	return 0, errors.New("netstat: no Udp6RcvbufErrors counter")
}
