package pxe

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv6"
)

// ClientFromMessage6 classifies a DHCPv6 client message (RFC 8415) the way
// ClientFromRequest does for DHCPv4, so the same Policy decides for both:
// Archs from option 61 (RFC 5970 section 3.3), Vendor from the first
// vendor class (option 16) datum ("HTTPClient" for UEFI HTTP boot over
// IPv6), UserClass from option 15 (RFC 3004-like list) and MAC from a
// link-layer DUID or the relay's client link-layer address when there is
// one. Relayed messages are unwrapped. It returns ErrNotRequest for server
// messages.
func ClientFromMessage6(msg dhcpv6.DHCPv6) (Client, error) {
	if msg == nil {
		return Client{}, ErrNotRequest
	}
	var c Client
	if mac, err := dhcpv6.ExtractMAC(msg); err == nil {
		c.MAC = bytes.Clone(mac)
	}
	inner, err := msg.GetInnerMessage()
	if err != nil {
		return c, fmt.Errorf("%w: DHCPv6 relay message: %w", ErrBadOption, err)
	}
	switch inner.MessageType {
	case dhcpv6.MessageTypeSolicit, dhcpv6.MessageTypeRequest, dhcpv6.MessageTypeRenew,
		dhcpv6.MessageTypeRebind, dhcpv6.MessageTypeInformationRequest, dhcpv6.MessageTypeConfirm:
	default:
		return c, ErrNotRequest
	}
	c.Archs = append(c.Archs, inner.Options.ArchTypes()...)
	for _, vc := range inner.Options.VendorClasses() {
		if len(vc.Data) > 0 {
			c.Vendor = ParseVendorClass(string(vc.Data[0]))
			break
		}
	}
	if ucs := inner.Options.UserClasses(); len(ucs) > 0 {
		c.UserClass.RFC3004 = true
		for _, u := range ucs {
			c.UserClass.Raw = append(c.UserClass.Raw, byte(len(u)))
			c.UserClass.Raw = append(c.UserClass.Raw, u...)
			c.UserClass.Classes = append(c.UserClass.Classes, string(u))
		}
	}
	return c, nil
}

// BootFileURL6 turns an Answer's boot file into the URL option 59 needs:
// URLs are kept, bare TFTP names become "tftp://[server]/name". The server
// is a.NextServer when it is IPv6, else self.
func BootFileURL6(a Answer, self net.IP) (string, error) {
	if a.BootFile == "" {
		return "", fmt.Errorf("%w: empty boot file", ErrNoBoot)
	}
	if strings.Contains(a.BootFile, "://") {
		return a.BootFile, nil
	}
	host := self
	if a.NextServer != nil && a.NextServer.To4() == nil {
		host = a.NextServer
	}
	if host.To16() == nil || host.To4() != nil {
		return "", fmt.Errorf("%w: no IPv6 server address for %q", ErrConfig, a.BootFile)
	}
	return "tftp://[" + host.String() + "]/" + strings.TrimPrefix(a.BootFile, "/"), nil
}

// WithAnswer6 sets option 59 (RFC 5970 section 3.1) from a, and echoes
// "HTTPClient" in a vendor class option with the IANA-assigned enterprise
// number 343 (Intel, as UEFI specifies) when a asks for it.
func WithAnswer6(a Answer, self net.IP) (dhcpv6.Modifier, error) {
	url, err := BootFileURL6(a, self)
	if err != nil {
		return nil, err
	}
	return func(d dhcpv6.DHCPv6) {
		d.UpdateOption(dhcpv6.OptBootFileURL(url))
		if a.VendorClass != "" {
			d.UpdateOption(&dhcpv6.OptVendorClass{EnterpriseNumber: uefiEnterprise, Data: [][]byte{[]byte(a.VendorClass)}})
		}
	}, nil
}

// uefiEnterprise is the enterprise number UEFI clients use in DHCPv6
// vendor class options (UEFI 2.5+ section 24.7.1).
const uefiEnterprise = 343

// Reply6 answers a DHCPv6 netboot client with boot information only: an
// Advertise to a Solicit, a Reply to anything else. The policy picks the
// boot file (option 59, by option 61), exactly as for DHCPv4; mods add the
// rest (server ID, addresses) and are applied first. It returns ErrNoBoot
// when the client did not ask for option 59 or the policy has nothing.
func Reply6(ctx context.Context, p Policy, req *dhcpv6.Message, self net.IP, mods ...dhcpv6.Modifier) (*dhcpv6.Message, error) {
	c, err := ClientFromMessage6(req)
	if err != nil {
		return nil, err
	}
	if !req.Options.RequestedOptions().Contains(dhcpv6.OptionBootfileURL) {
		return nil, fmt.Errorf("%w: %s did not request option 59", ErrNoBoot, c.MAC)
	}
	a, err := p.Decide(ctx, c)
	if err != nil {
		return nil, err
	}
	m, err := WithAnswer6(a, self)
	if err != nil {
		return nil, err
	}
	mods = append(mods, m)
	var reply *dhcpv6.Message
	if req.MessageType == dhcpv6.MessageTypeSolicit {
		reply, err = dhcpv6.NewAdvertiseFromSolicit(req, mods...)
	} else {
		reply, err = dhcpv6.NewReplyFromMessage(req, mods...)
	}
	if err != nil {
		return nil, fmt.Errorf("pxe: DHCPv6 reply to %s: %w", c.MAC, err)
	}
	return reply, nil
}
