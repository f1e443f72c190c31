package pxe_test

import (
	"encoding/hex"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/pxe"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func TestEncodeSubOptions(t *testing.T) {
	tests := []struct {
		name string
		subs []pxe.SubOption
		want []byte
	}{
		{"none", nil, []byte{255}},
		{"discovery control", []pxe.SubOption{{Code: pxe.PXEDiscoveryControl, Data: []byte{8}}}, []byte{6, 1, 8, 255}},
		{"pad and end skipped", []pxe.SubOption{{Code: 0, Data: []byte{1}}, {Code: 255}, {Code: 9, Data: nil}}, []byte{9, 0, 255}},
		{"long value split", []pxe.SubOption{{Code: 71, Data: make([]byte, 300)}}, append(append(append([]byte{71, 255}, make([]byte, 255)...), 71, 45), append(make([]byte, 45), 255)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, pxe.EncodeSubOptions(tt.subs...))
		})
	}
}

func TestWithBootFile(t *testing.T) {
	long := "http://10.0.0.1/" + strings.Repeat("a", 112) // 128 bytes
	_, err := pxe.WithBootFile(long)
	require.ErrorIs(t, err, pxe.ErrBootFileTooLong)
	assert.ErrorContains(t, err, "128 bytes")

	exact := long[:127]
	m, err := pxe.WithBootFile(exact)
	require.NoError(t, err)
	d, err := dhcpv4.New(m)
	require.NoError(t, err)
	back, err := dhcpv4.FromBytes(d.ToBytes())
	require.NoError(t, err)
	assert.Equal(t, exact, back.BootFileName, "127 bytes fit the file field")
	assert.Equal(t, exact, back.BootFileNameOption())
}

func TestMarshalSizeLimit(t *testing.T) {
	req := discover(t, fixtureByName(t, "plain-dhcp-client"))
	c, err := pxe.ClientFromRequest(req)
	require.NoError(t, err)
	assert.Equal(t, 548, pxe.SizeLimit(c), "no option 57: 576 minus IP and UDP headers")
	assert.Equal(t, 1444, pxe.SizeLimit(pxe.Client{MaxMessageSize: 1472}))
	assert.Equal(t, 548, pxe.SizeLimit(pxe.Client{MaxMessageSize: 300}), "below the legal minimum")

	reply, err := dhcpv4.NewReplyFromRequest(req, dhcpv4.WithGeneric(dhcpv4.OptionVendorSpecificInformation, make([]byte, 400)))
	require.NoError(t, err)
	_, err = pxe.Marshal(reply, pxe.SizeLimit(c))
	require.ErrorIs(t, err, pxe.ErrReplyTooLarge)
	b, err := pxe.Marshal(reply, 1444)
	require.NoError(t, err)
	assert.Greater(t, len(b), 548)
}

// goldenReply builds the full-DHCP OFFER the server would send to f, with
// every modifier the server uses, from a fixed xid.
func goldenReply(t *testing.T, f fixture, mode string) *dhcpv4.DHCPv4 {
	t.Helper()
	req := discover(t, f, dhcpv4.WithTransactionID(dhcpv4.TransactionID{1, 2, 3, 4}))
	c, err := pxe.ClientFromRequest(req)
	require.NoError(t, err)
	self := net.IPv4(10, 9, 0, 1)
	mods := []dhcpv4.Modifier{dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer), pxe.WithServerID(self)}
	if mode == "full" {
		mods = append(mods, dhcpv4.WithYourIP(net.IPv4(10, 9, 0, 100)), pxe.WithNetwork(testNetwork()))
	}
	if a, err := testLoaders().Decide(t.Context(), c); err == nil {
		m, err := pxe.WithAnswer(c, a, self)
		require.NoError(t, err)
		mods = append(mods, m)
	}
	reply, err := dhcpv4.NewReplyFromRequest(req, mods...)
	require.NoError(t, err)
	return reply
}

func TestReplyGolden(t *testing.T) {
	for _, mode := range []string{"full", "proxy"} {
		for _, f := range firmwareFixtures() {
			t.Run(mode+"/"+f.name, func(t *testing.T) {
				reply := goldenReply(t, f, mode)
				c, err := pxe.ClientFromRequest(discover(t, f))
				require.NoError(t, err)
				b, err := pxe.Marshal(reply, pxe.SizeLimit(c))
				require.NoError(t, err)
				got := hex.Dump(b)
				path := filepath.Join("testdata", mode+"-"+f.name+".golden")
				if *update {
					require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
				}
				want, err := os.ReadFile(path)
				require.NoError(t, err, "run with -update to create it")
				assert.Equal(t, string(want), got)
				back, err := dhcpv4.FromBytes(b)
				require.NoError(t, err)
				assert.Equal(t, reply.BootFileName, back.BootFileName)
			})
		}
	}
}
