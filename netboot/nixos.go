package netboot

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"

	"github.com/nixboot/nixboot/ipxe"
)

// NixOSNetboot is a NixOS netboot output directory as nixpkgs builds it
// (system.build.netbootRamdisk, kernel and netbootIpxeScript linked
// together): bzImage, initrd and netboot.ipxe, whose kernel line carries
// init=/nix/store/...-nixos-system-.../init and the configured parameters.
type NixOSNetboot struct {
	Dir     string    // as given
	Target  string    // Dir with every symlink resolved: where the files are read
	Kernel  Image     // Path in Dir
	Initrds []Image   // Paths in Dir, named as netboot.ipxe names them
	Args    ipxe.Args // netboot.ipxe's command line, init= included, unchanged
	Init    string    // the init= path
}

// ReadNixOSNetboot reads dir/netboot.ipxe with ipxe.ParseBootSpec and
// resolves its kernel and initrd names against dir. The files are served
// unchanged; only names inside dir are accepted.
//
// dir is resolved first (filepath.EvalSymlinks), and the script, kernel and
// initrds are all taken from that one target. A dir that is a symlink to a
// generation, such as nix-build's ./result, so stays on the generation it
// pointed to when it was read: repointing the link later cannot pair the new
// kernel and initrd with the old script's init=. Read it again to follow the
// link (FileInventory does that when Target changes).
func ReadNixOSNetboot(dir string) (*NixOSNetboot, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("netboot: NixOS netboot directory %q is not an absolute path", dir)
	}
	given := dir
	dir, err := filepath.EvalSymlinks(given)
	if err != nil {
		return nil, fmt.Errorf("netboot: NixOS netboot directory: %w", err)
	}
	f, err := os.Open(filepath.Join(dir, "netboot.ipxe"))
	if err != nil {
		return nil, fmt.Errorf("netboot: NixOS netboot directory: %w", err)
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, ipxe.MaxScriptSize+1))
	if err != nil {
		return nil, fmt.Errorf("netboot: %s: %w", f.Name(), err)
	}
	spec, err := ipxe.ParseBootSpec(src)
	if err != nil {
		return nil, fmt.Errorf("netboot: %s: %w", f.Name(), err)
	}
	if spec.Init == "" {
		return nil, fmt.Errorf("netboot: %s: no init= on the kernel line: %w", f.Name(), ErrInvalidInventory)
	}
	local := func(u string) (string, error) {
		pu, err := url.Parse(u)
		if err != nil || pu.Scheme != "" || pu.Host != "" || pu.RawQuery != "" {
			return "", fmt.Errorf("netboot: %s: %q is not a file name relative to the script", f.Name(), u)
		}
		name, err := CleanName(pu.Path)
		if err != nil {
			return "", fmt.Errorf("netboot: %s: %w", f.Name(), err)
		}
		p := filepath.Join(dir, filepath.FromSlash(name))
		st, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("netboot: NixOS netboot directory: %w", err)
		}
		if !st.Mode().IsRegular() {
			return "", fmt.Errorf("netboot: %s is not a regular file: %w", p, ErrInvalidInventory)
		}
		return p, nil
	}
	nb := &NixOSNetboot{Dir: given, Target: dir, Args: spec.Args, Init: spec.Init}
	kp, err := local(spec.Kernel)
	if err != nil {
		return nil, err
	}
	nb.Kernel = Image{Path: kp, Name: path.Base(spec.Kernel)}
	for _, ir := range spec.Initrds {
		p, err := local(ir.URL)
		if err != nil {
			return nil, err
		}
		name := ir.Name
		if name == "" {
			name = path.Base(ir.URL)
		}
		nb.Initrds = append(nb.Initrds, Image{Path: p, Name: name})
	}
	return nb, nil
}
