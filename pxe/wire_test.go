package pxe

import (
	"bytes"
	"context"
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// wireSeeds are DHCP packets built with the library's constructors: a
// plain and a relayed DISCOVER (as perfdhcp sends them), PXE, iPXE and HTTP
// boot DISCOVERs, a REQUEST and an INFORM, and byte-level oddities the
// parser must treat as the library does (pads, a zero-length option, an
// option repeated and one over 255 bytes, a long sname and file, no End, a
// truncated option, a bad cookie, a short packet).
func wireSeeds(tb testing.TB) [][]byte {
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x01}
	build := func(mods ...dhcpv4.Modifier) []byte {
		d, err := dhcpv4.NewDiscovery(mac, append([]dhcpv4.Modifier{dhcpv4.WithTransactionID(dhcpv4.TransactionID{1, 2, 3, 4})}, mods...)...)
		if err != nil {
			tb.Fatal(err)
		}
		return d.ToBytes()
	}
	relay := dhcpv4.WithGatewayIP(net.IPv4(10, 78, 0, 2))
	pxe := []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003000")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)),
		dhcpv4.WithGeneric(dhcpv4.OptionClientNetworkInterfaceIdentifier, []byte{1, 3, 0}),
		dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, make([]byte, 17)),
		dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(1472)),
	}
	plain := build()
	seeds := [][]byte{
		plain,
		build(relay),
		build(pxe...),
		build(append(pxe, dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")), dhcpv4.WithGeneric(dhcpv4.OptionEtherboot, []byte{19, 1, 1}))...),
		build(dhcpv4.WithOption(dhcpv4.OptClassIdentifier("HTTPClient:Arch:00016:UNDI:003000")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64_HTTP))),
		build(relay, dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{1, 2, 3})),
			dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(1), []byte("port7"))))),
		build(dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 78, 1, 9)))),
		build(dhcpv4.WithMessageType(dhcpv4.MessageTypeInform), dhcpv4.WithClientIP(net.IPv4(10, 78, 1, 10))),
		build(dhcpv4.WithGeneric(dhcpv4.OptionVendorSpecificInformation, bytes.Repeat([]byte{7}, 300))),
		build(func(d *dhcpv4.DHCPv4) {
			d.ServerHostName = strings.Repeat("s", 70)
			d.BootFileName = strings.Repeat("f", 130)
		}),
	}
	opts := plain[cookieEnd:]
	head := plain[:cookieEnd:cookieEnd]
	withOpts := func(o ...byte) []byte { return append(append([]byte(nil), head...), o...) }
	seeds = append(seeds,
		withOpts(append([]byte{0, 0, 12, 0, 12, 2, 'a', 'b', 0, 12, 1, 'c', 97, 0}, opts...)...), // pads, zero-length, repeated
		withOpts(53, 1, 1),             // no End
		withOpts(53, 1, 1, 12, 5, 'a'), // truncated option
		withOpts(53, 1),                // missing value
		plain[:200],
	)
	bad := append([]byte(nil), plain...)
	bad[hdrLen] = 0
	return append(seeds, bad)
}

// fuzzState is a full-mode server with the Loaders policy over a /16.
func fuzzState(tb testing.TB) *state {
	s := &Server{Mode: ModeFull, ServerIP: net.IPv4(10, 78, 0, 1), Interface: "x",
		Policy: Loaders{ScriptURL: "http://10.78.0.1/boot.ipxe", HTTPBase: "http://10.78.0.1/loaders"},
		Network: &Network{
			Subnet:     net.IPNet{IP: net.IPv4(10, 78, 0, 0).To4(), Mask: net.CIDRMask(16, 32)},
			RangeStart: net.IPv4(10, 78, 1, 0), RangeEnd: net.IPv4(10, 78, 255, 254),
			Router: []net.IP{net.IPv4(10, 78, 0, 1)}, DNS: []net.IP{net.IPv4(10, 78, 0, 3)},
			Domain: "lab.example", LeaseTime: time.Hour,
		}}
	st, err := s.prepare()
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

// FuzzWire checks the server's allocation-free path against the library
// it stands in for, on any bytes: parseInto (into a reused message)
// succeeds exactly when dhcpv4.FromBytes does and yields an equal
// message; appendMessage yields ToBytes' bytes; and the server's OFFER to
// a DISCOVER, built in reused memory, is byte for byte the OFFER the
// library builds with NewReplyFromRequest, the same modifiers and Marshal.
func FuzzWire(f *testing.F) {
	for _, b := range wireSeeds(f) {
		f.Add(b)
	}
	st := fuzzState(f)
	var d dhcpv4.DHCPv4
	sc := newScratch()
	f.Fuzz(func(t *testing.T, b []byte) {
		want, werr := dhcpv4.FromBytes(b)
		err := parseInto(&d, b)
		if (err == nil) != (werr == nil) {
			t.Fatalf("parseInto error %v, FromBytes error %v", err, werr)
		}
		if werr != nil {
			return
		}
		if !reflect.DeepEqual(*want, d) {
			t.Fatalf("parseInto:\n%#v\nFromBytes:\n%#v", d, *want)
		}
		prefix := []byte{1, 2, 3}
		if got, lib := appendMessage(prefix, want), append(prefix[:3:3], want.ToBytes()...); !bytes.Equal(got, lib) {
			t.Fatalf("appendMessage:\n% x\nToBytes:\n% x", got, lib)
		}

		c, cerr := ClientFromRequest(&d)
		if d.OpCode != dhcpv4.OpcodeBootRequest || c.MessageType != dhcpv4.MessageTypeDiscover {
			return
		}
		got, err := st.respondClient(context.Background(), sc, &d, c, cerr, false, sc.out)
		if n := len(d.ClientHWAddr); n != 6 && n != 8 {
			// Full mode gives no lease to a hardware address the lease
			// file could not hold; the library has no such rule.
			if err == nil || got != nil {
				t.Fatalf("a %d-byte hardware address got a reply (error %v)", n, err)
			}
			return
		}
		if errors.Is(err, ErrPoolExhausted) || (err == nil && got == nil) {
			return
		}
		var yiaddr net.IP
		if err == nil {
			back, perr := dhcpv4.FromBytes(got)
			if perr != nil {
				t.Fatalf("reply does not parse: %v", perr)
			}
			yiaddr = back.YourIPAddr
		} else if errors.Is(err, ErrReplyTooLarge) {
			yiaddr = net.IPv4zero // not in the error; the comparison below is of errors only
		}
		lib, lerr := libraryOffer(st, want, c, cerr, yiaddr)
		if (err == nil) != (lerr == nil) || errors.Is(err, ErrReplyTooLarge) != errors.Is(lerr, ErrReplyTooLarge) {
			t.Fatalf("server error %v, library error %v", err, lerr)
		}
		if err == nil && !bytes.Equal(got, lib) {
			g, _ := dhcpv4.FromBytes(got)
			w, _ := dhcpv4.FromBytes(lib)
			t.Fatalf("server OFFER:\n%s\nlibrary OFFER:\n%s", g.Summary(), w.Summary())
		}
	})
}

// libraryOffer builds, with the library's constructor and the package's
// exported modifiers only, the OFFER full mode sends for req.
func libraryOffer(st *state, req *dhcpv4.DHCPv4, c Client, cerr error, yiaddr net.IP) ([]byte, error) {
	if c.RelayAddr != nil && !st.s.Network.Subnet.Contains(c.RelayAddr) {
		return nil, errors.New("relay outside")
	}
	mods := []dhcpv4.Modifier{dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer), WithServerID(st.self),
		dhcpv4.WithYourIP(yiaddr), WithNetwork(st.s.Network)}
	if cerr == nil && (c.IsPXE() || c.IsHTTPBoot() || c.IsIPXE()) {
		if a, err := st.policy.Decide(context.Background(), c); err == nil && CheckBootFile(a.BootFile) == nil {
			m, err := WithAnswer(c, a, st.self)
			if err != nil {
				return nil, err
			}
			mods = append(mods, m)
		}
	}
	reply, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		return nil, err
	}
	return Marshal(reply, SizeLimit(c))
}
