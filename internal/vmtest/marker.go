package vmtest

import (
	"fmt"
	"strings"
)

// Lines printed by testinit (the guest's /init). They are spelled out again
// in testinit/main.go, which cannot import this package.
const (
	OKMarker   = "NIXBOOT-E2E-OK"
	FailMarker = "NIXBOOT-E2E-FAIL"
)

// Marker is what the guest reported in its OK line.
type Marker struct {
	Token   string   // the nbv.token= command line parameter, "-" if absent
	MACs    []string // MAC addresses of its network interfaces, lower case
	Cmdline string   // its whole kernel command line
}

// ParseMarker parses `NIXBOOT-E2E-OK token=T mac=M[,M] cmdline=...` found
// anywhere in line (serial lines can carry escape sequences before it).
func ParseMarker(line string) (Marker, error) {
	i := strings.Index(line, OKMarker+" ")
	if i < 0 {
		return Marker{}, fmt.Errorf("vmtest: no %s in %q", OKMarker, line)
	}
	rest := line[i+len(OKMarker)+1:]
	var m Marker
	for _, key := range []string{"token=", "mac="} {
		if !strings.HasPrefix(rest, key) {
			return Marker{}, fmt.Errorf("vmtest: marker lacks %s: %q", key, line)
		}
		rest = rest[len(key):]
		v, r, _ := strings.Cut(rest, " ")
		rest = r
		switch key {
		case "token=":
			m.Token = v
		case "mac=":
			if v != "-" {
				m.MACs = strings.Split(v, ",")
			}
		}
	}
	if !strings.HasPrefix(rest, "cmdline=") {
		return Marker{}, fmt.Errorf("vmtest: marker lacks cmdline=: %q", line)
	}
	m.Cmdline = strings.TrimSpace(rest[len("cmdline="):])
	return m, nil
}
