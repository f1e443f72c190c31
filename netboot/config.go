package netboot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/template"

	"github.com/nixboot/nixboot/ipxe"
)

// MaxConfigSize bounds an inventory file.
const MaxConfigSize = 16 << 20

// Config is the JSON inventory file, shaped so that NixOS users can write it
// with builtins.toJSON:
//
//	{
//	  "profiles": {
//	    "installer": {"nixos": "/nix/store/...-netboot", "cmdline": "console=ttyS0"},
//	    "debian": {"kernel": "/srv/vmlinuz", "initrds": ["/srv/initrd.img"],
//	               "cmdline": "console=ttyS0 hostname={{.Hostname}}"}
//	  },
//	  "machines": [{"mac": "52:54:00:12:34:56", "profile": "debian", "hostname": "db1"}],
//	  "groups": [{"selector": {"arch": "arm64"}, "profile": "installer"}],
//	  "default": "installer",
//	  "ignoreUnknown": false
//	}
type Config struct {
	Profiles map[string]ProfileConfig `json:"profiles"`
	Machines []MachineConfig          `json:"machines"`
	Groups   []GroupConfig            `json:"groups"`
	// Default is the profile of machines that no machine entry or group
	// gives one. "" means such machines do not boot.
	Default string `json:"default"`
	// IgnoreUnknown makes machines without a machine entry not boot at all,
	// whatever groups and Default say: an allow-list.
	IgnoreUnknown bool `json:"ignoreUnknown"`
}

// ProfileConfig is what a group of machines boots.
type ProfileConfig struct {
	// NixOS is a NixOS netboot output directory (bzImage, initrd,
	// netboot.ipxe). Its kernel, initrd and command line (with init=) come
	// from netboot.ipxe; Kernel and Initrds must then be empty, and Cmdline
	// is appended.
	NixOS string `json:"nixos,omitempty"`
	// Kernel and Initrds are absolute file paths on the server or http://
	// URLs.
	Kernel  string   `json:"kernel,omitempty"`
	Initrds []string `json:"initrds,omitempty"`
	// Cmdline is a text/template of the kernel command line, executed with
	// the machine's TemplateData.
	Cmdline string `json:"cmdline,omitempty"`
	// IPXE is an optional iPXE script template (see ipxe.ParseTemplate)
	// replacing the generated script; it gets a ScriptData.
	IPXE string `json:"ipxe,omitempty"`
	// Message is shown by the generated script.
	Message string `json:"message,omitempty"`
	// Loaders maps a firmware architecture name to a loader file name.
	Loaders map[string]string `json:"loaders,omitempty"`
	// Overlay lists per-machine files (archive path → text/template of the
	// content, executed with TemplateData), written as a gzip newc segment
	// appended to the profile's last initrd when it is served. The last
	// initrd must be a local file.
	//
	// The initrd URL names the machine by MAC, which is no secret: any
	// client that can reach the HTTP port can fetch any machine's overlay.
	// Put public data there (host names, authorized_keys, network
	// configuration), not private keys or tokens, unless only the machines
	// can reach the port.
	Overlay map[string]string `json:"overlay,omitempty"`
}

// MachineConfig is one known machine, found by MAC or UUID.
type MachineConfig struct {
	MAC      string            `json:"mac,omitempty"`
	UUID     string            `json:"uuid,omitempty"`
	Profile  string            `json:"profile,omitempty"` // "" means groups and default decide
	Hostname string            `json:"hostname,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	Vars     map[string]string `json:"vars,omitempty"`
}

// GroupConfig gives a profile to machines whose facts match every selector
// entry (see Machine.Facts; machine labels count too). Groups with more
// selector entries are tried first; among equals, file order decides.
//
// The inventory is asked twice per boot, with different facts. At DHCP
// time (which loader the machine gets, and whether it is answered at all)
// there is "firmware" (pxe's name: "bios", "efi-x86_64", "efi-arm64", ...) and
// no "ip"; at HTTP time (its script, kernel and initrds) there is "ip" and
// no "firmware". A group selecting on either can give one machine its
// loader from one profile and its kernel from another: select on mac, uuid,
// arch, hostname or machine labels where the two must agree.
type GroupConfig struct {
	Name     string            `json:"name,omitempty"`
	Selector map[string]string `json:"selector"`
	Profile  string            `json:"profile"`
	Vars     map[string]string `json:"vars,omitempty"`
}

// TemplateData is what a profile's command-line template sees.
type TemplateData struct {
	MAC, UUID, Arch, Hostname, IP string
	Labels                        map[string]string // the machine's facts
	Vars                          map[string]string
}

// ConfigError names the field of an inventory file that is invalid.
type ConfigError struct {
	Field string // e.g. `machines[2].mac` or `profiles["nixos"].cmdline`
	Err   error
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("netboot: inventory: %s: %v", e.Field, e.Err)
}

// Unwrap returns the cause.
func (e *ConfigError) Unwrap() []error { return []error{ErrInvalidInventory, e.Err} }

func fieldErr(field string, format string, args ...any) error {
	return &ConfigError{Field: field, Err: fmt.Errorf(format, args...)}
}

// ParseConfig reads an inventory file. Unknown fields are errors (a typo
// must not silently change what machines boot).
func ParseConfig(data []byte) (*Config, error) {
	if len(data) > MaxConfigSize {
		return nil, fieldErr("(file)", "%d bytes, limit %d", len(data), MaxConfigSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) && ute.Field != "" {
			return nil, &ConfigError{Field: ute.Field, Err: err}
		}
		return nil, &ConfigError{Field: "(file)", Err: err}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fieldErr("(file)", "data after the top-level object")
	}
	return &c, nil
}

// StaticInventory is a compiled Config. It is immutable and safe for
// concurrent use.
type StaticInventory struct {
	profiles      map[string]*profile
	byMAC         map[string]*MachineConfig
	byUUID        map[string]*MachineConfig
	groups        []GroupConfig // sorted: most selector entries first
	def           string
	ignoreUnknown bool
}

type profile struct {
	name    string
	kernel  Image
	initrds []Image
	base    ipxe.Args // from a NixOS netboot.ipxe
	cmdline *template.Template
	script  *ipxe.Template
	message string
	loaders map[string]string
	overlay overlayTemplates
	// overlayBase knows which of the overlay's directories the last
	// initrd already has.
	overlayBase *baseDirs
	// nixosDir is the profile's NixOS netboot directory as configured and
	// nixosTarget what it resolved to when the profile was compiled.
	nixosDir, nixosTarget string
}

// nixosMoved reports whether a NixOS netboot directory of inv now resolves
// to another target than when inv was compiled (a ./result link repointed
// by a rebuild), or no longer resolves at all.
func (inv *StaticInventory) nixosMoved() bool {
	for _, p := range inv.profiles {
		if p.nixosDir == "" {
			continue
		}
		if t, err := filepath.EvalSymlinks(p.nixosDir); err != nil || t != p.nixosTarget {
			return true
		}
	}
	return false
}

// Compile checks c and prepares it for lookups. NixOS netboot directories
// are read here, so a missing or broken one is reported at load time. The
// error names the first invalid field.
func (c *Config) Compile() (*StaticInventory, error) {
	inv := &StaticInventory{
		profiles:      map[string]*profile{},
		byMAC:         map[string]*MachineConfig{},
		byUUID:        map[string]*MachineConfig{},
		def:           c.Default,
		ignoreUnknown: c.IgnoreUnknown,
	}
	names := make([]string, 0, len(c.Profiles))
	for name := range c.Profiles {
		names = append(names, name)
	}
	slices.Sort(names) // report errors deterministically
	for _, name := range names {
		p, err := compileProfile(name, c.Profiles[name])
		if err != nil {
			return nil, err
		}
		inv.profiles[name] = p
	}
	checkProfile := func(field, name string, required bool) error {
		if name == "" && !required {
			return nil
		}
		if _, ok := inv.profiles[name]; !ok {
			return fieldErr(field, "no profile named %q", name)
		}
		return nil
	}
	if err := checkProfile("default", c.Default, false); err != nil {
		return nil, err
	}
	for i := range c.Machines {
		m := &c.Machines[i]
		field := fmt.Sprintf("machines[%d]", i)
		if m.MAC == "" && m.UUID == "" {
			return nil, fieldErr(field, "needs a mac or a uuid")
		}
		if m.MAC != "" {
			hw, err := net.ParseMAC(m.MAC)
			if err != nil || len(hw) != 6 {
				return nil, fieldErr(field+".mac", "%q is not a 6-byte MAC address", m.MAC)
			}
			key := hw.String()
			if _, dup := inv.byMAC[key]; dup {
				return nil, fieldErr(field+".mac", "%s listed twice", key)
			}
			inv.byMAC[key] = m
		}
		if m.UUID != "" {
			key := strings.ToLower(m.UUID)
			if _, dup := inv.byUUID[key]; dup {
				return nil, fieldErr(field+".uuid", "%s listed twice", key)
			}
			inv.byUUID[key] = m
		}
		if err := checkProfile(field+".profile", m.Profile, false); err != nil {
			return nil, err
		}
		if err := checkWord(field+".hostname", m.Hostname); err != nil {
			return nil, err
		}
	}
	for i, g := range c.Groups {
		field := fmt.Sprintf("groups[%d]", i)
		if len(g.Selector) == 0 {
			return nil, fieldErr(field+".selector", "empty: use \"default\" for a catch-all")
		}
		if err := checkProfile(field+".profile", g.Profile, true); err != nil {
			return nil, err
		}
	}
	inv.groups = slices.Clone(c.Groups)
	slices.SortStableFunc(inv.groups, func(a, b GroupConfig) int { return len(b.Selector) - len(a.Selector) })
	return inv, nil
}

func checkWord(field, s string) error {
	for _, r := range s {
		if r <= ' ' || r == 0x7f {
			return fieldErr(field, "%q holds whitespace or a control character", s)
		}
	}
	return nil
}

func compileProfile(name string, pc ProfileConfig) (*profile, error) {
	field := fmt.Sprintf("profiles[%q]", name)
	p := &profile{name: name, message: pc.Message, loaders: pc.Loaders}
	if name == "" {
		return nil, fieldErr(field, "empty profile name")
	}
	switch {
	case pc.NixOS != "":
		if pc.Kernel != "" || len(pc.Initrds) > 0 {
			return nil, fieldErr(field+".kernel", "set together with nixos; the netboot directory provides it")
		}
		nb, err := ReadNixOSNetboot(pc.NixOS)
		if err != nil {
			return nil, &ConfigError{Field: field + ".nixos", Err: err}
		}
		p.kernel, p.initrds, p.base = nb.Kernel, nb.Initrds, nb.Args
		p.nixosDir, p.nixosTarget = nb.Dir, nb.Target
	case pc.Kernel == "":
		return nil, fieldErr(field+".kernel", "missing (or set nixos)")
	default:
		img, err := imageFrom(pc.Kernel)
		if err != nil {
			return nil, &ConfigError{Field: field + ".kernel", Err: err}
		}
		p.kernel = img
		for i, s := range pc.Initrds {
			img, err := imageFrom(s)
			if err != nil {
				return nil, &ConfigError{Field: fmt.Sprintf("%s.initrds[%d]", field, i), Err: err}
			}
			p.initrds = append(p.initrds, img)
		}
	}
	if pc.Cmdline != "" {
		t, err := template.New(name).Option("missingkey=zero").Parse(pc.Cmdline)
		if err != nil {
			return nil, &ConfigError{Field: field + ".cmdline", Err: err}
		}
		p.cmdline = t
	}
	if pc.IPXE != "" {
		t, err := ipxe.ParseTemplate(name, pc.IPXE)
		if err != nil {
			return nil, &ConfigError{Field: field + ".ipxe", Err: err}
		}
		p.script = t
	}
	if pc.Message != "" {
		s := &ipxe.Script{Commands: []ipxe.Command{ipxe.Echo{Text: ipxe.Lit(pc.Message)}}}
		if _, err := s.Render(); err != nil {
			return nil, &ConfigError{Field: field + ".message", Err: err}
		}
	}
	ov, err := compileOverlay(field+".overlay", pc.Overlay)
	if err != nil {
		return nil, err
	}
	if ov != nil && (len(p.initrds) == 0 || p.initrds[len(p.initrds)-1].Path == "") {
		return nil, fieldErr(field+".overlay", "needs a last initrd that is a local file")
	}
	p.overlay = ov
	if ov != nil {
		// Read the base now, so that a broken one is reported at load time
		// and the first boot does not wait for it.
		p.overlayBase = &baseDirs{path: p.initrds[len(p.initrds)-1].Path, want: ov.parents()}
		if _, err := p.overlayBase.get(context.Background()); err != nil {
			return nil, &ConfigError{Field: field + ".initrds", Err: err}
		}
	}
	for k, v := range pc.Loaders {
		if _, err := CleanName(v); err != nil {
			return nil, &ConfigError{Field: fmt.Sprintf("%s.loaders[%q]", field, k), Err: err}
		}
	}
	return p, nil
}

// imageFrom reads a kernel or initrd location: an absolute path or an
// http:// URL.
func imageFrom(s string) (Image, error) {
	switch {
	case strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://"):
		if strings.ContainsAny(s, " \t\r\n") {
			return Image{}, fmt.Errorf("URL %q holds whitespace", s)
		}
		return Image{URL: s}, nil
	case filepath.IsAbs(s):
		return Image{Path: filepath.Clean(s), Name: filepath.Base(s)}, nil
	default:
		return Image{}, fmt.Errorf("%q is neither an absolute path nor an http:// URL", s)
	}
}

// Boot decides what m boots: its machine entry (by MAC, then UUID), then the
// first matching group, then the default profile.
func (inv *StaticInventory) Boot(ctx context.Context, m *Machine) (*Boot, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var mc *MachineConfig
	if len(m.MAC) > 0 {
		mc = inv.byMAC[m.MAC.String()]
	}
	if mc == nil && m.UUID != "" {
		mc = inv.byUUID[strings.ToLower(m.UUID)]
	}
	if mc == nil && inv.ignoreUnknown {
		return nil, fmt.Errorf("%w: %s", ErrUnknownMachine, m.MAC)
	}
	facts := m.Facts()
	vars := map[string]string{}
	hostname := m.Hostname
	if mc != nil {
		for k, v := range mc.Labels {
			if _, builtin := facts[k]; !builtin {
				facts[k] = v
			}
		}
		if mc.Hostname != "" {
			hostname = mc.Hostname
			facts["hostname"] = hostname
		}
	}
	name := ""
	if mc != nil {
		name = mc.Profile
	}
	if name == "" {
		for _, g := range inv.groups {
			if matches(g.Selector, facts) {
				name = g.Profile
				for k, v := range g.Vars {
					vars[k] = v
				}
				break
			}
		}
	}
	if name == "" {
		name = inv.def
	}
	if name == "" {
		return nil, fmt.Errorf("%w: %s: no machine entry, group or default profile", ErrUnknownMachine, m.MAC)
	}
	if mc != nil {
		for k, v := range mc.Vars {
			vars[k] = v
		}
	}
	p := inv.profiles[name]
	b := &Boot{
		Profile: name,
		Kernel:  p.kernel,
		Initrds: slices.Clone(p.initrds),
		Args:    slices.Clone(p.base),
		Message: p.message,
		Script:  p.script,
		Loaders: p.loaders,
		Vars:    vars,
	}
	data := TemplateData{
		MAC: facts["mac"], UUID: facts["uuid"], Arch: facts["arch"], Hostname: hostname, IP: facts["ip"],
		Labels: facts, Vars: vars,
	}
	if p.overlay != nil {
		existing, err := p.overlayBase.get(ctx)
		if err != nil {
			return nil, fmt.Errorf("netboot: profile %q: %w", name, err)
		}
		seg, err := p.overlay.render(ctx, data, existing)
		if err != nil {
			return nil, fmt.Errorf("netboot: profile %q: %w", name, err)
		}
		b.Initrds[len(b.Initrds)-1].Append = seg
	}
	if p.cmdline != nil {
		var sb strings.Builder
		if err := p.cmdline.Execute(&sb, data); err != nil {
			return nil, fmt.Errorf("netboot: profile %q: command line: %w", name, err)
		}
		args, err := ipxe.ParseArgs(sb.String())
		if err != nil {
			return nil, fmt.Errorf("netboot: profile %q: command line for %s: %w", name, m.MAC, err)
		}
		b.Args = append(b.Args, args...)
	}
	return b, nil
}

func matches(sel, facts map[string]string) bool {
	for k, v := range sel {
		if facts[k] != v {
			return false
		}
	}
	return true
}

// LoadConfigFile reads, parses and compiles an inventory file.
func LoadConfigFile(path string) (*StaticInventory, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("netboot: inventory: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("netboot: inventory %s: %w", path, err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	inv, err := c.Compile()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return inv, nil
}
