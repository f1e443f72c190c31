package pxe

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// PXELinuxConfig is a PXELINUX configuration file (syslinux 6
// "pxelinux.cfg/..."). The zero value renders an empty but valid file.
type PXELinuxConfig struct {
	// Default names the label booted when the user does nothing. "" omits
	// DEFAULT (PXELINUX then boots the first label).
	Default string
	// UI is a UI module such as "menu.c32"; "" omits UI.
	UI string
	// Prompt shows the "boot:" prompt (PROMPT 1). False renders PROMPT 0.
	Prompt bool
	// Timeout is how long PXELINUX waits before booting Default, rounded
	// down to tenths of a second. Zero omits TIMEOUT (wait forever when a
	// prompt or menu is shown).
	Timeout time.Duration
	// MenuTitle is MENU TITLE; "" omits it.
	MenuTitle string
	// Labels are the boot entries, in order.
	Labels []PXELinuxLabel
}

// PXELinuxLabel is one LABEL block.
type PXELinuxLabel struct {
	Name      string   // LABEL; required, no white space
	MenuLabel string   // MENU LABEL; "" omits it
	Kernel    string   // KERNEL; required, no white space
	Initrd    []string // INITRD, comma-joined; nil omits it; no white space or commas
	Append    string   // APPEND; "" omits it
}

// RenderPXELinux renders c. Every value is checked: line breaks (which
// would smuggle in directives), other control characters and, where
// PXELINUX splits on them, white space and commas are refused with
// ErrBadValue naming the field.
func RenderPXELinux(c PXELinuxConfig) ([]byte, error) {
	var b strings.Builder
	line := func(directive, value string) {
		b.WriteString(directive)
		b.WriteByte(' ')
		b.WriteString(value)
		b.WriteByte('\n')
	}
	if err := checkWord("DEFAULT", c.Default, true); err != nil {
		return nil, err
	}
	if err := checkWord("UI", c.UI, true); err != nil {
		return nil, err
	}
	if err := checkText("MENU TITLE", c.MenuTitle); err != nil {
		return nil, err
	}
	if c.Timeout < 0 {
		return nil, fmt.Errorf("%w: TIMEOUT %v is negative", ErrBadValue, c.Timeout)
	}
	if c.UI != "" {
		line("UI", c.UI)
	}
	if c.Default != "" {
		line("DEFAULT", c.Default)
	}
	if c.Prompt {
		line("PROMPT", "1")
	} else {
		line("PROMPT", "0")
	}
	if c.Timeout > 0 {
		line("TIMEOUT", strconv.FormatInt(int64(c.Timeout/(100*time.Millisecond)), 10))
	}
	if c.MenuTitle != "" {
		line("MENU TITLE", c.MenuTitle)
	}
	names := map[string]bool{}
	for i, l := range c.Labels {
		field := func(f string) string { return fmt.Sprintf("label %d %s", i, f) }
		if err := checkWord(field("LABEL"), l.Name, false); err != nil {
			return nil, err
		}
		if names[l.Name] {
			return nil, fmt.Errorf("%w: label %q appears twice", ErrBadValue, l.Name)
		}
		names[l.Name] = true
		if err := checkWord(field("KERNEL"), l.Kernel, false); err != nil {
			return nil, err
		}
		if err := checkText(field("MENU LABEL"), l.MenuLabel); err != nil {
			return nil, err
		}
		if err := checkText(field("APPEND"), l.Append); err != nil {
			return nil, err
		}
		for _, f := range l.Initrd {
			if err := checkWord(field("INITRD"), f, false); err != nil {
				return nil, err
			}
			if strings.Contains(f, ",") {
				return nil, fmt.Errorf("%w: %s %q contains a comma", ErrBadValue, field("INITRD"), f)
			}
		}
		b.WriteByte('\n')
		line("LABEL", l.Name)
		if l.MenuLabel != "" {
			line("  MENU LABEL", l.MenuLabel)
		}
		line("  KERNEL", l.Kernel)
		if len(l.Initrd) > 0 {
			line("  INITRD", strings.Join(l.Initrd, ","))
		}
		if l.Append != "" {
			line("  APPEND", l.Append)
		}
	}
	if c.Default != "" && c.UI == "" && !names[c.Default] {
		// With a UI module DEFAULT may name a module; without, a label.
		return nil, fmt.Errorf("%w: DEFAULT %q is not a label", ErrBadValue, c.Default)
	}
	return []byte(b.String()), nil
}

// checkText refuses control characters (line breaks above all).
func checkText(field, v string) error {
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: %s %q contains control character %q", ErrBadValue, field, v, r)
		}
	}
	return nil
}

// checkWord refuses control characters and white space; empty is refused
// unless optional.
func checkWord(field, v string, optional bool) error {
	if v == "" {
		if optional {
			return nil
		}
		return fmt.Errorf("%w: %s is empty", ErrBadValue, field)
	}
	if err := checkText(field, v); err != nil {
		return err
	}
	if strings.ContainsAny(v, " \t") {
		return fmt.Errorf("%w: %s %q contains white space", ErrBadValue, field, v)
	}
	return nil
}

// PXELinuxPaths returns the configuration files PXELINUX tries, in its
// order: "pxelinux.cfg/<uuid>" when the PXE stack reported a UUID (even an
// all-zero one, as PXELINUX does), "pxelinux.cfg/01-<mac>" (ARP type 1,
// Ethernet, lower-case, dashes), the client's IPv4 address in upper-case
// hex shortened one digit at a time ("C0A80A05" ... "C"), and finally
// "pxelinux.cfg/default". A nil uuid, mac or ip leaves its entries out.
// The server can serve these names as virtual TFTP files.
func PXELinuxPaths(uuid *UUID, mac net.HardwareAddr, ip net.IP) []string {
	const dir = "pxelinux.cfg/"
	var out []string
	if uuid != nil {
		out = append(out, dir+uuid.String())
	}
	if len(mac) > 0 {
		out = append(out, dir+"01-"+strings.ReplaceAll(mac.String(), ":", "-"))
	}
	if ip4 := ip.To4(); ip4 != nil {
		h := fmt.Sprintf("%02X%02X%02X%02X", ip4[0], ip4[1], ip4[2], ip4[3])
		for n := len(h); n > 0; n-- {
			out = append(out, dir+h[:n])
		}
	}
	return append(out, dir+"default")
}
