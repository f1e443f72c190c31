package vmtest

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/ipxe"
	"github.com/nixboot/nixboot/netboot"
)

var pxeMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0x6e, 0x62, 0x03}

// pxelinuxInventory knows one machine, pxeMAC, booting a kernel and two
// initrds written to a temporary directory.
func pxelinuxInventory(tb testing.TB) (netboot.Inventory, map[string][]byte) {
	tb.Helper()
	dir := tb.TempDir()
	content := map[string][]byte{"kernel": []byte("KERNEL"), "initrd0": []byte("INITRD-0"), "initrd1": []byte("INITRD-1")}
	for name, b := range content {
		require.NoError(tb, os.WriteFile(filepath.Join(dir, name), b, 0o644))
	}
	args, err := ipxe.ParseArgs("console=ttyS0 nbv.token=t1")
	require.NoError(tb, err)
	boot := &netboot.Boot{
		Profile: "test",
		Kernel:  netboot.Image{Path: filepath.Join(dir, "kernel")},
		Initrds: []netboot.Image{{Path: filepath.Join(dir, "initrd0")}, {Path: filepath.Join(dir, "initrd1")}},
		Args:    args,
	}
	inv := netboot.InventoryFunc(func(_ context.Context, m *netboot.Machine) (*netboot.Boot, error) {
		if m.MAC.String() != pxeMAC.String() {
			return nil, netboot.ErrUnknownMachine
		}
		return boot, nil
	})
	return inv, content
}

func openName(src netboot.Source, name string) ([]byte, error) {
	f, err := src.Open(context.Background(), &netboot.Request{Proto: netboot.TFTP, Name: name, Remote: netip.MustParseAddrPort("10.77.0.100:2000")})
	if err != nil {
		return nil, err
	}
	if f.Closer != nil {
		defer f.Closer.Close()
	}
	b, err := io.ReadAll(f.Content)
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != f.Size {
		return nil, errors.New("size mismatch")
	}
	return b, nil
}

func TestPXELinuxSource(t *testing.T) {
	inv, content := pxelinuxInventory(t)
	src := PXELinuxSource(inv)
	const dir = "nixboot/52-54-00-6e-62-03/"
	tests := []struct {
		name string
		want []byte   // exact content, or
		has  []string // lines the content must have
		err  bool
	}{
		{name: "pxelinux.cfg/01-52-54-00-6e-62-03", has: []string{
			"UI menu.c32", "DEFAULT test", "TIMEOUT 10", "MENU TITLE " + PXELinuxMenuTitle + " 52:54:00:6e:62:03",
			"  KERNEL " + dir + "kernel", "  INITRD " + dir + "initrd0," + dir + "initrd1",
			"  APPEND console=ttyS0 nbv.token=t1", "  APPEND console=ttyS0 nbv.token=t1 nbv.menu=verbose",
		}},
		{name: dir + "kernel", want: content["kernel"]},
		{name: dir + "initrd0", want: content["initrd0"]},
		{name: dir + "initrd1", want: content["initrd1"]},
		{name: dir + "initrd2", err: true},
		{name: dir + "initrd-1", err: true},
		{name: dir + "vmlinuz", err: true},
		{name: dir, err: true},
		{name: dir + "config", err: true},
		{name: "pxelinux.cfg/01-52-54-00-6e-62-04", err: true}, // unknown machine
		{name: "pxelinux.cfg/default", err: true},
		{name: "pxelinux.cfg/01-zz", err: true},
		{name: "nixboot/52-54-00-6e-62-03", err: true},
		{name: "ldlinux.c32", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := openName(src, tt.name)
			if tt.err {
				require.Error(t, err)
				assert.ErrorIs(t, err, fs.ErrNotExist, "names it does not have must read as not found, so Chain goes on")
				return
			}
			require.NoError(t, err)
			if tt.want != nil {
				assert.Equal(t, tt.want, b)
			}
			lines := strings.Split(string(b), "\n")
			for _, h := range tt.has {
				assert.Contains(t, lines, h)
			}
		})
	}
}

// FuzzPXELinuxSource checks, for any TFTP name, that PXELinuxSource serves
// only the known machine's files: a configuration naming its MAC, or
// exactly one of its images; everything else is "not found".
func FuzzPXELinuxSource(f *testing.F) {
	for _, s := range []string{
		"pxelinux.cfg/01-52-54-00-6e-62-03", "nixboot/52-54-00-6e-62-03/kernel", "nixboot/52-54-00-6e-62-03/initrd1",
		"nixboot/52:54:00:6e:62:03/initrd0", "pxelinux.cfg/01-52-54-00-6E-62-03", "nixboot/52-54-00-6e-62-03/initrd+1",
		"pxelinux.cfg/default", "nixboot//kernel",
	} {
		f.Add(s)
	}
	inv, content := pxelinuxInventory(f)
	src := PXELinuxSource(inv)
	f.Fuzz(func(t *testing.T, name string) {
		b, err := openName(src, name)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("%q: %v is not a not-found error", name, err)
			}
			return
		}
		if strings.HasPrefix(name, "pxelinux.cfg/") {
			if !strings.Contains(string(b), "MENU TITLE "+PXELinuxMenuTitle+" "+pxeMAC.String()+"\n") {
				t.Fatalf("%q served a configuration for another machine:\n%s", name, b)
			}
			return
		}
		for _, c := range content {
			if string(c) == string(b) {
				return
			}
		}
		t.Fatalf("%q served unknown content %q", name, b)
	})
}
