package vmtest

import "errors"

var (
	// ErrExited means QEMU exited before the awaited console line appeared.
	ErrExited = errors.New("vmtest: QEMU exited before the marker")
	// ErrBootFailed means the guest's /init printed its failure marker.
	ErrBootFailed = errors.New("vmtest: guest reported failure")
	// ErrNoBoot means the firmware said it found nothing to boot.
	ErrNoBoot = errors.New("vmtest: nothing booted")
)
