package vmtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/internal/nixtest"
	"github.com/nixboot/nixboot/internal/testenv"
)

// TestNixStage1 boots a real Nix closure the two ways NixOS netboot images
// do, by -kernel: testinit as stage 1 handing over to init=<toplevel>/init,
// and the closure alone with rdinit=<toplevel>/init. The toplevel's init
// prints its marker and exits; panic=-1 and -no-reboot end QEMU.
func TestNixStage1(t *testing.T) {
	testenv.Root(t)
	testenv.Short(t)
	kernel := testenv.Kernel(t)
	c := nixtest.Build(t, "NIXBOOT-E2E-NIX stage2")
	var store []File
	for _, p := range c.Paths {
		store = append(store, File{Path: strings.TrimPrefix(p, "/"), Src: c.HostPath(p)})
	}
	tests := []struct {
		name   string
		files  []File
		append string
		stage1 bool
	}{
		{"stage1-init", append(InitFiles(t), store...), "init=" + c.Toplevel + "/init", true},
		{"rdinit", store, "rdinit=" + c.Toplevel + "/init", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token := "nix-" + tt.name
			m := Start(t, Config{
				Name: tt.name, Kernel: kernel, Initrd: Initrd(t, tt.files),
				Append: "console=ttyS0 panic=-1 loglevel=6 nbv.token=" + token + " " + tt.append,
			})
			ctx, cancel := context.WithTimeout(t.Context(), 180*time.Second)
			defer cancel()
			if tt.stage1 {
				got, err := m.WaitBoot(ctx)
				require.NoError(t, err)
				assert.Equal(t, token, got.Token)
			}
			line, err := m.WaitLine(ctx, c.Marker+" from "+c.Toplevel+"/init")
			require.NoError(t, err)
			t.Logf("%s: stage 2 after %s: %s", tt.name, time.Since(m.Started).Round(time.Millisecond), line)
			assert.Contains(t, m.Console(), "Kernel command line: console=ttyS0 panic=-1 loglevel=6 nbv.token="+token)
		})
	}
}
