// Command dhcp benchmarks pxe.Server against dnsmasq: DISCOVER→OFFER
// exchanges per second and drops, measured by perfdhcp (Debian kea-admin)
// in one run, at the same offered rates, on the same veth pair between two
// network namespaces this program creates and deletes.
//
//	sudo go run ./bench/dhcp                  # default rates
//	sudo go run ./bench/dhcp -rates 2000,4000,8000,16000 -period 5s
//
// Both servers are configured alike: full DHCP for 10.78.0.0/16 with the
// pool 10.78.1.0-10.78.255.254, one-hour leases, a router option, no boot
// information (perfdhcp sends plain DISCOVERs), no per-packet logging.
// dnsmasq gets --no-ping, because by default it pings every address for up
// to 3 s before offering it, which would measure the ping, not the server;
// --quiet-dhcp, because nixboot logs nothing per packet either; and
// --dhcp-lease-max raised so its default of 1000 leases does not cap it.
// perfdhcp acts as a relay (giaddr 10.78.0.2), so the servers reply by
// unicast to port 67.
//
// With -6 the same is done for DHCPv6: perfdhcp -6 -i sends Solicits to
// ff02::1:2 from the client's link-local address, and dnsmasq's DHCPv6
// (range fd00:78::1:0-fd00:78::ffff:ffff in fd00:78::/64, one hour, no
// router advertisements) is compared with pxe.Server6 (prefix fd00:78::/64,
// one hour). The columns keep their DHCPv4 names.
//
// The rates are offered one after another, each to dnsmasq and then to
// nixboot, -reps times alternating, each server started fresh; the median
// run per server and rate is printed. "/s" is perfdhcp's own figure of
// completed DISCOVER-OFFER exchanges per second; "cpu/offer" is the
// server's user+system CPU time during the run divided by the OFFERs
// perfdhcp received. Servers and perfdhcp share the machine's cores, so
// absolute numbers depend on the machine and its load; compare the columns
// of one run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
	"golang.org/x/sys/unix"

	"github.com/nixboot/nixboot/internal/netstat"
	"github.com/nixboot/nixboot/pxe"
)

func main() {
	rates := flag.String("rates", "500,1000,2000,4000,8000,12000,16000,24000,32000", "offered DISCOVER rates per second, comma-separated")
	period := flag.Duration("period", 4*time.Second, "how long perfdhcp runs at each rate")
	clients := flag.Int("clients", 20000, "distinct client MACs perfdhcp simulates (-R)")
	pin := flag.Bool("pin", false, "run perfdhcp on CPU 0 and the servers (this process, dnsmasq) on CPU 1, so that neither side takes the other's core")
	reps := flag.Int("reps", 3, "runs per server and rate; the median is reported")
	profile := flag.String("cpuprofile", "", "write a CPU profile of this process (the nixboot server) to this file")
	flag.BoolVar(&v6, "6", false, "DHCPv6: perfdhcp -6 -i (Solicit-Advertise) against dnsmasq's and pxe.Server6's DHCPv6")
	flag.Parse()
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/dhcp:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "bench/dhcp:", err)
			os.Exit(1)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	if *pin && os.Getenv(pinnedEnv) == "" {
		if err := repin(); err != nil {
			fmt.Fprintln(os.Stderr, "bench/dhcp: -pin:", err)
			os.Exit(1)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *rates, *period, *clients, max(*reps, 1)); err != nil {
		fmt.Fprintln(os.Stderr, "bench/dhcp:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

// v6 is the -6 flag: the whole run is DHCPv6.
var v6 bool

// pinnedEnv marks the process repin started on CPU 1.
const pinnedEnv = "NIXBOOT_BENCH_DHCP_PINNED"

// repin runs this program again on CPU 1 alone. Every thread it and
// dnsmasq start inherits that; perfdhcp is started on CPU 0 (see perfdhcp).
// It returns only on failure.
func repin() error {
	if runtime.NumCPU() < 2 {
		return errors.New("needs at least 2 CPUs")
	}
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	env := append(os.Environ(), pinnedEnv+"=1")
	return syscall.Exec(taskset, append([]string{"taskset", "-c", "1", self}, os.Args[1:]...), env)
}

type result struct {
	rate              float64 // DISCOVER-OFFER exchanges per second
	sent, recv, drops int
	cpu               time.Duration // the server's user+system CPU time during the run
	// UDP datagrams the kernel dropped for a full socket receive buffer
	// (RcvbufErrors) during the run, in the server's namespace (DISCOVERs
	// the server did not read in time) and in perfdhcp's (OFFERs perfdhcp
	// did not read in time).
	srvOverflow, cliOverflow int
}

// cpuPerOffer is the server's CPU time per OFFER perfdhcp received: what
// an exchange costs, which a loaded machine does not distort the way it
// distorts rates.
func (r result) cpuPerOffer() time.Duration {
	if r.recv == 0 {
		return 0
	}
	return r.cpu / time.Duration(r.recv)
}

func (r result) dropPct() float64 {
	if r.sent == 0 {
		return 0
	}
	return 100 * float64(r.drops) / float64(r.sent)
}

func run(ctx context.Context, rateList string, period time.Duration, clients, reps int) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces)")
	}
	var offered []int
	for _, f := range strings.Split(rateList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return fmt.Errorf("bad rate %q", f)
		}
		offered = append(offered, n)
	}
	perf, err := look("perfdhcp")
	if err != nil {
		return err
	}
	dnsmasq, err := look("dnsmasq")
	if err != nil {
		return err
	}
	tag := fmt.Sprintf("nbpb%d", os.Getpid()%100000)
	n, err := setup(tag)
	defer n.teardown()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "nbp-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	if v6 {
		fmt.Print("DHCPv6: Solicit-Advertise in place of DISCOVER-OFFER below; ")
	}
	fmt.Printf("perfdhcp -i (DISCOVER-OFFER), %d clients, %v per run, median of %d runs, GOMAXPROCS=%d, %d CPUs\n", clients, period, reps, runtime.GOMAXPROCS(0), runtime.NumCPU())
	if os.Getenv(pinnedEnv) != "" {
		fmt.Println("pinned: perfdhcp on CPU 0, the servers on CPU 1")
	}
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Printf("load average at start: %s", la)
	}
	fmt.Println("overflow: UDP receive-buffer drops (RcvbufErrors) in the server/perfdhcp namespace, dnsmasq run then nixboot run")
	fmt.Printf("\n%8s | %10s %8s %8s | %10s %8s %8s | %6s %8s | %s\n", "offered", "dnsmasq/s", "drops%", "cpu/offer", "nixboot/s", "drops%", "cpu/offer", "ratio", "cpu ratio", "overflow srv/cli")
	var dm, nb []result
	for _, r := range offered {
		var ds, xs []result
		for i := 0; i < reps; i++ {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			measure := func() (result, error) {
				s0, c0 := rcvbufErrors(n.srv), rcvbufErrors(n.cli)
				res, err := perfdhcp(ctx, n, perf, r, clients, period)
				res.srvOverflow, res.cliOverflow = rcvbufErrors(n.srv)-s0, rcvbufErrors(n.cli)-c0
				return res, err
			}
			d, err := withDnsmasq(ctx, n, dnsmasq, tmp, measure)
			if err != nil {
				return fmt.Errorf("dnsmasq at %d/s: %w", r, err)
			}
			x, err := withNixboot(ctx, n, measure)
			if err != nil {
				return fmt.Errorf("nixboot at %d/s: %w", r, err)
			}
			ds, xs = append(ds, d), append(xs, x)
		}
		d, x := median(ds), median(xs)
		dm, nb = append(dm, d), append(nb, x)
		fmt.Printf("%8d | %10.0f %7.2f%% %8s | %10.0f %7.2f%% %8s | %5.2fx %7.2fx | %d/%d %d/%d\n", r, d.rate, d.dropPct(), us(d.cpuPerOffer()),
			x.rate, x.dropPct(), us(x.cpuPerOffer()), x.rate/max(d.rate, 1), cpuRatio(d, x), d.srvOverflow, d.cliOverflow, x.srvOverflow, x.cliOverflow)
	}

	// dnsmasq's sustained rate: the highest offered rate it served with
	// (almost) no drops.
	bestD, bestN := best(dm), best(nb)
	sustained := -1
	for i, d := range dm {
		if d.dropPct() <= 0.1 {
			sustained = i
		}
	}
	fmt.Println()
	fmt.Printf("peak DISCOVER-OFFER/s: dnsmasq %.0f, nixboot %.0f, ratio %.2fx (goal >= 1.5x)\n", bestD, bestN, bestN/max(bestD, 1))
	var cd, cn time.Duration
	var od, on int
	for i := range dm {
		cd, od = cd+dm[i].cpu, od+dm[i].recv
		cn, on = cn+nb[i].cpu, on+nb[i].recv
	}
	if od > 0 && on > 0 {
		pd, pn := cd/time.Duration(od), cn/time.Duration(on)
		fmt.Printf("server CPU per OFFER over all median runs: dnsmasq %s, nixboot %s, cpu ratio %.2fx (dnsmasq/nixboot; above 1 nixboot is cheaper)\n",
			us(pd), us(pn), float64(pd)/float64(max(pn, 1)))
	}
	if sustained >= 0 {
		fmt.Printf("at dnsmasq's highest drop-free rate (%d/s offered): nixboot drops %d of %d (%.2f%%)\n",
			offered[sustained], nb[sustained].drops, nb[sustained].sent, nb[sustained].dropPct())
	} else {
		fmt.Println("dnsmasq dropped packets at every offered rate; add lower rates")
	}
	return nil
}

func us(d time.Duration) string { return fmt.Sprintf("%.1fus", float64(d)/float64(time.Microsecond)) }

// cpuRatio is dnsmasq's CPU per OFFER over nixboot's: above 1, nixboot
// spends less CPU on an exchange.
func cpuRatio(d, x result) float64 {
	if x.cpuPerOffer() == 0 {
		return 0
	}
	return float64(d.cpuPerOffer()) / float64(x.cpuPerOffer())
}

// cpuTime reads a process's user+system CPU time from /proc/<pid>/stat
// (fields 14 and 15, in clock ticks of 1/100 s on Linux).
func cpuTime(pid string) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces; fields restart after ")".
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("bad /proc/%s/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("bad /proc/%s/stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad /proc/%s/stat", pid)
	}
	return time.Duration(ut+st) * (time.Second / clockTicks), nil
}

// rcvbufErrors returns the UDP RcvbufErrors counter of namespace ns, or 0
// when it cannot be read. It reads /proc/thread-self/net/snmp from a
// thread switched into ns rather than running a command, so that the
// CPU time measured for the in-process nixboot server hardly moves.
func rcvbufErrors(ns string) int {
	var snmp []byte
	if err := inNetns(ns, func() error {
		b, err := os.ReadFile("/proc/thread-self/net/snmp")
		snmp = b
		return err
	}); err != nil {
		return 0
	}
	n, _ := netstat.UDPRcvbufErrors(snmp)
	return n
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// median returns the run with the median rate (by sorting on rate).
func median(rs []result) result {
	sorted := append([]result(nil), rs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].rate < sorted[j].rate })
	return sorted[len(sorted)/2]
}

func best(rs []result) float64 {
	b := 0.0
	for _, r := range rs {
		b = max(b, r.rate)
	}
	return b
}

func look(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		if _, err := os.Stat(filepath.Join(d, name)); err == nil {
			return filepath.Join(d, name), nil
		}
	}
	return "", fmt.Errorf("%s not found (Debian: kea-admin for perfdhcp, dnsmasq-base)", name)
}

type netns struct {
	srv, cli string // namespace and interface names (the same)
	made     []string
}

func setup(tag string) (*netns, error) {
	n := &netns{srv: tag + "s", cli: tag + "c"}
	steps := [][]string{
		{"netns", "add", n.srv},
		{"netns", "add", n.cli},
		{"link", "add", n.srv, "netns", n.srv, "type", "veth", "peer", "name", n.cli, "netns", n.cli},
		{"-n", n.srv, "addr", "add", "10.78.0.1/16", "dev", n.srv},
		{"-n", n.cli, "addr", "add", "10.78.0.2/16", "dev", n.cli},
		{"-n", n.srv, "link", "set", n.srv, "up"},
		{"-n", n.cli, "link", "set", n.cli, "up"},
		{"-n", n.srv, "link", "set", "lo", "up"},
		{"-n", n.cli, "link", "set", "lo", "up"},
	}
	if v6 {
		steps = append(steps, []string{"-n", n.srv, "addr", "add", "fd00:78::1/64", "dev", n.srv, "nodad"})
	}
	for i, s := range steps {
		if out, err := exec.Command("ip", s...).CombinedOutput(); err != nil {
			return n, fmt.Errorf("ip %s: %v: %s", strings.Join(s, " "), err, out)
		}
		if i < 2 {
			n.made = append(n.made, s[2])
		}
	}
	if v6 {
		// perfdhcp -6 sends from the client's link-local address, usable
		// once duplicate address detection is done.
		for range 100 {
			out, err := exec.Command("ip", "-n", n.cli, "-6", "addr", "show", "dev", n.cli).CombinedOutput()
			if err == nil && strings.Contains(string(out), "fe80::") && !strings.Contains(string(out), "tentative") {
				return n, nil
			}
			time.Sleep(100 * time.Millisecond)
		}
		return n, errors.New("the client's link-local address stayed tentative")
	}
	return n, nil
}

func (n *netns) teardown() {
	for _, ns := range n.made {
		_ = exec.Command("ip", "netns", "del", ns).Run()
	}
}

func perfdhcp(ctx context.Context, n *netns, perf string, rate, clients int, period time.Duration) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, period+30*time.Second)
	defer cancel()
	secs := strconv.FormatFloat(period.Seconds(), 'f', -1, 64)
	args := []string{"ip", "netns", "exec", n.cli, perf, "-4", "-l", n.cli, "-i",
		"-r", strconv.Itoa(rate), "-R", strconv.Itoa(clients), "-p", secs, "-W", "500000", "10.78.0.1"}
	if v6 {
		// To ff02::1:2 on the link, as clients send.
		args = []string{"ip", "netns", "exec", n.cli, perf, "-6", "-l", n.cli, "-i",
			"-r", strconv.Itoa(rate), "-R", strconv.Itoa(clients), "-p", secs, "-W", "500000"}
	}
	if os.Getenv(pinnedEnv) != "" {
		args = append([]string{"taskset", "-c", "0"}, args...)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	out, err := cmd.CombinedOutput()
	// perfdhcp exits 3 when packets were dropped; the counters still hold.
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 3) {
		return result{}, fmt.Errorf("perfdhcp: %v\n%s", err, out)
	}
	return parsePerf(string(out))
}

var (
	rateRe  = regexp.MustCompile(`(?m)^Rate: ([0-9.]+) (?:DISCOVER-OFFER|Solicit-Advertise)/second`)
	countRe = regexp.MustCompile(`(?m)^(sent packets|received packets|drops): (\d+)`)
)

func parsePerf(out string) (result, error) {
	var r result
	m := rateRe.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no rate in perfdhcp output:\n%s", out)
	}
	r.rate, _ = strconv.ParseFloat(m[1], 64)
	seen := map[string]bool{}
	for _, c := range countRe.FindAllStringSubmatch(out, -1) {
		if seen[c[1]] {
			continue
		}
		seen[c[1]] = true
		v, _ := strconv.Atoi(c[2])
		switch c[1] {
		case "sent packets":
			r.sent = v
		case "received packets":
			r.recv = v
		case "drops":
			r.drops = v
		}
	}
	return r, nil
}

func withDnsmasq(ctx context.Context, n *netns, bin, tmp string, f func() (result, error)) (result, error) {
	leases := filepath.Join(tmp, "dnsmasq.leases")
	_ = os.Remove(leases)
	args := []string{"netns", "exec", n.srv, bin, "--no-daemon", "--conf-file=/dev/null",
		"--port=0", "--interface=" + n.srv, "--bind-interfaces",
		"--no-ping", "--quiet-dhcp", "--dhcp-lease-max=200000", "--dhcp-leasefile=" + leases,
		"--log-facility=" + filepath.Join(tmp, "dnsmasq.log")}
	if v6 {
		// The same /64 and lifetime as pxe.Server6 below, no RAs.
		args = append(args, "--dhcp-range=fd00:78::1:0,fd00:78::ffff:ffff,64,1h", "--quiet-dhcp6")
	} else {
		args = append(args, "--dhcp-range=10.78.1.0,10.78.255.254,255.255.0.0,1h", "--dhcp-option=3,10.78.0.1")
	}
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	time.Sleep(500 * time.Millisecond) // dnsmasq binds at once; give it a moment
	// "ip netns exec" execs dnsmasq in place, so the PID is dnsmasq's.
	pid := strconv.Itoa(cmd.Process.Pid)
	before, err := cpuTime(pid)
	if err != nil {
		return result{}, fmt.Errorf("dnsmasq CPU time: %w", err)
	}
	r, err := f()
	after, cerr := cpuTime(pid)
	if cerr != nil {
		return r, fmt.Errorf("dnsmasq CPU time (did it exit?): %w", cerr)
	}
	r.cpu = after - before
	return r, err
}

func withNixboot(ctx context.Context, n *netns, f func() (result, error)) (result, error) {
	var conn *net.UDPConn
	err := inNetns(n.srv, func() error {
		var err error
		if v6 {
			conn, err = pxe.ListenPacket6(n.srv)
		} else {
			conn, err = pxe.ListenPacket(n.srv, 67)
		}
		return err
	})
	if err != nil {
		return result{}, err
	}
	var s interface{ Serve(context.Context) error } = &pxe.Server{
		Interface: n.srv,
		ServerIP:  net.IPv4(10, 78, 0, 1),
		Conn:      conn,
		Mode:      pxe.ModeFull,
		Network: &pxe.Network{
			Subnet:     net.IPNet{IP: net.IPv4(10, 78, 0, 0).To4(), Mask: net.CIDRMask(16, 32)},
			RangeStart: net.IPv4(10, 78, 1, 0),
			RangeEnd:   net.IPv4(10, 78, 255, 254),
			Router:     []net.IP{net.IPv4(10, 78, 0, 1)},
			LeaseTime:  time.Hour,
		},
	}
	if v6 {
		s = &pxe.Server6{
			Conn:     conn,
			ServerIP: net.ParseIP("fd00:78::1"),
			ServerID: &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{0x02, 0, 0, 0, 0x78, 1}},
			Prefix:   netip.MustParsePrefix("fd00:78::/64"),
			Lifetime: time.Hour,
		}
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Serve(sctx) }()
	// The server runs in this process; while perfdhcp runs, this process
	// does nothing else but wait for it.
	before, err := cpuTime("self")
	if err != nil {
		cancel()
		<-done
		return result{}, err
	}
	r, ferr := f()
	after, err := cpuTime("self")
	if err != nil && ferr == nil {
		ferr = err
	}
	r.cpu = after - before
	cancel()
	if err := <-done; err != nil {
		return r, err
	}
	return r, ferr
}

// inNetns runs fn on an OS thread switched into namespace ns; the thread is
// never unlocked, so the runtime discards it afterwards.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", ns, err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
