package pxe

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// Client is what a DHCP request tells about the machine that sent it. It is
// plain data, built by [ClientFromRequest]; the zero value describes a
// client that sent nothing but a MAC-less packet. Slices and IPs are copies,
// so a Client stays valid after the packet is reused.
type Client struct {
	// MAC is the client hardware address (chaddr, cut to hlen).
	MAC net.HardwareAddr
	// MessageType is option 53; zero when absent (a BOOTP request).
	MessageType dhcpv4.MessageType
	// Archs lists option 93 (RFC 4578 section 2.1) in the order sent. Codes
	// that IANA has not assigned keep their number.
	Archs []iana.Arch
	// Vendor is option 60, parsed.
	Vendor VendorClass
	// UserClass is option 77, parsed (raw and RFC 3004 encodings).
	UserClass UserClass
	// IPXE holds the iPXE feature sub-options of option 175 (code → value);
	// nil when the option is absent. Only iPXE sends it.
	IPXE map[uint8][]byte
	// UNDI is option 94 (RFC 4578 section 2.2); nil when absent.
	UNDI *UNDI
	// UUID is option 97 (RFC 4578 section 2.3); nil when absent.
	UUID *UUID
	// RelayAddr is giaddr; nil when the request was not relayed.
	RelayAddr net.IP
	// ClientAddr is ciaddr; nil when zero.
	ClientAddr net.IP
	// RequestedAddr is option 50; nil when absent.
	RequestedAddr net.IP
	// ServerID is option 54; nil when absent.
	ServerID net.IP
	// Broadcast is the BOOTP broadcast flag.
	Broadcast bool
	// MaxMessageSize is option 57, or 0 when absent.
	MaxMessageSize uint16
}

// UNDI is the client network interface identifier of option 94: the UNDI
// (Universal Network Device Interface) version the PXE ROM implements.
type UNDI struct {
	Type  uint8 // 1 = UNDI
	Major uint8
	Minor uint8
}

// UUID is the 16-byte machine identifier of option 97 (type 0), in the byte
// order it had on the wire. Firmware copies it from SMBIOS, whose layout
// (SMBIOS 2.6 and later) stores the first three fields little-endian, so
// the wire bytes and the UUID that dmidecode prints differ in those fields.
// PXELINUX names its per-machine file from the wire bytes, in order; String
// does the same. Use SMBIOSString for the dmidecode form.
type UUID [16]byte

// String formats the UUID from the wire bytes in order, lower-case, with
// dashes (8-4-4-4-12): the name PXELINUX looks up first.
func (u UUID) String() string {
	return formatUUID(u[:])
}

// SMBIOSString formats the UUID as SMBIOS 2.6+ tools print it: the first
// three fields byte-swapped (they are little-endian in the table).
func (u UUID) SMBIOSString() string {
	b := [16]byte(u)
	b[0], b[1], b[2], b[3] = b[3], b[2], b[1], b[0]
	b[4], b[5] = b[5], b[4]
	b[6], b[7] = b[7], b[6]
	return formatUUID(b[:])
}

// IsZero reports whether all bytes are zero, as QEMU and many boards send
// when no UUID is set. Such a UUID does not identify a machine.
func (u UUID) IsZero() bool { return u == UUID{} }

func formatUUID(b []byte) string {
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// VendorKind is the class of client named by the start of option 60.
type VendorKind int

const (
	// VendorOther is any option 60 that is neither PXE nor HTTP boot,
	// including none.
	VendorOther VendorKind = iota
	// VendorPXE is "PXEClient", sent by PXE ROMs and iPXE.
	VendorPXE
	// VendorHTTP is "HTTPClient", sent by UEFI HTTP boot (UEFI 2.5+,
	// section 24.7).
	VendorHTTP
)

// String returns the option 60 prefix for the kind, or "other".
func (k VendorKind) String() string {
	switch k {
	case VendorPXE:
		return vendorPXE
	case VendorHTTP:
		return vendorHTTP
	default:
		return "other"
	}
}

const (
	vendorPXE  = "PXEClient"
	vendorHTTP = "HTTPClient"
)

// VendorClass is option 60 parsed as the PXE specification (2.1, section
// 2.2.5) lays it out: "PXEClient:Arch:xxxxx:UNDI:yyyzzz", where xxxxx is the
// decimal architecture and yyy/zzz the UNDI major/minor version. Parsing is
// lenient: missing or malformed fields leave HasArch/HasUNDI false.
type VendorClass struct {
	Raw     string     // the option as sent ("" when absent)
	Kind    VendorKind // PXEClient, HTTPClient or other
	Arch    iana.Arch  // valid when HasArch
	HasArch bool
	UNDI    UNDI // Major/Minor valid when HasUNDI; Type is 0
	HasUNDI bool
}

// ParseVendorClass parses an option 60 value. It never fails: a value that
// is not PXE or HTTP boot gives Kind VendorOther with Raw set.
func ParseVendorClass(s string) VendorClass {
	v := VendorClass{Raw: s}
	fields := strings.Split(s, ":")
	switch fields[0] {
	case vendorPXE:
		v.Kind = VendorPXE
	case vendorHTTP:
		v.Kind = VendorHTTP
	default:
		return v
	}
	for i := 1; i+1 < len(fields); i += 2 {
		val := fields[i+1]
		switch fields[i] {
		case "Arch":
			if n, err := strconv.ParseUint(val, 10, 16); err == nil && len(val) == 5 {
				v.Arch, v.HasArch = iana.Arch(n), true
			}
		case "UNDI":
			if len(val) != 6 {
				continue
			}
			maj, err1 := strconv.ParseUint(val[:3], 10, 8)
			minor, err2 := strconv.ParseUint(val[3:], 10, 8)
			if err1 == nil && err2 == nil {
				v.UNDI, v.HasUNDI = UNDI{Major: uint8(maj), Minor: uint8(minor)}, true
			}
		}
	}
	return v
}

// UserClass is option 77. RFC 3004 encodes it as length-prefixed strings;
// iPXE and much firmware send one raw string instead. Both are accepted.
type UserClass struct {
	Raw     []byte   // the option as sent (nil when absent)
	Classes []string // the classes, decoded
	// RFC3004 reports that Raw parsed completely as RFC 3004 (every length
	// non-zero and consistent). A raw string whose first byte happens to
	// equal the length of the rest ("\x03abc") is read as RFC 3004, as the
	// bytes are identical; that only affects strings starting with a
	// control character.
	RFC3004 bool
}

// Has reports whether class is one of the user classes, compared exactly.
// It is how both "iPXE" and a deployment's own marker are matched.
func (u UserClass) Has(class string) bool {
	for _, c := range u.Classes {
		if c == class {
			return true
		}
	}
	return false
}

// ParseUserClass decodes an option 77 value in either encoding.
func ParseUserClass(b []byte) UserClass {
	u := UserClass{Raw: bytes.Clone(b)}
	if len(b) == 0 {
		return u
	}
	if classes, ok := parseRFC3004(b); ok {
		u.Classes, u.RFC3004 = classes, true
		return u
	}
	u.Classes = []string{string(b)}
	return u
}

func parseRFC3004(b []byte) ([]string, bool) {
	var out []string
	for len(b) > 0 {
		n := int(b[0])
		if n == 0 || 1+n > len(b) {
			return nil, false
		}
		out = append(out, string(b[1:1+n]))
		b = b[1+n:]
	}
	return out, true
}

// IsIPXE reports whether the client is iPXE: it sent user class "iPXE" or
// the iPXE feature option 175. FlexBoot-style builds send only option 175.
func (c Client) IsIPXE() bool {
	return c.UserClass.Has("iPXE") || c.IPXE != nil
}

// IsPXE reports whether option 60 starts with "PXEClient".
func (c Client) IsPXE() bool { return c.Vendor.Kind == VendorPXE }

// IsHTTPBoot reports whether the client is UEFI HTTP boot: option 60 starts
// with "HTTPClient" or an architecture is one of the HTTP codes.
func (c Client) IsHTTPBoot() bool {
	if c.Vendor.Kind == VendorHTTP {
		return true
	}
	for _, a := range c.Archs {
		if ArchInfo(a).HTTP {
			return true
		}
	}
	return false
}

// Firmware returns the firmware of the first architecture the client
// listed in option 93, falling back to the Arch field of option 60, and
// FirmwareUnknown when neither is present.
func (c Client) Firmware() Firmware {
	if len(c.Archs) > 0 {
		return ArchInfo(c.Archs[0]).Firmware
	}
	if c.Vendor.HasArch {
		return ArchInfo(c.Vendor.Arch).Firmware
	}
	return FirmwareUnknown
}

// Arch returns the first architecture from option 93 or option 60, and
// false when the client sent neither.
func (c Client) Arch() (iana.Arch, bool) {
	if len(c.Archs) > 0 {
		return c.Archs[0], true
	}
	if c.Vendor.HasArch {
		return c.Vendor.Arch, true
	}
	return 0, false
}

// ClientFromRequest classifies a DHCPv4 request. It returns ErrNotRequest
// for anything but a BOOTREQUEST and ErrBadOption (wrapped, naming the
// option) when option 93, 94 or 97 is malformed; all other oddities are
// tolerated, since firmware is sloppy and an answer is better than none.
// It does no I/O and is safe for concurrent use.
func ClientFromRequest(req *dhcpv4.DHCPv4) (Client, error) {
	if req == nil || req.OpCode != dhcpv4.OpcodeBootRequest {
		return Client{}, ErrNotRequest
	}
	c := Client{
		MAC:         bytes.Clone(req.ClientHWAddr),
		MessageType: req.MessageType(),
		Broadcast:   req.IsBroadcast(),
	}
	if len(c.MAC) == 0 {
		c.MAC = nil
	}
	c.RelayAddr = nonZeroIP(req.GatewayIPAddr)
	c.ClientAddr = nonZeroIP(req.ClientIPAddr)
	if b := req.Options.Get(dhcpv4.OptionRequestedIPAddress); len(b) == net.IPv4len {
		c.RequestedAddr = nonZeroIP(net.IP(b))
	}
	if b := req.Options.Get(dhcpv4.OptionServerIdentifier); len(b) == net.IPv4len {
		c.ServerID = nonZeroIP(net.IP(b))
	}
	if b := req.Options.Get(dhcpv4.OptionMaximumDHCPMessageSize); len(b) == 2 {
		c.MaxMessageSize = uint16(b[0])<<8 | uint16(b[1])
	}
	if b := req.Options.Get(dhcpv4.OptionClassIdentifier); b != nil {
		c.Vendor = ParseVendorClass(string(b))
	}
	if b := req.Options.Get(dhcpv4.OptionUserClassInformation); b != nil {
		c.UserClass = ParseUserClass(b)
	}
	if b := req.Options.Get(dhcpv4.OptionEtherboot); b != nil {
		c.IPXE = parseEncapsulated(b)
	}
	if b := req.Options.Get(dhcpv4.OptionClientSystemArchitectureType); b != nil {
		if len(b) == 0 || len(b)%2 != 0 {
			return c, fmt.Errorf("%w: option 93 (client architecture) of %s has %d bytes", ErrBadOption, c.MAC, len(b))
		}
		for i := 0; i+1 < len(b); i += 2 {
			c.Archs = append(c.Archs, iana.Arch(uint16(b[i])<<8|uint16(b[i+1])))
		}
	}
	if b := req.Options.Get(dhcpv4.OptionClientNetworkInterfaceIdentifier); b != nil {
		if len(b) != 3 {
			return c, fmt.Errorf("%w: option 94 (UNDI) of %s has %d bytes, want 3", ErrBadOption, c.MAC, len(b))
		}
		c.UNDI = &UNDI{Type: b[0], Major: b[1], Minor: b[2]}
	}
	if b := req.Options.Get(dhcpv4.OptionClientMachineIdentifier); b != nil {
		// RFC 4578 section 2.3: type 0 followed by 16 bytes. Some ROMs send
		// a zero-length option when they have no UUID; treat it as absent.
		switch {
		case len(b) == 0:
		case len(b) == 17 && b[0] == 0:
			u := UUID(b[1:])
			c.UUID = &u
		default:
			return c, fmt.Errorf("%w: option 97 (machine UUID) of %s: type %d, %d bytes", ErrBadOption, c.MAC, b[0], len(b))
		}
	}
	return c, nil
}

func nonZeroIP(ip net.IP) net.IP {
	ip4 := ip.To4()
	if ip4 == nil || ip4.IsUnspecified() {
		return nil
	}
	return bytes.Clone(ip4)
}

// parseEncapsulated reads code/length/value sub-options (as in options 43
// and 175), skipping pads (0) and stopping at End (255) or at a truncated
// entry. It never fails: a truncated tail is dropped.
func parseEncapsulated(b []byte) map[uint8][]byte {
	m := map[uint8][]byte{}
	for len(b) > 0 {
		code := b[0]
		if code == 0 {
			b = b[1:]
			continue
		}
		if code == 255 || len(b) < 2 {
			break
		}
		n := int(b[1])
		if 2+n > len(b) {
			break
		}
		m[code] = append(m[code], b[2:2+n]...)
		b = b[2+n:]
	}
	return m
}
