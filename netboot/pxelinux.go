package netboot

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/nixboot/nixboot/ipxe"
	"github.com/nixboot/nixboot/pxe"
)

// pxelinuxDir is where PXELINUX looks for its configuration.
const pxelinuxDir = "pxelinux.cfg/"

// maxRememberedUUIDs bounds the UUIDs PXELinux remembers per client address.
const maxRememberedUUIDs = 4096

// PXELinux is a Source of per-machine PXELINUX configurations, decided by
// an Inventory and rendered with pxe.RenderPXELinux, under the names
// PXELINUX asks for in its lookup order (pxe.PXELinuxPaths):
//
//   - pxelinux.cfg/<uuid>: answered only when MACForIP knows the client's
//     MAC. The name holds option 97's bytes in wire order; the machine's
//     UUID is its SMBIOS form, as iPXE's ${uuid} prints it (pxe.UUID). Otherwise the UUID is remembered for the client's address and
//     "not found" sends the client on to its next name, so that a decision
//     for a MAC can never be shadowed by a guess made from the UUID alone.
//   - pxelinux.cfg/01-<mac>: the machine with that MAC (and the UUID the
//     same address asked for before), from the client's address.
//   - the client's address in hex, shortened, and pxelinux.cfg/default:
//     answered only when MACForIP knows the client's MAC.
//
// Machines the inventory does not boot get "not found" for every name, so a
// Chain can fall back to static files (a pxelinux.cfg/default menu, say).
// The configuration boots the inventory's kernel and initrds from the HTTP
// handler at BaseURL, which needs an HTTP-capable PXELINUX (lpxelinux.0).
// iPXE settings cannot be expanded by PXELINUX: an argument that is nothing
// but one (the ${cmdline} of NixOS's netboot.ipxe) is left out, and a
// profile whose arguments use one elsewhere is an error.
//
// Set the fields before first use and don't change them afterwards; Open
// is safe for concurrent use.
type PXELinux struct {
	// Inventory decides what machines boot. Required.
	Inventory Inventory
	// BaseURL is where machines reach the HTTPHandler serving the
	// inventory's images, e.g. "http://10.0.0.1:8080". Required.
	BaseURL string
	// MACForIP, when set, finds the MAC of a client address (from DHCP
	// leases, boot state or the ARP table); nil means never.
	MACForIP func(netip.Addr) net.HardwareAddr
	// Label is the configuration's label; "" means "nixboot".
	Label string

	mu    sync.Mutex
	uuids map[netip.Addr]string
}

// Open serves the configuration file req.Name names, or fails with an error
// wrapping fs.ErrNotExist.
func (p *PXELinux) Open(ctx context.Context, req *Request) (*File, error) {
	rest, ok := strings.CutPrefix(req.Name, pxelinuxDir)
	if !ok || rest == "" || strings.Contains(rest, "/") {
		return nil, fmt.Errorf("%s: %w", req.Name, fs.ErrNotExist)
	}
	if p.Inventory == nil || p.BaseURL == "" {
		return nil, fmt.Errorf("%w: PXELinux needs Inventory and BaseURL", ErrConfig)
	}
	ip := req.Remote.Addr().Unmap()
	m := &Machine{IP: ip}
	if ip.IsValid() && p.MACForIP != nil {
		m.MAC = p.MACForIP(ip)
	}
	switch {
	case strings.HasPrefix(rest, "01-"):
		mac, err := net.ParseMAC(strings.ReplaceAll(rest[3:], "-", ":"))
		if err != nil || len(mac) != 6 {
			return nil, fmt.Errorf("%s: %w", req.Name, fs.ErrNotExist)
		}
		m.MAC = mac
		m.UUID = p.rememberedUUID(ip)
	case isUUID(rest):
		uuid := smbiosUUID(rest)
		if len(m.MAC) == 0 {
			p.rememberUUID(ip, uuid)
			return nil, fmt.Errorf("%s: client MAC not known yet: %w", req.Name, fs.ErrNotExist)
		}
		m.UUID = uuid
	default: // hex address prefixes and "default"
		if len(m.MAC) == 0 {
			return nil, fmt.Errorf("%s: %w", req.Name, fs.ErrNotExist)
		}
		m.UUID = p.rememberedUUID(ip)
	}
	b, err := p.Inventory.Boot(ctx, m)
	if errors.Is(err, ErrUnknownMachine) {
		return nil, fmt.Errorf("%s: %w: %w", req.Name, fs.ErrNotExist, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", req.Name, err)
	}
	cfg, err := PXELinuxConfigFor(p.BaseURL, m, b, p.Label)
	if err != nil {
		return nil, err
	}
	out, err := pxe.RenderPXELinux(cfg)
	if err != nil {
		return nil, fmt.Errorf("netboot: profile %q: PXELINUX configuration: %w", b.Profile, err)
	}
	return BytesFile(out, time.Time{}), nil
}

// PXELinuxConfigFor returns the PXELINUX configuration that boots b on
// machine m from the HTTP handler at base, under one label ("" means
// "nixboot"): the same kernel and initrd URLs and command line as
// MachineScript, without the iPXE-only parts.
func PXELinuxConfigFor(base string, m *Machine, b *Boot, label string) (pxe.PXELinuxConfig, error) {
	if label == "" {
		label = "nixboot"
	}
	spec := BootSpecFor(strings.TrimSuffix(base, "/"), m, b)
	var args ipxe.Args
	for _, a := range spec.Args {
		if a.Key == "" {
			continue // a bare iPXE setting such as ${cmdline}: empty unless iPXE set it
		}
		if a.Value.HasSettings() {
			return pxe.PXELinuxConfig{}, fmt.Errorf("netboot: profile %q: argument %s expands an iPXE setting, which PXELINUX cannot", b.Profile, a.Key)
		}
		args = append(args, a)
	}
	line, err := args.Render()
	if err != nil {
		return pxe.PXELinuxConfig{}, fmt.Errorf("netboot: profile %q: %w", b.Profile, err)
	}
	l := pxe.PXELinuxLabel{Name: label, MenuLabel: b.Message, Kernel: spec.Kernel, Append: line}
	for _, ir := range spec.Initrds {
		l.Initrd = append(l.Initrd, ir.URL)
	}
	return pxe.PXELinuxConfig{Default: label, Labels: []pxe.PXELinuxLabel{l}}, nil
}

func (p *PXELinux) rememberUUID(ip netip.Addr, uuid string) {
	if !ip.IsValid() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.uuids == nil {
		p.uuids = map[netip.Addr]string{}
	}
	if _, ok := p.uuids[ip]; !ok && len(p.uuids) >= maxRememberedUUIDs {
		for k := range p.uuids { // forget one at random
			delete(p.uuids, k)
			break
		}
	}
	p.uuids[ip] = strings.ToLower(uuid)
}

func (p *PXELinux) rememberedUUID(ip netip.Addr) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.uuids[ip]
}

// smbiosUUID turns the UUID of a PXELINUX file name, which is option 97's
// bytes in wire order, into the SMBIOS form that iPXE's ${uuid}, dmidecode
// and inventories use (see pxe.UUID). s must satisfy isUUID.
func smbiosUUID(s string) string {
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 {
		return strings.ToLower(s)
	}
	return pxe.UUID(b).SMBIOSString()
}

// isUUID reports whether s has the 8-4-4-4-12 hex form PXELINUX uses.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}
