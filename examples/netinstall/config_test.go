//go:build linux

package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const sys = "/nix/store/yigaqmbb6b5q23q5by5s8gamc1cnlr4h-toplevel"

func TestParseCmdline(t *testing.T) {
	c, err := parseCmdline("console=ttyS0 nixboot.server=http://10.77.0.1:8080 nixboot.system=" + sys +
		" nixboot.key=test-1:AAAA BOOTIF=01-52-54-00-12-34-56 nixboot.timeout=5s nixboot.modules=virtio_blk,ext4 nixboot.poweroff=1")
	require.NoError(t, err)
	assert.Equal(t, "http://10.77.0.1:8080/nix-cache", c.Cache.String())
	assert.Equal(t, "http://10.77.0.1:8080/layout.json", c.Layout.String())
	assert.Equal(t, sys, c.System)
	assert.Equal(t, []string{"test-1:AAAA"}, c.Keys)
	assert.Equal(t, "52:54:00:12:34:56", c.MAC.String())
	assert.Equal(t, 5*time.Second, c.Timeout)
	assert.Equal(t, []string{"virtio_blk", "ext4"}, c.Modules)
	assert.True(t, c.PowerOff)
	assert.False(t, c.Destroy)
	assert.Equal(t, "root", c.RootPart)
}

func TestParseCmdlineSystemFromInit(t *testing.T) {
	// A generation's own command line: the system is the one init= names,
	// unless nixboot.system says otherwise.
	c, err := parseCmdline("init=" + sys + "/init console=ttyS0 nixboot.server=http://10.77.0.1 nixboot.key=k:AAAA")
	require.NoError(t, err)
	assert.Equal(t, sys, c.System)
	other := "/nix/store/0c8ykm2wnb7mk5q9w8bkr6h0p6b2ln5q-nixos-system-x"
	c, err = parseCmdline("init=" + sys + "/init nixboot.system=" + other + " nixboot.server=http://10.77.0.1 nixboot.key=k:AAAA")
	require.NoError(t, err)
	assert.Equal(t, other, c.System)
	_, err = parseCmdline("init=/sbin/init nixboot.server=http://10.77.0.1 nixboot.key=k:AAAA")
	require.ErrorIs(t, err, errConfig)
}

// FuzzParseCmdline: any command line is parsed or refused with errConfig,
// and what is accepted is usable.
func FuzzParseCmdline(f *testing.F) {
	f.Add("console=ttyS0 nixboot.server=http://10.77.0.1:8080 nixboot.system=" + sys + " nixboot.key=test-1:AAAA BOOTIF=01-52-54-00-12-34-56")
	f.Add("init=" + sys + "/init nixboot.server=https://h/x nixboot.key=k:A nixboot.timeout=1m nixboot.modules=,a,, nixboot.destroy=yes")
	f.Add(`nixboot.server="http://a b" nixboot.cache=ftp://x nixboot.layout=http:// BOOTIF=zz`)
	f.Fuzz(func(t *testing.T, cmdline string) {
		c, err := parseCmdline(cmdline)
		if err != nil {
			require.ErrorIs(t, err, errConfig)
			return
		}
		for _, u := range []string{c.Server.String(), c.Cache.String(), c.Layout.String()} {
			assert.Regexp(t, "^https?://", u)
		}
		assert.True(t, strings.HasPrefix(c.System, "/nix/store/"))
		assert.NotEmpty(t, c.Keys)
		assert.Positive(t, c.Timeout)
		assert.NotEmpty(t, c.RootPart)
	})
}

func TestParseCmdlineErrors(t *testing.T) {
	base := map[string]string{
		"nixboot.server": "http://10.77.0.1", "nixboot.system": sys, "nixboot.key": "k:AAAA",
	}
	tests := map[string][2]string{
		"no server":     {"nixboot.server", ""},
		"ftp server":    {"nixboot.server", "ftp://x"},
		"no system":     {"nixboot.system", ""},
		"bad system":    {"nixboot.system", "/etc/passwd"},
		"nested system": {"nixboot.system", sys + "/init"},
		"no key":        {"nixboot.key", ""},
		"bad mac":       {"BOOTIF", "01-zz"},
		"bad timeout":   {"nixboot.timeout", "-1s"},
	}
	for name, change := range tests {
		t.Run(name, func(t *testing.T) {
			var words []string
			for k, v := range base {
				if k == change[0] {
					continue
				}
				words = append(words, k+"="+v)
			}
			if change[1] != "" {
				words = append(words, change[0]+"="+change[1])
			}
			_, err := parseCmdline(strings.Join(words, " "))
			require.ErrorIs(t, err, errConfig)
			assert.Contains(t, err.Error(), strings.Split(change[0], "=")[0])
		})
	}
}

func TestModuleLoadOrder(t *testing.T) {
	dep := `kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/lib/crc16.ko:
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
`
	d, err := parseModulesDep(strings.NewReader(dep))
	require.NoError(t, err)
	order, unknown := d.loadOrder([]string{"virtio_blk", "ext4", "virtio-blk", "nosuch"})
	assert.Equal(t, []string{"nosuch"}, unknown)
	assert.Equal(t, []string{
		"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko", "kernel/drivers/block/virtio_blk.ko",
		"kernel/lib/crc16.ko", "kernel/fs/mbcache.ko", "kernel/fs/jbd2/jbd2.ko", "kernel/fs/ext4/ext4.ko",
	}, order)
	_, err = parseModulesDep(strings.NewReader("garbage\n"))
	require.Error(t, err)
}
