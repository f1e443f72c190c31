package initrd

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// RegistrationName is where Closure puts the registration: NixOS's stage 2
// loads /nix-path-registration into the Nix database at first boot.
const RegistrationName = "nix-path-registration"

// Closure returns the entries for a Nix closure: every store path in paths
// ("/nix/store/<hash>-<name>") copied from storeDir (the host directory
// holding them, normally /nix/store, or <root>/nix/store of a chroot store)
// to nix/store/ in the archive, each walked with Tree (confined, symlinks
// kept), plus registration (nix-store --dump-db output, or closureInfo's
// registration file) at RegistrationName when it is not empty.
func Closure(storeDir string, paths []string, registration []byte) ([]Entry, error) {
	var out []Entry
	seen := map[string]bool{}
	for _, p := range paths {
		base := path.Base(p)
		if !strings.HasPrefix(p, "/nix/store/") || path.Dir(p) != "/nix/store" || base == "" || seen[base] {
			if seen[base] {
				continue
			}
			return nil, fmt.Errorf("initrd: closure: %q is not a top-level store path", p)
		}
		seen[base] = true
		host := filepath.Join(storeDir, base)
		fi, err := os.Lstat(host)
		if err != nil {
			return nil, fmt.Errorf("initrd: closure: %w", err)
		}
		name := "nix/store/" + base
		if !fi.IsDir() {
			// A store path can be a single file or symlink.
			e, err := entryFromInfo(fi, name)
			if err != nil {
				return nil, err
			}
			switch e.Type {
			case TypeReg:
				e.Source = Source{Root: storeDir, Path: base}
			case TypeSymlink:
				if e.Linkname, err = os.Readlink(host); err != nil {
					return nil, err
				}
			}
			out = append(out, e)
			continue
		}
		es, err := Tree(host, name)
		if err != nil {
			return nil, err
		}
		d, err := entryFromInfo(fi, name)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
		out = append(out, es...)
	}
	if len(registration) > 0 {
		out = append(out, Entry{Header: Header{Name: RegistrationName, Type: TypeReg, Mode: 0o644, Size: int64(len(registration))}, Data: registration})
	}
	return out, nil
}

// ClosureInfo reads a closure-info directory (nixpkgs closureInfo: a
// store-paths file, one path a line, and a registration file) and returns
// Closure's entries for it.
func ClosureInfo(dir, storeDir string) ([]Entry, error) {
	sp, err := os.ReadFile(filepath.Join(dir, "store-paths"))
	if err != nil {
		return nil, fmt.Errorf("initrd: closure info: %w", err)
	}
	reg, err := os.ReadFile(filepath.Join(dir, "registration"))
	if err != nil {
		return nil, fmt.Errorf("initrd: closure info: %w", err)
	}
	return Closure(storeDir, strings.Fields(string(bytes.TrimSpace(sp))), reg)
}
