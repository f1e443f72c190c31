package netboot

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/narinfo"
	"github.com/nix-community/go-nix/pkg/narinfo/signature"
	"github.com/nix-community/go-nix/pkg/nixhash"
	"github.com/nix-community/go-nix/pkg/storepath"
)

// ErrBinaryCache means a BinaryCache is configured wrongly.
var ErrBinaryCache = errors.New("netboot: binary cache misconfigured")

// BinaryCache serves store paths as a Nix binary cache over HTTP, the
// protocol `nix copy --from http://...` and substituters speak:
// GET /nix-cache-info, GET /<hash>.narinfo, GET /nar/<hash>.nar.
//
// It serves exactly the configured Paths (typically the closures of the
// generations a network install may pick) and nothing else from the
// store, so a store shared with the host leaks nothing beyond them. NARs
// are streamed uncompressed from the store directory as they are
// requested; narinfo files are signed with Key so clients with
// require-sigs (Nix's default) accept them.
//
// Set the fields before the first request and do not change them
// afterwards. BinaryCache is safe for concurrent use.
type BinaryCache struct {
	// StoreDir is the host directory holding the store paths' contents:
	// "/nix/store" for the host's own store, or <root>/nix/store for a
	// chroot store. Required.
	StoreDir string

	// Paths are the store paths served, with their NAR hash, size and
	// references as the Nix database records them (see ParseRegistration).
	// A path with an empty NarHash is hashed from the store on first use.
	Paths []StorePathInfo

	// Key signs narinfo files, in nix-store --generate-binary-cache-key
	// form ("name:base64"). Empty serves unsigned narinfo, which clients
	// accept only with require-sigs = false.
	Key string

	// Priority is advertised in nix-cache-info; 0 means 30, below
	// cache.nixos.org's 40 so a local cache is preferred.
	Priority int

	// Logger receives one line per failed request; nil discards.
	Logger *slog.Logger

	once  sync.Once
	err   error
	byKey map[string]*cacheEntry // store path hash part -> entry
	sk    *signature.SecretKey
}

type cacheEntry struct {
	info    StorePathInfo
	mu      sync.Mutex // guards narinfo computation
	narinfo []byte
}

func (c *BinaryCache) init() error {
	c.once.Do(func() {
		if c.StoreDir == "" {
			c.err = fmt.Errorf("%w: StoreDir is empty", ErrBinaryCache)
			return
		}
		if c.Key != "" {
			sk, err := signature.LoadSecretKey(strings.TrimSpace(c.Key))
			if err != nil {
				c.err = fmt.Errorf("%w: Key: %v", ErrBinaryCache, err)
				return
			}
			c.sk = &sk
		}
		c.byKey = make(map[string]*cacheEntry, len(c.Paths))
		for i, p := range c.Paths {
			sp, err := parseStorePath(p.Path)
			if err != nil {
				c.err = fmt.Errorf("%w: Paths[%d] %q: %v", ErrBinaryCache, i, p.Path, err)
				return
			}
			for _, r := range p.References {
				if _, err := parseStorePath(r); err != nil {
					c.err = fmt.Errorf("%w: Paths[%d] reference %q: %v", ErrBinaryCache, i, r, err)
					return
				}
			}
			if p.NarHash != "" {
				h, err := normaliseNarHash(p.NarHash)
				if err != nil {
					c.err = fmt.Errorf("%w: Paths[%d]: %v", ErrBinaryCache, i, err)
					return
				}
				p.NarHash = h
			}
			p.References = slices.Clone(p.References)
			c.byKey[string(nixhashPart(sp))] = &cacheEntry{info: p}
		}
	})
	return c.err
}

// PublicKey returns the public half of Key ("name:base64"), what clients
// list in trusted-public-keys (and the installer in nixboot.key), or an
// error if the cache is misconfigured or has no Key.
func (c *BinaryCache) PublicKey() (string, error) {
	if err := c.init(); err != nil {
		return "", err
	}
	if c.sk == nil {
		return "", fmt.Errorf("%w: no Key, so no public key", ErrBinaryCache)
	}
	return c.sk.ToPublicKey().String(), nil
}

func nixhashPart(sp *storepath.StorePath) string {
	s := sp.String()
	return s[:strings.IndexByte(s, '-')]
}

// ServeHTTP answers the binary cache protocol. Unknown paths get 404;
// methods other than GET and HEAD get 405.
func (c *BinaryCache) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if err := c.init(); err != nil {
		c.log(r, err)
		http.Error(w, "binary cache unavailable", http.StatusInternalServerError)
		return
	}
	name := strings.TrimPrefix(r.URL.Path, "/")
	switch {
	case name == "nix-cache-info":
		prio := c.Priority
		if prio == 0 {
			prio = 30
		}
		body := fmt.Sprintf("StoreDir: %s\nWantMassQuery: 1\nPriority: %d\n", storepath.StoreDir, prio)
		c.serveBytes(w, r, "text/x-nix-cache-info", []byte(body))
	case strings.HasSuffix(name, ".narinfo") && !strings.Contains(name, "/"):
		e := c.byKey[strings.TrimSuffix(name, ".narinfo")]
		if e == nil {
			http.NotFound(w, r)
			return
		}
		b, err := c.narinfo(e)
		if err != nil {
			c.log(r, err)
			http.Error(w, "cannot describe store path", http.StatusInternalServerError)
			return
		}
		c.serveBytes(w, r, "text/x-nix-narinfo", b)
	case strings.HasPrefix(name, "nar/") && strings.HasSuffix(name, ".nar"):
		e := c.byKey[strings.TrimSuffix(strings.TrimPrefix(name, "nar/"), ".nar")]
		if e == nil {
			http.NotFound(w, r)
			return
		}
		c.serveNAR(w, r, e)
	default:
		http.NotFound(w, r)
	}
}

func (c *BinaryCache) serveBytes(w http.ResponseWriter, r *http.Request, ctype string, b []byte) {
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	if r.Method == http.MethodHead {
		return
	}
	w.Write(b)
}

// hostPath maps a logical store path to the host, refusing anything that
// is not a direct child of StoreDir.
func (c *BinaryCache) hostPath(storePath string) (string, error) {
	base := path.Base(storePath)
	if path.Dir(storePath) != storepath.StoreDir || base == "." || base == ".." || strings.ContainsRune(base, '/') {
		return "", fmt.Errorf("store path %q is not directly in %s", storePath, storepath.StoreDir)
	}
	return filepath.Join(c.StoreDir, base), nil
}

// narinfo renders (once) and returns an entry's signed narinfo.
func (c *BinaryCache) narinfo(e *cacheEntry) ([]byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.narinfo != nil {
		return e.narinfo, nil
	}
	if e.info.NarHash == "" {
		h, size, err := c.hashNAR(e.info.Path)
		if err != nil {
			return nil, err
		}
		e.info.NarHash, e.info.NarSize = h, size
	}
	narHash, err := nixhash.ParseAny(e.info.NarHash, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", e.info.Path, err)
	}
	refs := make([]string, 0, len(e.info.References))
	for _, r := range e.info.References {
		refs = append(refs, path.Base(r))
	}
	slices.Sort(refs)
	sp, _ := parseStorePath(e.info.Path)
	ni := &narinfo.NarInfo{
		StorePath:   e.info.Path,
		URL:         "nar/" + nixhashPart(sp) + ".nar",
		Compression: "none",
		NarHash:     narHash,
		NarSize:     e.info.NarSize,
		References:  refs,
	}
	if e.info.Deriver != "" {
		ni.Deriver = path.Base(e.info.Deriver)
	}
	if c.sk != nil {
		sig, err := c.sk.Sign(nil, ni.Fingerprint())
		if err != nil {
			return nil, fmt.Errorf("%s: signing: %w", e.info.Path, err)
		}
		ni.Signatures = []signature.Signature{sig}
	}
	e.narinfo = []byte(ni.String())
	return e.narinfo, nil
}

// hashNAR serialises a store path and returns its NAR hash and size.
func (c *BinaryCache) hashNAR(storePath string) (string, uint64, error) {
	p, err := c.hostPath(storePath)
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	cw := &narCountingWriter{w: h}
	if err := nar.DumpPath(cw, p); err != nil {
		return "", 0, fmt.Errorf("%s: %w", storePath, err)
	}
	hash := nixhash.MustNewHashWithEncoding(nixhash.SHA256, h.Sum(nil), nixhash.NixBase32, true)
	return hash.String(), uint64(cw.n), nil
}

// serveNAR streams a path's NAR. The size is known from the narinfo, so
// the response has a Content-Length and a client sees a truncated body if
// the store changed under us and the dump fails half way.
func (c *BinaryCache) serveNAR(w http.ResponseWriter, r *http.Request, e *cacheEntry) {
	if _, err := c.narinfo(e); err != nil {
		c.log(r, err)
		http.Error(w, "cannot describe store path", http.StatusInternalServerError)
		return
	}
	p, err := c.hostPath(e.info.Path)
	if err == nil {
		_, err = os.Lstat(p)
	}
	if err != nil {
		c.log(r, err)
		http.Error(w, "store path unavailable", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-nix-nar")
	w.Header().Set("Content-Length", strconv.FormatUint(e.info.NarSize, 10))
	if r.Method == http.MethodHead {
		return
	}
	lw := &narLimitWriter{w: w, left: int64(e.info.NarSize)}
	if err := nar.DumpPath(lw, p); err != nil {
		c.log(r, fmt.Errorf("%s: %w", e.info.Path, err))
		return
	}
	if lw.left != 0 || lw.over {
		c.log(r, fmt.Errorf("%s: NAR size differs from the recorded %d bytes; the store path changed", e.info.Path, e.info.NarSize))
	}
}

func (c *BinaryCache) log(r *http.Request, err error) {
	if c.Logger != nil {
		c.Logger.Error("binary cache request failed", "remote", r.RemoteAddr, "file", r.URL.Path, "err", err)
	}
}

type narCountingWriter struct {
	w io.Writer
	n int64
}

func (c *narCountingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// narLimitWriter never writes more than the announced Content-Length.
type narLimitWriter struct {
	w    io.Writer
	left int64
	over bool
}

func (l *narLimitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		l.over = true
		if _, err := l.w.Write(p[:l.left]); err != nil {
			return 0, err
		}
		l.left = 0
		return 0, errors.New("NAR longer than recorded")
	}
	n, err := l.w.Write(p)
	l.left -= int64(n)
	return n, err
}
