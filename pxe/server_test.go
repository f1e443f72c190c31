//go:build linux

package pxe_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/pxe"
)

// exchange sends pkt to addr from a fresh loopback socket and returns the
// reply, or nil when none comes within wait.
func exchange(t *testing.T, addr *net.UDPAddr, pkt *dhcpv4.DHCPv4, wait time.Duration) *dhcpv4.DHCPv4 {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: serverIP})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.WriteTo(pkt.ToBytes(), addr)
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(wait)))
	buf := make([]byte, 4096)
	n, _, err := c.ReadFrom(buf)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	require.NoError(t, err)
	reply, err := dhcpv4.FromBytes(buf[:n])
	require.NoError(t, err)
	return reply
}

func client(t *testing.T, r *running, mac net.HardwareAddr) *nclient4.Client {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: serverIP})
	require.NoError(t, err)
	c, err := nclient4.NewWithConn(conn, mac, nclient4.WithServerAddr(r.addr), nclient4.WithTimeout(time.Second), nclient4.WithRetry(3))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// option43 checks the PXE vendor options end with 255 and carry
// discovery control "use the boot file".
func assertPXEOptions(t *testing.T, reply *dhcpv4.DHCPv4) {
	t.Helper()
	assert.Equal(t, []byte{6, 1, 8, 255}, reply.Options.Get(dhcpv4.OptionVendorSpecificInformation))
}

func TestServerFullDORA(t *testing.T) {
	r := start(t, &pxe.Server{Mode: pxe.ModeFull, Network: testNetwork(), Policy: testLoaders()})
	tests := []struct {
		fixture  string
		wantFile string
		wantIP   net.IP // nil: any pool address
		want60   string
		want43   bool
	}{
		{"plain-dhcp-client", "", nil, "", false},
		{"qemu-ipxe-bios-rom", "http://10.9.0.1/boot.ipxe", nil, "PXEClient", false},
		{"ovmf-native-pxe", "ipxe.efi", net.IPv4(10, 9, 0, 50), "PXEClient", true},
		{"ovmf-native-http", "http://10.9.0.1/loaders/ipxe.efi", nil, "HTTPClient", false},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			f := fixtureByName(t, tt.fixture)
			c := client(t, r, f.mac)
			lease, err := c.Request(t.Context(), f.mods...)
			require.NoError(t, err)
			for _, m := range []*dhcpv4.DHCPv4{lease.Offer, lease.ACK} {
				assert.Equal(t, f.mac, m.ClientHWAddr)
				if tt.wantIP != nil {
					assert.True(t, tt.wantIP.Equal(m.YourIPAddr), "yiaddr %s", m.YourIPAddr)
				} else {
					assert.True(t, testNetwork().Subnet.Contains(m.YourIPAddr), "yiaddr %s", m.YourIPAddr)
				}
				assert.Equal(t, "ffffff00", m.SubnetMask().String())
				assert.Equal(t, "10.9.0.1", m.Router()[0].String())
				assert.Equal(t, "[10.9.0.2]", fmt.Sprint(m.DNS()))
				assert.Equal(t, "lab.example", m.DomainName())
				assert.Equal(t, 10*time.Minute, m.IPAddressLeaseTime(0))
				assert.True(t, serverIP.Equal(m.ServerIdentifier()))
				assert.Equal(t, tt.wantFile, m.BootFileName)
				assert.Equal(t, tt.wantFile, m.BootFileNameOption())
				assert.Equal(t, tt.want60, m.ClassIdentifier())
				if tt.want43 {
					assertPXEOptions(t, m)
				} else {
					assert.False(t, m.Options.Has(dhcpv4.OptionVendorSpecificInformation))
				}
				if tt.wantFile != "" {
					assert.True(t, serverIP.Equal(m.ServerIPAddr), "siaddr")
					assert.Equal(t, serverIP.String(), m.TFTPServerName(), "option 66")
				} else {
					assert.False(t, m.Options.Has(dhcpv4.OptionTFTPServerName))
				}
			}
			assert.Equal(t, dhcpv4.MessageTypeAck, lease.ACK.MessageType())
		})
	}
}

func TestServerProxy(t *testing.T) {
	for _, uefi := range []pxe.UEFIProxy{pxe.UEFIDirect, pxe.UEFISteer} {
		t.Run(uefi.String(), func(t *testing.T) {
			r := start(t, &pxe.Server{Mode: pxe.ModeProxy, UEFI: uefi, Policy: testLoaders()})
			tests := []struct {
				fixture  string
				wantFile string // "" = OFFER without a boot file
				noReply  bool
			}{
				{fixture: "plain-dhcp-client", noReply: true},
				{fixture: "qemu-ipxe-bios-rom", wantFile: "http://10.9.0.1/boot.ipxe"},
				{fixture: "ovmf-native-http", wantFile: "http://10.9.0.1/loaders/ipxe.efi"},
				{fixture: "ovmf-native-pxe", wantFile: map[pxe.UEFIProxy]string{pxe.UEFIDirect: "ipxe.efi", pxe.UEFISteer: ""}[uefi]},
			}
			for _, tt := range tests {
				t.Run(tt.fixture, func(t *testing.T) {
					f := fixtureByName(t, tt.fixture)
					offer := exchange(t, r.addr, discover(t, f), 500*time.Millisecond)
					if tt.noReply {
						assert.Nil(t, offer)
						return
					}
					require.NotNil(t, offer)
					assert.Equal(t, dhcpv4.MessageTypeOffer, offer.MessageType())
					assert.True(t, offer.YourIPAddr.IsUnspecified(), "proxy offers carry no address")
					assert.True(t, serverIP.Equal(offer.ServerIdentifier()))
					assert.True(t, serverIP.Equal(offer.ServerIPAddr))
					assert.Equal(t, tt.wantFile, offer.BootFileName)
					assert.False(t, offer.Options.Has(dhcpv4.OptionSubnetMask), "no network options in proxy mode")
					if f.name == "ovmf-native-pxe" {
						assert.Equal(t, "PXEClient", offer.ClassIdentifier())
						if uefi == pxe.UEFISteer {
							assert.False(t, offer.Options.Has(dhcpv4.OptionVendorSpecificInformation), "steered offers have no option 43")
						} else {
							assertPXEOptions(t, offer)
						}
					}
				})
			}
			// The boot server on 4011 answers a REQUEST as iPXE and EDK2
			// send it: unicast, here with xid 0.
			t.Run("boot-server", func(t *testing.T) {
				f := fixtureByName(t, "ovmf-native-pxe")
				req := discover(t, f, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithTransactionID(dhcpv4.TransactionID{}),
					dhcpv4.WithClientIP(net.IPv4(10, 9, 0, 77)))
				ack := exchange(t, r.bootAddr, req, 2*time.Second)
				require.NotNil(t, ack)
				assert.Equal(t, dhcpv4.MessageTypeAck, ack.MessageType())
				assert.Equal(t, dhcpv4.TransactionID{}, ack.TransactionID)
				assert.Equal(t, "ipxe.efi", ack.BootFileName)
				assert.True(t, ack.YourIPAddr.IsUnspecified())
				assertPXEOptions(t, ack)
			})
		})
	}
}

func TestServerAllowDeny(t *testing.T) {
	r := start(t, &pxe.Server{
		Mode: pxe.ModeProxy, Policy: testLoaders(),
		Allow: []net.HardwareAddr{macBIOS, macUEFI},
		Deny:  []net.HardwareAddr{macUEFI},
	})
	for _, tt := range []struct {
		fixture string
		answer  bool
	}{
		{"qemu-ipxe-bios-rom", true},
		{"ovmf-native-pxe", false},  // allowed but denied: deny wins
		{"ovmf-native-http", false}, // not on the allow list
	} {
		t.Run(tt.fixture, func(t *testing.T) {
			got := exchange(t, r.addr, discover(t, fixtureByName(t, tt.fixture)), 500*time.Millisecond)
			assert.Equal(t, tt.answer, got != nil)
		})
	}
}

func TestListenPacketExclusive(t *testing.T) {
	a, err := pxe.ListenPacket("", 0)
	require.NoError(t, err)
	defer a.Close()
	port := a.LocalAddr().(*net.UDPAddr).Port
	_, err = pxe.ListenPacket("", port)
	require.Error(t, err, "a second socket on port %d must fail", port)
	assert.ErrorContains(t, err, "address already in use")
}

func TestServeConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		s    *pxe.Server
		want error
	}{
		{"no server ip", &pxe.Server{Interface: "lo"}, pxe.ErrConfig},
		{"full without network", &pxe.Server{Interface: "lo", ServerIP: serverIP, Mode: pxe.ModeFull}, pxe.ErrConfig},
		{"range outside subnet", &pxe.Server{Interface: "lo", ServerIP: serverIP, Mode: pxe.ModeFull, Network: &pxe.Network{
			Subnet: net.IPNet{IP: net.IPv4(10, 1, 0, 0).To4(), Mask: net.CIDRMask(24, 32)}, RangeStart: net.IPv4(10, 2, 0, 1), RangeEnd: net.IPv4(10, 2, 0, 9),
		}}, pxe.ErrConfig},
		{"no socket", &pxe.Server{ServerIP: serverIP}, pxe.ErrConfig},
		{"unknown mode", &pxe.Server{Interface: "lo", ServerIP: serverIP, Mode: 7}, pxe.ErrConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.s.Serve(t.Context())
			require.ErrorIs(t, err, tt.want)
		})
	}
}

func TestServeTwice(t *testing.T) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: serverIP})
	require.NoError(t, err)
	s := &pxe.Server{Mode: pxe.ModeFull, Network: testNetwork(), ServerIP: serverIP, Conn: conn}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.NoError(t, s.Serve(ctx), "a cancelled Serve returns nil")
	require.ErrorIs(t, s.Serve(t.Context()), pxe.ErrConfig)
	_, err = conn.WriteTo([]byte{1}, conn.LocalAddr())
	require.ErrorIs(t, err, net.ErrClosed, "Serve closed its socket")
}

func TestLeaseFilePersisted(t *testing.T) {
	file := filepath.Join(t.TempDir(), "leases.json")
	s := &pxe.Server{Mode: pxe.ModeFull, Network: testNetwork(), LeaseFile: file}
	r := start(t, s)
	lease, err := client(t, r, macPlain).Request(t.Context())
	require.NoError(t, err)
	ls, err := pxe.ReadLeaseFile(file)
	require.NoError(t, err)
	require.Len(t, ls, 1)
	assert.Equal(t, macPlain.String(), ls[0].MAC)
	assert.Equal(t, lease.ACK.YourIPAddr.String(), ls[0].IP)
	assert.Equal(t, ls, s.Leases())
}
