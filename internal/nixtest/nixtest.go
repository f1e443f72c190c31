// Package nixtest builds real Nix store closures for tests, offline, with
// Debian's nix-bin and no nixpkgs: a hermetic expression whose only input
// is a static busybox copied in by the test. Each closure lives in a
// private chroot store under t.TempDir(), so tests never touch /nix.
//
// The closure has three paths: busybox, etc (a marker file) and toplevel,
// whose init is a busybox shell script that prints the marker. It has the
// shape of a NixOS system closure (a toplevel with an init referring to the
// rest) at a fraction of the size. BuildSystem adds a fourth, the boot
// files, linked from the toplevel as NixOS links its kernel and initrd.
package nixtest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixboot/nixboot/internal/testenv"
)

// Closure is a built closure in a private chroot store.
type Closure struct {
	Dir          string   // the test's work directory (store, conf, cache below it)
	Store        string   // the chroot store root; paths live under Store/nix/store
	Toplevel     string   // logical path of the toplevel, /nix/store/<hash>-toplevel
	Paths        []string // the closure (nix-store -qR), dependencies first
	Registration []byte   // nix-store --dump-db of Paths, as closureInfo's registration
	Marker       string   // what toplevel's init prints
	env          []string
}

const expression = `{ bbroot, marker, kernel ? null, initrd ? null, params ? "" }:
let
  system = builtins.currentSystem;
  src = builtins.path { path = bbroot; name = "busybox-src"; };
  sh = "${src}/bin/sh";
  busybox = derivation {
    name = "busybox"; inherit system; builder = sh;
    args = [ "-c" ''
      set -e
      mkdir -p $out/bin
      cp ${src}/bin/busybox $out/bin/busybox
      for a in sh echo cat ls mount mkdir sleep poweroff reboot switch_root; do ln -s busybox $out/bin/$a; done
    '' ];
  };
  etc = derivation {
    name = "etc"; inherit system; builder = "${busybox}/bin/sh";
    args = [ "-c" ''mkdir -p $out && echo "${marker}" > $out/marker'' ];
  };
  # A system's boot files, as NixOS keeps the kernel and initrd in store
  # paths of their own.
  boot = derivation {
    name = "boot"; inherit system; builder = "${busybox}/bin/sh";
    args = [ "-c" ''
      set -e
      ${busybox}/bin/mkdir -p $out
      ${busybox}/bin/cat ${builtins.path { path = kernel; name = "kernel-image"; }} > $out/bzImage
      ${busybox}/bin/cat ${builtins.path { path = initrd; name = "initrd-image"; }} > $out/initrd
    '' ];
  };
  # Nothing is added to the toplevel without a kernel, so the plain
  # closure keeps its hashes.
  bootLinks = if kernel == null then "" else ''
    ln -s ${boot}/bzImage $out/kernel
    ln -s ${boot}/initrd $out/initrd
    echo "${params}" > $out/kernel-params
  '';
  toplevel = derivation {
    name = "toplevel"; inherit system; builder = "${busybox}/bin/sh";
    args = [ "-c" (''
      set -e
      mkdir -p $out
      ln -s ${etc} $out/etc
      printf '#!%s\nexport PATH=%s\necho "$(cat %s) from %s"\n' \
        ${busybox}/bin/sh ${busybox}/bin ${etc}/marker $out/init > $out/init
      chmod 0555 $out/init
    '' + bootLinks) ];
  };
in toplevel
`

// Build builds the closure whose init prints marker. It skips (or fails in
// CI) when nix-build or a static busybox is missing.
func Build(t testing.TB, marker string) *Closure {
	t.Helper()
	return build(t, marker)
}

// BuildSystem builds a closure shaped like a bootable NixOS system: Build's,
// plus a boot path holding copies of the kernel and initrd files, linked
// from the toplevel as kernel and initrd, and a kernel-params file holding
// params. SystemProfile and ReadToplevel (package netboot) read it as they
// read a NixOS generation.
func BuildSystem(t testing.TB, marker, kernel, initrd, params string) *Closure {
	t.Helper()
	for _, f := range []string{kernel, initrd} {
		if !filepath.IsAbs(f) {
			t.Fatalf("nixtest: %q is not an absolute path", f)
		}
	}
	if strings.ContainsAny(params, "\"$\\\n") {
		t.Fatalf("nixtest: params %q would need quoting", params)
	}
	return build(t, marker, "--arg", "kernel", kernel, "--arg", "initrd", initrd, "--argstr", "params", params)
}

func build(t testing.TB, marker string, args ...string) *Closure {
	t.Helper()
	testenv.Command(t, "nix-build")
	bb := testenv.File(t, "/usr/bin/busybox", "/bin/busybox")
	if out, err := exec.Command("file", "-L", bb).Output(); err == nil && !bytes.Contains(out, []byte("statically linked")) {
		testenv.Unavailable(t, bb+" is not statically linked (install busybox-static)")
	}
	dir := t.TempDir()
	c := &Closure{Dir: dir, Store: filepath.Join(dir, "store"), Marker: marker}
	conf := filepath.Join(dir, "conf")
	must(t, os.MkdirAll(conf, 0o755))
	must(t, os.WriteFile(filepath.Join(conf, "nix.conf"), []byte(
		"build-users-group =\nsubstituters =\nexperimental-features = nix-command\ngc-reserved-space = 0\n"), 0o644))
	c.env = append(os.Environ(),
		"NIX_CONF_DIR="+conf,
		"XDG_CACHE_HOME="+filepath.Join(dir, "xdg-cache"),
		"HOME="+dir,
	)
	root := filepath.Join(dir, "bbroot", "bin")
	must(t, os.MkdirAll(root, 0o755))
	data, err := os.ReadFile(bb)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(root, "busybox"), data, 0o755))
	must(t, os.Symlink("busybox", filepath.Join(root, "sh")))
	must(t, os.WriteFile(filepath.Join(dir, "default.nix"), []byte(expression), 0o644))

	out := c.Nix(t, "nix-build", append([]string{"--store", c.Store, filepath.Join(dir, "default.nix"),
		"--arg", "bbroot", filepath.Join(dir, "bbroot"), "--argstr", "marker", marker, "--no-out-link"}, args...)...)
	c.Toplevel = strings.TrimSpace(string(out))
	paths := c.Nix(t, "nix-store", "--store", c.Store, "-qR", c.Toplevel)
	c.Paths = strings.Fields(string(paths))
	c.Registration = c.Nix(t, "nix-store", append([]string{"--store", c.Store, "--dump-db"}, c.Paths...)...)
	return c
}

// Nix runs a Nix command with this closure's private configuration and
// returns its standard output, failing the test on error.
func (c *Closure) Nix(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	out, err := c.NixErr(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return out
}

// NixErr is Nix without failing the test; the error carries stderr.
func (c *Closure) NixErr(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = c.env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, &cmdError{err: err, stderr: stderr.String()}
	}
	return out, nil
}

type cmdError struct {
	err    error
	stderr string
}

func (e *cmdError) Error() string { return e.err.Error() + ": " + strings.TrimSpace(e.stderr) }
func (e *cmdError) Unwrap() error { return e.err }

// HostPath returns where a logical store path's contents are on the host.
func (c *Closure) HostPath(storePath string) string {
	return filepath.Join(c.Store, storePath)
}

// StoreDir returns the host directory holding the store paths.
func (c *Closure) StoreDir() string { return filepath.Join(c.Store, "nix", "store") }

// NewStore returns the root of a fresh, empty chroot store in the same
// work directory, for a client to fetch into.
func (c *Closure) NewStore(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(c.Dir, name)
	must(t, os.MkdirAll(p, 0o755))
	return p
}

// GenerateKey makes a binary-cache signing key pair with nix-store and
// returns the secret and public key files' contents ("name:base64").
func (c *Closure) GenerateKey(t testing.TB, name string) (secret, public string) {
	t.Helper()
	sk := filepath.Join(c.Dir, name+".sk")
	pk := filepath.Join(c.Dir, name+".pk")
	c.Nix(t, "nix-store", "--generate-binary-cache-key", name, sk, pk)
	s, err := os.ReadFile(sk)
	must(t, err)
	p, err := os.ReadFile(pk)
	must(t, err)
	return strings.TrimSpace(string(s)), strings.TrimSpace(string(p))
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
