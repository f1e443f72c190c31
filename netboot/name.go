package netboot

import (
	"fmt"
	"io/fs"
	"path"
	"strings"
)

// MaxNameLen bounds a requested file name, in bytes, before cleaning. A TFTP
// request packet cannot hold more than about 500 bytes of name anyway; HTTP
// paths longer than this are not boot files.
const MaxNameLen = 1024

// CleanName turns a file name as a client sent it (over TFTP or in an HTTP
// path) into a name that is valid for [fs.ValidPath], or fails with
// [ErrBadName]. Nothing is opened before a name has passed through here.
//
// Firmware and boot loaders send names in several shapes, all accepted:
// backslashes as separators (Windows and WDS clients), a leading "/" (many
// DHCP boot file names), doubled slashes and "." segments. Refused: the empty
// name, names longer than [MaxNameLen], NUL and other control characters,
// and any ".." segment, even one that would stay inside the root after
// cleaning: a client asking for one is probing, not booting.
func CleanName(name string) (string, error) {
	if len(name) > MaxNameLen {
		return "", fmt.Errorf("%w: %d bytes, limit %d", ErrBadName, len(name), MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c == 0x7f {
			return "", fmt.Errorf("%w: control character 0x%02x at byte %d", ErrBadName, c, i)
		}
	}
	name = strings.ReplaceAll(name, `\`, "/")
	for _, seg := range strings.Split(name, "/") {
		if seg == ".." {
			return "", fmt.Errorf("%w: %q has a \"..\" segment", ErrBadName, name)
		}
	}
	name = strings.TrimLeft(name, "/")
	name = path.Clean(name)
	if name == "." || name == "" {
		return "", fmt.Errorf("%w: empty name", ErrBadName)
	}
	if !fs.ValidPath(name) {
		// Unreachable after the steps above; kept so that a future change
		// cannot let an invalid name through.
		return "", fmt.Errorf("%w: %q", ErrBadName, name)
	}
	return name, nil
}
