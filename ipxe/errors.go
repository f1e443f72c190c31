package ipxe

import (
	"errors"
	"fmt"
)

// Errors returned by rendering and parsing. Errors returned by this package
// wrap one of these, so callers can test with errors.Is.
var (
	// ErrInvalidValue means a value cannot be rendered safely: it holds a
	// line break, a NUL or another control character, an unintended "${"
	// expansion, or something iPXE would read as syntax (a comment or a
	// command separator).
	ErrInvalidValue = errors.New("ipxe: invalid value")
	// ErrMissing means a required field is empty.
	ErrMissing = errors.New("ipxe: missing value")
	// ErrSyntax means a script line cannot be parsed.
	ErrSyntax = errors.New("ipxe: syntax error")
	// ErrUnknownCommand means a script uses a command this package does not model.
	ErrUnknownCommand = errors.New("ipxe: unknown command")
	// ErrUnsupported means a script uses a form of a known command outside
	// the subset this package models (for example an option it does not know).
	ErrUnsupported = errors.New("ipxe: unsupported construct")
	// ErrNotBootScript means a script does not describe a kernel boot.
	ErrNotBootScript = errors.New("ipxe: not a boot script")
	// ErrTooLarge means a script exceeds the parser's limits.
	ErrTooLarge = errors.New("ipxe: script too large")
)

// FieldError reports which field of which command holds a bad value.
type FieldError struct {
	Command string // the iPXE command, e.g. "kernel"
	Field   string // the Go field or argument, e.g. "URL" or "Args[2]"
	Err     error  // wraps ErrInvalidValue or ErrMissing
}

func (e *FieldError) Error() string {
	if e.Command == "" {
		return fmt.Sprintf("%s: %v", e.Field, e.Err)
	}
	return fmt.Sprintf("%s %s: %v", e.Command, e.Field, e.Err)
}

func (e *FieldError) Unwrap() error { return e.Err }

// LineError reports where in a script parsing failed.
type LineError struct {
	Line int    // 1-based line number
	Text string // the line as read, truncated to 80 bytes
	Err  error  // wraps ErrSyntax, ErrUnknownCommand, ErrUnsupported or ErrInvalidValue
}

func (e *LineError) Error() string {
	return fmt.Sprintf("line %d: %v (%q)", e.Line, e.Err, e.Text)
}

func (e *LineError) Unwrap() error { return e.Err }

func fieldErr(cmd, field string, err error) error {
	return &FieldError{Command: cmd, Field: field, Err: err}
}

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidValue}, a...)...)
}
