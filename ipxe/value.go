package ipxe

import (
	"fmt"
	"strings"
)

// Setting names an iPXE setting, expanded at run time by iPXE as
// ${name} (or ${name:type} when a type is given, as in "mac:hexhyp").
// Settings are the only way to put an expansion into a rendered value: a
// "${" inside literal text is always an error.
type Setting string

// Settings that iPXE defines and that boot scripts commonly use.
const (
	MAC          Setting = "mac"          // MAC address of the boot NIC, colon separated
	UUID         Setting = "uuid"         // SMBIOS system UUID
	BuildArch    Setting = "buildarch"    // iPXE build architecture: i386, x86_64, arm64
	Platform     Setting = "platform"     // firmware platform: pcbios or efi
	IP           Setting = "ip"           // IPv4 address of the last configured NIC
	Net0IP       Setting = "net0/ip"      // IPv4 address of net0
	Net0MAC      Setting = "net0/mac"     // MAC address of net0
	Hostname     Setting = "hostname"     // host name from DHCP
	NextServer   Setting = "next-server"  // siaddr from DHCP
	Filename     Setting = "filename"     // boot file name from DHCP
	UserClass    Setting = "user-class"   // DHCP user class
	Serial       Setting = "serial"       // SMBIOS serial number
	Manufacturer Setting = "manufacturer" // SMBIOS manufacturer
	Product      Setting = "product"      // SMBIOS product name
	Asset        Setting = "asset"        // SMBIOS asset tag
)

// Typed returns the setting read with an iPXE setting type, for example
// MAC.Typed("hexhyp") renders as ${mac:hexhyp} and Hostname.Typed("uristring")
// as a URL-escaped host name.
func (s Setting) Typed(typ string) Setting {
	name, _, _ := strings.Cut(string(s), ":")
	return Setting(name + ":" + typ)
}

// String returns the expansion as iPXE reads it, e.g. "${mac}".
func (s Setting) String() string { return "${" + string(s) + "}" }

// validate checks the name: [scope/]name[:type] with letters, digits and
// the punctuation iPXE uses in setting names.
func (s Setting) validate() error {
	name, typ, hasType := strings.Cut(string(s), ":")
	if name == "" {
		return invalid("empty setting name")
	}
	for _, r := range name {
		if !(isAlnum(r) || strings.ContainsRune("-_./", r)) {
			return invalid("setting name %q has %q", string(s), r)
		}
	}
	if hasType {
		if typ == "" {
			return invalid("setting %q has an empty type", string(s))
		}
		for _, r := range typ {
			if !(isAlnum(r) || r == '-' || r == '_') {
				return invalid("setting type %q has %q", typ, r)
			}
		}
	}
	return nil
}

func isAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

// Value is text in a script: literal text and setting expansions, in order.
// The zero Value is empty. Build one with Lit, Expr or Setting.Value.
type Value struct {
	parts []part
}

type part struct {
	lit     string
	setting Setting // set for an expansion
	bad     any     // a value Expr could not use, reported at render time
}

// Lit returns literal text. Rendering fails if it contains "${", a control
// character or a line break.
func Lit(s string) Value { return Value{parts: []part{{lit: s}}} }

// Value returns the expansion of s as a Value.
func (s Setting) Value() Value { return Value{parts: []part{{setting: s}}} }

// Expr concatenates parts into a Value. Each part is a string (literal
// text), a Setting (an expansion) or a Value. Any other type makes the
// Value fail to render, with an error naming the type.
//
//	ipxe.Expr("http://10.0.0.1/boot.ipxe?mac=", ipxe.MAC, "&arch=", ipxe.BuildArch)
func Expr(parts ...any) Value {
	var v Value
	for _, p := range parts {
		switch p := p.(type) {
		case string:
			v.parts = append(v.parts, part{lit: p})
		case Setting:
			v.parts = append(v.parts, part{setting: p})
		case Value:
			v.parts = append(v.parts, p.parts...)
		default:
			v.parts = append(v.parts, part{bad: p})
		}
	}
	return v
}

// IsZero reports whether v has no parts at all. Lit("") is not zero.
func (v Value) IsZero() bool { return len(v.parts) == 0 }

// HasSettings reports whether v contains a setting expansion.
func (v Value) HasSettings() bool {
	for _, p := range v.parts {
		if p.setting != "" {
			return true
		}
	}
	return false
}

// Settings returns the settings v expands, in order.
func (v Value) Settings() []Setting {
	var out []Setting
	for _, p := range v.parts {
		if p.setting != "" {
			out = append(out, p.setting)
		}
	}
	return out
}

// Literal returns v's text when it has no expansions, and false otherwise.
func (v Value) Literal() (string, bool) {
	var b strings.Builder
	for _, p := range v.parts {
		if p.setting != "" || p.bad != nil {
			return "", false
		}
		b.WriteString(p.lit)
	}
	return b.String(), true
}

// String renders v without validation, for logs and debugging.
func (v Value) String() string {
	var b strings.Builder
	for _, p := range v.parts {
		switch {
		case p.bad != nil:
			fmt.Fprintf(&b, "%%!(%T)", p.bad)
		case p.setting != "":
			b.WriteString(p.setting.String())
		default:
			b.WriteString(p.lit)
		}
	}
	return b.String()
}

// textMode says what whitespace a value may hold where it is rendered.
type textMode int

const (
	// token: one iPXE argument; no whitespace at all.
	token textMode = iota
	// words: text that iPXE splits into arguments and joins again with
	// single spaces (echo, menu text): single spaces survive, nothing else.
	words
)

// render validates v for the given place and returns its iPXE text.
func (v Value) render(mode textMode) (string, error) {
	var b strings.Builder
	for _, p := range v.parts {
		switch {
		case p.bad != nil:
			return "", invalid("cannot use %T in a value", p.bad)
		case p.setting != "":
			if err := p.setting.validate(); err != nil {
				return "", err
			}
			b.WriteString(p.setting.String())
		default:
			if err := checkLiteral(p.lit, mode); err != nil {
				return "", err
			}
			b.WriteString(p.lit)
		}
	}
	s := b.String()
	if err := checkTokens(s, mode); err != nil {
		return "", err
	}
	return s, nil
}

// checkLiteral rejects what can never appear in literal script text.
func checkLiteral(s string, mode textMode) error {
	if strings.Contains(s, "${") {
		return invalid("%q contains \"${\", which iPXE would expand; use a Setting for an intended expansion", s)
	}
	for _, r := range s {
		switch {
		case r == '\n' || r == '\r':
			return invalid("%q contains a line break", s)
		case r == 0:
			return invalid("%q contains a NUL byte", s)
		case r == ' ' && mode == words:
		case r == ' ' || r == '\t' || r == '\v' || r == '\f':
			return invalid("%q contains whitespace, which iPXE splits on", s)
		case r < 0x20 || r == 0x7f:
			return invalid("%q contains control character %U", s, r)
		}
	}
	return nil
}

// checkTokens rejects text whose words iPXE would read as syntax: a word
// starting with '#' begins a comment, and "||", "&&" and ";" end a command.
// In words mode it also rejects leading, trailing and repeated spaces, which
// iPXE would not keep.
func checkTokens(s string, mode textMode) error {
	if mode == words {
		if strings.HasPrefix(s, " ") || strings.HasSuffix(s, " ") || strings.Contains(s, "  ") {
			return invalid("%q has leading, trailing or repeated spaces, which iPXE collapses", s)
		}
	}
	for _, w := range strings.Split(s, " ") {
		switch {
		case strings.HasPrefix(w, "#"):
			return invalid("%q has a word starting with '#', which iPXE reads as a comment", s)
		case w == "||" || w == "&&" || w == ";":
			return invalid("%q has %q, which iPXE reads as a command separator", s, w)
		}
	}
	if strings.HasSuffix(s, `\`) {
		return invalid("%q ends with a backslash, which iPXE reads as a line continuation", s)
	}
	return nil
}
