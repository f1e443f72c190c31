package netboot

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nixboot/nixboot/ipxe"
)

// HTTP paths served by HTTPHandler.
const (
	// ScriptPath is the iPXE script: without a "mac" query it is the generic
	// first script that chains to itself with the machine's identity
	// (?mac=${mac}&uuid=${uuid}&arch=${buildarch}); with one, the machine's
	// boot script from the inventory.
	ScriptPath = "/boot.ipxe"
	// BeaconPath records boot progress: GET /beacon?mac=M&phase=done.
	BeaconPath = "/beacon"
	// machinePrefix serves a machine's kernel and initrds:
	// /m/<mac>/kernel and /m/<mac>/initrd/<index>, with the identity query.
	machinePrefix = "/m/"
)

// maxQueryValue bounds identity values taken from a request.
const maxQueryValue = 128

// HTTPHandler serves network boot over HTTP: iPXE scripts per machine (the
// chain pattern), the kernels and initrds its inventory names, a progress
// beacon, and everything else from Files. Assets are served with
// http.ServeContent, so Range, If-Modified-Since, If-None-Match and ETag
// work, and every length is known in advance.
//
// Set the fields before serving and don't change them afterwards.
type HTTPHandler struct {
	// Inventory decides what machines boot. nil serves no scripts.
	Inventory Inventory
	// Files serves every other path (loaders, assets), cleaned with
	// CleanName first. nil serves nothing else.
	Files Source
	// BaseURL is the URL machines reach this handler at, without a trailing
	// slash, e.g. "http://10.0.0.1:8080". "" means "http://" + the request's
	// Host header.
	BaseURL string
	// Client fetches Image.Upstream images. nil means http.DefaultClient,
	// which has no overall timeout: a large initrd may take minutes, and
	// the machine's request ends the fetch when the machine goes away.
	Client *http.Client
	// Tracker, when set, records script, kernel, initrd and done phases.
	Tracker *Tracker
	// Observer, when set, is told about every request.
	Observer Observer
	// Logger: Info per boot decision and per kernel/initrd, Debug per
	// request, Error for failures of ours. nil discards.
	Logger *slog.Logger
}

// ServeHTTP routes the request.
func (h *HTTPHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	cw := &countingWriter{ResponseWriter: w, status: http.StatusOK}
	var err error
	name := r.URL.Path
	switch {
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(cw, "method not allowed", http.StatusMethodNotAllowed)
		err = fmt.Errorf("%w: method %s", ErrRefused, r.Method)
	case r.URL.Path == ScriptPath && h.Inventory != nil:
		err = h.serveScript(cw, r)
	case r.URL.Path == BeaconPath:
		err = h.serveBeacon(cw, r)
	case strings.HasPrefix(r.URL.Path, machinePrefix) && h.Inventory != nil:
		err = h.serveImage(cw, r)
	default:
		name, err = h.serveFile(cw, r)
	}
	if h.Observer != nil {
		h.Observer.Observe(Event{Proto: HTTP, Name: name, Remote: remoteAddr(r), Bytes: cw.n, Duration: time.Since(start), Err: err})
	}
}

func (h *HTTPHandler) log() *slog.Logger { return orDiscard(h.Logger) }

func remoteAddr(r *http.Request) netip.AddrPort {
	ap, _ := netip.ParseAddrPort(r.RemoteAddr)
	return unmapped(ap)
}

func (h *HTTPHandler) baseURL(r *http.Request) string {
	if h.BaseURL != "" {
		return strings.TrimSuffix(h.BaseURL, "/")
	}
	return "http://" + r.Host
}

// machineFromQuery reads the identity the chain pattern sends. The MAC is
// required; the other values are optional and bounded.
func machineFromQuery(q url.Values, r *http.Request) (*Machine, error) {
	mac, err := net.ParseMAC(q.Get("mac"))
	if err != nil || len(mac) != 6 {
		return nil, fmt.Errorf("%w: mac %q", ErrUnknownMachine, q.Get("mac"))
	}
	m := &Machine{MAC: mac, IP: remoteAddr(r).Addr()}
	for _, f := range []struct {
		key string
		dst *string
	}{{"uuid", &m.UUID}, {"arch", &m.Arch}, {"hostname", &m.Hostname}} {
		v := q.Get(f.key)
		if len(v) > maxQueryValue || strings.ContainsFunc(v, notIdentityChar) {
			return nil, fmt.Errorf("%w: %s %q", ErrBadName, f.key, v)
		}
		*f.dst = v
	}
	return m, nil
}

// notIdentityChar reports whether r cannot stand in an identity value from a
// request. What iPXE's ${uuid}, ${buildarch} and ${hostname} expand to on
// real machines is letters, digits, '-', '.' and '_' (RFC 1123 host names,
// plus the '_' some DHCP servers hand out). Anything else (quotes, '=', ',',
// '$', bytes that are not ASCII) is refused with 400 here, before it can
// reach a kernel command line template or make the script fail to render.
func notIdentityChar(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_')
}

// identityQuery is the query that identifies m in kernel and initrd URLs, so
// that they resolve to the same decision as the script did.
func identityQuery(m *Machine) string {
	q := url.Values{}
	for k, v := range map[string]string{"uuid": m.UUID, "arch": m.Arch, "hostname": m.Hostname} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// GenericScript renders the chain pattern's first script: it asks the server
// at base for the machine's own script, with iPXE filling in the identity.
func GenericScript(base string) ([]byte, error) {
	s := &ipxe.Script{Commands: []ipxe.Command{
		ipxe.Chain{URL: ipxe.MachineScriptURL(strings.TrimSuffix(base, "/") + ScriptPath)},
	}}
	return s.Render()
}

func (h *HTTPHandler) serveScript(w http.ResponseWriter, r *http.Request) error {
	base := h.baseURL(r)
	q := r.URL.Query()
	var body []byte
	var err error
	if q.Get("mac") == "" {
		body, err = GenericScript(base)
		if err != nil {
			h.log().Error("http: generic script", "err", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
			return err
		}
	} else {
		m, err := machineFromQuery(q, r)
		if err != nil {
			http.Error(w, "bad machine identity", http.StatusBadRequest)
			return err
		}
		b, err := h.Inventory.Boot(r.Context(), m)
		if err != nil {
			return h.inventoryError(w, m, err)
		}
		body, err = MachineScript(base, m, b)
		if err != nil {
			h.log().Error("http: rendering boot script", "mac", m.MAC.String(), "profile", b.Profile, "err", err)
			http.Error(w, "cannot render boot script", http.StatusInternalServerError)
			return err
		}
		h.log().Info("http: boot script", "mac", m.MAC.String(), "arch", m.Arch, "profile", b.Profile, "remote", r.RemoteAddr)
		if h.Tracker != nil && r.Method == http.MethodGet {
			h.Tracker.Mark(m.MAC, m.IP, b.Profile, PhaseScript)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	return nil
}

func (h *HTTPHandler) inventoryError(w http.ResponseWriter, m *Machine, err error) error {
	if errors.Is(err, ErrUnknownMachine) {
		h.log().Info("http: machine not served", "mac", m.MAC.String(), "err", err)
		http.Error(w, "not found", http.StatusNotFound)
		return err
	}
	h.log().Error("http: inventory failed", "mac", m.MAC.String(), "err", err)
	http.Error(w, "inventory unavailable", http.StatusBadGateway)
	return err
}

// imageURL is where machine m fetches image i of kind ("kernel" or
// "initrd/<n>").
func imageURL(base string, m *Machine, img Image, kind string) string {
	if img.URL != "" {
		return img.URL
	}
	return base + machinePrefix + m.MAC.String() + "/" + kind + identityQuery(m)
}

func imageName(img Image) string {
	if img.Name != "" {
		return img.Name
	}
	src := img.Path
	if src == "" {
		src = cmp.Or(img.Upstream, img.URL)
		if u, err := url.Parse(src); err == nil {
			src = u.Path
		}
	}
	if i := strings.LastIndexByte(src, '/'); i >= 0 {
		src = src[i+1:]
	}
	return src
}

// BootSpecFor returns the ipxe.BootSpec that boots b on machine m from the
// server at base: kernel and initrd URLs (the server's own for Path and
// Upstream images),
// image names, and the command line.
func BootSpecFor(base string, m *Machine, b *Boot) ipxe.BootSpec {
	spec := ipxe.BootSpec{Kernel: imageURL(base, m, b.Kernel, "kernel"), Args: b.Args}
	for i, img := range b.Initrds {
		spec.Initrds = append(spec.Initrds, ipxe.ImageRef{
			URL:  imageURL(base, m, img, "initrd/"+strconv.Itoa(i)),
			Name: imageName(img),
		})
	}
	return spec
}

// MachineScript renders machine m's boot script for decision b: the profile's
// template when it has one, otherwise kernel, initrds, a beacon marking the
// boot as done, and boot.
func MachineScript(base string, m *Machine, b *Boot) ([]byte, error) {
	base = strings.TrimSuffix(base, "/")
	spec := BootSpecFor(base, m, b)
	if b.Script != nil {
		var buf bytes.Buffer
		err := b.Script.Execute(&buf, &ScriptData{
			Machine: m, Facts: m.Facts(), Vars: b.Vars, Spec: spec, Message: b.Message, BaseURL: base,
		})
		if err != nil {
			return nil, fmt.Errorf("netboot: profile %q: iPXE template: %w", b.Profile, err)
		}
		return buf.Bytes(), nil
	}
	cmds, err := spec.Commands()
	if err != nil {
		return nil, fmt.Errorf("netboot: profile %q: %w", b.Profile, err)
	}
	s := &ipxe.Script{}
	if b.Message != "" {
		s.Append(ipxe.Echo{Text: ipxe.Lit(b.Message)})
	}
	beacon := base + BeaconPath + "?" + url.Values{"mac": {m.MAC.String()}, "phase": {string(PhaseDone)}}.Encode()
	// The beacon must never stop a boot: "|| goto" skips on failure.
	s.Append(cmds[:len(cmds)-1]...)
	s.Append(
		ipxe.Raw{Line: "imgfetch --name nixboot-beacon " + beacon + " && imgfree nixboot-beacon ||"},
		cmds[len(cmds)-1],
	)
	return s.Render()
}

func (h *HTTPHandler) serveBeacon(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	mac, err := net.ParseMAC(q.Get("mac"))
	if err != nil || len(mac) != 6 {
		http.Error(w, "bad mac", http.StatusBadRequest)
		return fmt.Errorf("%w: beacon mac %q", ErrUnknownMachine, q.Get("mac"))
	}
	phase := Phase(q.Get("phase"))
	if rank(phase) < 0 {
		http.Error(w, "bad phase", http.StatusBadRequest)
		return fmt.Errorf("netboot: beacon phase %q", phase)
	}
	if h.Tracker != nil {
		h.Tracker.Mark(mac, remoteAddr(r).Addr(), "", phase)
	}
	h.log().Info("http: beacon", "mac", mac.String(), "phase", phase, "remote", r.RemoteAddr)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, "ok\n")
	return nil
}

// serveImage serves /m/<mac>/kernel, /m/<mac>/initrd/<n> and
// /m/<mac>/file/<n>.
func (h *HTTPHandler) serveImage(w http.ResponseWriter, r *http.Request) error {
	rest := strings.TrimPrefix(r.URL.Path, machinePrefix)
	macStr, kind, _ := strings.Cut(rest, "/")
	q := r.URL.Query()
	q.Set("mac", macStr)
	m, err := machineFromQuery(q, r)
	if err != nil {
		http.NotFound(w, r)
		return err
	}
	b, err := h.Inventory.Boot(r.Context(), m)
	if err != nil {
		return h.inventoryError(w, m, err)
	}
	var img Image
	phase := PhaseKernel
	switch {
	case kind == "kernel":
		img = b.Kernel
	case strings.HasPrefix(kind, "initrd/"):
		i, err := strconv.Atoi(strings.TrimPrefix(kind, "initrd/"))
		if err != nil || i < 0 || i >= len(b.Initrds) {
			http.NotFound(w, r)
			return fmt.Errorf("%w: %s", fs.ErrNotExist, r.URL.Path)
		}
		img, phase = b.Initrds[i], PhaseInitrd
	case strings.HasPrefix(kind, "file/"):
		i, err := strconv.Atoi(strings.TrimPrefix(kind, "file/"))
		if err != nil || i < 0 || i >= len(b.Files) {
			http.NotFound(w, r)
			return fmt.Errorf("%w: %s", fs.ErrNotExist, r.URL.Path)
		}
		img, phase = b.Files[i], "" // no boot phase of its own
	default:
		http.NotFound(w, r)
		return fmt.Errorf("%w: %s", fs.ErrNotExist, r.URL.Path)
	}
	what := cmp.Or(string(phase), "file")
	mark := h.Tracker != nil && r.Method == http.MethodGet && phase != ""
	if img.Upstream != "" {
		if mark {
			h.Tracker.Mark(m.MAC, m.IP, b.Profile, phase)
		}
		n, err := h.proxyImage(w, r, img.Upstream)
		attrs := []any{"mac", m.MAC.String(), "profile", b.Profile, "upstream", redactURL(img.Upstream), "bytes", n, "range", r.Header.Get("Range")}
		if err != nil {
			h.log().Error("http: "+what+" from upstream failed", append(attrs, "err", err)...)
			return err
		}
		h.log().Info("http: "+what, attrs...)
		return nil
	}
	if img.Path == "" {
		http.NotFound(w, r)
		return fmt.Errorf("%w: %s is served elsewhere", fs.ErrNotExist, r.URL.Path)
	}
	f, err := OpenImage(img)
	if err != nil {
		h.log().Error("http: opening image", "mac", m.MAC.String(), "profile", b.Profile, "file", img.Path, "err", err)
		http.Error(w, "cannot read file", http.StatusInternalServerError)
		return err
	}
	defer f.close()
	if mark {
		h.Tracker.Mark(m.MAC, m.IP, b.Profile, phase)
	}
	h.log().Info("http: "+what, "mac", m.MAC.String(), "profile", b.Profile, "file", img.Path, "bytes", f.Size, "range", r.Header.Get("Range"))
	serveFile(w, r, f)
	return nil
}

// OpenImage opens an inventory image that lives on the server's disk. The
// path is the inventory's, never a client's.
func OpenImage(img Image) (*File, error) {
	f, err := os.Open(img.Path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("netboot: %s is not a regular file", img.Path)
	}
	if len(img.Append) > 0 {
		return openAppended(f, st, img), nil
	}
	return &File{Content: f, Size: st.Size(), ModTime: st.ModTime(), Closer: f}, nil
}

func (h *HTTPHandler) serveFile(w http.ResponseWriter, r *http.Request) (string, error) {
	raw := r.URL.Path
	if h.Files == nil {
		http.NotFound(w, r)
		return raw, fmt.Errorf("%w: %s", fs.ErrNotExist, raw)
	}
	name, err := CleanName(raw)
	if err != nil {
		http.NotFound(w, r)
		return raw, err
	}
	f, err := h.Files.Open(r.Context(), &Request{Proto: HTTP, Name: name, Remote: remoteAddr(r), Query: r.URL.Query()})
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			h.log().Debug("http: not found", "file", name, "remote", r.RemoteAddr)
			http.NotFound(w, r)
		} else {
			h.log().Error("http: open failed", "file", name, "remote", r.RemoteAddr, "err", err)
			http.Error(w, "cannot read file", http.StatusInternalServerError)
		}
		return name, err
	}
	defer f.close()
	h.log().Debug("http: file", "file", name, "remote", r.RemoteAddr, "bytes", f.Size)
	if h.Tracker != nil && isLoader(name) {
		if mac := h.Tracker.MACForIP(remoteAddr(r).Addr()); mac != nil {
			h.Tracker.Mark(mac, netip.Addr{}, "", PhaseLoader)
		}
	}
	serveFile(w, r, f)
	return name, nil
}

// isLoader reports whether name looks like a first-stage network boot
// loader, for boot-state tracking.
func isLoader(name string) bool {
	for _, suf := range []string{".efi", ".kpxe", ".pxe", ".0", ".lkrn"} {
		if strings.HasSuffix(name, suf) {
			return true
		}
	}
	return false
}

func serveFile(w http.ResponseWriter, r *http.Request, f *File) {
	if f.ETag != "" {
		w.Header().Set("ETag", f.ETag)
	} else if !f.ModTime.IsZero() {
		// A weak validator from size and time lets If-None-Match work for
		// files on disk too.
		w.Header().Set("ETag", fmt.Sprintf(`"%x-%x"`, f.ModTime.UnixNano(), f.Size))
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	content := f.Content
	// http.ServeContent seeks to find the size; a SectionReader caps it at
	// Size. An *os.File is passed as it is so that the copy can use
	// sendfile(2).
	if _, isFile := content.(*os.File); !isFile {
		if ra, ok := content.(io.ReaderAt); ok {
			content = io.NewSectionReader(ra, 0, f.Size)
		}
	}
	http.ServeContent(w, r, "", f.ModTime, content)
}

type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (c *countingWriter) WriteHeader(code int) {
	c.status = code
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

// ReadFrom keeps sendfile(2) for files: http.ServeContent copies with
// io.Copy, which uses the ResponseWriter's ReaderFrom when there is one.
func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	n, err := io.Copy(c.ResponseWriter, r)
	c.n += n
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
