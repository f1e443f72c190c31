package netboot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/nixboot/nixboot/ipxe"
)

// ErrGeneration means a system generation cannot be read.
var ErrGeneration = errors.New("netboot: invalid system generation")

// Generation is one bootable NixOS system: what a boot menu entry loads
// and what a network install copies to the disk.
type Generation struct {
	Number   int       // the profile generation number; higher is newer
	Toplevel string    // the system's store path, /nix/store/<hash>-nixos-system-<name>
	Kernel   string    // store path of the kernel image (toplevel/kernel resolved)
	Initrd   string    // store path of the initrd (toplevel/initrd resolved)
	Args     ipxe.Args // kernel parameters: init=<toplevel>/init followed by kernel-params
}

// Generations lists bootable generations, newest first.
type Generations interface {
	Generations(ctx context.Context) ([]Generation, error)
}

// GenerationsFunc adapts a function to Generations.
type GenerationsFunc func(ctx context.Context) ([]Generation, error)

// Generations calls f.
func (f GenerationsFunc) Generations(ctx context.Context) ([]Generation, error) { return f(ctx) }

// SystemProfile reads the generations of a NixOS system profile: the
// system-<N>-link symlinks NixOS keeps in a profiles directory
// (/nix/var/nix/profiles on the host that builds the systems), each
// pointing at a system toplevel with kernel, initrd, kernel-params and
// init entries.
//
// StoreRoot is prefixed to store paths when reading them, for stores kept
// under another root (a chroot store); "" reads them where they say.
type SystemProfile struct {
	Dir       string // the profiles directory; required
	Name      string // the profile name; "" means "system"
	StoreRoot string
}

var generationLink = regexp.MustCompile(`^(.+)-([0-9]+)-link$`)

// Generations reads every generation, newest first. A generation that
// cannot be read is an error naming it, not silently skipped: a menu that
// quietly loses a generation is worse than one that fails loudly.
func (p SystemProfile) Generations(ctx context.Context) ([]Generation, error) {
	name := p.Name
	if name == "" {
		name = "system"
	}
	entries, err := os.ReadDir(p.Dir)
	if err != nil {
		return nil, fmt.Errorf("%w: profile %s: %v", ErrGeneration, p.Dir, err)
	}
	var gens []Generation
	for _, e := range entries {
		m := generationLink.FindStringSubmatch(e.Name())
		if m == nil || m[1] != name {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, err := strconv.Atoi(m[2])
		if err != nil {
			continue
		}
		top, err := os.Readlink(filepath.Join(p.Dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrGeneration, e.Name(), err)
		}
		g, err := ReadToplevel(p.StoreRoot, top)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name(), err)
		}
		g.Number = n
		gens = append(gens, g)
	}
	sort.Slice(gens, func(i, j int) bool { return gens[i].Number > gens[j].Number })
	return gens, nil
}

// ReadToplevel reads a NixOS system toplevel: its kernel and initrd links
// and kernel-params file. storeRoot is prefixed when reading, as in
// SystemProfile.
func ReadToplevel(storeRoot, toplevel string) (Generation, error) {
	if _, err := parseStorePath(toplevel); err != nil {
		return Generation{}, fmt.Errorf("%w: toplevel %q: %v", ErrGeneration, toplevel, err)
	}
	g := Generation{Toplevel: toplevel}
	host := func(p string) string { return filepath.Join(storeRoot, p) }
	resolve := func(entry string) (string, error) {
		target, err := os.Readlink(host(path.Join(toplevel, entry)))
		if err != nil {
			return "", fmt.Errorf("%w: %s has no %s: %v", ErrGeneration, toplevel, entry, err)
		}
		if !path.IsAbs(target) {
			target = path.Join(toplevel, target)
		}
		if !strings.HasPrefix(target, "/nix/store/") {
			return "", fmt.Errorf("%w: %s/%s points outside the store: %s", ErrGeneration, toplevel, entry, target)
		}
		return target, nil
	}
	var err error
	if g.Kernel, err = resolve("kernel"); err != nil {
		return Generation{}, err
	}
	if g.Initrd, err = resolve("initrd"); err != nil {
		return Generation{}, err
	}
	g.Args = ipxe.Args{ipxe.KV("init", toplevel+"/init")}
	params, err := os.ReadFile(host(path.Join(toplevel, "kernel-params")))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return Generation{}, fmt.Errorf("%w: %s/kernel-params: %v", ErrGeneration, toplevel, err)
	}
	if len(bytes.TrimSpace(params)) > 0 {
		extra, err := ipxe.ParseArgs(string(bytes.TrimSpace(params)))
		if err != nil {
			return Generation{}, fmt.Errorf("%w: %s/kernel-params: %v", ErrGeneration, toplevel, err)
		}
		g.Args = append(g.Args, extra...)
	}
	return g, nil
}

// storeName returns the name part of a store path, without the hash.
func storeName(p string) string {
	base := path.Base(p)
	if i := strings.IndexByte(base, '-'); i >= 0 {
		return base[i+1:]
	}
	return base
}
