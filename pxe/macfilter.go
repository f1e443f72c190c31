package pxe

import "net"

// macFilter is a server's Allow and Deny lists (Server and Server6 alike),
// keyed by the MAC's bytes.
type macFilter struct {
	allow map[string]bool // nil: every MAC not denied
	deny  map[string]bool
}

func newMACFilter(allow, deny []net.HardwareAddr) macFilter {
	var f macFilter
	if len(allow) > 0 {
		f.allow = map[string]bool{}
		for _, m := range allow {
			f.allow[string(m)] = true
		}
	}
	if len(deny) > 0 {
		f.deny = map[string]bool{}
		for _, m := range deny {
			f.deny[string(m)] = true
		}
	}
	return f
}

// allowed reports whether mac gets answers: not denied, and allowed when
// there is an allow-list. Deny wins.
func (f macFilter) allowed(mac net.HardwareAddr) bool {
	return !f.deny[string(mac)] && (f.allow == nil || f.allow[string(mac)])
}
