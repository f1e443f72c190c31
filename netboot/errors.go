package netboot

import "errors"

// Errors returned by this package. Errors it returns wrap one of these (or
// fs.ErrNotExist for a file that is not there), so callers can test with
// errors.Is.
var (
	// ErrBadName means a client asked for a name that cannot be served: empty,
	// holding NUL or control characters, too long, or containing "..".
	ErrBadName = errors.New("netboot: bad file name")
	// ErrBadMode means a TFTP read request used a transfer mode other than
	// octet or netascii.
	ErrBadMode = errors.New("netboot: unsupported TFTP mode")
	// ErrBusy means the server is already running its maximum number of
	// transfers.
	ErrBusy = errors.New("netboot: server busy")
	// ErrUnknownMachine means the inventory has nothing for a machine and
	// is configured to ignore unknown machines.
	ErrUnknownMachine = errors.New("netboot: unknown machine")
	// ErrInvalidInventory means an inventory file or entry is invalid; the
	// wrapping error names the field.
	ErrInvalidInventory = errors.New("netboot: invalid inventory")
	// ErrNotSeekable means a file's content cannot seek, which both tsize and
	// HTTP ranges need.
	ErrNotSeekable = errors.New("netboot: content not seekable")
	// ErrBackend means a remote inventory (a pixiecore API server) failed or
	// answered something unusable.
	ErrBackend = errors.New("netboot: inventory backend failed")
	// ErrRefused means a request was refused for its form: a TFTP write
	// request, a malformed packet, an HTTP method other than GET or HEAD.
	ErrRefused = errors.New("netboot: request refused")
	// ErrAborted means a transfer stopped on the client's side: it sent an
	// error, or stopped acknowledging.
	ErrAborted = errors.New("netboot: transfer aborted")
	// ErrConfig means a Server, handler or TFTP server field is invalid.
	ErrConfig = errors.New("netboot: invalid configuration")
)
