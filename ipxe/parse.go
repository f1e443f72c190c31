package ipxe

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Parser limits. Scripts are small; anything larger is refused rather than
// read without bound.
const (
	MaxScriptSize = 1 << 20 // bytes
	MaxLines      = 10000   // logical lines after joining continuations
)

// Parse reads an iPXE script into a Script. It understands the commands
// this package models (the subset that NixOS's netboot.ipxe and similar
// builders emit, and everything Script renders) and reads lines the way
// iPXE does: a trailing CR is dropped, a trailing backslash joins the next
// line, a word starting with '#' starts a comment.
//
// Parse is pure: it never fetches or expands anything. Unknown commands and
// unsupported forms are errors (a *LineError naming the line), never
// dropped silently. Every command Parse returns renders without error.
func Parse(src []byte) (*Script, error) {
	if len(src) > MaxScriptSize {
		return nil, fmt.Errorf("%w: %d bytes (limit %d)", ErrTooLarge, len(src), MaxScriptSize)
	}
	lines := splitLines(string(src))
	if len(lines) > MaxLines {
		return nil, fmt.Errorf("%w: %d lines (limit %d)", ErrTooLarge, len(lines), MaxLines)
	}
	if len(lines) == 0 || !hasSignature(lines[0].text) {
		return nil, &LineError{Line: 1, Text: short(firstText(lines)), Err: fmt.Errorf("%w: missing #!ipxe signature", ErrSyntax)}
	}
	s := &Script{}
	for _, l := range lines[1:] {
		cmds, err := parseLine(l.text)
		if err == nil {
			for _, c := range cmds {
				if _, err = c.line(); err != nil {
					break
				}
			}
		}
		if err != nil {
			return nil, &LineError{Line: l.num, Text: short(l.text), Err: err}
		}
		s.Commands = append(s.Commands, cmds...)
	}
	return s, nil
}

type srcLine struct {
	num  int
	text string
}

// splitLines splits src into logical lines as iPXE's script reader does.
func splitLines(src string) []srcLine {
	var out []srcLine
	var cur strings.Builder
	start, num := 1, 0
	joining := false
	for len(src) > 0 || joining {
		var l string
		if i := strings.IndexByte(src, '\n'); i >= 0 {
			l, src = src[:i], src[i+1:]
		} else {
			l, src = src, ""
		}
		num++
		if !joining {
			start = num
		}
		l = strings.TrimSuffix(l, "\r")
		if strings.HasSuffix(l, `\`) && len(src) > 0 {
			cur.WriteString(strings.TrimSuffix(l, `\`))
			joining = true
			continue
		}
		cur.WriteString(strings.TrimSuffix(l, `\`))
		out = append(out, srcLine{num: start, text: cur.String()})
		cur.Reset()
		joining = false
		if len(src) == 0 {
			break
		}
	}
	return out
}

func hasSignature(l string) bool {
	for _, magic := range []string{"#!ipxe", "#!gpxe"} {
		if rest, ok := strings.CutPrefix(l, magic); ok && (rest == "" || isSpace(rest[0])) {
			return true
		}
	}
	return false
}

func firstText(lines []srcLine) string {
	if len(lines) == 0 {
		return ""
	}
	return lines[0].text
}

func short(s string) string {
	if len(s) > 80 {
		return s[:80]
	}
	return s
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// fields splits like iPXE: on any whitespace, no quoting.
func fields(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r < 0x80 && isSpace(byte(r)) })
}

// parseLine parses one logical line into zero or more commands.
func parseLine(text string) ([]Command, error) {
	trimmed := strings.TrimLeft(text, " \t\v\f\r")
	var out []Command
	if rest, ok := strings.CutPrefix(trimmed, ":"); ok {
		name := rest
		if i := strings.IndexFunc(rest, func(r rune) bool { return r < 0x80 && isSpace(byte(r)) }); i >= 0 {
			name, trimmed = rest[:i], rest[i+1:]
		} else {
			trimmed = ""
		}
		out = append(out, Label{Name: name})
	}
	toks := fields(trimmed)
	if len(toks) == 0 {
		return out, nil
	}
	if strings.HasPrefix(toks[0], "#") {
		text := strings.TrimSpace(strings.TrimPrefix(strings.TrimLeft(trimmed, " \t"), "#"))
		return append(out, Comment{Text: text}), nil
	}
	// Cut at a trailing comment, then split into commands at separators.
	for i, t := range toks {
		if strings.HasPrefix(t, "#") {
			toks = toks[:i]
			break
		}
	}
	var segs [][]string
	var seps []string
	cur := []string{}
	for _, t := range toks {
		if t == "||" || t == "&&" || t == ";" {
			segs = append(segs, cur)
			seps = append(seps, t)
			cur = []string{}
			continue
		}
		cur = append(cur, t)
	}
	segs = append(segs, cur)
	for _, sg := range segs {
		if len(sg) == 0 {
			return nil, fmt.Errorf("%w: empty command around a separator", ErrSyntax)
		}
	}
	c, err := parseCompound(segs, seps)
	if err != nil {
		return nil, err
	}
	return append(out, c), nil
}

// parseCompound recognises the multi-command lines Script renders; any
// other combination is outside the modelled subset.
func parseCompound(segs [][]string, seps []string) (Command, error) {
	if len(segs) == 1 {
		return parseCommand(segs[0])
	}
	name := segs[0][0]
	switch {
	case name == "isset" && len(segs) == 2 && seps[0] == "||" && len(segs[0]) == 2 &&
		len(segs[1]) == 2 && segs[1][0] == "goto":
		v, err := parseValue(segs[0][1])
		if err != nil {
			return nil, err
		}
		st := v.Settings()
		if len(st) != 1 || len(v.parts) != 1 {
			return nil, fmt.Errorf("%w: isset takes exactly one ${setting}", ErrUnsupported)
		}
		return Isset{Setting: st[0], Else: segs[1][1]}, nil
	case name == "dhcp":
		for i, sg := range segs {
			if strings.Join(sg, " ") != strings.Join(segs[0], " ") || (i > 0 && seps[i-1] != "||") {
				return nil, fmt.Errorf("%w: dhcp retries must repeat the same dhcp command with ||", ErrUnsupported)
			}
		}
		d, err := parseCommand(segs[0])
		if err != nil {
			return nil, err
		}
		dh := d.(DHCP)
		dh.Retries = len(segs) - 1
		return dh, nil
	case name == "choose" && len(segs) == 2 && seps[0] == "&&" && len(segs[1]) == 2 && segs[1][0] == "goto":
		c, err := parseCommand(segs[0])
		if err != nil {
			return nil, err
		}
		ch := c.(Choose)
		if segs[1][1] != ch.Setting.String() {
			return nil, fmt.Errorf("%w: choose must be followed by goto ${%s}", ErrUnsupported, ch.Setting)
		}
		ch.Goto = true
		return ch, nil
	}
	return nil, fmt.Errorf("%w: %q combined with %q", ErrUnsupported, name, seps[0])
}

// opts parses leading options of a command. spec maps each option to
// whether it takes an argument; short forms are given as aliases.
type optSpec map[string]bool

func parseOpts(cmd string, args []string, spec optSpec, alias map[string]string) (map[string]string, []string, error) {
	got := map[string]string{}
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		a := args[0]
		args = args[1:]
		if a == "--" {
			break
		}
		name, val, hasVal := strings.Cut(a, "=")
		if full, ok := alias[name]; ok {
			name = full
		}
		takes, ok := spec[name]
		if !ok {
			return nil, nil, fmt.Errorf("%w: %s option %q", ErrUnsupported, cmd, a)
		}
		if takes && !hasVal {
			if len(args) == 0 {
				return nil, nil, fmt.Errorf("%w: %s option %s needs a value", ErrSyntax, cmd, name)
			}
			val, args = args[0], args[1:]
		} else if !takes && hasVal {
			return nil, nil, fmt.Errorf("%w: %s option %s takes no value", ErrSyntax, cmd, name)
		}
		got[name] = val
	}
	return got, args, nil
}

func parseCommand(t []string) (Command, error) {
	cmd, args := t[0], t[1:]
	switch cmd {
	case "kernel", "imgselect", "initrd", "imgfetch", "module", "chain", "imgexec":
		o, rest, err := parseOpts(cmd, args,
			optSpec{"--name": true, "--autofree": false, "--replace": false},
			map[string]string{"-n": "--name", "-a": "--autofree", "-r": "--replace"})
		if err != nil {
			return nil, err
		}
		if len(rest) == 0 {
			if cmd == "imgexec" && len(o) == 0 {
				return Boot{}, nil
			}
			return nil, fmt.Errorf("%w: %s needs an image URL", ErrSyntax, cmd)
		}
		url, err := parseValue(rest[0])
		if err != nil {
			return nil, err
		}
		kargs, err := parseKernelArgs(rest[1:])
		if err != nil {
			return nil, err
		}
		_, autofree := o["--autofree"]
		_, replace := o["--replace"]
		switch cmd {
		case "kernel", "imgselect":
			if autofree || replace {
				return nil, fmt.Errorf("%w: %s --autofree/--replace", ErrUnsupported, cmd)
			}
			return Kernel{URL: url, Name: o["--name"], Args: kargs}, nil
		case "initrd", "imgfetch", "module":
			if autofree || replace || len(kargs) > 0 {
				return nil, fmt.Errorf("%w: %s with options or arguments beyond --name", ErrUnsupported, cmd)
			}
			return Initrd{URL: url, Name: o["--name"]}, nil
		default:
			if o["--name"] != "" {
				return nil, fmt.Errorf("%w: %s --name", ErrUnsupported, cmd)
			}
			return Chain{URL: url, Args: kargs, Autofree: autofree, Replace: replace}, nil
		}
	case "imgargs":
		if len(args) == 0 {
			return nil, fmt.Errorf("%w: imgargs needs an image name", ErrSyntax)
		}
		kargs, err := parseKernelArgs(args[1:])
		if err != nil {
			return nil, err
		}
		return Imgargs{Image: args[0], Args: kargs}, nil
	case "boot":
		switch len(args) {
		case 0:
			return Boot{}, nil
		case 1:
			if strings.HasPrefix(args[0], "-") {
				return nil, fmt.Errorf("%w: boot option %q", ErrUnsupported, args[0])
			}
			return Boot{Image: args[0]}, nil
		}
		return nil, fmt.Errorf("%w: boot takes at most one image", ErrUnsupported)
	case "dhcp":
		switch len(args) {
		case 0:
			return DHCP{}, nil
		case 1:
			if strings.HasPrefix(args[0], "-") {
				return nil, fmt.Errorf("%w: dhcp option %q", ErrUnsupported, args[0])
			}
			return DHCP{Interface: args[0]}, nil
		}
		return nil, fmt.Errorf("%w: dhcp with several interfaces", ErrUnsupported)
	case "set":
		if len(args) == 0 {
			return nil, fmt.Errorf("%w: set needs a setting name", ErrSyntax)
		}
		v, err := parseValue(strings.Join(args[1:], " "))
		if err != nil {
			return nil, err
		}
		if len(args) == 1 {
			v = Value{}
		}
		return Set{Name: Setting(args[0]), Value: v}, nil
	case "goto":
		if len(args) != 1 {
			return nil, fmt.Errorf("%w: goto takes one label", ErrSyntax)
		}
		return Goto{Label: args[0]}, nil
	case "echo":
		if len(args) > 0 && strings.HasPrefix(args[0], "-") {
			return nil, fmt.Errorf("%w: echo option %q", ErrUnsupported, args[0])
		}
		v, err := parseWords(args)
		if err != nil {
			return nil, err
		}
		return Echo{Text: v}, nil
	case "sleep":
		if len(args) != 1 {
			return nil, fmt.Errorf("%w: sleep takes one number of seconds", ErrSyntax)
		}
		n, err := strconv.ParseUint(args[0], 10, 31)
		if err != nil {
			return nil, fmt.Errorf("%w: sleep %q is not a number of seconds", ErrSyntax, args[0])
		}
		return Sleep{Duration: time.Duration(n) * time.Second}, nil
	case "menu":
		if len(args) > 0 && strings.HasPrefix(args[0], "-") {
			return nil, fmt.Errorf("%w: menu option %q", ErrUnsupported, args[0])
		}
		v, err := parseWords(args)
		if err != nil {
			return nil, err
		}
		return Menu{Title: v}, nil
	case "item":
		o, rest, err := parseOpts(cmd, args, optSpec{"--key": true, "--gap": false},
			map[string]string{"-k": "--key", "-g": "--gap"})
		if err != nil {
			return nil, err
		}
		it := Item{Key: o["--key"]}
		if _, gap := o["--gap"]; gap {
			it.Gap = true
		} else {
			if len(rest) == 0 {
				return nil, fmt.Errorf("%w: item needs a label", ErrSyntax)
			}
			it.Label, rest = rest[0], rest[1:]
		}
		if it.Text, err = parseWords(rest); err != nil {
			return nil, err
		}
		return it, nil
	case "choose":
		o, rest, err := parseOpts(cmd, args, optSpec{"--default": true, "--timeout": true},
			map[string]string{"-d": "--default", "-t": "--timeout"})
		if err != nil {
			return nil, err
		}
		if len(rest) != 1 {
			return nil, fmt.Errorf("%w: choose takes one setting name", ErrSyntax)
		}
		ch := Choose{Setting: Setting(rest[0]), Default: o["--default"]}
		if ts, ok := o["--timeout"]; ok {
			ms, err := strconv.ParseUint(ts, 10, 31)
			if err != nil {
				return nil, fmt.Errorf("%w: choose --timeout %q is not milliseconds", ErrSyntax, ts)
			}
			ch.Timeout = time.Duration(ms) * time.Millisecond
		}
		return ch, nil
	case "imgverify":
		if len(args) != 2 || strings.HasPrefix(args[0], "-") {
			return nil, fmt.Errorf("%w: imgverify takes an image and a signature URL, no options", ErrUnsupported)
		}
		v, err := parseValue(args[1])
		if err != nil {
			return nil, err
		}
		return Imgverify{Image: args[0], Signature: v}, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownCommand, short(cmd))
}

// parseWords joins words with single spaces, as iPXE does, into a Value.
func parseWords(args []string) (Value, error) {
	if len(args) == 0 {
		return Value{}, nil
	}
	return parseValue(strings.Join(args, " "))
}

// parseValue splits text into literal parts and ${setting} expansions.
func parseValue(s string) (Value, error) {
	var v Value
	for s != "" {
		i := strings.Index(s, "${")
		if i < 0 {
			v.parts = append(v.parts, part{lit: s})
			break
		}
		if i > 0 {
			v.parts = append(v.parts, part{lit: s[:i]})
		}
		rest := s[i+2:]
		j := strings.IndexByte(rest, '}')
		if j < 0 {
			return Value{}, fmt.Errorf("%w: unterminated ${ in %q", ErrSyntax, short(s))
		}
		name := rest[:j]
		if strings.Contains(name, "${") {
			return Value{}, fmt.Errorf("%w: nested expansion in %q", ErrUnsupported, short(s))
		}
		st := Setting(name)
		if err := st.validate(); err != nil {
			return Value{}, err
		}
		v.parts = append(v.parts, part{setting: st})
		s = rest[j+1:]
	}
	if len(v.parts) == 0 {
		v.parts = []part{{lit: ""}}
	}
	return v, nil
}

// parseKernelArgs turns the words after an image URL into Args: iPXE joins
// them with single spaces, and the kernel splits that line honouring
// double quotes.
func parseKernelArgs(words []string) (Args, error) {
	if len(words) == 0 {
		return nil, nil
	}
	var out Args
	for _, w := range splitKernelWords(strings.Join(words, " ")) {
		key, val, hasVal := strings.Cut(w, "=")
		if strings.Contains(key, "${") {
			if hasVal {
				return nil, fmt.Errorf("%w: expansion in an argument key: %q", ErrUnsupported, short(w))
			}
			v, err := parseValue(strings.Trim(w, `"`))
			if err != nil {
				return nil, err
			}
			out = append(out, Arg{Value: v})
			continue
		}
		a := Arg{Key: strings.Trim(key, `"`)}
		if hasVal && a.Key == "" {
			// "=value" has no key to keep: the model would drop the "="
			// and render a different word than the script holds.
			return nil, fmt.Errorf("%w: argument %q has an empty key", ErrUnsupported, short(w))
		}
		if hasVal {
			v, err := parseValue(strings.Trim(val, `"`))
			if err != nil {
				return nil, err
			}
			a.Value = v
		}
		out = append(out, a)
	}
	return out, nil
}
