package e2e

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/internal/testenv"
	"github.com/nixboot/nixboot/internal/vmtest"
	"github.com/nixboot/nixboot/netboot"
)

// bootTimeout bounds one VM boot: 8-21 s under TCG, up to 2x more under load.
const bootTimeout = 180 * time.Second

func TestMain(m *testing.M) {
	vmtest.Main(m, map[string]vmtest.Role{vmtest.NixbootRole: vmtest.RunNixboot})
}

// env is one scenario's world: a private network and the files to serve.
type env struct {
	t      *testing.T
	net    *vmtest.Net
	kernel string // host path of the Debian kernel
	initrd string // host path of the test initrd (testinit + NIC modules), once built
	files  netboot.HostFiles
}

func newEnv(t *testing.T) *env {
	t.Helper()
	testenv.Root(t)
	testenv.Short(t)
	e := &env{
		t:      t,
		kernel: testenv.Kernel(t),
		files:  netboot.HostFiles{},
	}
	e.net = vmtest.NewNet(t, vmtest.NetConfig{})
	return e
}

// addFile serves a host file (a loader from Debian) under name.
func (e *env) addFile(name, src string) {
	e.t.Helper()
	e.files[name] = testenv.File(e.t, src)
}

// machine is one VM of a scenario.
type machine struct {
	name  string
	mac   net.HardwareAddr
	token string // expected on its command line
	fw    vmtest.Firmware
	noROM bool     // firmware's own network stack instead of QEMU's iPXE ROM
	extra []string // more QEMU arguments
}

func newMAC(i int) net.HardwareAddr { return net.HardwareAddr{0x52, 0x54, 0x00, 0x6e, 0x62, byte(i)} }

// testCmdline is the command line of the test profile: the token comes from
// the machine entry's vars, so each machine gets its own.
const testCmdline = "console=ttyS0 panic=-1 quiet nbv.token={{.Vars.token}}"

// profile is the test profile: the Debian kernel and the test initrd.
func (e *env) profile() netboot.ProfileConfig {
	if e.initrd == "" {
		e.initrd = vmtest.Initrd(e.t, vmtest.InitFiles(e.t))
	}
	return netboot.ProfileConfig{Kernel: e.kernel, Initrds: []string{e.initrd}, Cmdline: testCmdline}
}

// entry is m's machine entry in the inventory, with its token.
func (m machine) entry(profile string) netboot.MachineConfig {
	return netboot.MachineConfig{MAC: m.mac.String(), Profile: profile, Vars: map[string]string{"token": m.token}}
}

// inventory gives every machine the test profile ("test") and its token.
func (e *env) inventory(ms ...machine) netboot.Config {
	c := netboot.Config{Profiles: map[string]netboot.ProfileConfig{"test": e.profile()}}
	for _, m := range ms {
		c.Machines = append(c.Machines, m.entry("test"))
	}
	return c
}

// serve runs nixboot's netboot.Server in the env's network with nb, full
// DHCP unless nb says otherwise, and the env's files. The server fails the
// test if it stops with an error.
func (e *env) serve(nb vmtest.Nixboot) *vmtest.Process {
	e.t.Helper()
	if nb.DHCP == netboot.DHCPOff {
		nb.DHCP = netboot.DHCPFull
	}
	if nb.Files == nil {
		nb.Files = e.files
	}
	if nb.Loaders.EFI64 == "" {
		nb.Loaders.EFI64 = "snponly.efi"
	}
	return e.net.Nixboot(nb)
}

// start boots m on a new tap of the env's network.
func (e *env) start(m machine) *vmtest.Machine {
	e.t.Helper()
	return vmtest.Start(e.t, vmtest.Config{
		Name:     m.name,
		Firmware: m.fw,
		NICs:     []vmtest.NIC{{Tap: e.net.AddTap(), MAC: m.mac, NoROM: m.noROM, BootIndex: 1}},
		Netns:    e.net.Name,
		Extra:    m.extra,
	})
}

// boot starts m, waits for testinit's marker and checks that the VM got
// its own token and MAC. It returns the marker.
func (e *env) boot(m machine) vmtest.Marker {
	e.t.Helper()
	vm := e.start(m)
	return e.expectBoot(vm, m)
}

func (e *env) expectBoot(vm *vmtest.Machine, m machine) vmtest.Marker {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), bootTimeout)
	defer cancel()
	got, err := vm.WaitBoot(ctx)
	require.NoError(e.t, err, "%s did not boot", m.name)
	e.t.Logf("%s: marker after %s", m.name, time.Since(vm.Started).Round(time.Millisecond))
	assert.Equal(e.t, m.token, got.Token, "%s: token on its command line", m.name)
	assert.Equal(e.t, []string{m.mac.String()}, got.MACs, "%s: MAC", m.name)
	return got
}

// logLines returns the lines of a server's log that contain every one of subs.
func logLines(p *vmtest.Process, subs ...string) []string {
	var out []string
	for _, l := range strings.Split(p.Output(), "\n") {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}
