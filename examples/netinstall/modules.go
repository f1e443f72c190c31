//go:build linux

package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// moduleDeps maps a module's path (relative to /lib/modules/<release>) to
// its dependencies' paths, as modules.dep lists them.
type moduleDeps map[string][]string

// parseModulesDep reads depmod's modules.dep: "path: dep dep ...".
func parseModulesDep(r io.Reader) (moduleDeps, error) {
	deps := moduleDeps{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		mod, rest, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("modules.dep line %d: no colon", n)
		}
		deps[mod] = strings.Fields(rest)
	}
	return deps, sc.Err()
}

// moduleName turns a module path into the name the kernel uses.
func moduleName(p string) string {
	base := path.Base(p)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		base = strings.TrimSuffix(base, ext)
	}
	return strings.ReplaceAll(strings.TrimSuffix(base, ".ko"), "-", "_")
}

// loadOrder returns the module paths to load for the named modules,
// dependencies first, each once. Unknown names are returned separately.
func (d moduleDeps) loadOrder(names []string) (order, unknown []string) {
	byName := map[string]string{}
	for p := range d {
		byName[moduleName(p)] = p
	}
	seen := map[string]bool{}
	var visit func(p string)
	visit = func(p string) {
		if seen[p] {
			return
		}
		seen[p] = true
		for _, dep := range d[p] {
			visit(dep)
		}
		order = append(order, p)
	}
	for _, n := range names {
		p, ok := byName[strings.ReplaceAll(n, "-", "_")]
		if !ok {
			unknown = append(unknown, n)
			continue
		}
		visit(p)
	}
	return order, unknown
}

// loadModules loads the named modules from dir (/lib/modules/<release>)
// with finit_module. Modules already loaded or built in are fine.
func loadModules(dir string, names []string, logf func(string, ...any)) error {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return fmt.Errorf("kernel modules: %w", err)
	}
	deps, err := parseModulesDep(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("kernel modules: %w", err)
	}
	order, unknown := deps.loadOrder(names)
	for _, u := range unknown {
		logf("module %s not in modules.dep (built in or not needed)", u)
	}
	for _, p := range order {
		if err := finitModule(filepath.Join(dir, p)); err != nil {
			return fmt.Errorf("loading %s: %w", moduleName(p), err)
		}
	}
	return nil
}

func finitModule(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}
