package pxe

import (
	"fmt"
	"net"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Sizes from RFC 2131 and RFC 951.
const (
	// MinMaxMessageSize is the size every DHCP client must accept (RFC 2131
	// section 2, RFC 2132 section 9.10); replies stay within it unless the
	// client allows more with option 57.
	MinMaxMessageSize = 576
	// MaxBootFileField is the longest name the BOOTP file field holds (128
	// bytes including the terminating NUL).
	MaxBootFileField = 127
)

// PXE option 43 sub-option codes (PXE 2.1 specification, section 2.2.6).
const (
	// PXEDiscoveryControl is sub-option 6, a bit field.
	PXEDiscoveryControl uint8 = 6
	// PXEBootServers is sub-option 8.
	PXEBootServers uint8 = 8
	// PXEBootMenu is sub-option 9.
	PXEBootMenu uint8 = 9
	// PXEMenuPrompt is sub-option 10.
	PXEMenuPrompt uint8 = 10
	// PXEBootItem is sub-option 71.
	PXEBootItem uint8 = 71
)

// Discovery control bits of sub-option 6.
const (
	// DiscoveryNoBroadcast disables broadcast boot server discovery.
	DiscoveryNoBroadcast uint8 = 1 << 0
	// DiscoveryNoMulticast disables multicast boot server discovery.
	DiscoveryNoMulticast uint8 = 1 << 1
	// DiscoveryListOnly accepts only servers in sub-option 8.
	DiscoveryListOnly uint8 = 1 << 2
	// DiscoveryUseBootFile tells the ROM that the reply's boot file and
	// siaddr are final: download it, skip boot server discovery.
	DiscoveryUseBootFile uint8 = 1 << 3
)

// SubOption is one code/value pair of an encapsulated option (43, 175).
type SubOption struct {
	Code uint8
	Data []byte
}

// EncodeSubOptions lays out sub-options as code, length, value, ending
// with End (255) as PXE ROMs require; the dhcpv4 library's own encoder
// drops that End. A value over 255 bytes is split into consecutive
// instances of its code, which receivers concatenate (RFC 3396 section 7).
// Codes 0 (Pad) and 255 (End) are skipped.
func EncodeSubOptions(subs ...SubOption) []byte {
	var b []byte
	for _, s := range subs {
		if s.Code == 0 || s.Code == 255 {
			continue
		}
		data := s.Data
		for {
			n := min(len(data), 255)
			b = append(b, s.Code, byte(n))
			b = append(b, data[:n]...)
			data = data[n:]
			if len(data) == 0 {
				break
			}
		}
	}
	return append(b, 255)
}

// WithPXEOptions sets option 43 to PXE sub-options with the terminating
// End. With no sub-options it sets discovery control to
// DiscoveryUseBootFile, which tells ROMs to use the boot file at once.
func WithPXEOptions(subs ...SubOption) dhcpv4.Modifier {
	if len(subs) == 0 {
		subs = []SubOption{{Code: PXEDiscoveryControl, Data: []byte{DiscoveryUseBootFile}}}
	}
	return dhcpv4.WithGeneric(dhcpv4.OptionVendorSpecificInformation, EncodeSubOptions(subs...))
}

// CheckBootFile returns ErrBootFileTooLong (wrapped, naming the file) when
// name does not fit the BOOTP file field, and nil otherwise.
func CheckBootFile(name string) error {
	if len(name) > MaxBootFileField {
		return fmt.Errorf("%w: %q has %d bytes", ErrBootFileTooLong, name, len(name))
	}
	return nil
}

// WithBootFile sets option 67 and the BOOTP file field to name. PXE ROMs
// read the field, iPXE and UEFI the option, so both are set. A name that
// does not fit the field is an error (ErrBootFileTooLong), never
// truncated; an empty name removes both.
func WithBootFile(name string) (dhcpv4.Modifier, error) {
	if err := CheckBootFile(name); err != nil {
		return nil, err
	}
	return func(d *dhcpv4.DHCPv4) {
		d.BootFileName = name
		if name == "" {
			d.Options.Del(dhcpv4.OptionBootfileName)
			return
		}
		d.UpdateOption(dhcpv4.OptBootFileName(name))
	}, nil
}

// WithNextServer sets siaddr to ip and option 66 to name, or to ip in
// dotted form when name is "".
func WithNextServer(ip net.IP, name string) dhcpv4.Modifier {
	return func(d *dhcpv4.DHCPv4) {
		d.ServerIPAddr = ip.To4()
		if name == "" && ip.To4() != nil {
			name = ip.To4().String()
		}
		if name != "" {
			d.UpdateOption(dhcpv4.OptTFTPServerName(name))
		}
	}
}

// WithVendorClass sets option 60 (the class identifier echoed to PXE and
// HTTP boot clients).
func WithVendorClass(class string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptClassIdentifier(class))
}

// WithServerID sets option 54, the server identifier.
func WithServerID(ip net.IP) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ip.To4()))
}

// WithAnswer applies the boot information of a: option 60 (a.VendorClass,
// or "PXEClient" when the client is PXE), siaddr and option 66, option 67
// and the file field, and option 43 for PXE ROMs. self is the address
// used when a.NextServer is nil. It fails only when a.BootFile is too long.
func WithAnswer(c Client, a Answer, self net.IP) (dhcpv4.Modifier, error) {
	boot, err := WithBootFile(a.BootFile)
	if err != nil {
		return nil, err
	}
	next := a.NextServer
	if next == nil {
		next = self
	}
	vendor := a.VendorClass
	if vendor == "" && c.IsPXE() {
		vendor = vendorPXE
	}
	return func(d *dhcpv4.DHCPv4) {
		if vendor != "" {
			WithVendorClass(vendor)(d)
		}
		WithNextServer(next, a.TFTPServerName)(d)
		boot(d)
		// Option 43 only for PXE ROMs; iPXE and HTTP boot ignore it, and a
		// non-PXE client could misread it as another vendor's data.
		if vendor == vendorPXE && !c.IsIPXE() {
			WithPXEOptions()(d)
		}
	}, nil
}

// Network is the configuration a full DHCP server hands out with each
// address. The zero value of each field is documented.
type Network struct {
	// Subnet is the served subnet; required. Relayed requests are served
	// only when giaddr is inside it.
	Subnet net.IPNet
	// RangeStart and RangeEnd bound the dynamic pool, inclusive. Both nil
	// means no pool: only Reservations get addresses.
	RangeStart, RangeEnd net.IP
	// Reservations are fixed addresses by MAC. They may lie outside the
	// range but must be inside Subnet.
	Reservations []Reservation
	// Router is option 3; nil omits it.
	Router []net.IP
	// DNS is option 6; nil omits it.
	DNS []net.IP
	// Domain is option 15; "" omits it.
	Domain string
	// LeaseTime is option 51; zero means one hour.
	LeaseTime time.Duration
}

// Reservation ties a MAC to an address.
type Reservation struct {
	MAC net.HardwareAddr
	IP  net.IP
}

func (n *Network) leaseTime() time.Duration {
	if n.LeaseTime <= 0 {
		return time.Hour
	}
	return n.LeaseTime
}

// WithNetwork sets the subnet mask, router, DNS, domain and lease time of
// n. It does not set yiaddr: that is the lease's business. An ACK to
// DHCPINFORM must not carry a lease time (RFC 2131 section 3.4): follow
// it with dhcpv4.WithoutOption(dhcpv4.OptionIPAddressLeaseTime).
func WithNetwork(n *Network) dhcpv4.Modifier {
	secs := uint32(min(n.leaseTime()/time.Second, 1<<32-2))
	return func(d *dhcpv4.DHCPv4) {
		if n.Subnet.Mask != nil {
			d.UpdateOption(dhcpv4.OptSubnetMask(n.Subnet.Mask))
		}
		if len(n.Router) > 0 {
			d.UpdateOption(dhcpv4.OptRouter(n.Router...))
		}
		if len(n.DNS) > 0 {
			d.UpdateOption(dhcpv4.OptDNS(n.DNS...))
		}
		if n.Domain != "" {
			d.UpdateOption(dhcpv4.OptDomainName(n.Domain))
		}
		d.UpdateOption(dhcpv4.OptIPAddressLeaseTime(time.Duration(secs) * time.Second))
	}
}

// SizeLimit is the largest DHCP message (UDP payload) c accepts. Option 57
// counts the whole IP datagram (RFC 2132 section 9.10, as ISC dhcpd reads
// it), so 28 bytes of IP and UDP headers come off; without option 57, or
// below its legal minimum of 576, the limit is 576 - 28 = 548 bytes, the
// 236-byte header plus the 312 option bytes every client must accept
// (RFC 2131 section 2).
func SizeLimit(c Client) int {
	return max(int(c.MaxMessageSize), MinMaxMessageSize) - ipUDPHeaders
}

const ipUDPHeaders = 20 + 8

// Marshal serialises reply and returns ErrReplyTooLarge (wrapped, with the
// sizes) when it exceeds limit bytes. The library pads to the 300-byte
// BOOTP minimum itself.
func Marshal(reply *dhcpv4.DHCPv4, limit int) ([]byte, error) {
	return marshalTo(make([]byte, 0, MinMaxMessageSize), reply, limit)
}

// marshalTo is Marshal serialising into dst's memory (from dst[:0]).
func marshalTo(dst []byte, reply *dhcpv4.DHCPv4, limit int) ([]byte, error) {
	b := appendMessage(dst[:0], reply)
	if len(b) > limit {
		return nil, fmt.Errorf("%w: %d bytes for %s, limit %d", ErrReplyTooLarge, len(b), reply.ClientHWAddr, limit)
	}
	return b, nil
}
