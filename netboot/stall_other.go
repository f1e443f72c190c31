//go:build !linux

package netboot

import (
	"net"
	"time"
)

// setStallTimeout does nothing where TCP_USER_TIMEOUT is not available.
func setStallTimeout(net.Conn, time.Duration) error { return nil }
