package ipxe

import (
	"fmt"
	"path"
	"strings"
	"time"
)

// ImageRef names an image to fetch: a URL (absolute, or relative to the
// script's own URL as in NixOS's netboot.ipxe) and an optional image name.
type ImageRef struct {
	URL  string
	Name string
}

// BootSpec is what a boot script boots: a kernel, its initrds and its
// command line. It is the plain-data form of "kernel ... / initrd ... /
// boot", used to render boot scripts and menus, and what ParseBootSpec
// extracts from a NixOS netboot.ipxe.
type BootSpec struct {
	Kernel  string     // kernel URL or name, as written
	Initrds []ImageRef // in load order
	Args    Args       // kernel command line, as written (may include ${...} expansions)
	Init    string     // the value of the last literal init= argument; "" if none
}

// ParseBootSpec parses a boot script of the form NixOS and similar
// builders emit:
//
//	#!ipxe
//	kernel bzImage init=/nix/store/<hash>-nixos-system-<name>/init initrd=initrd loglevel=4 ${cmdline}
//	initrd initrd
//	boot
//
// It accepts comments, echo, set, sleep and dhcp lines around the boot
// sequence, applies imgargs to the kernel, and reports any other command
// (menus, chain, goto) as ErrNotBootScript, naming the line: such a script
// decides at run time what it boots, which a parser cannot know. Kernel and
// initrd URLs must be literal. ParseBootSpec never fetches anything.
func ParseBootSpec(src []byte) (BootSpec, error) {
	s, err := Parse(src)
	if err != nil {
		return BootSpec{}, err
	}
	return s.BootSpec()
}

// BootSpec extracts the boot sequence from a parsed script; see ParseBootSpec.
func (s *Script) BootSpec() (BootSpec, error) {
	var spec BootSpec
	var kernelName string
	haveKernel, booted := false, false
	for i, c := range s.Commands {
		if booted {
			if _, ok := c.(Comment); ok {
				continue
			}
			return BootSpec{}, fmt.Errorf("%w: command %d (%s) after boot", ErrNotBootScript, i, c.name())
		}
		switch c := c.(type) {
		case Comment, Echo, Set, Sleep, DHCP:
		case Kernel:
			u, ok := c.URL.Literal()
			if !ok {
				return BootSpec{}, fmt.Errorf("%w: command %d: kernel URL %q uses an expansion", ErrUnsupported, i, c.URL.String())
			}
			spec.Kernel, spec.Args, kernelName, haveKernel = u, append(Args(nil), c.Args...), c.Name, true
		case Initrd:
			u, ok := c.URL.Literal()
			if !ok {
				return BootSpec{}, fmt.Errorf("%w: command %d: initrd URL %q uses an expansion", ErrUnsupported, i, c.URL.String())
			}
			spec.Initrds = append(spec.Initrds, ImageRef{URL: u, Name: c.Name})
		case Imgargs:
			if !haveKernel || (c.Image != kernelName && c.Image != path.Base(spec.Kernel)) {
				return BootSpec{}, fmt.Errorf("%w: command %d: imgargs for %q, which is not the kernel", ErrNotBootScript, i, c.Image)
			}
			spec.Args = append(Args(nil), c.Args...)
		case Boot:
			if !haveKernel {
				return BootSpec{}, fmt.Errorf("%w: command %d: boot before any kernel", ErrNotBootScript, i)
			}
			booted = true
		default:
			return BootSpec{}, fmt.Errorf("%w: command %d (%s) decides at run time what boots", ErrNotBootScript, i, c.name())
		}
	}
	if !haveKernel {
		return BootSpec{}, fmt.Errorf("%w: no kernel command", ErrNotBootScript)
	}
	if !booted {
		return BootSpec{}, fmt.Errorf("%w: no boot command", ErrNotBootScript)
	}
	if v, ok := spec.Args.Get("init"); ok {
		spec.Init, _ = v.Literal()
	}
	return spec, nil
}

// Commands returns the script lines that boot spec: kernel, initrds, boot.
//
// Every initrd gets an image name (its Name, or the last element of its URL
// path) and the command line gets initrd=<name> for each one it lacks:
// iPXE's EFI build hands initrds to the kernel's EFI stub only through that
// argument, and BIOS ignores it, so one script serves both.
func (spec BootSpec) Commands() ([]Command, error) {
	if spec.Kernel == "" {
		return nil, fieldErr("kernel", "Kernel", ErrMissing)
	}
	args := append(Args(nil), spec.Args...)
	var initrds []Command
	seen := map[string]bool{}
	for i, in := range spec.Initrds {
		name := in.Name
		if name == "" {
			name = imageName(in.URL)
		}
		if err := checkName("initrd", fmt.Sprintf("Initrds[%d].Name", i), name, true); err != nil {
			return nil, err
		}
		if seen[name] {
			return nil, fieldErr("initrd", fmt.Sprintf("Initrds[%d].Name", i), invalid("name %q used twice", name))
		}
		seen[name] = true
		initrds = append(initrds, Initrd{URL: Lit(in.URL), Name: name})
		if !hasArg(args, "initrd", name) {
			args = append(args, KV("initrd", name))
		}
	}
	cmds := []Command{Kernel{URL: Lit(spec.Kernel), Args: args}}
	cmds = append(cmds, initrds...)
	return append(cmds, Boot{}), nil
}

// Script returns a complete script that boots spec.
func (spec BootSpec) Script() (*Script, error) {
	cmds, err := spec.Commands()
	if err != nil {
		return nil, err
	}
	s := &Script{Commands: cmds}
	if _, err := s.Render(); err != nil {
		return nil, err
	}
	return s, nil
}

func hasArg(args Args, key, value string) bool {
	for _, a := range args {
		if v, ok := a.Value.Literal(); ok && a.Key == key && v == value {
			return true
		}
	}
	return false
}

// imageName derives an iPXE image name from a URL: its last path element
// without query or fragment, with characters iPXE names cannot hold
// replaced by '_'.
func imageName(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	base := path.Base(u)
	b := []byte(base)
	for i, c := range b {
		if !(isAlnum(rune(c)) || c == '-' || c == '_' || c == '.') {
			b[i] = '_'
		}
	}
	s := strings.TrimLeft(string(b), "-")
	if s == "" || s == "." || s == ".." {
		return "initrd"
	}
	return s
}

// MenuEntry is one choice of a BootMenu.
type MenuEntry struct {
	Label string   // required: a unique name (letters, digits, -_.)
	Title string   // the text shown; words separated by single spaces
	Boot  BootSpec // what this entry boots
}

// BootMenu is an iPXE menu of boot choices, for example NixOS generations
// newest first. The default is the first entry unless Default names
// another; after Timeout the default boots by itself (0 waits forever).
type BootMenu struct {
	Title   string
	Entries []MenuEntry
	Default string
	Timeout time.Duration
}

// menuChoice is the setting the chosen label is stored in.
const menuChoice Setting = "nixboot-choice"

// Script renders the menu and one boot sequence per entry, each behind its
// label.
func (m BootMenu) Script() (*Script, error) {
	if len(m.Entries) == 0 {
		return nil, fieldErr("menu", "Entries", ErrMissing)
	}
	def := m.Default
	if def == "" {
		def = m.Entries[0].Label
	}
	s := &Script{}
	s.Append(Menu{Title: Lit(m.Title)})
	found := false
	labels := map[string]bool{}
	for i, e := range m.Entries {
		if labels[e.Label] {
			return nil, fieldErr("item", fmt.Sprintf("Entries[%d].Label", i), invalid("label %q used twice", e.Label))
		}
		labels[e.Label] = true
		found = found || e.Label == def
		s.Append(Item{Label: e.Label, Text: Lit(e.Title)})
	}
	if !found {
		return nil, fieldErr("choose", "Default", invalid("%q is not an entry's label", def))
	}
	s.Append(Choose{Setting: menuChoice, Default: def, Timeout: m.Timeout, Goto: true})
	for i, e := range m.Entries {
		cmds, err := e.Boot.Commands()
		if err != nil {
			return nil, fmt.Errorf("menu entry %d (%s): %w", i, e.Label, err)
		}
		s.Append(Label{Name: e.Label})
		s.Append(cmds...)
	}
	if _, err := s.Render(); err != nil {
		return nil, err
	}
	return s, nil
}

// MachineScriptURL returns base with the query that identifies a machine to
// a per-machine script handler, expanded by iPXE at run time:
// base?mac=${mac}&uuid=${uuid}&arch=${buildarch}. It is the target of the
// generic first script in the chain pattern:
//
//	s := &ipxe.Script{Commands: []ipxe.Command{
//		ipxe.Chain{URL: ipxe.MachineScriptURL("http://10.0.0.1/boot.ipxe")},
//	}}
func MachineScriptURL(base string) Value {
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return Expr(base+sep+"mac=", MAC, "&uuid=", UUID, "&arch=", BuildArch)
}
