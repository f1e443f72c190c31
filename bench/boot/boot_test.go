package boot

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixboot/nixboot/internal/testenv"
	"github.com/nixboot/nixboot/internal/vmtest"
	"github.com/nixboot/nixboot/netboot"
	"github.com/nixboot/nixboot/pxe"
)

func TestMain(m *testing.M) {
	vmtest.Main(m, map[string]vmtest.Role{vmtest.NixbootRole: vmtest.RunNixboot})
}

// initrdDone matches iPXE's line for a finished initrd download, per server
// ("http://.../initrd/0... 91%   ok": progress may come before "ok").
var initrdDone = map[string]*regexp.Regexp{
	"nixboot": regexp.MustCompile(`/initrd/0\.\.\.[^\n]*ok`),
	"ref":     regexp.MustCompile(`/initrd\.cpio\.\.\.[^\n]*ok`),
}

// bootTimeout bounds one boot; TCG under load can be slow.
const bootTimeout = 180 * time.Second

// server is one side of the comparison: it serves payload p for boot path
// bp in n.
type server struct {
	name  string
	serve func(n *vmtest.Net, bp vmtest.BootPath, mac net.HardwareAddr, p vmtest.Payload)
}

var servers = []server{
	{"nixboot", serveNixboot},
	{"ref", func(n *vmtest.Net, bp vmtest.BootPath, _ net.HardwareAddr, p vmtest.Payload) { n.ServeReference(bp, p) }},
}

// serveNixboot runs netboot.Server with full DHCP, one machine entry for
// mac whose profile is the payload, and snponly.efi as the UEFI loader.
func serveNixboot(n *vmtest.Net, bp vmtest.BootPath, mac net.HardwareAddr, p vmtest.Payload) {
	n.Nixboot(vmtest.Nixboot{
		Inventory: netboot.Config{
			Profiles: map[string]netboot.ProfileConfig{"bench": {Kernel: p.Kernel, Initrds: []string{p.Initrd}, Cmdline: p.Cmdline}},
			Machines: []netboot.MachineConfig{{MAC: mac.String(), Profile: "bench"}},
		},
		Files:   netboot.HostFiles{"snponly.efi": p.SnpOnly},
		DHCP:    netboot.DHCPFull,
		Loaders: pxe.Loaders{EFI64: "snponly.efi"},
	})
}

// BenchmarkBoot boots each boot path from nixboot and from the reference
// servers, b.N times each, and reports the medians and their ratio.
func BenchmarkBoot(b *testing.B) {
	testenv.Root(b)
	kernel := testenv.Kernel(b)
	initrd := vmtest.Initrd(b, vmtest.InitFiles(b))
	snponly := testenv.File(b, "/usr/lib/ipxe/snponly.efi")
	var summary []string
	for pi, bp := range []vmtest.BootPath{vmtest.BIOSiPXE, vmtest.UEFIPXE, vmtest.UEFIHTTP} {
		b.Run(bp.Name, func(b *testing.B) {
			times := map[string][]time.Duration{}
			nets := map[string][]time.Duration{}
			i := 0
			for b.Loop() {
				order := slices.Clone(servers)
				if i%2 == 1 {
					slices.Reverse(order)
				}
				for _, s := range order {
					mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x6e, 0x63, byte(pi<<4 | i&0xf)}
					d := bootOnce(b, s, bp, mac, kernel, initrd, snponly)
					b.Logf("%s %s round %d: marker after %s, initrd loaded after %s", bp.Name, s.name, i,
						d.total.Round(time.Millisecond), d.net.Round(time.Millisecond))
					times[s.name] = append(times[s.name], d.total)
					nets[s.name] = append(nets[s.name], d.net)
				}
				i++
			}
			nb, ref := median(times["nixboot"]), median(times["ref"])
			ratio := nb.Seconds() / ref.Seconds()
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(nb.Seconds(), "nixboot-s")
			b.ReportMetric(ref.Seconds(), "ref-s")
			b.ReportMetric(ratio, "ratio")
			nbNet, refNet := median(nets["nixboot"]), median(nets["ref"])
			b.ReportMetric(nbNet.Seconds()/refNet.Seconds(), "net-ratio")
			summary = append(summary, fmt.Sprintf("%-10s  to marker: nixboot %6.2f s  dnsmasq+nginx %6.2f s  ratio %.2f"+
				"   to initrd loaded: nixboot %6.2f s  dnsmasq+nginx %6.2f s  ratio %.2f   (%d runs each)",
				bp.Name, nb.Seconds(), ref.Seconds(), ratio, nbNet.Seconds(), refNet.Seconds(), nbNet.Seconds()/refNet.Seconds(), len(times["ref"])))
		})
	}
	// Printed rather than logged: a parent benchmark's log is not shown.
	fmt.Printf("time from VM start, medians (ratio = nixboot / reference, goal <= 1.0):\n%s\n", strings.Join(summary, "\n"))
}

// bootOnce serves the payload from s in a fresh namespace, boots one VM on
// path bp and returns the time from QEMU's start to the marker. The VM
// powers itself off at the marker; the network and its idle servers are
// torn down when the path's benchmark ends (a sub-benchmark per boot would
// run twice under -benchtime Nx).
func bootOnce(b *testing.B, s server, bp vmtest.BootPath, mac net.HardwareAddr, kernel, initrd, snponly string) timing {
	b.Helper()
	n := vmtest.NewNet(b, vmtest.NetConfig{})
	token := "bench-" + s.name + "-" + n.Name
	s.serve(n, bp, mac, vmtest.Payload{
		Kernel: kernel, Initrd: initrd, SnpOnly: snponly,
		Cmdline: "console=ttyS0 panic=-1 quiet nbv.token=" + token,
	})
	vm := vmtest.Start(b, vmtest.Config{
		Name: fmt.Sprintf("%s-%s-%02x", bp.Name, s.name, mac[5]), Firmware: bp.Firmware, Netns: n.Name, Extra: bp.Extra,
		NICs: []vmtest.NIC{{Tap: n.AddTap(), MAC: mac, NoROM: bp.NoROM, BootIndex: 1}},
	})
	ctx, cancel := context.WithTimeout(b.Context(), bootTimeout)
	defer cancel()
	// The network phase ends with iPXE's "<initrd URL>... ok"; the rest
	// is the kernel booting, the same work on both sides.
	netDone, err := vm.WaitMatch(ctx, initrdDone[s.name])
	if err != nil {
		b.Fatalf("%s from %s: no initrd download: %v", bp.Name, s.name, err)
	}
	got, err := vm.WaitBoot(ctx)
	if err != nil {
		b.Fatalf("%s from %s: %v", bp.Name, s.name, err)
	}
	d := time.Since(vm.Started)
	if got.Token != token || len(got.MACs) != 1 || got.MACs[0] != mac.String() {
		b.Fatalf("%s from %s: marker %+v, want token %s and MAC %s", bp.Name, s.name, got, token, mac)
	}
	select {
	case <-vm.Done():
	case <-ctx.Done():
		b.Fatalf("%s from %s: VM did not power off after its marker", bp.Name, s.name)
	}
	return timing{total: d, net: netDone}
}

// timing is one boot: VM start to marker, and VM start to the end of the
// initrd download.
type timing struct{ total, net time.Duration }

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
