//go:build !linux

package netboot

import "net"

// inSocketNetns runs fn; network namespaces exist only on Linux.
func inSocketNetns(_ net.PacketConn, fn func()) { fn() }
