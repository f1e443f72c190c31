package ipxe

import (
	"bytes"
	"fmt"
	"io"
	"text/template"
	"text/template/parse"
)

// Template is a text/template for iPXE scripts whose output is escaped the
// way Script renders: every {{...}} action is checked before it is written.
//
// A plain action such as {{.Hostname}} must produce a single safe word: no
// whitespace, line break, control character, "${", '#', or word iPXE reads as
// a separator. Other places use the template functions:
//
//	{{setting "mac"}}           an intended expansion: ${mac}
//	{{words .Message}}          text of single-space-separated words (echo, menu)
//	{{arg "console" .Console}}  one kernel argument, quoted as needed
//	{{args .Args}}              a whole ipxe.Args command line
//	{{cmdline .Cmdline}}        a kernel command line given as a string (see ParseArgs)
//	{{boot .Spec}}              the kernel, initrd and boot lines for an ipxe.BootSpec
//
// Execution stops at the first value that fails; nothing is written to the
// caller's writer unless the whole script rendered. Like text/template, a
// Template may be executed concurrently once parsed.
type Template struct {
	t *template.Template
}

// safeText is template output that a function has already validated.
type safeText string

// escapeFunc is the name of the function appended to every action.
const escapeFunc = "ipxe_escape_"

// ParseTemplate parses text as a template named name, with the functions
// above available.
func ParseTemplate(name, text string) (*Template, error) {
	t, err := template.New(name).Funcs(templateFuncs()).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("ipxe: template %s: %w", name, err)
	}
	for _, tt := range t.Templates() {
		if tt.Tree != nil {
			escapeList(tt.Tree.Root)
		}
	}
	return &Template{t: t}, nil
}

// Execute renders the template with data into w. On error nothing is written.
func (t *Template) Execute(w io.Writer, data any) error {
	var b bytes.Buffer
	if err := t.t.Execute(&b, data); err != nil {
		return fmt.Errorf("ipxe: template %s: %w", t.t.Name(), err)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// escapeList appends the escape function to every action's pipeline, as
// html/template does, so no action can write unchecked text.
func escapeList(l *parse.ListNode) {
	if l == nil {
		return
	}
	for _, n := range l.Nodes {
		switch n := n.(type) {
		case *parse.ActionNode:
			if len(n.Pipe.Decl) > 0 {
				continue // {{$x := ...}} writes nothing
			}
			n.Pipe.Cmds = append(n.Pipe.Cmds, &parse.CommandNode{
				NodeType: parse.NodeCommand,
				Pos:      n.Pos,
				Args:     []parse.Node{parse.NewIdentifier(escapeFunc).SetTree(nil).SetPos(n.Pos)},
			})
		case *parse.IfNode:
			escapeList(n.List)
			escapeList(n.ElseList)
		case *parse.RangeNode:
			escapeList(n.List)
			escapeList(n.ElseList)
		case *parse.WithNode:
			escapeList(n.List)
			escapeList(n.ElseList)
		}
	}
}

func templateFuncs() template.FuncMap {
	return template.FuncMap{
		escapeFunc: func(v any) (string, error) {
			switch v := v.(type) {
			case safeText:
				return string(v), nil
			case Setting:
				s, err := v.Value().render(token)
				return s, err
			case Value:
				return v.render(token)
			case string:
				return Lit(v).render(token)
			case fmt.Stringer:
				return Lit(v.String()).render(token)
			case nil:
				return "", fmt.Errorf("%w: <nil> in template", ErrInvalidValue)
			default:
				return Lit(fmt.Sprint(v)).render(token)
			}
		},
		"setting": func(name string) (safeText, error) {
			s := Setting(name)
			if err := s.validate(); err != nil {
				return "", err
			}
			return safeText(s.String()), nil
		},
		"words": func(s string) (safeText, error) {
			out, err := Lit(s).render(words)
			return safeText(out), err
		},
		"arg": func(key string, value any) (safeText, error) {
			a := Arg{Key: key}
			switch v := value.(type) {
			case string:
				a.Value = Lit(v)
			case Value:
				a.Value = v
			case Setting:
				a.Value = v.Value()
			default:
				a.Value = Lit(fmt.Sprint(v))
			}
			out, err := a.render()
			return safeText(out), err
		},
		"args": func(a Args) (safeText, error) {
			out, err := a.Render()
			return safeText(out), err
		},
		"cmdline": func(s string) (safeText, error) {
			a, err := ParseArgs(s)
			if err != nil {
				return "", err
			}
			out, err := a.Render()
			return safeText(out), err
		},
		"boot": func(spec BootSpec) (safeText, error) {
			s, err := spec.Script()
			if err != nil {
				return "", err
			}
			b, err := s.Render()
			if err != nil {
				return "", err
			}
			// Drop the signature line: the template carries its own.
			return safeText(bytes.TrimSuffix(bytes.TrimPrefix(b, []byte("#!ipxe\n")), []byte("\n"))), nil
		},
	}
}
