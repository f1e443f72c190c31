//go:build !linux

package netboot

import (
	"errors"
	"net"
	"net/netip"
)

// ownSender reports whether this platform runs the data phase itself:
// elsewhere than on Linux, pin/tftp sends every file.
const ownSender = false

func dialTransfer(net.Addr, netip.AddrPort, bool) (transferConn, error) {
	return nil, errors.New("tftp: own transfer sockets are Linux only")
}
