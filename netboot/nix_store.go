package netboot

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixhash"
	"github.com/nix-community/go-nix/pkg/storepath"
)

// ErrRegistration means a Nix registration (closure-info) file is malformed.
var ErrRegistration = errors.New("netboot: invalid Nix registration")

// StorePathInfo is what a binary cache says about one store path: the
// fields of Nix's database that a substituting client checks.
type StorePathInfo struct {
	Path       string   // absolute store path, /nix/store/<hash>-<name>
	NarHash    string   // "sha256:<nix32>" of the path's NAR serialisation
	NarSize    uint64   // size of that NAR in bytes
	References []string // absolute store paths this path refers to (may include itself)
	Deriver    string   // absolute .drv path, or ""
}

// maxRegistrationPaths bounds what ParseRegistration reads.
const maxRegistrationPaths = 1 << 20

// ParseRegistration reads the registration format that
// `nix-store --dump-db` writes and nixpkgs' closureInfo ships as
// "registration": for each path its store path, NAR hash (bare hex or
// "sha256:<nix32>"), NAR size, deriver (possibly an empty line), the number
// of references and the references, one per line. Hashes come out in the
// "sha256:<nix32>" form narinfo files use.
func ParseRegistration(r io.Reader) ([]StorePathInfo, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	line := 0
	next := func(what string) (string, error) {
		if !sc.Scan() {
			if err := sc.Err(); err != nil {
				return "", fmt.Errorf("%w: line %d: %v", ErrRegistration, line+1, err)
			}
			return "", fmt.Errorf("%w: line %d: missing %s", ErrRegistration, line+1, what)
		}
		line++
		return sc.Text(), nil
	}
	var out []StorePathInfo
	for sc.Scan() {
		line++
		p := sc.Text()
		if p == "" {
			continue
		}
		if len(out) >= maxRegistrationPaths {
			return nil, fmt.Errorf("%w: more than %d paths", ErrRegistration, maxRegistrationPaths)
		}
		if _, err := parseStorePath(p); err != nil {
			return nil, fmt.Errorf("%w: line %d: store path %q: %v", ErrRegistration, line, p, err)
		}
		info := StorePathInfo{Path: p}
		h, err := next("NAR hash")
		if err != nil {
			return nil, err
		}
		if info.NarHash, err = normaliseNarHash(h); err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrRegistration, line, err)
		}
		s, err := next("NAR size")
		if err != nil {
			return nil, err
		}
		if info.NarSize, err = strconv.ParseUint(s, 10, 63); err != nil {
			return nil, fmt.Errorf("%w: line %d: NAR size %q", ErrRegistration, line, s)
		}
		if info.Deriver, err = next("deriver"); err != nil {
			return nil, err
		}
		if info.Deriver != "" {
			if _, err := parseStorePath(info.Deriver); err != nil {
				return nil, fmt.Errorf("%w: line %d: deriver %q: %v", ErrRegistration, line, info.Deriver, err)
			}
		}
		ns, err := next("reference count")
		if err != nil {
			return nil, err
		}
		n, err := strconv.ParseUint(ns, 10, 31)
		if err != nil || n > 1<<16 {
			return nil, fmt.Errorf("%w: line %d: reference count %q", ErrRegistration, line, ns)
		}
		for range n {
			ref, err := next("reference")
			if err != nil {
				return nil, err
			}
			if _, err := parseStorePath(ref); err != nil {
				return nil, fmt.Errorf("%w: line %d: reference %q: %v", ErrRegistration, line, ref, err)
			}
			info.References = append(info.References, ref)
		}
		out = append(out, info)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: line %d: %v", ErrRegistration, line+1, err)
	}
	return out, nil
}

// normaliseNarHash accepts a sha256 NAR hash in the spellings Nix uses
// (bare hex from --dump-db, sha256:<nix32>, sha256:<hex>, SRI) and returns
// "sha256:<nix32>".
func normaliseNarHash(s string) (string, error) {
	if len(s) == 64 && !strings.Contains(s, ":") {
		s = "sha256:" + s
	}
	algo := nixhash.SHA256
	h, err := nixhash.ParseAny(s, &algo)
	if err != nil {
		return "", fmt.Errorf("NAR hash %q: %v", s, err)
	}
	if h.Algo() != nixhash.SHA256 || len(h.Digest()) != sha256.Size {
		return "", fmt.Errorf("NAR hash %q is not a sha256 hash", s)
	}
	return h.Format(nixhash.NixBase32, true), nil
}

// parseStorePath checks an absolute store path: directly under
// /nix/store, with a valid hash and name. (go-nix's FromAbsolutePath does
// not check the prefix.)
func parseStorePath(s string) (*storepath.StorePath, error) {
	rest, ok := strings.CutPrefix(s, storepath.StoreDir+"/")
	if !ok || strings.Contains(rest, "/") {
		return nil, fmt.Errorf("not directly in %s", storepath.StoreDir)
	}
	return storepath.FromString(rest)
}

// NixClosure asks the host's Nix for the closure of roots and its
// registration (nix-store -qR, then --dump-db), for serving it with
// BinaryCache. store is passed as --store when not empty (a chroot store
// root). nix-store must be on PATH.
func NixClosure(ctx context.Context, store string, roots ...string) ([]StorePathInfo, error) {
	if len(roots) == 0 {
		return nil, nil
	}
	base := []string{}
	if store != "" {
		base = append(base, "--store", store)
	}
	run := func(args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, "nix-store", append(append([]string(nil), base...), args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("nix-store %s: %w: %s", args[0], err, strings.TrimSpace(stderr.String()))
		}
		return out, nil
	}
	paths, err := run(append([]string{"-qR"}, roots...)...)
	if err != nil {
		return nil, err
	}
	reg, err := run(append([]string{"--dump-db"}, strings.Fields(string(paths))...)...)
	if err != nil {
		return nil, err
	}
	return ParseRegistration(bytes.NewReader(reg))
}
