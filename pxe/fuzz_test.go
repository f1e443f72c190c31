package pxe_test

import (
	"errors"
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/pxe"
)

func seedPackets(f *testing.F) {
	for _, fx := range firmwareFixtures() {
		b := discover(f, fx).ToBytes()
		f.Add(b)
		f.Add(b[:len(b)/2])
		relayed := discover(f, fx, dhcpv4.WithGatewayIP(net.IPv4(10, 9, 0, 1)), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest))
		f.Add(relayed.ToBytes())
	}
	// Malformed PXE options, each on an otherwise valid BIOS DISCOVER.
	bios := fixtureByName(f, "qemu-ipxe-bios-rom")
	for _, bad := range []dhcpv4.Modifier{
		dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{0, 7, 1}),
		dhcpv4.WithGeneric(dhcpv4.OptionClientNetworkInterfaceIdentifier, []byte{1, 3}),
		dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, []byte{1, 2, 3}),
		dhcpv4.WithGeneric(dhcpv4.OptionUserClassInformation, []byte("\x09iPXE")),
		dhcpv4.WithGeneric(dhcpv4.OptionEtherboot, []byte{19, 5, 1}),
	} {
		f.Add(discover(f, bios, bad).ToBytes())
	}
}

// FuzzClientFromRequest: classification never panics, and what it reports
// matches the packet (MAC = chaddr, one arch per two bytes of option 93,
// user classes re-encode to the raw option).
func FuzzClientFromRequest(f *testing.F) {
	seedPackets(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := dhcpv4.FromBytes(b)
		if err != nil {
			return
		}
		c, err := pxe.ClientFromRequest(req)
		if errors.Is(err, pxe.ErrNotRequest) {
			assert.NotEqual(t, dhcpv4.OpcodeBootRequest, req.OpCode)
			return
		}
		if len(req.ClientHWAddr) > 0 {
			assert.Equal(t, req.ClientHWAddr, c.MAC)
		}
		if err != nil {
			require.ErrorIs(t, err, pxe.ErrBadOption)
			return
		}
		assert.Len(t, c.Archs, len(req.Options.Get(dhcpv4.OptionClientSystemArchitectureType))/2)
		if raw := req.Options.Get(dhcpv4.OptionUserClassInformation); len(raw) > 0 {
			assert.Equal(t, raw, encodeUserClass(c.UserClass), "user class round trip")
		}
		_ = c.Firmware().String()
		_, _ = c.Arch()
	})
}

func encodeUserClass(u pxe.UserClass) []byte {
	if !u.RFC3004 {
		return []byte(u.Classes[0])
	}
	var b []byte
	for _, c := range u.Classes {
		b = append(b, byte(len(c)))
		b = append(b, c...)
	}
	return b
}

// FuzzReply: for any request, the reply built with the default policy and
// the package's modifiers either fails with a named error or serialises
// within the client's limit and parses back with the same boot file,
// option 43 ending in 255.
func FuzzReply(f *testing.F) {
	seedPackets(f)
	self := net.IPv4(10, 9, 0, 1)
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := dhcpv4.FromBytes(b)
		if err != nil {
			return
		}
		c, err := pxe.ClientFromRequest(req)
		if err != nil {
			return
		}
		reply, err := dhcpv4.NewReplyFromRequest(req, dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer), pxe.WithServerID(self), pxe.WithNetwork(testNetwork()))
		if err != nil {
			return
		}
		a, err := testLoaders().Decide(t.Context(), c)
		if err == nil {
			m, err := pxe.WithAnswer(c, a, self)
			require.NoError(t, err, "default policy answers fit")
			m(reply)
		}
		out, err := pxe.Marshal(reply, pxe.SizeLimit(c))
		if err != nil {
			require.ErrorIs(t, err, pxe.ErrReplyTooLarge)
			return
		}
		assert.LessOrEqual(t, len(out), pxe.SizeLimit(c))
		back, err := dhcpv4.FromBytes(out)
		require.NoError(t, err)
		assert.Equal(t, reply.BootFileName, back.BootFileName)
		assert.Equal(t, req.ClientHWAddr, back.ClientHWAddr)
		if o43 := back.Options.Get(dhcpv4.OptionVendorSpecificInformation); o43 != nil {
			assert.Equal(t, byte(255), o43[len(o43)-1])
		}
	})
}
