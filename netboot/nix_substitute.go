package netboot

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/narinfo"
	"github.com/nix-community/go-nix/pkg/narinfo/signature"
	"github.com/nix-community/go-nix/pkg/nixhash"
	"github.com/ulikunitz/xz"
)

// Errors from Substituter.
var (
	// ErrUntrusted means a narinfo is not signed by any trusted key.
	ErrUntrusted = errors.New("netboot: store path not signed by a trusted key")
	// ErrNarMismatch means a NAR's hash or size differs from its narinfo.
	ErrNarMismatch = errors.New("netboot: NAR does not match its narinfo")
	// ErrSubstitute means the cache answered something unusable.
	ErrSubstitute = errors.New("netboot: substitution failed")
)

// Substituter fetches store paths from a Nix binary cache into a store
// directory on the local disk, as Nix's own substitution does: for every
// path of the closure that is missing it fetches the narinfo, checks its
// signature against TrustedKeys, fetches the NAR, checks its size and
// hash while unpacking it into a temporary directory, and only then
// renames it into place. A path is therefore either complete and verified
// or absent, and an interrupted run resumes where it stopped.
//
// It is the client side of BinaryCache, for installers that run without
// Nix (inside an initrd). Registering the fetched paths in the target's
// Nix database is left to WriteRegistration and the installed system.
type Substituter struct {
	// CacheURL is the binary cache's base URL. Required.
	CacheURL string
	// TrustedKeys are public keys ("name:base64", as nix-store
	// --generate-binary-cache-key writes them). Required: unsigned or
	// wrongly signed paths are refused.
	TrustedKeys []string
	// Client makes the requests; nil means a client with a 60 s timeout.
	Client *http.Client
	// Logger gets one line per fetched or skipped path; nil discards.
	Logger *slog.Logger
}

// maxClosure bounds how many paths one Realise walks.
const maxClosure = 100000

// Realise makes the closure of roots present in storeDir (the host
// directory that is /nix/store on the target) and returns every path's
// information, roots' dependencies first, for registration. Paths already
// present are not fetched again.
func (s *Substituter) Realise(ctx context.Context, storeDir string, roots ...string) ([]StorePathInfo, error) {
	keys, err := s.keys()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(storeDir, 0o755); err != nil {
		return nil, fmt.Errorf("store directory: %w", err)
	}
	// Walk the closure through narinfo references.
	infos := map[string]*narinfo.NarInfo{}
	var order []string
	queue := append([]string(nil), roots...)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if _, ok := infos[p]; ok {
			continue
		}
		if len(infos) >= maxClosure {
			return nil, fmt.Errorf("%w: closure larger than %d paths", ErrSubstitute, maxClosure)
		}
		ni, err := s.narinfo(ctx, p, keys)
		if err != nil {
			return nil, err
		}
		infos[p] = ni
		order = append(order, p)
		for _, r := range ni.References {
			queue = append(queue, "/nix/store/"+r)
		}
	}
	// Fetch dependencies before their referrers, so a referrer is never
	// present without what it refers to.
	sorted := topoSort(order, infos)
	out := make([]StorePathInfo, 0, len(sorted))
	for _, p := range sorted {
		ni := infos[p]
		target := filepath.Join(storeDir, path.Base(p))
		if _, err := os.Lstat(target); err == nil {
			s.log("store path already present", "path", p)
		} else if err := s.fetch(ctx, ni, storeDir); err != nil {
			return nil, err
		}
		info := StorePathInfo{Path: p, NarHash: ni.NarHash.Format(nixhash.NixBase32, true), NarSize: ni.NarSize}
		for _, r := range ni.References {
			info.References = append(info.References, "/nix/store/"+r)
		}
		if ni.Deriver != "" {
			info.Deriver = "/nix/store/" + ni.Deriver
		}
		out = append(out, info)
	}
	return out, nil
}

func (s *Substituter) keys() ([]signature.PublicKey, error) {
	if s.CacheURL == "" {
		return nil, fmt.Errorf("%w: no cache URL", ErrSubstitute)
	}
	if len(s.TrustedKeys) == 0 {
		return nil, fmt.Errorf("%w: no trusted keys; refusing to install unsigned paths", ErrUntrusted)
	}
	var keys []signature.PublicKey
	for _, k := range s.TrustedKeys {
		pk, err := signature.ParsePublicKey(strings.TrimSpace(k))
		if err != nil {
			return nil, fmt.Errorf("trusted key %q: %w", k, err)
		}
		keys = append(keys, pk)
	}
	return keys, nil
}

func (s *Substituter) client() *http.Client {
	if s.Client != nil {
		return s.Client
	}
	return &http.Client{Timeout: 60 * time.Second}
}

func (s *Substituter) log(msg string, args ...any) {
	if s.Logger != nil {
		s.Logger.Info(msg, args...)
	}
}

func (s *Substituter) get(ctx context.Context, rel string) (*http.Response, error) {
	base, err := url.Parse(strings.TrimSuffix(s.CacheURL, "/") + "/")
	if err != nil {
		return nil, fmt.Errorf("%w: cache URL: %v", ErrSubstitute, err)
	}
	ref, err := url.Parse(rel)
	if err != nil {
		return nil, fmt.Errorf("%w: URL %q: %v", ErrSubstitute, rel, err)
	}
	u := base.ResolveReference(ref)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: %s: %s", ErrSubstitute, u, resp.Status)
	}
	return resp, nil
}

// narinfo fetches and checks the narinfo of storePath.
func (s *Substituter) narinfo(ctx context.Context, storePath string, keys []signature.PublicKey) (*narinfo.NarInfo, error) {
	sp, err := parseStorePath(storePath)
	if err != nil {
		return nil, fmt.Errorf("%w: store path %q: %v", ErrSubstitute, storePath, err)
	}
	resp, err := s.get(ctx, nixhashPart(sp)+".narinfo")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	ni, err := narinfo.Parse(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%w: narinfo of %s: %v", ErrSubstitute, storePath, err)
	}
	if ni.StorePath != storePath {
		return nil, fmt.Errorf("%w: narinfo for %s describes %s", ErrSubstitute, storePath, ni.StorePath)
	}
	if ni.NarHash == nil || ni.NarHash.Algo() != nixhash.SHA256 {
		return nil, fmt.Errorf("%w: narinfo of %s has no sha256 NarHash", ErrSubstitute, storePath)
	}
	for _, r := range ni.References {
		if _, err := parseStorePath("/nix/store/" + r); err != nil {
			return nil, fmt.Errorf("%w: narinfo of %s: reference %q: %v", ErrSubstitute, storePath, r, err)
		}
	}
	if !signature.VerifyFirst(ni.Fingerprint(), ni.Signatures, keys) {
		return nil, fmt.Errorf("%w: %s", ErrUntrusted, storePath)
	}
	return ni, nil
}

// fetch downloads, verifies and unpacks one NAR, then renames it into place.
func (s *Substituter) fetch(ctx context.Context, ni *narinfo.NarInfo, storeDir string) error {
	resp, err := s.get(ctx, ni.URL)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body io.Reader = bufio.NewReaderSize(resp.Body, 256<<10)
	switch ni.Compression {
	case "none", "":
	case "xz":
		xr, err := xz.NewReader(body)
		if err != nil {
			return fmt.Errorf("%w: %s: xz: %v", ErrSubstitute, ni.StorePath, err)
		}
		body = xr
	case "zstd":
		zr, err := zstd.NewReader(body)
		if err != nil {
			return fmt.Errorf("%w: %s: zstd: %v", ErrSubstitute, ni.StorePath, err)
		}
		defer zr.Close()
		body = zr
	default:
		return fmt.Errorf("%w: %s: compression %q not supported", ErrSubstitute, ni.StorePath, ni.Compression)
	}
	h := sha256.New()
	counted := &narHashingReader{r: io.LimitReader(body, int64(ni.NarSize)+1), h: h}

	base := path.Base(ni.StorePath)
	tmp := filepath.Join(storeDir, ".nixboot-tmp-"+base)
	if err := os.RemoveAll(tmp); err != nil { // a leftover of an interrupted run
		return fmt.Errorf("removing %s: %w", tmp, err)
	}
	if err := unpackNAR(counted, tmp); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("%w: %s: %v", ErrSubstitute, ni.StorePath, err)
	}
	// Drain what the NAR reader did not consume, so the hash covers it all.
	if _, err := io.Copy(io.Discard, counted); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("%w: %s: %v", ErrSubstitute, ni.StorePath, err)
	}
	got := nixhash.MustNewHashWithEncoding(nixhash.SHA256, h.Sum(nil), nixhash.NixBase32, true).String()
	want := ni.NarHash.Format(nixhash.NixBase32, true)
	if uint64(counted.n) != ni.NarSize || got != want {
		os.RemoveAll(tmp)
		return fmt.Errorf("%w: %s: got %d bytes %s, narinfo says %d bytes %s", ErrNarMismatch, ni.StorePath, counted.n, got, ni.NarSize, want)
	}
	if err := os.Rename(tmp, filepath.Join(storeDir, base)); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("moving %s into place: %w", ni.StorePath, err)
	}
	s.log("store path fetched", "path", ni.StorePath, "bytes", ni.NarSize)
	return nil
}

type narHashingReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func (r *narHashingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.h.Write(p[:n])
	r.n += int64(n)
	return n, err
}

// unpackNAR writes a NAR's tree at dst (which must not exist), confined
// to dst, with the modes Nix gives store contents.
func unpackNAR(r io.Reader, dst string) error {
	nr, err := nar.NewReader(r)
	if err != nil {
		return err
	}
	defer nr.Close()
	first := true
	var root *os.Root
	var dirs []string
	for {
		hdr, err := nr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if first {
			first = false
			if hdr.Path != "/" {
				return fmt.Errorf("NAR does not start at its root")
			}
			switch hdr.Type {
			case nar.TypeDirectory:
				if err := os.Mkdir(dst, 0o755); err != nil {
					return err
				}
				if root, err = os.OpenRoot(dst); err != nil {
					return err
				}
				defer root.Close()
				dirs = append(dirs, ".")
				continue
			case nar.TypeSymlink:
				return os.Symlink(hdr.LinkTarget, dst)
			case nar.TypeRegular:
				return writeRegular(nil, dst, hdr, nr)
			}
			return fmt.Errorf("unknown NAR node type %v", hdr.Type)
		}
		if root == nil {
			return fmt.Errorf("NAR has entries after a non-directory root")
		}
		rel := strings.TrimPrefix(hdr.Path, "/")
		if !filepath.IsLocal(rel) {
			return fmt.Errorf("NAR entry %q leaves its root", hdr.Path)
		}
		switch hdr.Type {
		case nar.TypeDirectory:
			if err := root.Mkdir(rel, 0o755); err != nil {
				return err
			}
			dirs = append(dirs, rel)
		case nar.TypeSymlink:
			if err := root.Symlink(hdr.LinkTarget, rel); err != nil {
				return err
			}
		case nar.TypeRegular:
			if err := writeRegular(root, rel, hdr, nr); err != nil {
				return err
			}
		default:
			return fmt.Errorf("NAR entry %q has unknown type %v", hdr.Path, hdr.Type)
		}
	}
	// Directories become read-only last, as in the store; children first.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := root.Chmod(dirs[i], 0o555); err != nil {
			return err
		}
	}
	return nil
}

func writeRegular(root *os.Root, name string, hdr *nar.Header, r io.Reader) error {
	mode := os.FileMode(0o444)
	if hdr.Executable {
		mode = 0o555
	}
	var f *os.File
	var err error
	if root == nil {
		f, err = os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	} else {
		f, err = root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	}
	if err != nil {
		return err
	}
	n, err := io.Copy(f, r)
	if err == nil && n != hdr.Size {
		err = fmt.Errorf("NAR entry %q: %d bytes, header says %d", hdr.Path, n, hdr.Size)
	}
	if err == nil {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// topoSort orders paths so that each comes after its references.
func topoSort(paths []string, infos map[string]*narinfo.NarInfo) []string {
	state := map[string]int{} // 0 new, 1 visiting, 2 done
	var out []string
	var visit func(p string)
	visit = func(p string) {
		if state[p] != 0 {
			return
		}
		state[p] = 1
		if ni := infos[p]; ni != nil {
			for _, r := range ni.References {
				if rp := "/nix/store/" + r; rp != p {
					visit(rp)
				}
			}
		}
		state[p] = 2
		out = append(out, p)
	}
	for _, p := range paths {
		visit(p)
	}
	return out
}

// WriteRegistration writes infos in the registration format that
// `nix-store --load-db` reads (and NixOS loads from /nix-path-registration
// on first boot), so the installed system's Nix knows the fetched paths.
func WriteRegistration(w io.Writer, infos []StorePathInfo) error {
	bw := bufio.NewWriter(w)
	for _, p := range infos {
		fmt.Fprintf(bw, "%s\n%s\n%d\n%s\n%d\n", p.Path, p.NarHash, p.NarSize, p.Deriver, len(p.References))
		for _, r := range p.References {
			fmt.Fprintf(bw, "%s\n", r)
		}
	}
	return bw.Flush()
}
