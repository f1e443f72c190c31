package pxe

import (
	"math/bits"
	"net"
	"slices"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// This file is the server's allocation-free path between bytes and
// dhcpv4.DHCPv4: parseInto is dhcpv4.FromBytes into a reused message, and
// appendMessage is (*dhcpv4.DHCPv4).ToBytes into a reused buffer. Both
// produce exactly what the library does (FuzzWire checks it, and falls back
// to the library wherever the bytes are unusual), so the library stays the
// definition of the wire format; they exist because a DISCOVER's parse and
// reply cost a dozen allocations each in the library, which was a good
// part of the server's CPU time under load.

// DHCPv4 header layout (RFC 2131 section 2).
const (
	hdrLen    = 236 // up to and without the magic cookie
	cookieEnd = hdrLen + 4
	bootpMin  = 300 // RFC 951's minimum, to which ToBytes pads
	optPad    = 0
	optAgent  = 82 // RFC 3046 section 2.1: serialised last
	optEnd    = 255
)

var magicCookie = [4]byte{99, 130, 83, 99}

// parseInto decodes q into d as dhcpv4.FromBytes(q) would, reusing d's
// option map. The addresses, chaddr and option values of d alias q, so d
// is valid only while q is not overwritten. Any packet the fast path does
// not take as it is (too short, wrong cookie, a truncated option, no End)
// goes through dhcpv4.FromBytes, whose error (or result) is returned.
func parseInto(d *dhcpv4.DHCPv4, q []byte) error {
	if len(q) < cookieEnd || [4]byte(q[hdrLen:cookieEnd]) != magicCookie {
		return parseSlow(d, q)
	}
	opts := d.Options
	if opts == nil {
		opts = dhcpv4.Options{}
	} else {
		clear(opts)
	}
	// Options first: on a malformed list nothing else needs doing.
	end := false
	for i := cookieEnd; i < len(q); {
		code := q[i]
		if code == optPad {
			i++
			continue
		}
		if code == optEnd {
			end = true
			break
		}
		if i+2 > len(q) || i+2+int(q[i+1]) > len(q) {
			return parseSlow(d, q)
		}
		n := int(q[i+1])
		v := q[i+2 : i+2+n : i+2+n]
		i += 2 + n
		old, seen := opts[code]
		switch {
		case !seen && n == 0:
			// append(nil, nothing...) is nil in the library too.
			opts[code] = nil
		case !seen:
			opts[code] = v
		case n > 0:
			// RFC 3396 concatenation; old's capacity is its length
			// when it aliases q, so this copies.
			opts[code] = append(old, v...)
		}
	}
	if !end {
		return parseSlow(d, q)
	}
	hlen := min(int(q[2]), 16)
	*d = dhcpv4.DHCPv4{
		OpCode:         dhcpv4.OpcodeType(q[0]),
		HWType:         iana.HWType(q[1]),
		HopCount:       q[3],
		TransactionID:  dhcpv4.TransactionID(q[4:8]),
		NumSeconds:     uint16(q[8])<<8 | uint16(q[9]),
		Flags:          uint16(q[10])<<8 | uint16(q[11]),
		ClientIPAddr:   net.IP(q[12:16:16]),
		YourIPAddr:     net.IP(q[16:20:20]),
		ServerIPAddr:   net.IP(q[20:24:24]),
		GatewayIPAddr:  net.IP(q[24:28:28]),
		ClientHWAddr:   net.HardwareAddr(q[28 : 28+hlen : 28+hlen]),
		ServerHostName: cString(q[44:108]),
		BootFileName:   cString(q[108:236]),
		Options:        opts,
	}
	return nil
}

func parseSlow(d *dhcpv4.DHCPv4, q []byte) error {
	p, err := dhcpv4.FromBytes(q)
	if err != nil {
		return err
	}
	*d = *p
	return nil
}

// cString is the bytes of b before its first NUL, as a string.
func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// appendMessage appends d serialised exactly as d.ToBytes() does it:
// options in ascending code order with 82 last, values over 255 bytes split
// (RFC 3396), End, then padded to the 300-byte BOOTP minimum. Messages the
// library would not serialise cleanly (an address that is neither nil nor
// IPv4) go through ToBytes.
func appendMessage(dst []byte, d *dhcpv4.DHCPv4) []byte {
	for _, ip := range [4]net.IP{d.ClientIPAddr, d.YourIPAddr, d.ServerIPAddr, d.GatewayIPAddr} {
		if ip != nil && ip.To4() == nil {
			return append(dst, d.ToBytes()...)
		}
	}
	start := len(dst)
	dst = slices.Grow(dst, bootpMin+64)
	dst = append(dst, byte(d.OpCode), byte(d.HWType), byte(len(d.ClientHWAddr)), d.HopCount)
	dst = append(dst, d.TransactionID[:]...)
	dst = append(dst, byte(d.NumSeconds>>8), byte(d.NumSeconds), byte(d.Flags>>8), byte(d.Flags))
	for _, ip := range [4]net.IP{d.ClientIPAddr, d.YourIPAddr, d.ServerIPAddr, d.GatewayIPAddr} {
		if ip == nil {
			dst = append(dst, 0, 0, 0, 0)
		} else {
			dst = append(dst, ip.To4()...)
		}
	}
	dst = appendField(dst, []byte(d.ClientHWAddr), 16, 16)
	dst = appendField(dst, d.ServerHostName, 63, 64)
	dst = appendField(dst, d.BootFileName, 127, 128)
	dst = append(dst, magicCookie[:]...)

	// The library sorts the codes; a bitmap of the present ones does the
	// same without allocating.
	var present [4]uint64
	for code := range d.Options {
		present[code/64] |= 1 << (code % 64)
	}
	agent := present[optAgent/64]&(1<<(optAgent%64)) != 0
	present[optAgent/64] &^= 1 << (optAgent % 64)
	present[0] &^= 1 << optPad
	present[optEnd/64] &^= 1 << (optEnd % 64)
	for w, bitsSet := range present {
		for bitsSet != 0 {
			i := bits.TrailingZeros64(bitsSet)
			bitsSet &^= 1 << i
			code := uint8(w*64 + i)
			dst = appendOption(dst, code, d.Options[code])
		}
	}
	if agent {
		dst = appendOption(dst, optAgent, d.Options[optAgent])
	}
	dst = append(dst, optEnd)
	if n := len(dst) - start; n < bootpMin {
		dst = append(dst, zeros[:bootpMin-n]...) // optPad is 0
	}
	return dst
}

var zeros [bootpMin]byte

// appendField appends the first max bytes of v, zero-padded to size.
func appendField[T []byte | string](dst []byte, v T, max, size int) []byte {
	n := min(len(v), max)
	dst = append(dst, v[:n]...)
	return append(dst, zeros[:size-n]...)
}

func appendOption(dst []byte, code uint8, data []byte) []byte {
	if len(data) == 0 {
		return append(dst, code, 0)
	}
	for len(data) > 0 {
		n := min(len(data), 255)
		dst = append(dst, code, byte(n))
		dst = append(dst, data[:n]...)
		data = data[n:]
	}
	return dst
}
