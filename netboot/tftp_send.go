package netboot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// This file is the data phase of a TFTP read transfer: option
// acknowledgement, then DATA blocks in lock-step, each retransmitted until
// it is acknowledged, or in windows of several blocks per acknowledgement
// when the client asks for RFC 7440 windowsize (EDK2/OVMF asks for 4). TFTPServer runs it on Linux over a blocking socket of
// its own (tftp_send_linux.go) instead of pin/tftp's sender, whose
// per-block read deadline and netpoller wake-up made single-client
// transfers slower than tftpd-hpa's (bench/serve/README.md).

// errRecvTimeout is what a transferConn's recv returns when nothing arrived
// in time; errRecvInterrupted when a signal cut the wait short.
var (
	errRecvTimeout     = errors.New("tftp: receive timeout")
	errRecvInterrupted = errors.New("tftp: receive interrupted")
)

// transferConn is a datagram socket connected to one client's transfer
// identifier (address and port): it sends only there and receives only
// from there.
type transferConn interface {
	send(p []byte) error
	// recv reads one datagram, waiting at most d (d > 0).
	recv(p []byte, d time.Duration) (int, error)
	close() error
}

// readRequest is a canonical read request (see canonicalRequest): the name
// already cleaned, the mode lower-case, blksize already clamped.
type readRequest struct {
	name    string
	mode    string
	blksize int  // 0: not asked for (512-byte blocks, no blksize in the OACK)
	tsize   bool // tsize asked for
	// windowsize is the RFC 7440 window, already capped (see
	// windowFor); 0: not asked for (lock-step, none in the OACK).
	windowsize int
	// timeout is the RFC 2349 retransmission timeout the client asked
	// for; 0: not asked for (the server's Timeout, none in the OACK).
	timeout time.Duration
}

// maxClientTimeout is the longest timeout option RFC 2349 allows, in
// seconds.
const maxClientTimeout = 255

// maxWindow caps the blocks per window, and maxWindowBytes the data a
// window holds, which the sender keeps for retransmission: RFC 7440 lets
// the server answer less than the client asked for.
const (
	maxWindow      = 64
	maxWindowBytes = 64 << 10
)

// windowFor is the window to grant for a request of asked blocks of blk
// bytes.
func windowFor(asked, blk int) int {
	return max(1, min(asked, maxWindow, maxWindowBytes/blk))
}

// parseReadRequest reads a packet canonicalRequest produced.
func parseReadRequest(pkt []byte) (readRequest, error) {
	var r readRequest
	if len(pkt) < 2 || binary.BigEndian.Uint16(pkt) != opRRQ {
		return r, fmt.Errorf("%w: not a read request", ErrRefused)
	}
	fields := splitNUL(pkt[2:])
	if len(fields) < 2 {
		return r, fmt.Errorf("%w: malformed TFTP request", ErrRefused)
	}
	r.name, r.mode = fields[0], fields[1]
	for i := 2; i+1 < len(fields); i += 2 {
		switch fields[i] {
		case "tsize":
			r.tsize = true
		case "blksize":
			n, err := strconv.Atoi(fields[i+1])
			if err != nil || n < minBlockSize || n > maxBlockSize {
				return r, fmt.Errorf("%w: blksize %q", ErrRefused, fields[i+1])
			}
			r.blksize = n
		case "windowsize":
			n, err := strconv.Atoi(fields[i+1])
			if err != nil || n < 1 || n > maxWindow {
				return r, fmt.Errorf("%w: windowsize %q", ErrRefused, fields[i+1])
			}
			r.windowsize = n
		case "timeout":
			n, err := strconv.Atoi(fields[i+1])
			if err != nil || n < 1 || n > maxClientTimeout {
				return r, fmt.Errorf("%w: timeout %q", ErrRefused, fields[i+1])
			}
			r.timeout = time.Duration(n) * time.Second
		}
	}
	return r, nil
}

// splitNUL splits NUL-terminated strings; a trailing part without NUL is
// dropped, as canonicalRequest never produces one.
func splitNUL(b []byte) []string {
	var out []string
	for {
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			return out
		}
		out = append(out, string(b[:i]))
		b = b[i+1:]
	}
}

// tftpClientError is an ERROR packet the client sent.
type tftpClientError struct {
	code int
	msg  string
}

// parseClientError reads an ERROR packet of at least 4 bytes.
func parseClientError(pkt []byte) *tftpClientError {
	msg := pkt[4:]
	if i := bytes.IndexByte(msg, 0); i >= 0 {
		msg = msg[:i]
	}
	return &tftpClientError{code: int(binary.BigEndian.Uint16(pkt[2:])), msg: string(msg)}
}

func (e *tftpClientError) Error() string {
	return fmt.Sprintf("client sent ERROR code=%d: %q", e.code, e.msg)
}

// tftpReadError is a failure reading the file being sent: ours, not the
// client's, so it is logged in full and the client gets a short text.
type tftpReadError struct{ err error }

func (e *tftpReadError) Error() string { return "reading the file: " + e.err.Error() }
func (e *tftpReadError) Unwrap() error { return e.err }

// errTransferTimeout means the client stopped acknowledging.
var errTransferTimeout = errors.New("no acknowledgement from the client")

// lockstep sends one file to a client. Its buffers are sized once per
// transfer; nothing is allocated per block.
type lockstep struct {
	conn    transferConn
	timeout time.Duration
	retries int
	// done, once closed, ends the transfer with errClientShutdown: before
	// the next packet is sent, or within shutdownPoll while waiting for an
	// acknowledgement. nil never ends it.
	done <-chan struct{}
	ack  []byte // receive buffer
	// blksize and window are what sendFile negotiated (window 1:
	// lock-step), for the log.
	blksize, window int
}

// stopped reports whether done is closed.
func (l *lockstep) stopped() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// sendFile runs the data phase of req: the OACK when options were asked
// for, then r in blocks until a block shorter than the block size has been
// acknowledged. It returns the bytes the client acknowledged. On failure it
// has told the client why, except when the client itself sent an ERROR.
func (l *lockstep) sendFile(req readRequest, r io.Reader, size int64) (int64, error) {
	// An ERROR packet from the client carries up to a block of text; a
	// longer datagram is cut to the buffer, which is enough to read it.
	l.ack = make([]byte, 1024)
	blk := minBlockSize
	if req.blksize > 0 {
		blk = req.blksize
	}
	window := 1
	if req.blksize > 0 || req.tsize || req.windowsize > 0 || req.timeout > 0 {
		oack := []byte{0, opOACK}
		if req.blksize > 0 {
			oack = appendOpt(oack, "blksize", strconv.Itoa(blk))
		}
		if req.tsize {
			oack = appendOpt(oack, "tsize", strconv.FormatInt(size, 10))
		}
		if req.windowsize > 0 {
			window = windowFor(req.windowsize, blk)
			oack = appendOpt(oack, "windowsize", strconv.Itoa(window))
		}
		if req.timeout > 0 {
			// The client's own retransmission interval: it asked the
			// server to use the same, from the OACK on.
			l.timeout = req.timeout
			oack = appendOpt(oack, "timeout", strconv.Itoa(int(req.timeout/time.Second)))
		}
		if err := l.exchange(oack, 0); err != nil {
			return 0, l.fail(err)
		}
	}
	l.blksize, l.window = blk, window
	if window > 1 {
		return l.sendWindows(r, blk, window)
	}
	data := make([]byte, 4+blk)
	binary.BigEndian.PutUint16(data, opDATA)
	var sent int64
	// Block numbers wrap from 65535 to 0 for files over 65535 blocks, as
	// tftpd-hpa, iPXE and EDK2 expect.
	for block := uint16(1); ; block++ {
		n, err := io.ReadFull(r, data[4:])
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			return sent, l.fail(&tftpReadError{err})
		}
		binary.BigEndian.PutUint16(data[2:], block)
		if err := l.exchange(data[:4+n], block); err != nil {
			return sent, l.fail(err)
		}
		sent += int64(n)
		if n < blk {
			return sent, nil
		}
	}
}

// sendWindows is the data phase with RFC 7440 windows of window blocks:
// it sends the blocks of a window back to back, then waits for an
// acknowledgement. The client acknowledges the last block it received in
// order, at the end of a window or as soon as it sees a gap, and the next
// window starts after that block; after a timeout the window is sent
// again, l.retries times. Blocks are counted in 64 bits here and wrap
// from 65535 to 0 on the wire, as in lock-step.
func (l *lockstep) sendWindows(r io.Reader, blk, window int) (int64, error) {
	bufs := make([][]byte, window) // block k is in bufs[k%window]
	for i := range bufs {
		bufs[i] = make([]byte, 4+blk)
		binary.BigEndian.PutUint16(bufs[i], opDATA)
	}
	lens := make([]int, window) // data bytes of each block in bufs
	var (
		sent  int64
		base  = uint64(1) // first block not acknowledged
		next  = uint64(1) // next block to read
		final uint64      // the last (short) block once read; 0 before
		tries int
		// resent is set when a repeated acknowledgement of base-1 made
		// the window go again: one such resend per window, or every
		// duplicate a client answers with would multiply the traffic.
		resent bool
	)
	w := uint64(window)
	for {
		last := base + w - 1
		if final != 0 {
			last = min(last, final)
		}
		for k := base; k <= last; k++ {
			b := bufs[k%w]
			if k == next {
				n, err := io.ReadFull(r, b[4:])
				if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
					return sent, l.fail(&tftpReadError{err})
				}
				binary.BigEndian.PutUint16(b[2:], uint16(k))
				lens[k%w] = n
				next++
				if n < blk {
					final, last = k, k
				}
			}
			if l.stopped() {
				return sent, l.fail(errClientShutdown)
			}
			if err := l.conn.send(b[:4+lens[k%w]]); err != nil {
				return sent, l.fail(err)
			}
		}
		// Wait for progress; a repeated acknowledgement of base-1 sends
		// the window again at once, but only the first one.
		deadline := time.Now().Add(l.timeout)
		wait := l.timeout // as in lock-step: the socket's receive timeout stays set
	waiting:
		for {
			acked, ok, err := l.waitWindowAck(base, last, deadline, wait)
			wait = time.Until(deadline)
			switch {
			case err != nil:
				return sent, l.fail(err)
			case !ok: // timeout
				if tries++; tries > l.retries {
					return sent, l.fail(errTransferTimeout)
				}
				break waiting
			case acked >= base:
				for k := base; k <= acked; k++ {
					sent += int64(lens[k%w])
				}
				if acked == final {
					return sent, nil
				}
				base, tries, resent = acked+1, 0, false
				break waiting
			case !resent: // acked is base-1: the client saw a gap at base
				resent = true
				break waiting
			}
		}
	}
}

// waitWindowAck waits until deadline for an acknowledgement of a block
// from base-1 to last and returns its 64-bit number, or false after the
// deadline. wait is the first receive's timeout.
func (l *lockstep) waitWindowAck(base, last uint64, deadline time.Time, wait time.Duration) (uint64, bool, error) {
	var k uint64
	ok, err := l.awaitAck(deadline, wait, func(block uint16) bool {
		// The block of base-1 + d, for the d that gives these low 16
		// bits; windows are far shorter than 65536.
		k = base - 1 + uint64(block-uint16(base-1))
		return k <= last
	})
	return k, ok, err
}

// exchange sends pkt and waits for the acknowledgement of block,
// retransmitting pkt after each timeout, l.retries times. Acknowledgements
// of earlier blocks are ignored rather than answered: answering duplicates
// would double every later block (the Sorcerer's Apprentice bug, RFC 1123
// 4.2.3.1).
func (l *lockstep) exchange(pkt []byte, block uint16) error {
	for try := 0; try <= l.retries; try++ {
		if l.stopped() {
			return errClientShutdown
		}
		if err := l.conn.send(pkt); err != nil {
			return err
		}
		acked, err := l.waitAck(block)
		if err != nil || acked {
			return err
		}
	}
	return errTransferTimeout
}

// waitAck waits up to l.timeout for the acknowledgement of block.
func (l *lockstep) waitAck(block uint16) (bool, error) {
	// The same first wait for every block while acknowledgements come in
	// time, so the socket's receive timeout is set once.
	return l.awaitAck(time.Now().Add(l.timeout), l.timeout, func(b uint16) bool { return b == block })
}

// awaitAck waits until deadline for an acknowledgement that accept takes,
// in waits of at most shutdownPoll (the first of at most wait), after each
// of which it looks at done. It reports false at the deadline, and the
// client's ERROR as a *tftpClientError. Anything else (an acknowledgement
// accept refuses, a stray packet, an interrupted or partial wait) leaves
// the rest of the time to wait.
func (l *lockstep) awaitAck(deadline time.Time, wait time.Duration, accept func(block uint16) bool) (bool, error) {
	for {
		n, err := l.conn.recv(l.ack, min(wait, shutdownPoll))
		switch {
		case err == errRecvTimeout, err == errRecvInterrupted:
			n = 0
		case err != nil:
			return false, err
		}
		if n >= 4 {
			switch binary.BigEndian.Uint16(l.ack) {
			case opACK:
				if accept(binary.BigEndian.Uint16(l.ack[2:])) {
					return true, nil
				}
			case opERROR:
				return false, parseClientError(l.ack[:n])
			}
		}
		if l.stopped() {
			return false, errClientShutdown
		}
		if wait = time.Until(deadline); wait < time.Millisecond {
			return false, nil
		}
	}
}

// fail tells the client why the transfer ends, unless the client ended it,
// and returns err.
func (l *lockstep) fail(err error) error {
	var ce *tftpClientError
	if errors.As(err, &ce) {
		return err
	}
	msg := "transfer failed"
	switch {
	case errors.Is(err, errTransferTimeout):
		msg = "timeout"
	case errors.Is(err, errClientShutdown):
		msg = errClientShutdown.Error()
	case errors.As(err, new(*tftpReadError)):
		msg = errClientFailed.Error()
	}
	_ = l.conn.send(errorPacket(tftpErrUndefined, msg))
	return err
}
