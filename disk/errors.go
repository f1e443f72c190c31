package disk

import "errors"

// Sentinel errors. Every error the package returns wraps one of these (or a
// context or I/O error), so callers can test with errors.Is.
var (
	// ErrLayout means a declared layout is malformed or impossible.
	ErrLayout = errors.New("disk: invalid layout")
	// ErrNoSpace means the declared partitions do not fit on the disk.
	ErrNoSpace = errors.New("disk: layout does not fit on the disk")
	// ErrCorruptTable means a partition table on the disk could not be read.
	ErrCorruptTable = errors.New("disk: corrupt partition table")
	// ErrRefused means the plan needs a destructive action that the caller
	// did not allow. The error is a *RefusedError listing what would be lost.
	ErrRefused = errors.New("disk: destructive change refused")
	// ErrStale means the disk changed between Plan and Apply.
	ErrStale = errors.New("disk: disk changed since the plan was made")
	// ErrNoTool means a filesystem needs a program that is not installed.
	ErrNoTool = errors.New("disk: required program not found")
	// ErrUnsupported means the request is valid but not implemented here
	// (for example applying an MBR layout).
	ErrUnsupported = errors.New("disk: unsupported")
	// ErrNoDisk means no disk matched the layout's target.
	ErrNoDisk = errors.New("disk: no matching disk")
	// ErrInterrupted is returned by an Apply stopped on purpose after a
	// given number of write steps (fault-injection tests only).
	errInterrupted = errors.New("disk: apply interrupted")
)
