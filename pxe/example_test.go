package pxe_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/nixboot/nixboot/pxe"
)

func ExampleClientFromRequest() {
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	req, _ := dhcpv4.NewDiscovery(mac,
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00009:UNDI:003016")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_BC)),
	)
	c, err := pxe.ClientFromRequest(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	arch, _ := c.Arch()
	fmt.Println(c.MAC, int(arch), c.Firmware(), c.IsPXE(), c.IsIPXE())
	// Output: 52:54:00:12:34:56 9 efi-x86_64 true false
}

func ExampleLoaders_Decide() {
	policy := pxe.Loaders{EFI64: "snponly.efi", ScriptURL: "http://10.0.0.1/boot.ipxe"}
	for _, uc := range []string{"", "iPXE"} {
		mods := []dhcpv4.Modifier{
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003000")),
			dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)),
		}
		if uc != "" {
			mods = append(mods, dhcpv4.WithOption(dhcpv4.OptUserClass(uc)))
		}
		req, _ := dhcpv4.NewDiscovery(net.HardwareAddr{2, 0, 0, 0, 0, 1}, mods...)
		c, _ := pxe.ClientFromRequest(req)
		a, _ := policy.Decide(context.Background(), c)
		fmt.Println(a.BootFile)
	}
	// Output:
	// snponly.efi
	// http://10.0.0.1/boot.ipxe
}

func ExampleEncodeSubOptions() {
	fmt.Printf("% x\n", pxe.EncodeSubOptions(pxe.SubOption{Code: pxe.PXEDiscoveryControl, Data: []byte{pxe.DiscoveryUseBootFile}}))
	// Output: 06 01 08 ff
}

func ExamplePXELinuxPaths() {
	for _, p := range pxe.PXELinuxPaths(nil, net.HardwareAddr{0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd}, net.IPv4(10, 0, 0, 5)) {
		fmt.Println(p)
	}
	// Output:
	// pxelinux.cfg/01-88-99-aa-bb-cc-dd
	// pxelinux.cfg/0A000005
	// pxelinux.cfg/0A00000
	// pxelinux.cfg/0A0000
	// pxelinux.cfg/0A000
	// pxelinux.cfg/0A00
	// pxelinux.cfg/0A0
	// pxelinux.cfg/0A
	// pxelinux.cfg/0
	// pxelinux.cfg/default
}

func ExampleRenderPXELinux() {
	b, err := pxe.RenderPXELinux(pxe.PXELinuxConfig{
		Default: "nixos", Timeout: 3 * time.Second,
		Labels: []pxe.PXELinuxLabel{{Name: "nixos", Kernel: "bzImage", Initrd: []string{"initrd"}, Append: "init=/nix/store/x/init"}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(string(b))
	// Output:
	// DEFAULT nixos
	// PROMPT 0
	// TIMEOUT 30
	//
	// LABEL nixos
	//   KERNEL bzImage
	//   INITRD initrd
	//   APPEND init=/nix/store/x/init
}

// A full DHCP server for 10.0.0.0/24 on eth1 that boots PXE clients into
// iPXE and iPXE into a script. (Not run: it needs root and a real device.)
func ExampleServer() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	s := &pxe.Server{
		Interface: "eth1",
		ServerIP:  net.IPv4(10, 0, 0, 1),
		Mode:      pxe.ModeFull,
		Network: &pxe.Network{
			Subnet:     net.IPNet{IP: net.IPv4(10, 0, 0, 0), Mask: net.CIDRMask(24, 32)},
			RangeStart: net.IPv4(10, 0, 0, 100),
			RangeEnd:   net.IPv4(10, 0, 0, 200),
			Router:     []net.IP{net.IPv4(10, 0, 0, 1)},
		},
		Policy:    pxe.Loaders{ScriptURL: "http://10.0.0.1/boot.ipxe"},
		LeaseFile: "/var/lib/nixboot/leases.json",
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, nil)),
	}
	if err := s.Serve(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}

// A DHCPv6 server beside it on the same link: UEFI firmware gets ipxe.efi
// over TFTP (tftp://[fd00:77::1]/ipxe.efi), iPXE the script. A router or
// radvd must announce the prefix.
func ExampleServer6() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	s := &pxe.Server6{
		Interface: "eth1",
		ServerIP:  net.ParseIP("fd00:77::1"),
		Prefix:    netip.MustParsePrefix("fd00:77::/64"),
		Policy:    pxe.Loaders{ScriptURL: "http://[fd00:77::1]/boot.ipxe"},
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, nil)),
	}
	if err := s.Serve(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}
