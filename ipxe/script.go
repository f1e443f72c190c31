package ipxe

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Script is an iPXE script: commands in order. Render it with Render or
// WriteTo; the output starts with the "#!ipxe" signature iPXE requires.
// The zero Script renders as a script that does nothing.
type Script struct {
	Commands []Command
}

// Command is one line of an iPXE script. The set of commands is closed:
// the types in this package, and Raw for anything else, so every line a
// Script renders has been validated.
type Command interface {
	// name is the iPXE command the line runs, for error messages.
	name() string
	// line renders the command without its trailing newline.
	line() (string, error)
}

// Render validates every command and returns the script text. The error
// names the command index, the command and the field at fault.
func (s *Script) Render() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("#!ipxe\n")
	for i, c := range s.Commands {
		if c == nil {
			return nil, fmt.Errorf("command %d: %w: nil command", i, ErrMissing)
		}
		l, err := c.line()
		if err != nil {
			return nil, fmt.Errorf("command %d: %w", i, err)
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}

// WriteTo renders the script to w. Nothing is written if the script is invalid.
func (s *Script) WriteTo(w io.Writer) (int64, error) {
	b, err := s.Render()
	if err != nil {
		return 0, err
	}
	n, err := w.Write(b)
	return int64(n), err
}

// Append adds commands to the script and returns it, for chaining.
func (s *Script) Append(c ...Command) *Script {
	s.Commands = append(s.Commands, c...)
	return s
}

// Kernel selects the kernel image to boot: "kernel [--name N] URL args...".
type Kernel struct {
	URL  Value  // required: an absolute URL or a name relative to the script's URL
	Name string // optional image name (--name)
	Args Args   // the kernel command line
}

func (Kernel) name() string { return "kernel" }

func (c Kernel) line() (string, error) {
	return imageLine("kernel", c.Name, c.URL, c.Args)
}

// Initrd fetches an initial ramdisk: "initrd [--name N] URL". On EFI the
// kernel command line must also carry initrd=N for the EFI stub to load it;
// BootScript adds that.
type Initrd struct {
	URL  Value  // required
	Name string // optional image name (--name)
}

func (Initrd) name() string { return "initrd" }

func (c Initrd) line() (string, error) {
	return imageLine("initrd", c.Name, c.URL, nil)
}

// Imgargs replaces the command line of an already fetched image:
// "imgargs IMAGE args...".
type Imgargs struct {
	Image string // required: the image name
	Args  Args
}

func (Imgargs) name() string { return "imgargs" }

func (c Imgargs) line() (string, error) {
	if err := checkName("imgargs", "Image", c.Image, true); err != nil {
		return "", err
	}
	s := "imgargs " + c.Image
	if len(c.Args) > 0 {
		a, err := c.Args.Render()
		if err != nil {
			return "", fieldErr("imgargs", "Args", err)
		}
		s += " " + a
	}
	return s, nil
}

// Boot boots the selected image, or Image when set: "boot [IMAGE]".
type Boot struct {
	Image string // optional
}

func (Boot) name() string { return "boot" }

func (c Boot) line() (string, error) {
	if c.Image == "" {
		return "boot", nil
	}
	if err := checkName("boot", "Image", c.Image, true); err != nil {
		return "", err
	}
	return "boot " + c.Image, nil
}

// Chain fetches and executes an image or script:
// "chain [--replace] [--autofree] URL args...".
type Chain struct {
	URL      Value // required
	Args     Args
	Replace  bool // --replace: the new image replaces the running script
	Autofree bool // --autofree: free the image after it runs
}

func (Chain) name() string { return "chain" }

func (c Chain) line() (string, error) {
	u, err := renderURL("chain", c.URL)
	if err != nil {
		return "", err
	}
	s := "chain"
	if c.Replace {
		s += " --replace"
	}
	if c.Autofree {
		s += " --autofree"
	}
	s += " " + u
	if len(c.Args) > 0 {
		a, err := c.Args.Render()
		if err != nil {
			return "", fieldErr("chain", "Args", err)
		}
		s += " " + a
	}
	return s, nil
}

// DHCP configures a network interface with DHCP, trying 1+Retries times:
// "dhcp [IFACE] || dhcp [IFACE] ...". Retries is bounded by MaxDHCPRetries.
type DHCP struct {
	Interface string // optional, e.g. "net0"; empty means all interfaces
	Retries   int    // extra attempts after the first; 0 means one attempt
}

// MaxDHCPRetries bounds DHCP.Retries so a script line stays short.
const MaxDHCPRetries = 16

func (DHCP) name() string { return "dhcp" }

func (c DHCP) line() (string, error) {
	if c.Retries < 0 || c.Retries > MaxDHCPRetries {
		return "", fieldErr("dhcp", "Retries", invalid("%d is outside 0..%d", c.Retries, MaxDHCPRetries))
	}
	one := "dhcp"
	if c.Interface != "" {
		if err := checkName("dhcp", "Interface", c.Interface, true); err != nil {
			return "", err
		}
		one += " " + c.Interface
	}
	parts := make([]string, c.Retries+1)
	for i := range parts {
		parts[i] = one
	}
	return strings.Join(parts, " || "), nil
}

// Set stores a value in a setting: "set NAME VALUE".
type Set struct {
	Name  Setting // required; no type suffix
	Value Value   // words separated by single spaces
}

func (Set) name() string { return "set" }

func (c Set) line() (string, error) {
	if err := c.Name.validate(); err != nil {
		return "", fieldErr("set", "Name", err)
	}
	if strings.Contains(string(c.Name), ":") {
		return "", fieldErr("set", "Name", invalid("setting %q: set takes a name without a type", string(c.Name)))
	}
	v, err := c.Value.render(words)
	if err != nil {
		return "", fieldErr("set", "Value", err)
	}
	if v == "" {
		return "set " + string(c.Name), nil
	}
	return "set " + string(c.Name) + " " + v, nil
}

// Isset jumps to Else unless the setting has a value:
// "isset ${NAME} || goto ELSE".
type Isset struct {
	Setting Setting // required
	Else    string  // required: the label to go to when the setting is empty
}

func (Isset) name() string { return "isset" }

func (c Isset) line() (string, error) {
	if err := c.Setting.validate(); err != nil {
		return "", fieldErr("isset", "Setting", err)
	}
	if err := checkName("isset", "Else", c.Else, true); err != nil {
		return "", err
	}
	return "isset " + c.Setting.String() + " || goto " + c.Else, nil
}

// Goto continues at a label: "goto LABEL".
type Goto struct {
	Label string // required
}

func (Goto) name() string { return "goto" }

func (c Goto) line() (string, error) {
	if err := checkName("goto", "Label", c.Label, true); err != nil {
		return "", err
	}
	return "goto " + c.Label, nil
}

// Label marks a place goto can jump to: ":NAME".
type Label struct {
	Name string // required
}

func (Label) name() string { return "label" }

func (c Label) line() (string, error) {
	if err := checkName("label", "Name", c.Name, true); err != nil {
		return "", err
	}
	return ":" + c.Name, nil
}

// Echo prints text: "echo TEXT". Text is words separated by single
// spaces; the first word may not start with '-' (iPXE would read it as an
// option).
type Echo struct {
	Text Value
}

func (Echo) name() string { return "echo" }

func (c Echo) line() (string, error) {
	v, err := c.Text.render(words)
	if err != nil {
		return "", fieldErr("echo", "Text", err)
	}
	if strings.HasPrefix(v, "-") {
		return "", fieldErr("echo", "Text", invalid("%q starts with '-', which echo reads as an option", v))
	}
	if v == "" {
		return "echo", nil
	}
	return "echo " + v, nil
}

// Sleep pauses: "sleep SECONDS". Durations are rounded up to whole seconds.
type Sleep struct {
	Duration time.Duration
}

func (Sleep) name() string { return "sleep" }

func (c Sleep) line() (string, error) {
	if c.Duration < 0 {
		return "", fieldErr("sleep", "Duration", invalid("negative duration %v", c.Duration))
	}
	secs := (c.Duration + time.Second - 1) / time.Second
	return "sleep " + strconv.FormatInt(int64(secs), 10), nil
}

// Menu starts a menu: "menu [TITLE]". Items follow as Item commands and a
// Choose shows the menu.
type Menu struct {
	Title Value // words; optional
}

func (Menu) name() string { return "menu" }

func (c Menu) line() (string, error) {
	v, err := c.Title.render(words)
	if err != nil {
		return "", fieldErr("menu", "Title", err)
	}
	if strings.HasPrefix(v, "-") {
		return "", fieldErr("menu", "Title", invalid("%q starts with '-', which menu reads as an option", v))
	}
	if v == "" {
		return "menu", nil
	}
	return "menu " + v, nil
}

// Item adds an entry to the current menu: "item [--key K] LABEL TEXT", or a
// non-selectable line "item --gap [TEXT]" when Gap is set.
type Item struct {
	Label string // required unless Gap: the value Choose stores
	Text  Value  // words shown in the menu
	Key   string // optional shortcut key, one character
	Gap   bool   // a separator or heading, not selectable
}

func (Item) name() string { return "item" }

func (c Item) line() (string, error) {
	text, err := c.Text.render(words)
	if err != nil {
		return "", fieldErr("item", "Text", err)
	}
	s := "item"
	if c.Key != "" {
		if len(c.Key) != 1 || !isAlnum(rune(c.Key[0])) {
			return "", fieldErr("item", "Key", invalid("%q is not one letter or digit", c.Key))
		}
		s += " --key " + c.Key
	}
	if c.Gap {
		if c.Label != "" {
			return "", fieldErr("item", "Label", invalid("a gap item has no label"))
		}
		s += " --gap"
		if text != "" {
			// The text must not be taken for an option either.
			if strings.HasPrefix(text, "-") {
				return "", fieldErr("item", "Text", invalid("%q starts with '-'", text))
			}
			s += " " + text
		}
		return s, nil
	}
	if err := checkName("item", "Label", c.Label, true); err != nil {
		return "", err
	}
	s += " " + c.Label
	if text != "" {
		s += " " + text
	}
	return s, nil
}

// Choose shows the current menu and stores the chosen label in Setting:
// "choose [--default D] [--timeout MS] SETTING", followed by
// "&& goto ${SETTING}" when Goto is set.
type Choose struct {
	Setting Setting       // required: where the chosen label goes
	Default string        // optional: the label selected initially
	Timeout time.Duration // optional: choose Default after this long; 0 waits forever
	Goto    bool          // jump to the label that was chosen
}

func (Choose) name() string { return "choose" }

func (c Choose) line() (string, error) {
	if err := c.Setting.validate(); err != nil {
		return "", fieldErr("choose", "Setting", err)
	}
	if strings.Contains(string(c.Setting), ":") {
		return "", fieldErr("choose", "Setting", invalid("%q: choose takes a name without a type", string(c.Setting)))
	}
	s := "choose"
	if c.Default != "" {
		if err := checkName("choose", "Default", c.Default, true); err != nil {
			return "", err
		}
		s += " --default " + c.Default
	}
	if c.Timeout < 0 {
		return "", fieldErr("choose", "Timeout", invalid("negative timeout %v", c.Timeout))
	}
	if c.Timeout > 0 {
		s += " --timeout " + strconv.FormatInt(c.Timeout.Milliseconds(), 10)
	}
	s += " " + string(c.Setting)
	if c.Goto {
		s += " && goto " + c.Setting.String()
	}
	return s, nil
}

// Imgverify checks an image against a detached signature:
// "imgverify IMAGE SIGNATURE-URL".
type Imgverify struct {
	Image     string // required: the image name
	Signature Value  // required: URL of the signature
}

func (Imgverify) name() string { return "imgverify" }

func (c Imgverify) line() (string, error) {
	if err := checkName("imgverify", "Image", c.Image, true); err != nil {
		return "", err
	}
	u, err := renderURL("imgverify", c.Signature)
	if err != nil {
		return "", err
	}
	return "imgverify " + c.Image + " " + u, nil
}

// Comment is a comment line: "# TEXT".
type Comment struct {
	Text string // one line; no line breaks
}

func (Comment) name() string { return "comment" }

func (c Comment) line() (string, error) {
	// Surrounding space is not kept by Parse, so it is not written either.
	text := strings.TrimSpace(c.Text)
	if strings.ContainsAny(text, "\r\n\x00") || strings.HasSuffix(text, `\`) {
		return "", fieldErr("comment", "Text", invalid("%q holds a line break, NUL or trailing backslash", c.Text))
	}
	if text == "" {
		return "#", nil
	}
	return "# " + text, nil
}

// Raw is a line of iPXE script passed through as written, for commands this
// package does not model. It is the only way to write arbitrary script; it
// is still checked for line breaks, NUL bytes and trailing backslashes, so
// it is always exactly one line.
type Raw struct {
	Line string
}

func (Raw) name() string { return "raw" }

func (c Raw) line() (string, error) {
	for _, r := range c.Line {
		if r == '\n' || r == '\r' || r == 0 {
			return "", fieldErr("raw", "Line", invalid("%q holds a line break or NUL", c.Line))
		}
	}
	if strings.HasSuffix(c.Line, `\`) {
		return "", fieldErr("raw", "Line", invalid("%q ends with a backslash (line continuation)", c.Line))
	}
	return c.Line, nil
}

// imageLine renders kernel and initrd lines.
func imageLine(cmd, name string, url Value, args Args) (string, error) {
	u, err := renderURL(cmd, url)
	if err != nil {
		return "", err
	}
	s := cmd
	if name != "" {
		if err := checkName(cmd, "Name", name, false); err != nil {
			return "", err
		}
		s += " --name " + name
	}
	s += " " + u
	if len(args) > 0 {
		a, err := args.Render()
		if err != nil {
			return "", fieldErr(cmd, "Args", err)
		}
		s += " " + a
	}
	return s, nil
}

func renderURL(cmd string, url Value) (string, error) {
	if url.IsZero() {
		return "", fieldErr(cmd, "URL", ErrMissing)
	}
	u, err := url.render(token)
	if err != nil {
		return "", fieldErr(cmd, "URL", err)
	}
	if u == "" {
		return "", fieldErr(cmd, "URL", ErrMissing)
	}
	if strings.HasPrefix(u, "-") {
		return "", fieldErr(cmd, "URL", invalid("%q starts with '-', which iPXE reads as an option", u))
	}
	return u, nil
}

// checkName validates labels, image names and interface names: a single
// word of letters, digits and "-_.", not starting with '-'.
func checkName(cmd, field, s string, required bool) error {
	if s == "" {
		if required {
			return fieldErr(cmd, field, ErrMissing)
		}
		return nil
	}
	if strings.HasPrefix(s, "-") {
		return fieldErr(cmd, field, invalid("%q starts with '-'", s))
	}
	for _, r := range s {
		if !(isAlnum(r) || strings.ContainsRune("-_.", r)) {
			return fieldErr(cmd, field, invalid("%q has %q; names are letters, digits and -_.", s, r))
		}
	}
	return nil
}
