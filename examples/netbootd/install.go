package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nixboot/nixboot/disk"
	"github.com/nixboot/nixboot/ipxe"
	"github.com/nixboot/nixboot/netboot"
)

// installOptions configure the network install flow: boot menus of a NixOS
// system profile's generations, a Nix binary cache of their closures, and
// the disk layout the installer (examples/netinstall) applies.
type installOptions struct {
	generations string // profiles directory holding system-<N>-link
	profile     string // profile name; "" means system
	storeRoot   string // chroot store root; "" is the host's /nix/store
	cacheAddr   string // binary cache listen address
	cacheURL    string // URL machines reach the binary cache at
	keyFile     string // secret signing key file
	layout      string // disk layout JSON file
	args        string // more kernel arguments for every menu entry
	timeout     time.Duration
	biosLoader  string
}

func (o *installOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.generations, "generations", "", "install flow: NixOS profiles directory (system-<N>-link); boot menus offer its generations, newest first, and a binary cache serves their closures")
	fs.StringVar(&o.profile, "profile", "", "install flow: profile name in -generations (default system)")
	fs.StringVar(&o.storeRoot, "store-root", "", "install flow: root of a chroot Nix store holding the generations (default: the host's /nix/store)")
	fs.StringVar(&o.cacheAddr, "cache", "", "install flow: binary cache listen address (default: -http's host, port 8070)")
	fs.StringVar(&o.cacheURL, "cache-url", "", "install flow: URL machines reach the binary cache at (default: from -url's host and -cache's port)")
	fs.StringVar(&o.keyFile, "cache-key", "", "install flow: secret key file from nix-store --generate-binary-cache-key; required")
	fs.StringVar(&o.layout, "layout", "", "install flow: disk layout JSON served at /layout.json (read on every request; an invalid edit is refused and the last valid layout stays)")
	fs.StringVar(&o.args, "install-args", "", "install flow: more kernel arguments for every generation, e.g. 'console=ttyS0 nixboot.poweroff=1'")
	fs.DurationVar(&o.timeout, "menu-timeout", 0, "install flow: how long menus wait before booting the newest generation (default 5s)")
	fs.StringVar(&o.biosLoader, "bios-loader", "", "loader for BIOS PXE firmware (default undionly.kpxe); lpxelinux.0 makes BIOS machines use the PXELINUX menu of -generations")
}

// install is the running install flow.
type install struct {
	files   netboot.Source
	menuURL string
	cache   *http.Server
	cacheLn net.Listener
	summary []string
}

// newInstall reads the generations once (the menus and the cache serve the
// same snapshot, so every generation offered can be installed; restart to
// offer new ones), asks Nix for their closures and opens the cache socket.
func newInstall(ctx context.Context, o installOptions, httpAddr, baseURL string, log *slog.Logger) (*install, error) {
	if o.keyFile == "" {
		return nil, errors.New("-generations needs -cache-key: installers refuse unsigned closures")
	}
	if baseURL == "" {
		return nil, errors.New("-generations needs -url (menus name kernels and initrds by absolute URL)")
	}
	key, err := os.ReadFile(o.keyFile)
	if err != nil {
		return nil, fmt.Errorf("-cache-key: %w", err)
	}
	gens, err := netboot.SystemProfile{Dir: o.generations, Name: o.profile, StoreRoot: o.storeRoot}.Generations(ctx)
	if err != nil {
		return nil, err
	}
	if len(gens) == 0 {
		return nil, fmt.Errorf("-generations %s: no generations of profile %q", o.generations, cmp.Or(o.profile, "system"))
	}
	var tops []string
	for _, g := range gens {
		tops = append(tops, g.Toplevel)
	}
	paths, err := netboot.NixClosure(ctx, o.storeRoot, tops...)
	if err != nil {
		return nil, fmt.Errorf("closure of the generations: %w", err)
	}
	cache := &netboot.BinaryCache{
		StoreDir: filepath.Join(cmp.Or(o.storeRoot, "/"), "nix", "store"),
		Paths:    paths, Key: string(key), Logger: log,
	}
	pub, err := cache.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("-cache-key %s: %w", o.keyFile, err)
	}

	cacheAddr := o.cacheAddr
	if cacheAddr == "" {
		host, _, err := net.SplitHostPort(httpAddr)
		if err != nil {
			return nil, fmt.Errorf("-http %q: %w", httpAddr, err)
		}
		cacheAddr = net.JoinHostPort(host, "8070")
	}
	cacheURL := o.cacheURL
	if cacheURL == "" {
		u, err := url.Parse(baseURL)
		if err != nil {
			return nil, fmt.Errorf("-url %q: %w", baseURL, err)
		}
		_, port, err := net.SplitHostPort(cacheAddr)
		if err != nil {
			return nil, fmt.Errorf("-cache %q: %w", cacheAddr, err)
		}
		cacheURL = "http://" + net.JoinHostPort(u.Hostname(), port)
	}
	extra, err := ipxe.ParseArgs(o.args)
	if err != nil {
		return nil, fmt.Errorf("-install-args: %w", err)
	}
	args := ipxe.Args{ipxe.KV("nixboot.server", baseURL), ipxe.KV("nixboot.cache", cacheURL+"/nix-cache"), ipxe.KV("nixboot.key", pub)}
	boot := &netboot.GenerationBoot{
		Generations: netboot.GenerationsFunc(func(context.Context) ([]netboot.Generation, error) { return gens, nil }),
		StoreRoot:   o.storeRoot,
		BaseURL:     baseURL,
		Args:        append(args, extra...),
		Timeout:     o.timeout,
	}
	// The menus render now, so a generation they cannot show fails here
	// rather than at a machine's boot.
	if _, err := boot.IPXEMenu(ctx); err != nil {
		return nil, err
	}
	if _, err := boot.PXELinuxMenu(ctx); err != nil {
		return nil, err
	}
	files := netboot.Chain(boot)
	if o.layout != "" {
		l := &layoutFile{path: o.layout, log: log}
		if _, err := l.read(); err != nil {
			return nil, err
		}
		files = netboot.Chain(boot, netboot.Files{"layout.json": l})
	}

	ln, err := net.Listen("tcp", cacheAddr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/nix-cache/", http.StripPrefix("/nix-cache", cache))
	in := &install{
		files:   files,
		menuURL: baseURL + "/" + netboot.GenerationMenuName,
		cache:   &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)},
		cacheLn: ln,
	}
	in.summary = append(in.summary,
		fmt.Sprintf("generations %s (%d; newest %d, %s)", o.generations, len(gens), gens[0].Number, gens[0].Toplevel),
		fmt.Sprintf("menus      %s (iPXE), %s over TFTP (PXELINUX)", in.menuURL, netboot.PXELinuxDefaultName),
		fmt.Sprintf("nix cache  %s/nix-cache (%d store paths, key %s)", cacheURL, len(paths), pub))
	if o.layout != "" {
		in.summary = append(in.summary, "layout     "+o.layout+" at "+baseURL+"/layout.json")
	}
	return in, nil
}

// serve runs the binary cache until ctx is done.
func (in *install) serve(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		in.cache.Close()
	}()
	if err := in.cache.Serve(in.cacheLn); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// layoutFile serves a disk layout file, checked with disk.ParseLayout on
// every request: an edit that does not parse is logged and the last valid
// layout keeps being served, so a typo never reaches an installer.
type layoutFile struct {
	path string
	log  *slog.Logger

	mu   sync.Mutex
	good []byte
}

func (l *layoutFile) read() ([]byte, error) {
	b, err := os.ReadFile(l.path)
	if err != nil {
		return nil, fmt.Errorf("-layout: %w", err)
	}
	if _, err := disk.ParseLayout(bytes.NewReader(b)); err != nil {
		return nil, fmt.Errorf("-layout %s: %w", l.path, err)
	}
	l.mu.Lock()
	l.good = b
	l.mu.Unlock()
	return b, nil
}

func (l *layoutFile) Open(context.Context, *netboot.Request) (*netboot.File, error) {
	b, err := l.read()
	if err != nil {
		l.mu.Lock()
		b = l.good
		l.mu.Unlock()
		l.log.Error("layout file refused; serving the last valid one", "err", err)
	}
	return netboot.BytesFile(b, time.Time{}), nil
}
