package netboot

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// Headers passed between the machine and an Upstream image's server. The
// request's ask for a part or for a changed file; the answer's length, part
// and validators. Nothing else crosses: no cookies, no authorization, no
// host of the machine's request.
var (
	proxyRequestHeaders  = []string{"Range", "If-Range", "If-None-Match", "If-Modified-Since"}
	proxyResponseHeaders = []string{"Content-Length", "Content-Range", "Accept-Ranges", "ETag", "Last-Modified"}
)

// proxyImage streams the image at upstream to w and returns the bytes
// written. Answers other than 200, 206, 304 and 416 become 502 for the
// machine. A fetch cut short mid-body leaves the machine a body shorter than
// its Content-Length, so it sees the failure rather than a truncated
// initrd that looks complete.
func (h *HTTPHandler) proxyImage(w http.ResponseWriter, r *http.Request, upstream string) (int64, error) {
	req, err := http.NewRequestWithContext(r.Context(), r.Method, upstream, nil)
	if err != nil {
		http.Error(w, "bad upstream", http.StatusBadGateway)
		return 0, fmt.Errorf("%w: upstream %s: %w", ErrBackend, redactURL(upstream), err)
	}
	for _, k := range proxyRequestHeaders {
		if v := r.Header.Values(k); len(v) > 0 {
			req.Header[k] = v
		}
	}
	// The bytes as stored: Go's transport would otherwise ask for gzip and
	// undo it, dropping the length and breaking ranges.
	req.Header.Set("Accept-Encoding", "identity")
	client := h.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		http.Error(w, "upstream unavailable", http.StatusBadGateway)
		return 0, fmt.Errorf("%w: upstream: %w", ErrBackend, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK, http.StatusPartialContent, http.StatusNotModified, http.StatusRequestedRangeNotSatisfiable:
	default:
		http.Error(w, "upstream failed", http.StatusBadGateway)
		return 0, fmt.Errorf("%w: upstream %s answered %s", ErrBackend, redactURL(upstream), resp.Status)
	}
	if enc := resp.Header.Get("Content-Encoding"); enc != "" && enc != "identity" {
		// Sent anyway: the length and ranges would be of the encoded
		// bytes, which the machine would take for the image.
		http.Error(w, "upstream failed", http.StatusBadGateway)
		return 0, fmt.Errorf("%w: upstream %s sent Content-Encoding %q", ErrBackend, redactURL(upstream), enc)
	}
	for _, k := range proxyResponseHeaders {
		if v := resp.Header.Values(k); len(v) > 0 {
			w.Header()[k] = v
		}
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(resp.StatusCode)
	if r.Method == http.MethodHead {
		return 0, nil
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("%w: upstream %s: after %d bytes: %w", ErrBackend, redactURL(upstream), n, err)
	}
	return n, nil
}

// redactURL hides a password in u for logs and errors.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	return p.Redacted()
}
