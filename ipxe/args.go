package ipxe

import (
	"fmt"
	"strings"
)

// Arg is one kernel command-line argument: "key=value", or a bare "key"
// when Value is the zero Value. Lit("") gives "key=".
//
// An Arg with an empty Key and a Value renders the value alone, unquoted:
// use it for a setting that holds further arguments, such as the
// ${cmdline} that NixOS's netboot.ipxe appends.
type Arg struct {
	Key   string
	Value Value
}

// KV returns the argument key=value with a literal value.
func KV(key, value string) Arg { return Arg{Key: key, Value: Lit(value)} }

// Flag returns a bare argument such as "quiet".
func Flag(key string) Arg { return Arg{Key: key} }

// Args is a kernel command line: arguments in the order the kernel sees them.
// Order matters (the kernel and init take the last console= as the primary
// console, for example), so Args is a list, not a map.
type Args []Arg

// ParseArgs splits a kernel command line the way the Linux kernel does
// (whitespace separates arguments, double quotes group), keeping order.
// Every value is literal: "${" in cmdline is an error, as in Lit, and so
// are line breaks and NUL bytes.
func ParseArgs(cmdline string) (Args, error) {
	if strings.ContainsAny(cmdline, "\r\n\x00") {
		return nil, invalid("command line %q contains a line break or NUL", cmdline)
	}
	var out Args
	for _, w := range splitKernelWords(cmdline) {
		key, val, hasVal := strings.Cut(w, "=")
		key = strings.Trim(key, `"`)
		a := Arg{Key: key}
		if hasVal {
			a.Value = Lit(strings.Trim(val, `"`))
		}
		if _, err := a.render(); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// splitKernelWords splits like the kernel's next_arg: spaces outside
// double quotes separate words.
func splitKernelWords(s string) []string {
	var words []string
	start, inQuote := -1, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			inQuote = !inQuote
		case !inQuote && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			if start >= 0 {
				words = append(words, s[start:i])
				start = -1
			}
			continue
		}
		if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		words = append(words, s[start:])
	}
	return words
}

// Get returns the value of the last argument named key (the one the kernel
// and init act on) and whether it was found with a value.
func (a Args) Get(key string) (Value, bool) {
	for i := len(a) - 1; i >= 0; i-- {
		if a[i].Key == key {
			return a[i].Value, !a[i].Value.IsZero()
		}
	}
	return Value{}, false
}

// Has reports whether any argument is named key.
func (a Args) Has(key string) bool {
	for _, x := range a {
		if x.Key == key {
			return true
		}
	}
	return false
}

// String renders the command line for the kernel, with values that hold
// spaces or expansions quoted. It returns "" if an argument is invalid;
// use Render to get the error.
func (a Args) String() string {
	s, err := a.Render()
	if err != nil {
		return ""
	}
	return s
}

// Render validates and renders the command line. The error names the
// argument by index.
func (a Args) Render() (string, error) {
	words := make([]string, 0, len(a))
	for i, x := range a {
		w, err := x.render()
		if err != nil {
			return "", fieldErr("", fmt.Sprintf("Args[%d] (%s)", i, x.Key), err)
		}
		words = append(words, w)
	}
	return strings.Join(words, " "), nil
}

// render returns the argument as one iPXE word list. Keys are plain words;
// values with spaces are double-quoted, and values with expansions are
// always quoted because iPXE expands settings after splitting the line, so
// an expanded value holding spaces must still reach the kernel as one
// argument.
func (x Arg) render() (string, error) {
	if x.Key == "" {
		if x.Value.IsZero() {
			return "", fmt.Errorf("%w: argument with neither key nor value", ErrMissing)
		}
		if !x.Value.HasSettings() {
			return "", invalid("argument %q has a value but no key; only an expansion may stand alone", x.Value.String())
		}
		v, err := x.Value.render(token)
		if err == nil && strings.Contains(v, `"`) {
			err = invalid("argument %q contains '\"', which the kernel cannot quote", v)
		}
		return v, err
	}
	if err := checkLiteral(x.Key, token); err != nil {
		return "", err
	}
	if strings.ContainsAny(x.Key, `="`) {
		return "", invalid("argument key %q contains '=' or '\"'", x.Key)
	}
	if x.Value.IsZero() {
		if err := checkTokens(x.Key, token); err != nil {
			return "", err
		}
		return x.Key, nil
	}
	v, err := x.Value.render(words)
	if err != nil {
		return "", err
	}
	if strings.Contains(v, `"`) {
		return "", invalid("argument %s value %q contains '\"', which the kernel cannot quote", x.Key, v)
	}
	w := x.Key + "=" + v
	if strings.Contains(v, " ") || x.Value.HasSettings() {
		w = x.Key + `="` + v + `"`
	}
	if err := checkTokens(w, words); err != nil {
		return "", err
	}
	return w, nil
}
