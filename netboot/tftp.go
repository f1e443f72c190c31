package netboot

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pin/tftp/v3"
)

// TFTP defaults, chosen for firmware: PXE ROMs and OVMF ask for 1468-byte
// blocks or less, and retry on their own, so the server gives up on a silent
// client after seconds rather than half a minute.
const (
	DefaultTFTPBlockSize    = 1468
	DefaultTFTPTimeout      = time.Second
	DefaultTFTPRetries      = 4
	DefaultTFTPMaxTransfers = 256
)

// shutdownPoll is how long a transfer of our own waits for an
// acknowledgement before it looks whether Serve's context was cancelled:
// it bounds how long a silent client delays Serve's return.
const shutdownPoll = 100 * time.Millisecond

// busyWarnEvery is how often at most a request dropped for want of a
// transfer slot is logged as a warning; the others are logged at Debug.
const busyWarnEvery = 10 * time.Second

// tftpReadBuffer is how much of a file a transfer reads at once: one read
// per block (1468 bytes) would cost a system call per packet for files on
// disk.
const tftpReadBuffer = 64 << 10

// TFTP block size limits (RFC 2348 allows 8..65464; below 512 the server
// simply keeps the classic 512).
const (
	minBlockSize = 512
	maxBlockSize = 65464
)

// TFTP error codes (RFC 1350 section 5).
const (
	tftpErrUndefined = 0
	tftpErrNotFound  = 1
	tftpErrAccess    = 2
	tftpErrIllegal   = 4
)

// Client-facing error texts: short and free of paths and internal detail.
// pin/tftp sends a read handler's error text verbatim, with code 1.
var (
	errClientNotFound = errors.New("file not found")
	errClientFailed   = errors.New("cannot read file")
	errClientShutdown = errors.New("server shutting down")
)

// TFTPServer serves files read-only over TFTP (RFC 1350 with the option
// extension of RFC 2347, blksize of RFC 2348, tsize and timeout of RFC 2349
// and windowsize of RFC 7440).
//
// Every request is checked and rewritten first: the name goes through
// CleanName (refused with "access violation"), the mode must be octet or
// netascii in any case (else "illegal operation"), option names are
// lower-cased, options other than these four are dropped, and blksize
// is clamped to BlockSize, so negotiation does not depend on the interface
// MTU or on timing. Write requests are refused. tsize is always answered
// when asked, from File.Size.
//
// On Linux the server sends octet transfers itself: lock-step, or in
// windows of up to 64 blocks (64 KiB) when the client asks for windowsize,
// from a blocking socket per transfer whose thread sleeps in the kernel
// until the acknowledgement arrives. It grants a timeout option of 1 to 255
// seconds as asked and retransmits at that interval instead of Timeout,
// still Retries times; other systems and netascii transfers leave both
// options out of the OACK. On loopback that made transfers about as fast
// as tftpd-hpa's or faster, where pin/tftp's sender, waiting in Go's
// netpoller for every block, had been slower (bench/serve/README.md). Duplicate acknowledgements are
// ignored, block numbers wrap from 65535 to 0, and a client whose port has
// closed ends its transfer at once. github.com/pin/tftp/v3 reads the
// requests, and sends netascii transfers (line-end conversion), every
// transfer whose socket could not be opened, and everything on other
// systems, where an empty file's tsize of 0 is left out of the OACK.
//
// Set the fields before calling Serve and don't change them afterwards.
type TFTPServer struct {
	// Conn is the socket requests arrive on, usually
	// net.ListenPacket("udp4", "10.0.0.1:69"). Required; Serve closes it.
	// Transfers use a new socket per transfer, as RFC 1350 prescribes, in
	// the network namespace Conn was created in (Linux), even when the
	// process runs in another one.
	Conn net.PacketConn
	// Files serves the names. Required.
	Files Source
	// BlockSize caps the negotiated block size. 0 means
	// DefaultTFTPBlockSize; otherwise 512..65464.
	BlockSize int
	// Timeout is the wait for an acknowledgement before retransmitting.
	// 0 means DefaultTFTPTimeout. A client's timeout option replaces it for
	// that client's transfer (Linux, octet).
	Timeout time.Duration
	// Retries is how many times a packet is retransmitted (each after
	// Timeout without an acknowledgement) before the transfer is abandoned
	// with an ERROR ("timeout"). 0 means DefaultTFTPRetries. A client that
	// stops answering, even right after its request, thus holds its
	// transfer slot for Timeout × (Retries+1): 5 s with the defaults, and
	// at most 255 s × (Retries+1) with the timeout it asked for.
	Retries int
	// MaxTransfers caps concurrent transfers. 0 means
	// DefaultTFTPMaxTransfers. While every slot is taken, read requests are
	// dropped unanswered, as dnsmasq does at its tftp-max: firmware (iPXE,
	// EDK2) treats an ERROR packet as the end of the boot attempt, but
	// retransmits a request that got no answer, and the retransmission is
	// served once a slot is free. A dropped request starts nothing and is
	// reported to Observer with ErrBusy.
	MaxTransfers int
	// Logger receives a line per transfer (Info), refused request (Debug)
	// and failure of ours (Error). nil discards.
	Logger *slog.Logger
	// Observer, when set, is told about every transfer and refusal.
	Observer Observer
}

type tftpConfig struct {
	blockSize    int
	timeout      time.Duration
	retries      int
	maxTransfers int
}

func (s *TFTPServer) config() (tftpConfig, error) {
	c := tftpConfig{
		blockSize:    orDefault(s.BlockSize, DefaultTFTPBlockSize),
		timeout:      orDefault(s.Timeout, DefaultTFTPTimeout),
		retries:      orDefault(s.Retries, DefaultTFTPRetries),
		maxTransfers: orDefault(s.MaxTransfers, DefaultTFTPMaxTransfers),
	}
	switch {
	case s.Conn == nil:
		return c, fmt.Errorf("%w: TFTPServer.Conn is nil", ErrConfig)
	case s.Files == nil:
		return c, fmt.Errorf("%w: TFTPServer.Files is nil", ErrConfig)
	case c.blockSize < minBlockSize || c.blockSize > maxBlockSize:
		return c, fmt.Errorf("%w: TFTPServer.BlockSize %d outside %d..%d", ErrConfig, c.blockSize, minBlockSize, maxBlockSize)
	case c.timeout < 0:
		return c, fmt.Errorf("%w: TFTPServer.Timeout %v is negative", ErrConfig, c.timeout)
	case c.retries < 0:
		return c, fmt.Errorf("%w: TFTPServer.Retries %d is negative", ErrConfig, c.retries)
	case c.maxTransfers < 0:
		return c, fmt.Errorf("%w: TFTPServer.MaxTransfers %d is negative", ErrConfig, c.maxTransfers)
	}
	return c, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Serve answers requests until ctx is cancelled, then drops new ones
// unanswered, ends every transfer in flight with an ERROR "server shutting
// down" and returns nil once they have ended. Transfers this package sends
// itself (octet on Linux) stop at once, or within 0.1 s while waiting for an
// acknowledgement (code 0). Those pin/tftp sends stop before their next
// block (code 1, the only code it sends); one waiting for a silent client
// can delay Serve by up to Timeout × (Retries+1). Any other return is a
// configuration or socket error. Serve always closes Conn.
func (s *TFTPServer) Serve(ctx context.Context) error {
	cfg, err := s.config()
	if err != nil {
		if s.Conn != nil {
			s.Conn.Close()
		}
		return err
	}
	log := orDiscard(s.Logger)
	// Transfers stop when stop is called: when ctx is cancelled, or when
	// Serve fails (see safeReader and lockstep).
	tctx, stop := context.WithCancel(ctx)
	defer stop()
	h := &tftpHandler{
		ctx:      tctx,
		files:    s.Files,
		log:      log,
		observer: s.Observer,
		sem:      make(chan struct{}, cfg.maxTransfers),
		cfg:      cfg,
	}
	filter := &requestFilter{PacketConn: s.Conn, blockSize: cfg.blockSize, log: log, observer: s.Observer, handler: h}
	srv := tftp.NewServer(h.read, nil)
	srv.SetHook(filter)
	// Deterministic block size: the filter below already clamps blksize, and
	// without MTU-based negotiation pin/tftp does not fall back to 512 when
	// a request races its start-up (or when Conn is not a *net.UDPConn).
	srv.SetBlockSizeNegotiation(false)
	if cfg.blockSize > minBlockSize {
		srv.SetBlockSize(cfg.blockSize)
	}
	srv.SetTimeout(cfg.timeout)
	srv.SetRetries(cfg.retries)
	srv.SetBackoff(func(int) time.Duration { return 0 })

	errc := make(chan error, 1)
	// Transfer sockets are opened by the goroutine running srv.Serve, so it
	// runs in the network namespace Conn belongs to.
	go inSocketNetns(s.Conn, func() { errc <- srv.Serve(filter) })
	select {
	case <-ctx.Done():
		srv.Shutdown() // waits for pin/tftp's transfers
		<-errc         // no request is read after this
		h.own.Wait()
		// pin/tftp closes the socket only if Serve had stored it already.
		s.Conn.Close()
		return nil
	case err := <-errc:
		stop()
		srv.Shutdown()
		h.own.Wait()
		s.Conn.Close()
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = net.ErrClosed
		}
		return fmt.Errorf("tftp: serve on %s: %w", s.Conn.LocalAddr(), err)
	}
}

type tftpHandler struct {
	ctx      context.Context
	files    Source
	log      *slog.Logger
	observer Observer
	// sem holds a token per transfer: requestFilter takes it when it
	// admits a request, the transfer gives it back when it ends.
	sem chan struct{}
	cfg tftpConfig
	// own counts the transfers this package sends itself (see serveOwn);
	// pin/tftp waits for its own.
	own sync.WaitGroup
	// blocking counts the own transfers on blocking sockets, at most
	// GOMAXPROCS (see dialTransfer).
	blocking atomic.Int32
	// active holds the own transfers by client address and port, to
	// recognise a retransmitted read request (see retransmitted).
	mu     sync.Mutex
	active map[netip.AddrPort]*ownRequest
}

// ownRequest is the canonical read request of an own transfer in
// flight; heard is set once anything has come back from the client.
type ownRequest struct {
	pkt   string
	heard atomic.Bool
}

// retransmitted reports whether the canonical read request pkt from
// remote repeats that of a transfer in flight to the same address and
// port that has not heard from the client yet: the client sent it again
// because our first answer was slow or lost, and a second transfer would
// only race the first (the client refuses one of them, and until then
// it holds a slot). A client that moved on (it acknowledged something,
// or sent an ERROR) starts a new transfer, even from the same port.
func (h *tftpHandler) retransmitted(pkt []byte, remote net.Addr) bool {
	ua, ok := remote.(*net.UDPAddr)
	if !ok {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.active[unmapped(ua.AddrPort())]
	return r != nil && r.pkt == string(pkt) && !r.heard.Load()
}

func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// heardConn marks its request heard on the first datagram it receives.
type heardConn struct {
	transferConn
	r *ownRequest
}

func (c heardConn) recv(p []byte, d time.Duration) (int, error) {
	n, err := c.transferConn.recv(p, d)
	if n > 0 && !c.r.heard.Load() {
		c.r.heard.Store(true)
	}
	return n, err
}

// tftpTransfer is one read transfer from admission to its Event. It holds
// the transfer slot requestFilter took when it admitted the request.
type tftpTransfer struct {
	h     *tftpHandler
	start time.Time
	ev    Event
	slot  bool  // the slot is still held
	attrs []any // logged with the transfer's end: what was negotiated
}

func (h *tftpHandler) newTransfer(name string, remote netip.AddrPort) *tftpTransfer {
	return &tftpTransfer{h: h, start: time.Now(), ev: Event{Proto: TFTP, Name: name, Remote: remote}, slot: true}
}

// releaseSlot gives the transfer slot back, once.
func (t *tftpTransfer) releaseSlot() {
	if t.slot {
		t.slot = false
		<-t.h.sem
	}
}

// finish gives the slot back and reports the transfer, in that order: whoever
// sees the Event can start another transfer at once.
func (t *tftpTransfer) finish(err error) {
	t.ev.Duration, t.ev.Err = time.Since(t.start), err
	t.releaseSlot()
	if t.h.observer != nil {
		t.h.observer.Observe(t.ev)
	}
}

// open checks the name and opens the file. On failure the transfer is
// finished and the error is the client's text; on success the caller
// closes f.
func (t *tftpTransfer) open() (f *File, clientErr error) {
	h, remote := t.h, t.ev.Remote
	name, err := CleanName(t.ev.Name)
	if err != nil {
		// The request filter refuses these first; this is defence in depth.
		h.log.Debug("tftp: refused name", "file", t.ev.Name, "remote", remote, "err", err)
		t.finish(err)
		return nil, errClientNotFound
	}
	t.ev.Name = name
	f, err = h.files.Open(h.ctx, &Request{Proto: TFTP, Name: name, Remote: remote})
	if err != nil {
		t.finish(err)
		if errors.Is(err, fs.ErrNotExist) {
			h.log.Debug("tftp: not found", "file", name, "remote", remote)
			return nil, errClientNotFound
		}
		h.log.Error("tftp: open failed", "file", name, "remote", remote, "err", err)
		return nil, errClientFailed
	}
	return f, nil
}

// done logs and reports the end of a transfer that sent n bytes. readErr
// is a failure reading the file (ours); err is how the transfer ended.
func (t *tftpTransfer) done(n int64, readErr, err error) {
	log, name, remote := t.h.log, t.ev.Name, t.ev.Remote
	t.ev.Bytes = n
	switch {
	case readErr != nil:
		log.Error("tftp: read failed", "file", name, "remote", remote, "bytes", n, "err", readErr)
		t.finish(readErr)
	case err != nil && isClientAbort(err):
		// OVMF asks for a file's size, then aborts with code 8: normal.
		log.Debug("tftp: client aborted", "file", name, "remote", remote, "bytes", n, "err", err)
		t.finish(fmt.Errorf("%w: %w", ErrAborted, err))
	case err != nil:
		log.Info("tftp: transfer failed", "file", name, "remote", remote, "bytes", n, "err", err)
		if !errors.Is(err, ErrAborted) {
			err = fmt.Errorf("%w: %w", ErrAborted, err)
		}
		t.finish(err)
	default:
		log.Info("tftp: sent", append([]any{"file", name, "remote", remote, "bytes", n, "duration", time.Since(t.start)}, t.attrs...)...)
		t.finish(nil)
	}
}

// read is pin/tftp's read handler, for the transfers this package does not
// send itself. It must either call rf.ReadFrom or return an error:
// returning nil without sending leaks the transfer's socket.
func (h *tftpHandler) read(filename string, rf io.ReaderFrom) error {
	var remote netip.AddrPort
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		a := ot.RemoteAddr()
		remote = a.AddrPort()
	}
	t := h.newTransfer(filename, remote)
	defer t.releaseSlot()
	f, clientErr := t.open()
	if clientErr != nil {
		return clientErr
	}
	defer f.close()
	if h.ctx.Err() != nil {
		// Not even the OACK: pin/tftp would wait for its acknowledgement.
		t.done(0, nil, errClientShutdown)
		return errClientShutdown
	}
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		ot.SetSize(f.Size)
	}
	// safeReader hides read errors from the client (pin/tftp would send their
	// text), ends the transfer once ctx is cancelled and, not being an
	// io.Seeker, keeps pin/tftp from seeking: the size was set above.
	sr := &safeReader{r: bufio.NewReaderSize(f.Content, tftpReadBuffer), done: h.ctx.Done()}
	n, err := rf.ReadFrom(sr)
	t.done(n, sr.err, err)
	// ReadFrom has closed the transfer's socket either way.
	return nil
}

// serveOwn sends a file itself, over conn, which it closes; r is its entry
// in h.active.
func (h *tftpHandler) serveOwn(conn transferConn, req readRequest, remote netip.AddrPort, blocking bool, r *ownRequest) {
	defer h.own.Done()
	defer conn.close()
	defer func() {
		h.mu.Lock()
		if key := unmapped(remote); h.active[key] == r {
			delete(h.active, key)
		}
		h.mu.Unlock()
	}()
	conn = heardConn{conn, r}
	if blocking {
		defer h.blocking.Add(-1)
	}
	t := h.newTransfer(req.name, remote)
	defer t.releaseSlot()
	f, clientErr := t.open()
	if clientErr != nil {
		// Code 1 for every refusal, as pin/tftp sends for its handler's.
		_ = conn.send(errorPacket(tftpErrNotFound, clientErr.Error()))
		return
	}
	defer f.close()
	l := &lockstep{conn: conn, timeout: h.cfg.timeout, retries: h.cfg.retries, done: h.ctx.Done()}
	n, err := l.sendFile(req, bufio.NewReaderSize(f.Content, tftpReadBuffer), f.Size)
	t.attrs = []any{"blksize", l.blksize, "windowsize", l.window, "timeout", l.timeout, "blocking", blocking}
	var readErr *tftpReadError
	if errors.As(err, &readErr) {
		t.done(n, readErr.err, err)
		return
	}
	t.done(n, nil, err)
}

// startOwn starts sending the file of the canonical read request pkt from
// remote itself, and reports whether it did; if not, pin/tftp serves the
// request. It runs on the goroutine reading the listening socket, which is
// in that socket's network namespace, so the transfer socket is too.
func (h *tftpHandler) startOwn(pkt []byte, local net.Addr, remote net.Addr) bool {
	ua, ok := remote.(*net.UDPAddr)
	if !ownSender || !ok {
		return false
	}
	req, err := parseReadRequest(pkt)
	// netascii needs line-ending conversion, which pin/tftp does.
	if err != nil || req.mode != "octet" {
		return false
	}
	ap := ua.AddrPort()
	blocking := h.blocking.Add(1) <= int32(runtime.GOMAXPROCS(0))
	if !blocking {
		h.blocking.Add(-1)
	}
	conn, err := dialTransfer(local, ap, blocking)
	if err != nil {
		if blocking {
			h.blocking.Add(-1)
		}
		h.log.Warn("tftp: own transfer socket failed, pin/tftp sends", "file", req.name, "remote", ap, "err", err)
		return false
	}
	r := &ownRequest{pkt: string(pkt)}
	h.mu.Lock()
	if h.active == nil {
		h.active = map[netip.AddrPort]*ownRequest{}
	}
	h.active[unmapped(ap)] = r
	h.mu.Unlock()
	h.own.Add(1)
	go h.serveOwn(conn, req, ap, blocking, r)
	return true
}

// isClientAbort reports whether err is pin/tftp's report of an ERROR packet
// from the client (RFC 2347 code 8 is "terminate transfer due to option
// negotiation"; clients also use others).
func isClientAbort(err error) bool {
	var ce *tftpClientError
	return errors.As(err, &ce) || strings.Contains(err.Error(), "code=")
}

// safeReader is what pin/tftp's sender reads a file through, one block per
// Read.
type safeReader struct {
	r    io.Reader
	done <-chan struct{} // Serve's context: closed, the transfer ends
	err  error
}

func (s *safeReader) Read(p []byte) (int, error) {
	select {
	case <-s.done:
		// pin/tftp sends this text as an ERROR, with code 1.
		return 0, errClientShutdown
	default:
	}
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
		return n, errClientFailed
	}
	return n, err
}

// requestFilter wraps the listening socket. It checks every read request
// before pin/tftp sees it and rewrites it into the canonical form pin/tftp
// handles deterministically; bad requests are answered with an ERROR packet
// from the listening socket and never reach pin/tftp. It admits a read
// request only with a free transfer slot, which it takes, and drops it
// unanswered otherwise.
//
// It is also pin/tftp's Hook, to learn of a request pin/tftp read but
// started no transfer for (its transfer socket could not be opened), whose
// slot would otherwise stay taken. pin/tftp reads requests and reports that
// failure on the goroutine running its Serve, before it reads the next.
type requestFilter struct {
	net.PacketConn
	blockSize int
	log       *slog.Logger
	observer  Observer
	handler   *tftpHandler
	// lastWarn is when a dropped request was last logged as a warning
	// (at most one a busyWarnEvery); dropped counts the drops since.
	lastWarn time.Time
	dropped  int
	// pinPending is set while the read request just handed to pin/tftp
	// holds a slot that no read handler has taken over yet.
	pinPending atomic.Bool
}

func (c *requestFilter) ReadFrom(p []byte) (int, net.Addr, error) {
	// pin/tftp started a handler for the previous request, if any: the slot
	// is the handler's now.
	c.pinPending.Store(false)
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil {
			return n, addr, err
		}
		out, code, rerr := canonicalRequest(p[:n], c.blockSize)
		if rerr == nil && len(out) > len(p) {
			code, rerr = tftpErrIllegal, fmt.Errorf("%w: TFTP request too long", ErrRefused)
		}
		if rerr == nil {
			if binary.BigEndian.Uint16(out) != opRRQ {
				return copy(p, out), addr, nil // pin/tftp ignores it
			}
			if c.handler.retransmitted(out, addr) {
				c.log.Debug("tftp: retransmitted request ignored, its transfer is under way", "remote", addr)
				continue
			}
			if !c.admit(out, addr) || c.handler.startOwn(out, c.PacketConn.LocalAddr(), addr) {
				continue
			}
			c.pinPending.Store(true)
			return copy(p, out), addr, nil
		}
		c.log.Debug("tftp: refused request", "remote", addr, "err", rerr)
		if c.observer != nil {
			ev := Event{Proto: TFTP, Err: rerr}
			if ua, ok := addr.(*net.UDPAddr); ok {
				ev.Remote = ua.AddrPort()
			}
			c.observer.Observe(ev)
		}
		if code >= 0 {
			_, _ = c.PacketConn.WriteTo(errorPacket(code, clientText(code)), addr)
		}
	}
}

// admit takes a transfer slot for the canonical read request req, or
// drops the request: every slot is taken (reported to the Observer with
// ErrBusy), or Serve is stopping. A dropped request is not answered, so
// that the client retransmits it rather than give up.
func (c *requestFilter) admit(req []byte, addr net.Addr) bool {
	h := c.handler
	if h.ctx.Err() != nil {
		h.log.Debug("tftp: stopping, request dropped", "remote", addr)
		return false
	}
	select {
	case h.sem <- struct{}{}:
		return true
	default:
	}
	ev := Event{Proto: TFTP, Err: ErrBusy}
	if r, err := parseReadRequest(req); err == nil {
		ev.Name = r.name
	}
	if ua, ok := addr.(*net.UDPAddr); ok {
		ev.Remote = ua.AddrPort()
	}
	c.dropped++
	if now := time.Now(); now.Sub(c.lastWarn) >= busyWarnEvery {
		h.log.Warn("tftp: every transfer slot taken, requests dropped until one is free",
			"file", ev.Name, "remote", ev.Remote, "limit", cap(h.sem), "dropped", c.dropped)
		c.lastWarn, c.dropped = now, 0
	} else {
		h.log.Debug("tftp: busy, request dropped", "file", ev.Name, "remote", ev.Remote)
	}
	if c.observer != nil {
		c.observer.Observe(ev)
	}
	return false
}

// OnSuccess implements tftp.Hook.
func (c *requestFilter) OnSuccess(tftp.TransferStats) {}

// OnFailure implements tftp.Hook. pin/tftp reports a transfer's failure
// with the transfer's file name, and a failure of its Serve loop without
// one; when that failure follows a read request handed over by ReadFrom,
// pin/tftp started no handler for it and its slot is given back here.
func (c *requestFilter) OnFailure(stats tftp.TransferStats, err error) {
	if stats.Filename == "" && c.pinPending.CompareAndSwap(true, false) {
		c.handler.log.Error("tftp: transfer not started", "err", err)
		<-c.handler.sem
	}
}

func clientText(code int) string {
	switch code {
	case tftpErrAccess:
		return "access violation"
	case tftpErrIllegal:
		return "illegal operation"
	default:
		return "request refused"
	}
}

func errorPacket(code int, msg string) []byte {
	b := make([]byte, 4, 5+len(msg))
	binary.BigEndian.PutUint16(b[0:2], 5)
	binary.BigEndian.PutUint16(b[2:4], uint16(code))
	b = append(b, msg...)
	return append(b, 0)
}

// TFTP opcodes (RFC 1350 section 5; OACK from RFC 2347).
const (
	opRRQ   = 1
	opWRQ   = 2
	opDATA  = 3
	opACK   = 4
	opERROR = 5
	opOACK  = 6
)

// canonicalRequest checks a packet arriving on the listening socket. Packets
// that are not requests pass unchanged (pin/tftp ignores them). A read
// request comes back rewritten: cleaned name, lower-case mode, only the
// blksize (clamped to blockSize), tsize and, where the server sends data
// itself, windowsize (clamped to maxWindow) and timeout (1 to 255) options. On error, code is the
// TFTP error code to answer with, or -1 to stay silent.
func canonicalRequest(pkt []byte, blockSize int) (out []byte, code int, err error) {
	if len(pkt) < 2 {
		return nil, -1, fmt.Errorf("%w: %d-byte packet", ErrBadName, len(pkt))
	}
	switch binary.BigEndian.Uint16(pkt) {
	case opRRQ:
	case opWRQ:
		return nil, tftpErrAccess, fmt.Errorf("%w: write request: the server is read-only", ErrRefused)
	default:
		return pkt, 0, nil
	}
	fields := bytes.Split(pkt[2:], []byte{0})
	// A well-formed request ends in NUL, so the last field is empty.
	if len(fields) < 3 || len(fields[len(fields)-1]) != 0 {
		return nil, tftpErrIllegal, fmt.Errorf("%w: malformed TFTP request", ErrRefused)
	}
	fields = fields[:len(fields)-1]
	name, err := CleanName(string(fields[0]))
	if err != nil {
		return nil, tftpErrAccess, err
	}
	mode := strings.ToLower(string(fields[1]))
	if mode != "octet" && mode != "netascii" {
		return nil, tftpErrIllegal, fmt.Errorf("%w: %q", ErrBadMode, fields[1])
	}
	out = make([]byte, 2, len(pkt))
	binary.BigEndian.PutUint16(out, opRRQ)
	out = append(append(out, name...), 0)
	out = append(append(out, mode...), 0)
	opts := fields[2:]
	for i := 0; i+1 < len(opts); i += 2 {
		key, val := strings.ToLower(string(opts[i])), string(opts[i+1])
		switch key {
		case "tsize":
			out = appendOpt(out, key, "0")
		case "blksize":
			n, err := strconv.Atoi(val)
			if err != nil || n < minBlockSize || blockSize <= minBlockSize {
				continue // not negotiated: 512-byte blocks
			}
			out = appendOpt(out, key, strconv.Itoa(min(n, blockSize, maxBlockSize)))
		case "windowsize":
			// Only our own sender has windows; pin/tftp would leave
			// the option out of its OACK anyway.
			n, err := strconv.Atoi(val)
			if !ownSender || err != nil || n < 1 || n > 65535 {
				continue // not negotiated: lock-step
			}
			out = appendOpt(out, key, strconv.Itoa(min(n, maxWindow)))
		case "timeout":
			// RFC 2349: whole seconds, 1 to 255, echoed unchanged or
			// not at all. Only our own sender honours it; pin/tftp would
			// leave it out of its OACK.
			n, err := strconv.Atoi(val)
			if !ownSender || err != nil || n < 1 || n > maxClientTimeout {
				continue // not negotiated: the server's Timeout
			}
			out = appendOpt(out, key, strconv.Itoa(n))
		}
	}
	return out, 0, nil
}

func appendOpt(b []byte, k, v string) []byte {
	b = append(append(b, k...), 0)
	return append(append(b, v...), 0)
}

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
