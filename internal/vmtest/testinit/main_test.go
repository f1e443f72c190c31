package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/internal/vmtest"
)

func TestParseCmdline(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want cmdArgs
	}{
		{"empty", "", cmdArgs{}},
		{"token and checks", "console=ttyS0 nbv.token=abc nbv.check=/a,/b nbv.check=/c quiet",
			cmdArgs{token: "abc", checks: []string{"/a", "/b", "/c"}}},
		{"last token wins", "nbv.token=a nbv.token=b", cmdArgs{token: "b"}},
		{"stage 1", "init=/nix/store/abc-toplevel/init nbv.token=n", cmdArgs{token: "n", init: "/nix/store/abc-toplevel/init"}},
		{"empty check items skipped", "nbv.check=,/a,", cmdArgs{checks: []string{"/a"}}},
		{"flags without value ignored", "nbv.token quiet", cmdArgs{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, parseCmdline(tt.in))
		})
	}
}

// TestMarkerRoundTrip checks that what testinit prints is what the harness
// parses.
func TestMarkerRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		token   string
		macs    []string
		cmdline string
		want    vmtest.Marker
	}{
		{"full", "t1", []string{"52:54:00:00:00:01"}, "console=ttyS0 nbv.token=t1",
			vmtest.Marker{Token: "t1", MACs: []string{"52:54:00:00:00:01"}, Cmdline: "console=ttyS0 nbv.token=t1"}},
		{"nothing", "", nil, "", vmtest.Marker{Token: "-"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := vmtest.ParseMarker(marker(tt.token, tt.macs, tt.cmdline))
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestReadMACs(t *testing.T) {
	dir := t.TempDir()
	for name, mac := range map[string]string{"lo": "00:00:00:00:00:00", "eth1": "52:54:00:00:00:02", "eth0": "52:54:00:00:00:01", "sit0": "00:00:00:00:00:00"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, name), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name, "address"), []byte(mac+"\n"), 0o644))
	}
	got, err := waitMACs(dir, time.Second)
	require.NoError(t, err)
	assert.Equal(t, []string{"52:54:00:00:00:01", "52:54:00:00:00:02"}, got)

	_, err = waitMACs(filepath.Join(dir, "missing"), 0)
	require.Error(t, err)
}

func TestMissingPaths(t *testing.T) {
	dir := t.TempDir()
	assert.Empty(t, missingPaths([]string{dir}))
	assert.Equal(t, []string{dir + "/x"}, missingPaths([]string{dir, dir + "/x"}))
}

// FuzzParseMarker feeds console lines to the harness's parser. Property: a
// line that parses renders back (through testinit's own marker function) to
// a line that parses to the same Marker.
func FuzzParseMarker(f *testing.F) {
	f.Add("NIXBOOT-E2E-OK token=abc mac=52:54:00:12:34:56 cmdline=console=ttyS0 nbv.token=abc")
	f.Add("\x1b[2JNIXBOOT-E2E-OK token=- mac=- cmdline=")
	f.Add("NIXBOOT-E2E-OK token=a mac=1,2,3 cmdline=  x  ")
	f.Add("NIXBOOT-E2E-FAIL missing paths: /x")
	f.Fuzz(func(t *testing.T, line string) {
		m, err := vmtest.ParseMarker(line)
		if err != nil {
			return
		}
		assert.NotContains(t, m.Token, " ")
		for _, mac := range m.MACs {
			assert.NotContains(t, mac, " ")
		}
		again, err := vmtest.ParseMarker(marker(m.Token, m.MACs, m.Cmdline))
		require.NoError(t, err)
		if m.Token == "" {
			m.Token = "-" // rendering an empty token writes the placeholder
		}
		if len(m.MACs) == 1 && m.MACs[0] == "" || strings.Join(m.MACs, ",") == "" {
			m.MACs = nil
		}
		assert.Equal(t, m, again)
	})
}

func TestPCINICs(t *testing.T) {
	dir := t.TempDir()
	for name, class := range map[string]string{"0000:00:02.0": "0x020000", "0000:00:01.0": "0x060100", "0000:00:03.0": "0x020000"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, name), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name, "class"), []byte(class+"\n"), 0o644))
	}
	assert.Equal(t, 2, pciNICs(dir))
	assert.Equal(t, 0, pciNICs(filepath.Join(dir, "missing")))
}
