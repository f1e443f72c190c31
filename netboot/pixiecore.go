package netboot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/nixboot/nixboot/ipxe"
)

// PixiecoreAPI defaults.
const (
	DefaultAPITimeout  = 3 * time.Second
	DefaultAPICacheTTL = 5 * time.Minute
	maxAPIResponse     = 1 << 20
	maxAPICache        = 4096
)

// PixiecoreAPI is an Inventory backed by a server speaking pixiecore's API
// mode: GET <BaseURL>/v1/boot/<mac> answers 200 with
//
//	{"kernel": "URL", "initrd": ["URL", ...], "cmdline": "...", "message": "..."}
//
// or 404 for a machine that must not boot. URLs may be relative to the API
// URL. As pixiecore does, the server fetches the kernel and initrds itself
// and streams them to the machine under the machine's own URL
// (Image.Upstream, served by HTTPHandler): the machine needs to reach only
// this server, and the API's URLs may be HTTPS or reachable from the server
// alone. Set Direct to have machines fetch them from the API's URLs
// instead. file:// URLs name files on the server's disk, under FileRoot
// only. Pixiecore's {{ URL "..." }} in a cmdline becomes a URL on this
// server (see ServerURL) that streams the named file; any other template
// (pixiecore's {{ ID }}, say) is refused with ErrBackend, never booted with
// the braces in the command line.
//
// A slow backend must never stall a boot: each call is bounded by Timeout,
// answers are cached for CacheTTL, and when the backend fails or times out a
// previous answer for the machine (however old) is used instead. A backend
// call outlives the Boot call that started it (up to Timeout), so an answer
// that comes later than the caller could wait, for example after the DHCP
// server's PolicyTimeout, is still cached for the client's next try;
// concurrent calls for one machine share one backend call.
//
// Set the fields before first use and don't change them afterwards; Boot is
// safe for concurrent use.
type PixiecoreAPI struct {
	BaseURL  string        // required, e.g. "http://10.0.0.5:8081"
	Client   *http.Client  // nil means http.DefaultClient's transport with Timeout
	Timeout  time.Duration // per backend call; 0 means DefaultAPITimeout
	CacheTTL time.Duration // 0 means DefaultAPICacheTTL
	Logger   *slog.Logger  // nil discards
	// Direct makes machines fetch kernels and initrds from the API's
	// http:// URLs themselves (Image.URL) instead of through the server
	// (Image.Upstream). https:// URLs are refused then: iPXE builds
	// without HTTPS support are common.
	Direct bool
	// ServerURL is the base URL machines reach this server's HTTPHandler at
	// (Server.HTTPURL), for pixiecore's {{ URL "..." }} in a cmdline: each
	// becomes <ServerURL>/m/<mac>/file/<n>, where the server streams the
	// named file (Boot.Files). "" refuses cmdlines with templates.
	ServerURL string
	// FileRoot, when set, lets the API name files on the server's disk with
	// file:// URLs, as pixiecore allows. Only regular files under FileRoot
	// (after resolving symbolic links) are served, so an answer cannot
	// reach the rest of the disk. "" refuses file:// URLs.
	FileRoot string

	mu       sync.Mutex
	cache    map[string]apiEntry
	inflight singleflight.Group // backend calls, by MAC
}

type apiEntry struct {
	boot    *Boot
	err     error // ErrUnknownMachine answers are cached too
	fetched time.Time
}

type apiResponse struct {
	Kernel  string   `json:"kernel"`
	Initrd  []string `json:"initrd"`
	Cmdline string   `json:"cmdline"`
	Message string   `json:"message"`
}

// Boot asks the API about m, by MAC address.
func (p *PixiecoreAPI) Boot(ctx context.Context, m *Machine) (*Boot, error) {
	if len(m.MAC) == 0 {
		return nil, fmt.Errorf("%w: pixiecore API needs a MAC address", ErrUnknownMachine)
	}
	key := m.MAC.String()
	ttl := orDefault(p.CacheTTL, DefaultAPICacheTTL)
	p.mu.Lock()
	e, cached := p.cache[key]
	if cached && time.Since(e.fetched) < ttl {
		p.mu.Unlock()
		return cloneBoot(e.boot), e.err
	}
	p.mu.Unlock()
	// The call runs on its own goroutine, detached from ctx and bounded
	// by Timeout in fetch: the answer is worth keeping even when this
	// caller has given up on it.
	detached := context.WithoutCancel(ctx)
	ch := p.inflight.DoChan(key, func() (any, error) { return p.call(detached, key) })

	var b *Boot
	var err error
	select {
	case r := <-ch:
		b, _ = r.Val.(*Boot)
		err = r.Err
	case <-ctx.Done():
		err = fmt.Errorf("%w: pixiecore API: %s: %w", ErrBackend, key, context.Cause(ctx))
	}
	if err != nil && !errors.Is(err, ErrUnknownMachine) {
		if cached {
			orDiscard(p.Logger).Warn("pixiecore API failed, using the previous answer",
				"mac", key, "age", time.Since(e.fetched).Round(time.Second), "err", err)
			return cloneBoot(e.boot), e.err
		}
		return nil, err
	}
	return cloneBoot(b), err
}

// call runs one backend call for key and caches a definite answer (a boot
// or ErrUnknownMachine) before the callers waiting on it get it.
func (p *PixiecoreAPI) call(ctx context.Context, key string) (*Boot, error) {
	b, err := p.fetch(ctx, key)
	if err != nil && !errors.Is(err, ErrUnknownMachine) {
		return b, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cache == nil {
		p.cache = map[string]apiEntry{}
	}
	if len(p.cache) >= maxAPICache {
		ttl := orDefault(p.CacheTTL, DefaultAPICacheTTL)
		for k, old := range p.cache {
			if time.Since(old.fetched) >= ttl || len(p.cache) >= maxAPICache {
				delete(p.cache, k)
			}
		}
	}
	p.cache[key] = apiEntry{boot: b, err: err, fetched: time.Now()}
	return b, err
}

func cloneBoot(b *Boot) *Boot {
	if b == nil {
		return nil
	}
	c := *b
	c.Initrds = append([]Image(nil), b.Initrds...)
	c.Files = append([]Image(nil), b.Files...)
	c.Args = append(ipxe.Args(nil), b.Args...)
	return &c
}

func (p *PixiecoreAPI) fetch(ctx context.Context, mac string) (*Boot, error) {
	base, err := url.Parse(strings.TrimSuffix(p.BaseURL, "/") + "/v1/boot/")
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") {
		return nil, fmt.Errorf("%w: pixiecore API base URL %q", ErrConfig, p.BaseURL)
	}
	u := base.JoinPath(mac)
	ctx, cancel := context.WithTimeout(ctx, orDefault(p.Timeout, DefaultAPITimeout))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBackend, err)
	}
	client := p.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: GET %s: %w", ErrBackend, u, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("%w: %s: pixiecore API answered 404", ErrUnknownMachine, mac)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%w: GET %s: %s", ErrBackend, u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIResponse+1))
	if err != nil {
		return nil, fmt.Errorf("%w: GET %s: %w", ErrBackend, u, err)
	}
	if len(body) > maxAPIResponse {
		return nil, fmt.Errorf("%w: GET %s: response larger than %d bytes", ErrBackend, u, maxAPIResponse)
	}
	return p.parseResponse(body, u, mac)
}

// urlCall matches pixiecore's cmdline template call {{ URL "..." }}, the
// argument a Go string literal (interpreted or raw). No other template
// syntax is taken: a general template engine would let an answer run
// printf with any width, or loops.
var urlCall = regexp.MustCompile("\\{\\{\\s*URL\\s+(\"(?:[^\"\\\\]|\\\\.)*\"|`[^`]*`)\\s*\\}\\}")

// maxAPIFiles bounds the {{ URL }} calls of one cmdline.
const maxAPIFiles = 16

// parseResponse turns a pixiecore API answer for the machine mac into a
// Boot, resolving URLs against the request URL.
func (p *PixiecoreAPI) parseResponse(body []byte, from *url.URL, mac string) (*Boot, error) {
	var r apiResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBackend, from, err)
	}
	resolve := func(field, s string) (Image, error) {
		ref, err := url.Parse(s)
		if err != nil || s == "" {
			return Image{}, fmt.Errorf("%w: %s: %s %q is not a URL", ErrBackend, from, field, short(s))
		}
		abs := from.ResolveReference(ref)
		switch {
		case abs.Scheme == "file":
			path, err := p.localFile(abs)
			if err != nil {
				return Image{}, fmt.Errorf("%w: %s: %s: %w", ErrBackend, from, field, err)
			}
			return Image{Path: path}, nil
		case abs.Scheme == "http" && p.Direct:
			return Image{URL: abs.String()}, nil
		case (abs.Scheme == "http" || abs.Scheme == "https") && !p.Direct:
			return Image{Upstream: abs.String()}, nil
		}
		return Image{}, fmt.Errorf("%w: %s: %s %q is not an http URL", ErrBackend, from, field, short(s))
	}
	k, err := resolve("kernel", r.Kernel)
	if err != nil {
		return nil, err
	}
	b := &Boot{Profile: "pixiecore-api", Kernel: k, Message: r.Message}
	for i, s := range r.Initrd {
		img, err := resolve(fmt.Sprintf("initrd[%d]", i), s)
		if err != nil {
			return nil, err
		}
		img.Name = fmt.Sprintf("initrd%d", i)
		b.Initrds = append(b.Initrds, img)
	}
	cmdline, err := p.expandURLs(r.Cmdline, mac, b, resolve)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: cmdline: %w", ErrBackend, from, err)
	}
	args, err := ipxe.ParseArgs(cmdline)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: cmdline: %w", ErrBackend, from, err)
	}
	b.Args = args
	if r.Message != "" {
		s := &ipxe.Script{Commands: []ipxe.Command{ipxe.Echo{Text: ipxe.Lit(r.Message)}}}
		if _, err := s.Render(); err != nil {
			return nil, fmt.Errorf("%w: %s: message: %w", ErrBackend, from, err)
		}
	}
	return b, nil
}

// expandURLs replaces each {{ URL "..." }} of cmdline with the machine's
// URL for the file it names, which it adds to b.Files; with Direct, an
// http:// URL stays as it is, as pixiecore would not proxy it either.
func (p *PixiecoreAPI) expandURLs(cmdline, mac string, b *Boot, resolve func(field, s string) (Image, error)) (string, error) {
	if !strings.Contains(cmdline, "{{") {
		return cmdline, nil
	}
	if p.ServerURL == "" {
		return "", fmt.Errorf("%q uses pixiecore's {{ URL }}, which needs PixiecoreAPI.ServerURL", short(cmdline))
	}
	var err error
	out := urlCall.ReplaceAllStringFunc(cmdline, func(call string) string {
		if err != nil {
			return ""
		}
		var target string
		if target, err = strconv.Unquote(urlCall.FindStringSubmatch(call)[1]); err != nil {
			err = fmt.Errorf("%s: %w", short(call), err)
			return ""
		}
		var img Image
		if img, err = resolve("{{ URL }}", target); err != nil {
			return ""
		}
		if img.URL != "" {
			return img.URL
		}
		if len(b.Files) == maxAPIFiles {
			err = fmt.Errorf("more than %d {{ URL }} calls", maxAPIFiles)
			return ""
		}
		b.Files = append(b.Files, img)
		return strings.TrimSuffix(p.ServerURL, "/") + machinePrefix + mac + "/file/" + strconv.Itoa(len(b.Files)-1)
	})
	if err != nil {
		return "", err
	}
	if strings.Contains(out, "{{") {
		return "", fmt.Errorf("%q uses a template function other than URL, which is not supported", short(cmdline))
	}
	return out, nil
}

// localFile is the file a file:// URL names, with symbolic links resolved,
// if it is a regular file under FileRoot.
func (p *PixiecoreAPI) localFile(u *url.URL) (string, error) {
	if p.FileRoot == "" {
		return "", fmt.Errorf("file URL %q: PixiecoreAPI.FileRoot is not set", short(u.String()))
	}
	if u.Host != "" && u.Host != "localhost" {
		return "", fmt.Errorf("file URL %q names another host", short(u.String()))
	}
	root, err := filepath.EvalSymlinks(p.FileRoot)
	if err != nil {
		return "", fmt.Errorf("FileRoot: %w", err)
	}
	path, err := filepath.EvalSymlinks(filepath.FromSlash(u.Path))
	if err != nil {
		return "", err
	}
	rel, err := filepath.Rel(root, path)
	if err != nil || !filepath.IsLocal(rel) {
		return "", fmt.Errorf("file URL %q is outside FileRoot %s", short(u.String()), p.FileRoot)
	}
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("file URL %q is not a regular file", short(u.String()))
	}
	return path, nil
}

// short cuts an API-supplied string for an error message.
func short(s string) string {
	const limit = 120
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}
