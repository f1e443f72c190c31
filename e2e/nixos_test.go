package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/internal/nixtest"
	"github.com/nixboot/nixboot/internal/testenv"
	"github.com/nixboot/nixboot/internal/vmtest"
	"github.com/nixboot/nixboot/netboot"
)

// netbootIPXE is netboot.ipxe as nixpkgs writes it (see
// ipxe/testdata/nixos-netboot.ipxe), with the kernel arguments as %s.
const netbootIPXE = `#!ipxe
# Use the cmdline variable to allow the user to specify custom kernel params
# when chainloading this script from other iPXE scripts like netboot.xyz
kernel bzImage %s initrd=initrd ${cmdline}
initrd initrd
boot
`

// Scenario 6: a NixOS-style netboot directory (bzImage, initrd,
// netboot.ipxe naming init=/nix/store/...-toplevel/init) served unchanged
// by a profile that points at the directory. The system is a real Nix
// closure built offline (internal/nixtest). Two variants:
//
//   - stage1: the initrd holds testinit as a small stage 1 plus the
//     closure; stage 1 reports, then hands over to the init= the command
//     line names, as NixOS's stage 1 does;
//   - rdinit: the initrd holds only the closure, and netboot.ipxe also
//     names the toplevel's init as rdinit=, so the kernel runs it directly.
//
// Either way the closure's init prints its marker "from <toplevel>/init".
// The machine boots like scenario 1 (SeaBIOS, iPXE ROM, HTTP).
func TestNixOSNetbootDirectory(t *testing.T) {
	testenv.Root(t)
	testenv.Short(t)
	c := nixtest.Build(t, "NIXBOOT-E2E-NIX stage2")
	var store []vmtest.File
	for _, p := range c.Paths {
		store = append(store, vmtest.File{Path: strings.TrimPrefix(p, "/"), Src: c.HostPath(p)})
	}
	initPath := c.Toplevel + "/init"
	tests := []struct {
		name   string
		files  []vmtest.File
		args   string // netboot.ipxe's kernel arguments before initrd=
		stage1 bool
	}{
		{"stage1", append(vmtest.InitFiles(t), store...), "init=" + initPath + " loglevel=4", true},
		{"rdinit", store, "init=" + initPath + " rdinit=" + initPath + " loglevel=4", false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			// The netboot directory, as nixpkgs' netboot output links it.
			dir := t.TempDir()
			require.NoError(t, os.Symlink(e.kernel, filepath.Join(dir, "bzImage")))
			require.NoError(t, os.Symlink(vmtest.Initrd(t, tt.files), filepath.Join(dir, "initrd")))
			script := fmt.Sprintf(netbootIPXE, tt.args)
			require.NoError(t, os.WriteFile(filepath.Join(dir, "netboot.ipxe"), []byte(script), 0o444))

			m := machine{name: "nixos-" + tt.name, mac: newMAC(0x61 + i), token: "s6-" + tt.name + "-" + e.net.Name}
			inv := netboot.Config{
				Profiles: map[string]netboot.ProfileConfig{"nixos": {
					NixOS: dir,
					// loglevel=6 (after netboot.ipxe's loglevel=4) shows the
					// kernel's "Kernel command line:" on the console.
					Cmdline: "console=ttyS0 panic=-1 loglevel=6 nbv.token={{.Vars.token}}",
				}},
				Machines: []netboot.MachineConfig{m.entry("nixos")},
			}
			srv := e.serve(vmtest.Nixboot{Inventory: inv})
			vm := e.start(m)
			ctx, cancel := context.WithTimeout(t.Context(), bootTimeout)
			defer cancel()
			if tt.stage1 {
				got, err := vm.WaitBoot(ctx)
				require.NoError(t, err)
				assert.Equal(t, m.token, got.Token)
				assert.Equal(t, []string{m.mac.String()}, got.MACs)
				assert.Contains(t, got.Cmdline, "init="+initPath)
			}
			line, err := vm.WaitLine(ctx, c.Marker+" from "+initPath)
			require.NoError(t, err)
			t.Logf("%s: stage 2 after %s: %s", tt.name, time.Since(vm.Started).Round(time.Millisecond), strings.TrimSpace(line))
			console := vm.Console()
			assert.Regexp(t, `Kernel command line: .*`+tt.args+` initrd=initrd .*nbv\.token=`+m.token, console,
				"netboot.ipxe's arguments, then the profile's")
			if !tt.stage1 {
				assert.NotContains(t, console, vmtest.OKMarker, "no stage 1 ran")
			}
			// The directory's kernel and initrd went out unchanged.
			for _, f := range []string{"bzImage", "initrd"} {
				p, err := filepath.EvalSymlinks(filepath.Join(dir, f))
				require.NoError(t, err)
				st, err := os.Stat(p)
				require.NoError(t, err)
				assert.NotEmpty(t, logLines(srv, "file="+filepath.Join(dir, f)+" ", fmt.Sprintf("bytes=%d ", st.Size())),
					"%s served whole and unchanged", f)
			}
		})
	}
}
