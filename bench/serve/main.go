// Command serve benchmarks netboot's file serving against the usual peers,
// in one run: TFTP against tftpd-hpa and HTTP against nginx, each server
// serving the same files from the same directory on loopback.
//
//	sudo go run ./bench/serve                     # the figures
//	sudo go run ./bench/serve -reps 1 -period 5s  # quicker
//
// Root is needed for tftpd-hpa (it changes root into the directory and
// drops to nobody), Debian's tftpd-hpa (in.tftpd) and nginx-light.
//
// TFTP: a 64 MiB file, blksize 1468 and 512, 1 and 200 concurrent clients.
// One client downloads the whole file; 200 clients each download it in a
// loop for -period and the bytes received in that window count (whole
// downloads of 200 × 64 MiB at 512-byte blocks would take the better part of
// an hour on a small machine; -tftp-full makes them complete anyway).
// HTTP: a 256 MiB file, 1 and 50 concurrent clients, each downloading the
// whole file once.
//
// nixboot runs as its own process (this program, re-executed with
// -role=server), as netboot.Server with the files in Files, on sockets this
// program opens and hands over, exactly as examples/netbootd wires it, with
// its metrics and boot-state observer. tftpd-hpa runs in listen mode with
// default options except the address; nginx with as many workers as the
// machine has CPUs, sendfile on and access_log off. The clients live in
// this process: a minimal lock-step TFTP client (the same code against both
// servers; every DATA block is compared with the file) and net/http with a
// 1 MiB read buffer (lengths checked; each server's content is verified by
// SHA-256 once before the timed runs).
//
// Every configuration runs -reps times per server, alternating which server
// goes first, and the median is printed with the ratio nixboot/peer. MB is
// 10^6 bytes. The clients and servers share the machine's CPUs: compare the
// columns of one run, not figures across machines (the load average at the
// start is printed).
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nixboot/nixboot/netboot"
)

const (
	tftpFile  = "tftp.bin"
	httpFile  = "http.bin"
	probeFile = "probe.bin"
)

func main() {
	role := flag.String("role", "bench", "bench, or server (internal: the nixboot server process)")
	dir := flag.String("dir", "", "server role: directory to serve")
	reps := flag.Int("reps", 3, "runs per server and configuration; the median is printed")
	period := flag.Duration("period", 10*time.Second, "how long the 200 TFTP clients download")
	tftpFull := flag.Bool("tftp-full", false, "200 TFTP clients each download the whole file instead of for -period")
	tftpMiB := flag.Int("tftp-mib", 64, "TFTP file size in MiB")
	httpMiB := flag.Int("http-mib", 256, "HTTP file size in MiB")
	tftpClients := flag.Int("tftp-clients", 200, "concurrent TFTP clients of the concurrent runs")
	httpClients := flag.Int("http-clients", 50, "concurrent HTTP clients of the concurrent runs")
	only := flag.String("only", "", "tftp or http: run only that protocol")
	window := flag.Int("window", 0, "TFTP clients ask for RFC 7440 windowsize N (0: not asked; OVMF asks for 4)")
	flag.StringVar(&serverProfile, "cpuprofile", "", "write the nixboot server's CPU profile (whole run) to this file")
	flag.BoolVar(&verbose, "v", false, "log every TFTP client timeout (server, block, offset) to stderr")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if *role == "server" {
		if serverProfile != "" {
			f, ferr := os.Create(serverProfile)
			if ferr == nil {
				ferr = pprof.StartCPUProfile(f)
			}
			if ferr != nil {
				fmt.Fprintln(os.Stderr, "bench/serve:", ferr)
				os.Exit(1)
			}
			defer f.Close()
			defer pprof.StopCPUProfile()
		}
		err = serve(ctx, *dir)
	} else {
		err = bench(ctx, config{
			reps: max(*reps, 1), period: *period, tftpFull: *tftpFull,
			tftpSize: *tftpMiB << 20, httpSize: *httpMiB << 20,
			tftpClients: *tftpClients, httpClients: *httpClients, only: *only,
			window: *window,
		})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/serve:", err)
		os.Exit(1)
	}
}

// serve is the nixboot server process: netboot.Server on the UDP socket
// (fd 3) and TCP listener (fd 4) it inherited, until SIGTERM.
func serve(ctx context.Context, dir string) error {
	udp, err := net.FilePacketConn(os.NewFile(3, "tftp"))
	if err != nil {
		return err
	}
	tcp, err := net.FileListener(os.NewFile(4, "http"))
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	s := &netboot.Server{
		Inventory: netboot.InventoryFunc(func(context.Context, *netboot.Machine) (*netboot.Boot, error) {
			return nil, netboot.ErrUnknownMachine
		}),
		Files:        netboot.FS(root.FS()),
		TFTPConn:     udp,
		HTTPListener: tcp,
		HTTPURL:      "http://" + tcp.Addr().String(),
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	return s.Serve(ctx)
}

type config struct {
	reps                     int
	period                   time.Duration
	tftpFull                 bool
	tftpSize, httpSize       int
	tftpClients, httpClients int
	only                     string
	window                   int // TFTP windowsize asked for; 0: none
}

// server is a running server process.
type server struct {
	name     string
	tftpAddr *net.UDPAddr // nil: no TFTP
	httpURL  string       // "": no HTTP
	cmd      *exec.Cmd
	stderr   bytes.Buffer
	cpu      *cpuGroup // nil: CPU time not measured
}

func (s *server) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	defer s.cpu.remove()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

func bench(ctx context.Context, cfg config) error {
	if os.Geteuid() != 0 {
		return errors.New("run as root (tftpd-hpa changes root and drops privileges)")
	}
	tftpd, err := findCommand("in.tftpd")
	if err != nil {
		return fmt.Errorf("%w (Debian package tftpd-hpa)", err)
	}
	nginx, err := findCommand("nginx")
	if err != nil {
		return fmt.Errorf("%w (Debian package nginx-light)", err)
	}
	work, err := os.MkdirTemp("", "nixboot-bench-serve-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	files := filepath.Join(work, "files")
	// Readable by nobody: tftpd-hpa and nginx's workers drop to it.
	for _, d := range []string{work, files} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := os.Chmod(d, 0o755); err != nil {
			return err
		}
	}
	tftpData, err := writeRandom(filepath.Join(files, tftpFile), cfg.tftpSize)
	if err != nil {
		return err
	}
	httpData, err := writeRandom(filepath.Join(files, httpFile), cfg.httpSize)
	if err != nil {
		return err
	}
	probe, err := writeRandom(filepath.Join(files, probeFile), 1000)
	if err != nil {
		return err
	}

	nb, err := startNixboot(files)
	if err != nil {
		return err
	}
	defer nb.stop()
	servers := []*server{nb}
	var peerTFTP, peerHTTP *server
	if cfg.only != "http" {
		peerTFTP, err = startTFTPD(tftpd, files)
		if err != nil {
			return err
		}
		defer peerTFTP.stop()
		servers = append(servers, peerTFTP)
	}
	if cfg.only != "tftp" {
		peerHTTP, err = startNginx(nginx, work, files)
		if err != nil {
			return err
		}
		defer peerHTTP.stop()
		servers = append(servers, peerHTTP)
	}
	for _, s := range servers {
		if err := waitReady(ctx, s, probe); err != nil {
			return fmt.Errorf("%s did not start: %w\n%s", s.name, err, s.stderr.String())
		}
		g, err := newCPUGroup(s.name)
		if err == nil {
			err = g.addTree(s.cmd.Process.Pid)
			if err != nil {
				g.remove()
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench/serve: not measuring CPU time of %s: %v\n", s.name, err)
			continue
		}
		s.cpu = g
	}

	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("bench/serve: %s, %d CPUs, load average %s", runtime.Version(), runtime.NumCPU(), load)
	fmt.Printf("files: TFTP %d MiB, HTTP %d MiB; %d reps per server, medians; MB = 10^6 bytes\n\n",
		cfg.tftpSize>>20, cfg.httpSize>>20, cfg.reps)

	var rows []row
	if cfg.only != "http" {
		for _, blk := range []int{1468, 512} {
			for _, n := range []int{1, cfg.tftpClients} {
				r, err := compare(ctx, cfg.reps, peerTFTP, nb, func(s *server) (result, error) {
					return tftpRun(ctx, s.tftpAddr, tftpData, blk, cfg.window, n, n > 1 && !cfg.tftpFull, cfg.period)
				})
				if err != nil {
					return fmt.Errorf("TFTP blksize %d, %d clients: %w", blk, n, err)
				}
				r.label = fmt.Sprintf("TFTP %3d MiB  blksize %-5d clients %-4d", cfg.tftpSize>>20, blk, n)
				if cfg.window > 0 {
					r.label = fmt.Sprintf("TFTP %3d MiB  blksize %-5d window %-2d clients %-4d", cfg.tftpSize>>20, blk, cfg.window, n)
				}
				r.goal = 1.0
				rows = append(rows, r)
				printRow("tftpd-hpa", r)
			}
		}
	}
	if cfg.only != "tftp" {
		want := sha256.Sum256(httpData)
		for _, s := range []*server{peerHTTP, nb} {
			if err := verifyHTTP(ctx, s.httpURL+"/"+httpFile, want); err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
		}
		for _, n := range []int{1, cfg.httpClients} {
			r, err := compare(ctx, cfg.reps, peerHTTP, nb, func(s *server) (result, error) {
				return httpRun(ctx, s.httpURL+"/"+httpFile, int64(len(httpData)), n)
			})
			if err != nil {
				return fmt.Errorf("HTTP %d clients: %w", n, err)
			}
			r.label = fmt.Sprintf("HTTP %3d MiB                clients %-4d", cfg.httpSize>>20, n)
			r.goal = 0.9
			rows = append(rows, r)
			printRow("nginx", r)
		}
	}
	fmt.Println("\nsummary: throughput nixboot/peer against the goal; CPU efficiency peer/nixboot (above 1: nixboot uses less CPU per byte)")
	for _, r := range rows {
		verdict := "met"
		if r.ratio() < r.goal {
			verdict = "NOT met"
		}
		fmt.Printf("  %s  throughput %.2fx [goal >= %.1fx: %s]  CPU efficiency %.2fx\n", r.label, r.ratio(), r.goal, verdict, r.peerCPU/r.nbCPU)
	}
	return nil
}

// result is one run: bytes moved in elapsed, and whether some transfer
// stopped with an error.
type result struct {
	bytes    int64
	elapsed  time.Duration
	complete int // whole downloads
	errors   int
	timeouts int           // TFTP client timeouts (each one a retransmitted ACK)
	cpu      time.Duration // CPU time of the server's processes during the run
}

// cpuPerGB is the server's CPU time per GB (10^9 bytes) delivered: unlike
// throughput, it hardly depends on what else the machine is running.
func (r result) cpuPerGB() float64 {
	return r.cpu.Seconds() / (float64(r.bytes) / 1e9)
}

func (r result) mbps() float64 { return float64(r.bytes) / r.elapsed.Seconds() / 1e6 }

type row struct {
	label      string
	peer, nb   result // medians by throughput
	peerRuns   []float64
	nbRuns     []float64
	goal       float64
	peerErrors int
	nbErrors   int
	peerStalls int // TFTP client timeouts over all runs
	nbStalls   int
	peerCPU    float64 // median server CPU seconds per GB
	nbCPU      float64
}

func (r row) ratio() float64 { return r.nb.mbps() / r.peer.mbps() }

func printRow(peer string, r row) {
	fmt.Printf("%s  %s %8.1f MB/s  nixboot %8.1f MB/s  ratio %.2fx | server CPU s/GB %s %.2f nixboot %.2f | runs %s: %s; nixboot: %s | failed transfers %d/%d, client timeouts %d/%d\n",
		r.label, peer, r.peer.mbps(), r.nb.mbps(), r.ratio(), peer, r.peerCPU, r.nbCPU,
		peer, fmtRuns(r.peerRuns), fmtRuns(r.nbRuns), r.peerErrors, r.nbErrors, r.peerStalls, r.nbStalls)
}

func fmtRuns(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatFloat(x, 'f', 1, 64)
	}
	return strings.Join(s, " ")
}

// compare runs fn reps times against each server, alternating which goes
// first, and keeps each server's median run.
func compare(ctx context.Context, reps int, peer, nb *server, fn func(*server) (result, error)) (row, error) {
	var r row
	var peerRes, nbRes []result
	for i := range reps {
		order := []*server{peer, nb}
		if i%2 == 1 {
			order = []*server{nb, peer}
		}
		for _, s := range order {
			if err := ctx.Err(); err != nil {
				return r, err
			}
			before := s.cpu.usage()
			res, err := fn(s)
			res.cpu = s.cpu.usage() - before
			if err != nil {
				return r, fmt.Errorf("%s: %w", s.name, err)
			}
			if s == nb {
				nbRes = append(nbRes, res)
				r.nbErrors += res.errors
				r.nbStalls += res.timeouts
			} else {
				peerRes = append(peerRes, res)
				r.peerErrors += res.errors
				r.peerStalls += res.timeouts
			}
		}
	}
	r.peer, r.peerRuns = median(peerRes)
	r.nb, r.nbRuns = median(nbRes)
	r.peerCPU, r.nbCPU = medianCPU(peerRes), medianCPU(nbRes)
	return r, nil
}

func medianCPU(rs []result) float64 {
	v := make([]float64, len(rs))
	for i, x := range rs {
		v[i] = x.cpuPerGB()
	}
	sort.Float64s(v)
	return v[len(v)/2]
}

func median(rs []result) (result, []float64) {
	runs := make([]float64, len(rs))
	for i, x := range rs {
		runs[i] = x.mbps()
	}
	sorted := append([]result(nil), rs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].mbps() < sorted[j].mbps() })
	return sorted[len(sorted)/2], runs
}

// tftpRun downloads data's file with n concurrent clients: once each, or,
// when timed, in a loop until period has passed.
func tftpRun(ctx context.Context, addr *net.UDPAddr, data []byte, blksize, window, n int, timed bool, period time.Duration) (result, error) {
	var total atomic.Int64
	var complete, failed, timeouts atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var deadline time.Time
	start := time.Now()
	if timed {
		deadline = start.Add(period)
	}
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for {
				got, done, err := tftpGet(ctx, addr, tftpFile, blksize, window, data, deadline, &timeouts)
				total.Add(got)
				switch {
				case errors.Is(err, errCorrupt):
					errOnce.Do(func() { firstErr = err })
					return
				case err != nil:
					failed.Add(1)
				case done:
					complete.Add(1)
				}
				if !timed || time.Now().After(deadline) || ctx.Err() != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return result{}, firstErr
	}
	if !timed && complete.Load() != int64(n) {
		return result{}, fmt.Errorf("%d of %d downloads failed", int64(n)-complete.Load(), n)
	}
	return result{bytes: total.Load(), elapsed: elapsed, complete: int(complete.Load()), errors: int(failed.Load()), timeouts: int(timeouts.Load())}, nil
}

var errCorrupt = errors.New("received data differs from the file")

// verbose logs TFTP client timeouts.
var verbose bool

// serverProfile is where the nixboot server process writes a CPU profile.
var serverProfile string

const (
	clientTimeout = time.Second
	clientRetries = 5
)

// tftpGet is a minimal TFTP read (RFC 1350 with blksize and tsize options,
// and RFC 7440 windowsize when window > 0) that checks every block against
// want. It is lock-step unless the server grants a window; then it
// acknowledges the end of each window, and once the last block in order
// when it sees a gap. It stops at deadline (if set) with an ERROR to the
// server, and reports the bytes received and whether the download
// completed.
func tftpGet(ctx context.Context, server *net.UDPAddr, name string, blksize, window int, want []byte, deadline time.Time, timeouts *atomic.Int64) (int64, bool, error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return 0, false, err
	}
	defer conn.Close()
	req := []byte{0, 1}
	fields := []string{name, "octet", "blksize", strconv.Itoa(blksize), "tsize", "0"}
	if window > 0 {
		fields = append(fields, "windowsize", strconv.Itoa(window))
	}
	for _, f := range fields {
		req = append(append(req, f...), 0)
	}
	buf := make([]byte, 65536)
	ack := []byte{0, 4, 0, 0}
	last, lastTo := req, server
	var peer *net.UDPAddr
	blk := 512 // until an OACK says otherwise
	win := 1   // likewise
	inWin := 0 // blocks received in order in this window
	gapAcked := false
	expect := uint16(1)
	var off int64
	retries := 0
	abort := func() {
		if peer != nil {
			_, _ = conn.WriteToUDP([]byte{0, 5, 0, 0, 's', 't', 'o', 'p', 0}, peer)
		}
	}
	if _, err := conn.WriteToUDP(last, lastTo); err != nil {
		return 0, false, err
	}
	for {
		if ctx.Err() != nil || (!deadline.IsZero() && time.Now().After(deadline)) {
			abort()
			return off, false, nil
		}
		if err := conn.SetReadDeadline(time.Now().Add(clientTimeout)); err != nil {
			return off, false, err
		}
		m, from, err := conn.ReadFromUDP(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && retries < clientRetries {
				retries++
				timeouts.Add(1)
				if verbose {
					fmt.Fprintf(os.Stderr, "timeout: server %s, waiting for block %d at offset %d (OACK seen: %v)\n", server, expect, off, peer != nil)
				}
				if _, err := conn.WriteToUDP(last, lastTo); err != nil {
					return off, false, err
				}
				continue
			}
			abort()
			return off, false, fmt.Errorf("block %d: %w", expect, err)
		}
		if m < 4 {
			continue
		}
		if peer == nil {
			peer = from
		} else if from.Port != peer.Port || !from.IP.Equal(peer.IP) {
			continue
		}
		switch binary.BigEndian.Uint16(buf) {
		case 6: // OACK
			if expect != 1 || off != 0 {
				continue
			}
			opts := bytes.Split(buf[2:m], []byte{0})
			for i := 0; i+1 < len(opts); i += 2 {
				v, err := strconv.Atoi(string(opts[i+1]))
				switch {
				case err != nil:
				case strings.EqualFold(string(opts[i]), "blksize"):
					blk = v
				case strings.EqualFold(string(opts[i]), "windowsize"):
					win = v
				}
			}
			ack[2], ack[3] = 0, 0
			last, lastTo = ack, peer
			retries = 0
			if _, err := conn.WriteToUDP(ack, peer); err != nil {
				return off, false, err
			}
		case 3: // DATA
			b := binary.BigEndian.Uint16(buf[2:])
			if b != expect {
				switch {
				case win == 1 && b == expect-1: // our ACK was lost
					_, _ = conn.WriteToUDP(last, lastTo)
				case win > 1 && b-expect < 0x8000 && !gapAcked: // a gap: from after the last in order
					gapAcked, inWin = true, 0
					_, _ = conn.WriteToUDP(last, lastTo)
				}
				continue
			}
			data := buf[4:m]
			if off+int64(len(data)) > int64(len(want)) || !bytes.Equal(data, want[off:off+int64(len(data))]) {
				abort()
				return off, false, fmt.Errorf("%w at offset %d", errCorrupt, off)
			}
			off += int64(len(data))
			binary.BigEndian.PutUint16(ack[2:], b)
			last, lastTo = ack, peer
			retries = 0
			if inWin++; inWin >= win || len(data) < blk {
				inWin, gapAcked = 0, false
				if _, err := conn.WriteToUDP(ack, peer); err != nil {
					return off, false, err
				}
			}
			expect++
			if len(data) < blk {
				if off != int64(len(want)) {
					return off, false, fmt.Errorf("%w: ended at %d of %d bytes", errCorrupt, off, len(want))
				}
				return off, true, nil
			}
		case 5: // ERROR
			msg := strings.TrimRight(string(buf[4:m]), "\x00")
			return off, false, fmt.Errorf("server error %d: %s", binary.BigEndian.Uint16(buf[2:]), msg)
		}
	}
}

var httpClient = &http.Client{Transport: &http.Transport{
	DisableCompression:  true,
	MaxIdleConnsPerHost: 256,
}}

// httpRun downloads url with n concurrent clients, once each.
func httpRun(ctx context.Context, url string, size int64, n int) (result, error) {
	var total atomic.Int64
	errs := make(chan error, n)
	start := time.Now()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			got, err := httpGet(ctx, url)
			total.Add(got)
			if err == nil && got != size {
				err = fmt.Errorf("got %d bytes, want %d", got, size)
			}
			errs <- err
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		if err != nil {
			return result{}, err
		}
	}
	return result{bytes: total.Load(), elapsed: elapsed, complete: n}, nil
}

func httpGet(ctx context.Context, url string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	buf := make([]byte, 1<<20)
	var n int64
	for {
		m, err := resp.Body.Read(buf)
		n += int64(m)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func verifyHTTP(ctx context.Context, url string, want [32]byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		return err
	}
	if !bytes.Equal(h.Sum(nil), want[:]) {
		return fmt.Errorf("GET %s: content differs from the file", url)
	}
	return nil
}

func writeRandom(path string, n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	return b, os.WriteFile(path, b, 0o644)
}

func findCommand(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(d, name); isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// freePort returns a loopback port that was free a moment ago, for peers
// that cannot inherit a socket.
func freePort(network string) (int, error) {
	switch network {
	case "udp":
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	default:
		l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return 0, err
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port, nil
	}
}

func startNixboot(files string) (*server, error) {
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	defer udp.Close()
	tcp, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	defer tcp.Close()
	uf, err := udp.File()
	if err != nil {
		return nil, err
	}
	defer uf.Close()
	tf, err := tcp.File()
	if err != nil {
		return nil, err
	}
	defer tf.Close()
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	s := &server{name: "nixboot", tftpAddr: udp.LocalAddr().(*net.UDPAddr), httpURL: "http://" + tcp.Addr().String()}
	s.cmd = exec.Command(self, "-role", "server", "-dir", files, "-cpuprofile", serverProfile)
	s.cmd.ExtraFiles = []*os.File{uf, tf}
	s.cmd.Stderr = &s.stderr
	return s, s.cmd.Start()
}

func startTFTPD(bin, files string) (*server, error) {
	port, err := freePort("udp")
	if err != nil {
		return nil, err
	}
	addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	s := &server{name: "tftpd-hpa", tftpAddr: addr}
	s.cmd = exec.Command(bin, "--foreground", "--address", addr.String(), "--secure", files)
	s.cmd.Stderr = &s.stderr
	return s, s.cmd.Start()
}

func startNginx(bin, work, files string) (*server, error) {
	port, err := freePort("tcp")
	if err != nil {
		return nil, err
	}
	prefix := filepath.Join(work, "nginx")
	if err := os.MkdirAll(prefix, 0o755); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`daemon off;
master_process on;
worker_processes %d;
pid %[2]s/nginx.pid;
error_log stderr error;
events { worker_connections 1024; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	default_type application/octet-stream;
	client_body_temp_path %[2]s/body;
	proxy_temp_path %[2]s/proxy;
	fastcgi_temp_path %[2]s/fastcgi;
	uwsgi_temp_path %[2]s/uwsgi;
	scgi_temp_path %[2]s/scgi;
	server {
		listen 127.0.0.1:%[3]d;
		root %[4]s;
	}
}
`, runtime.NumCPU(), prefix, port, files)
	path := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	s := &server{name: "nginx", httpURL: fmt.Sprintf("http://127.0.0.1:%d", port)}
	s.cmd = exec.Command(bin, "-p", prefix, "-c", path, "-e", "stderr")
	s.cmd.Stderr = &s.stderr
	return s, s.cmd.Start()
}

// waitReady polls s until it serves the probe file, for up to 10 s.
func waitReady(ctx context.Context, s *server, probe []byte) error {
	deadline := time.Now().Add(10 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if s.cmd.ProcessState != nil {
			return errors.New("exited")
		}
		last = nil
		if s.tftpAddr != nil {
			_, done, err := tftpGet(ctx, s.tftpAddr, probeFile, 512, 0, probe, time.Now().Add(3*time.Second), new(atomic.Int64))
			if err != nil || !done {
				last = fmt.Errorf("tftp: probe not served (%v)", err)
			}
		}
		if s.httpURL != "" && last == nil {
			if _, err := httpGet(ctx, s.httpURL+"/"+probeFile); err != nil {
				last = fmt.Errorf("http: %w", err)
			}
		}
		if last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return last
}

// cpuGroup is a cgroup (v1 cpuacct) holding one server's processes, to
// measure their CPU time including children that have already exited
// (tftpd-hpa forks a child per transfer and lets the kernel reap it, so its
// time shows up nowhere else).
type cpuGroup struct{ dir string }

const cpuacctRoot = "/sys/fs/cgroup/cpuacct"

func newCPUGroup(name string) (*cpuGroup, error) {
	dir := filepath.Join(cpuacctRoot, fmt.Sprintf("nixboot-bench-%d-%s", os.Getpid(), name))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	return &cpuGroup{dir: dir}, nil
}

// addTree moves pid and its descendants into the group.
func (g *cpuGroup) addTree(pid int) error {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		if i := bytes.LastIndexByte(b, ')'); i >= 0 {
			if f := strings.Fields(string(b[i+1:])); len(f) > 1 {
				if pp, err := strconv.Atoi(f[1]); err == nil {
					children[pp] = append(children[pp], p)
				}
			}
		}
	}
	todo := []int{pid}
	for len(todo) > 0 {
		p := todo[0]
		todo = append(todo[1:], children[p]...)
		if err := os.WriteFile(filepath.Join(g.dir, "cgroup.procs"), []byte(strconv.Itoa(p)), 0o644); err != nil && p == pid {
			return err
		}
	}
	return nil
}

func (g *cpuGroup) usage() time.Duration {
	if g == nil {
		return 0
	}
	b, err := os.ReadFile(filepath.Join(g.dir, "cpuacct.usage"))
	if err != nil {
		return 0
	}
	ns, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return time.Duration(ns)
}

// remove deletes the group once its processes have exited.
func (g *cpuGroup) remove() {
	if g == nil {
		return
	}
	for range 50 {
		if os.Remove(g.dir) == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Fprintln(os.Stderr, "bench/serve: could not remove", g.dir)
}
