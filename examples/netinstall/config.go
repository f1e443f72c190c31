//go:build linux

package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// config is what the installer reads from the kernel command line.
type config struct {
	Server    *url.URL         // nixboot.server: base URL of nixboot's HTTP server
	Cache     *url.URL         // nixboot.cache: the binary cache; default <server>/nix-cache
	Layout    *url.URL         // nixboot.layout: the disk layout JSON; default <server>/layout.json
	System    string           // nixboot.system: the generation's toplevel store path; default from init=<toplevel>/init
	Keys      []string         // nixboot.key: trusted binary cache keys (repeatable)
	RootPart  string           // nixboot.rootpart: layout partition to install into; default "root"
	Modules   []string         // nixboot.modules: kernel modules to load, comma separated
	Interface string           // nixboot.iface: NIC to configure; default from BOOTIF= or the first NIC
	MAC       net.HardwareAddr // from BOOTIF=01-aa-bb-... (pxelinux IPAPPEND 2) or nixboot.mac
	Destroy   bool             // nixboot.destroy=1: allow destructive plans (never the default)
	PowerOff  bool             // nixboot.poweroff=1: power off when done instead of booting the system
	Timeout   time.Duration    // nixboot.timeout: network timeout per step; default 30s
}

var errConfig = errors.New("netinstall: bad kernel command line")

// defaultModules are what a QEMU or typical server needs to reach its NIC
// and disk and mount ext4 with Debian's modular kernel (ext4 needs crc32c
// for metadata checksums but modules.dep lists it only as a soft
// dependency, so it is named here; without it mount fails with ENOENT),
// and virtio_rng so DHCP's random transaction IDs do not wait for entropy
// in a VM. Missing ones are
// skipped (they may be built in).
var defaultModules = []string{"virtio_pci", "virtio_rng", "virtio_net", "virtio_blk", "e1000", "crc32c_generic", "ext4"}

// parseCmdline reads the installer's settings from a kernel command line.
func parseCmdline(cmdline string) (config, error) {
	c := config{RootPart: "root", Modules: defaultModules, Timeout: 30 * time.Second}
	var server, cache, layout, initSystem string
	for _, w := range strings.Fields(cmdline) {
		k, v, _ := strings.Cut(w, "=")
		v = strings.Trim(v, `"`)
		switch k {
		case "nixboot.server":
			server = v
		case "nixboot.cache":
			cache = v
		case "nixboot.layout":
			layout = v
		case "nixboot.system":
			c.System = v
		case "init":
			// A NixOS generation's command line names its system as
			// init=<toplevel>/init: the installer installs that system.
			initSystem = strings.TrimSuffix(v, "/init")
		case "nixboot.key":
			c.Keys = append(c.Keys, v)
		case "nixboot.rootpart":
			c.RootPart = v
		case "nixboot.modules":
			c.Modules = nil
			for _, m := range strings.Split(v, ",") {
				if m != "" {
					c.Modules = append(c.Modules, m)
				}
			}
		case "nixboot.iface":
			c.Interface = v
		case "nixboot.mac", "BOOTIF":
			s := v
			if k == "BOOTIF" {
				// pxelinux: 01-aa-bb-cc-dd-ee-ff, the 01 being the ARP type.
				s = strings.TrimPrefix(s, "01-")
			}
			mac, err := net.ParseMAC(strings.ReplaceAll(s, "-", ":"))
			if err != nil {
				return config{}, fmt.Errorf("%w: %s=%s: %v", errConfig, k, v, err)
			}
			c.MAC = mac
		case "nixboot.destroy":
			c.Destroy = v == "1" || v == "yes" || v == "true"
		case "nixboot.poweroff":
			c.PowerOff = v == "1" || v == "yes" || v == "true"
		case "nixboot.timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return config{}, fmt.Errorf("%w: nixboot.timeout=%s is not a positive duration", errConfig, v)
			}
			c.Timeout = d
		}
	}
	if server == "" {
		return config{}, fmt.Errorf("%w: nixboot.server is missing", errConfig)
	}
	var err error
	if c.Server, err = parseHTTPURL("nixboot.server", server); err != nil {
		return config{}, err
	}
	if cache == "" {
		cache = strings.TrimSuffix(server, "/") + "/nix-cache"
	}
	if c.Cache, err = parseHTTPURL("nixboot.cache", cache); err != nil {
		return config{}, err
	}
	if layout == "" {
		layout = strings.TrimSuffix(server, "/") + "/layout.json"
	}
	if c.Layout, err = parseHTTPURL("nixboot.layout", layout); err != nil {
		return config{}, err
	}
	if c.System == "" {
		c.System = initSystem
	}
	if !strings.HasPrefix(c.System, "/nix/store/") || strings.Count(c.System, "/") != 3 {
		return config{}, fmt.Errorf("%w: nixboot.system=%q is not a store path", errConfig, c.System)
	}
	if len(c.Keys) == 0 {
		return config{}, fmt.Errorf("%w: nixboot.key is missing: unsigned installs are refused", errConfig)
	}
	if c.RootPart == "" {
		return config{}, fmt.Errorf("%w: nixboot.rootpart is empty", errConfig)
	}
	return c, nil
}

func parseHTTPURL(key, s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: %s=%q is not an http(s) URL", errConfig, key, s)
	}
	return u, nil
}
