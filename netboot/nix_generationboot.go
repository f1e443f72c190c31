package netboot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nixboot/nixboot/ipxe"
	"github.com/nixboot/nixboot/pxe"
)

// Names GenerationBoot serves.
const (
	// GenerationMenuName is the iPXE menu of the generations: point
	// pxe.Loaders.ScriptURL at BaseURL + "/" + GenerationMenuName.
	GenerationMenuName = "nixos/menu.ipxe"
	// PXELinuxDefaultName is the PXELINUX configuration every machine falls
	// back to after its own names (pxe.PXELinuxPaths).
	PXELinuxDefaultName = "pxelinux.cfg/default"
)

// DefaultMenuTimeout is how long GenerationBoot's menus wait before they
// boot the newest generation when GenerationBoot.Timeout is zero.
const DefaultMenuTimeout = 5 * time.Second

// GenerationBoot serves NixOS system generations for network boot: an
// iPXE menu (GenerationMenuName) and a PXELINUX menu (PXELinuxDefaultName),
// each with the newest generation first and as the default, and every
// generation's kernel and initrd ("nixos/<number>/kernel" and
// "nixos/<number>/initrd"). It is a Source: put it in Server.Files or
// HTTPHandler.Files and TFTPServer.Files, before the loaders.
//
// The generations are read on every menu request, so a new generation
// appears in the next boot's menu without a restart. Files are only ever
// the kernels and initrds the generations name: a client picks a
// generation by number and nothing else.
type GenerationBoot struct {
	// Generations lists what machines may boot, newest first. Required.
	Generations Generations
	// StoreRoot is prefixed to store paths when opening kernels and
	// initrds, for stores kept under another root; "" opens them where
	// they say (/nix/store/...).
	StoreRoot string
	// BaseURL is where HTTP clients reach these files, without a trailing
	// slash ("http://10.0.0.1:8080"). Menus name kernels and initrds under
	// it. Required.
	BaseURL string
	// PXELinuxTFTP makes the PXELINUX menu load kernels and initrds over
	// TFTP (for pxelinux.0); false uses BaseURL, which needs lpxelinux.0.
	PXELinuxTFTP bool
	// PXELinuxUI is the PXELINUX menu module; "" means "menu.c32" (which
	// needs ldlinux.c32 and libutil.c32 served next to it). "-" shows no
	// menu and boots the newest generation at once.
	PXELinuxUI string
	// Title heads both menus; "" means "NixOS".
	Title string
	// Args are appended to every generation's command line: for example
	// the settings of an installer that runs from the initrd.
	Args ipxe.Args
	// Timeout is how long the menus wait before booting the newest
	// generation; 0 means DefaultMenuTimeout.
	Timeout time.Duration
}

// Open serves the menus, kernels and initrds; other names do not exist.
func (g *GenerationBoot) Open(ctx context.Context, req *Request) (*File, error) {
	switch req.Name {
	case GenerationMenuName:
		s, err := g.IPXEMenu(ctx)
		if err != nil {
			return nil, err
		}
		b, err := s.Render()
		if err != nil {
			return nil, err
		}
		return BytesFile(b, time.Time{}), nil
	case PXELinuxDefaultName:
		c, err := g.PXELinuxMenu(ctx)
		if err != nil {
			return nil, err
		}
		b, err := pxe.RenderPXELinux(c)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrGeneration, err)
		}
		return BytesFile(b, time.Time{}), nil
	}
	rest, ok := strings.CutPrefix(req.Name, "nixos/")
	if !ok {
		return nil, fs.ErrNotExist
	}
	num, kind, ok := strings.Cut(rest, "/")
	if !ok || (kind != "kernel" && kind != "initrd") {
		return nil, fs.ErrNotExist
	}
	n, err := strconv.Atoi(num)
	if err != nil || strconv.Itoa(n) != num {
		return nil, fs.ErrNotExist
	}
	gens, err := g.Generations.Generations(ctx)
	if err != nil {
		return nil, err
	}
	for _, gen := range gens {
		if gen.Number != n {
			continue
		}
		p := gen.Kernel
		if kind == "initrd" {
			p = gen.Initrd
		}
		return g.openStore(p)
	}
	return nil, fs.ErrNotExist
}

// openStore opens a kernel or initrd a generation names.
func (g *GenerationBoot) openStore(storePath string) (*File, error) {
	f, err := os.Open(filepath.Join(g.StoreRoot, storePath))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			// The generation names it, so its absence is a broken store,
			// not a bad request: say so in the log.
			return nil, fmt.Errorf("%w: %s is missing: %v", ErrGeneration, storePath, err)
		}
		return nil, err
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrGeneration, storePath)
	}
	return &File{Content: f, Size: st.Size(), ModTime: st.ModTime(), Closer: f}, nil
}

func (g *GenerationBoot) generations(ctx context.Context) ([]Generation, error) {
	if g.Generations == nil {
		return nil, fmt.Errorf("%w: GenerationBoot.Generations is nil", ErrConfig)
	}
	gens, err := g.Generations.Generations(ctx)
	if err != nil {
		return nil, err
	}
	if len(gens) == 0 {
		return nil, fmt.Errorf("%w: no generations to offer", ErrGeneration)
	}
	return gens, nil
}

func (g *GenerationBoot) title() string {
	if g.Title == "" {
		return "NixOS"
	}
	return g.Title
}

func (g *GenerationBoot) timeout() time.Duration {
	if g.Timeout == 0 {
		return DefaultMenuTimeout
	}
	return g.Timeout
}

func (g *GenerationBoot) entryTitle(gen Generation) string {
	return fmt.Sprintf("%s generation %d (%s)", g.title(), gen.Number, storeName(gen.Toplevel))
}

func (g *GenerationBoot) args(gen Generation) ipxe.Args {
	return append(append(ipxe.Args(nil), gen.Args...), g.Args...)
}

// IPXEMenu returns the iPXE menu: one entry per generation, newest first
// and default, each loading its kernel and initrd from BaseURL.
func (g *GenerationBoot) IPXEMenu(ctx context.Context) (*ipxe.Script, error) {
	gens, err := g.generations(ctx)
	if err != nil {
		return nil, err
	}
	if g.BaseURL == "" {
		return nil, fmt.Errorf("%w: GenerationBoot.BaseURL is empty", ErrConfig)
	}
	m := ipxe.BootMenu{Title: g.title(), Timeout: g.timeout()}
	for _, gen := range gens {
		base := g.BaseURL + "/nixos/" + strconv.Itoa(gen.Number)
		m.Entries = append(m.Entries, ipxe.MenuEntry{
			Label: "gen" + strconv.Itoa(gen.Number),
			Title: g.entryTitle(gen),
			Boot: ipxe.BootSpec{
				Kernel:  base + "/kernel",
				Initrds: []ipxe.ImageRef{{URL: base + "/initrd", Name: "initrd"}},
				Args:    g.args(gen),
			},
		})
	}
	s, err := m.Script()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrGeneration, err)
	}
	return s, nil
}

// PXELinuxMenu returns the PXELINUX menu: one label per generation, newest
// first and default.
func (g *GenerationBoot) PXELinuxMenu(ctx context.Context) (pxe.PXELinuxConfig, error) {
	gens, err := g.generations(ctx)
	if err != nil {
		return pxe.PXELinuxConfig{}, err
	}
	base := ""
	if !g.PXELinuxTFTP {
		if g.BaseURL == "" {
			return pxe.PXELinuxConfig{}, fmt.Errorf("%w: GenerationBoot.BaseURL is empty", ErrConfig)
		}
		base = g.BaseURL + "/"
	}
	c := pxe.PXELinuxConfig{MenuTitle: g.title(), Timeout: g.timeout(), UI: g.PXELinuxUI}
	switch c.UI {
	case "":
		c.UI = "menu.c32"
	case "-":
		c.UI, c.Timeout = "", 0
	}
	for _, gen := range gens {
		name := "nixos/" + strconv.Itoa(gen.Number)
		args := g.args(gen)
		for _, a := range args {
			if a.Value.HasSettings() {
				// PXELINUX has no settings to expand: an iPXE expression
				// would reach the kernel verbatim.
				return pxe.PXELinuxConfig{}, fmt.Errorf("%w: generation %d: argument %s expands an iPXE setting, which PXELINUX cannot", ErrGeneration, gen.Number, a.Key)
			}
		}
		line, err := args.Render()
		if err != nil {
			return pxe.PXELinuxConfig{}, fmt.Errorf("%w: generation %d: %v", ErrGeneration, gen.Number, err)
		}
		c.Labels = append(c.Labels, pxe.PXELinuxLabel{
			Name:      "gen" + strconv.Itoa(gen.Number),
			MenuLabel: g.entryTitle(gen),
			Kernel:    base + name + "/kernel",
			Initrd:    []string{base + name + "/initrd"},
			Append:    line,
		})
	}
	c.Default = c.Labels[0].Name
	return c, nil
}
