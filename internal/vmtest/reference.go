package vmtest

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nixboot/nixboot/internal/testenv"
)

// DnsmasqConfig describes a dnsmasq (Debian's dnsmasq-base) run in a Net as
// a reference or peer server: DHCP and TFTP only, no DNS.
type DnsmasqConfig struct {
	// Interface is the device to serve on; "" means the Net's bridge.
	Interface string
	// Pool is the first and last address handed out. The zero value serves
	// no addresses (e.g. when Proxy is set).
	Pool [2]netip.Addr
	// Proxy runs dnsmasq as a proxyDHCP server for the bridge's subnet.
	Proxy bool
	// TFTPRoot enables dnsmasq's TFTP server on that directory.
	TFTPRoot string
	// Options are more dnsmasq.conf lines (dhcp-boot=, dhcp-match=, ...).
	Options []string
}

// Dnsmasq starts dnsmasq in the namespace and waits until it is up. It is
// killed by PID at test end. The ping check before each offer is off (it
// costs 3 s per boot).
func (n *Net) Dnsmasq(cfg DnsmasqConfig) *Process {
	n.t.Helper()
	bin := testenv.Command(n.t, "dnsmasq")
	dir := n.t.TempDir()
	iface := cfg.Interface
	if iface == "" {
		iface = n.Bridge
	}
	lines := []string{
		"port=0", // no DNS
		"interface=" + iface,
		"bind-interfaces",
		"no-resolv", "no-hosts",
		"no-ping",
		"dhcp-authoritative",
		"log-dhcp",
		"dhcp-leasefile=" + filepath.Join(dir, "leases"),
		"pid-file=",
	}
	mask := net.IP(net.CIDRMask(n.Addr.Bits(), 32)).String()
	if cfg.Pool[0].IsValid() {
		lines = append(lines, fmt.Sprintf("dhcp-range=%s,%s,%s,1h", cfg.Pool[0], cfg.Pool[1], mask))
	}
	if cfg.Proxy {
		lines = append(lines, fmt.Sprintf("dhcp-range=%s,proxy,%s", n.Addr.Masked().Addr(), mask))
	}
	if cfg.TFTPRoot != "" {
		lines = append(lines, "enable-tftp", "tftp-root="+cfg.TFTPRoot)
	}
	lines = append(lines, cfg.Options...)
	conf := filepath.Join(dir, "dnsmasq.conf")
	if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		n.t.Fatalf("vmtest: dnsmasq config: %v", err)
	}
	p := n.Start(bin, "--conf-file="+conf, "--keep-in-foreground", "--log-facility=-", "--user=root", "--group=root")
	n.waitOutput(p, "started, version", 10*time.Second)
	return p
}

// Nginx starts nginx (Debian's nginx-light) in the namespace serving root
// at the bridge address on port, and waits until it accepts connections.
// It is killed by PID at test end.
func (n *Net) Nginx(root string, port int) *Process {
	n.t.Helper()
	bin := testenv.Command(n.t, "nginx")
	dir := n.t.TempDir()
	addr := net.JoinHostPort(n.IP().String(), strconv.Itoa(port))
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log stderr warn;
events { worker_connections 64; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  default_type application/octet-stream;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server {
    listen %[2]s;
    root %[3]s;
  }
}
`, dir, addr, root)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		n.t.Fatalf("vmtest: nginx config: %v", err)
	}
	p := n.Start(bin, "-c", path, "-p", dir, "-e", "stderr")
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := n.Do(func() error {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err == nil {
			return p
		}
		select {
		case <-p.Done():
			n.t.Fatalf("vmtest: nginx exited: %v\n%s", p.Err(), p.Output())
		default:
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("vmtest: nginx not listening on %s after 10 s: %v\n%s", addr, err, p.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitOutput waits until p's output contains s.
func (n *Net) waitOutput(p *Process, s string, d time.Duration) {
	n.t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(p.Output(), s) {
		select {
		case <-p.Done():
			n.t.Fatalf("vmtest: %s exited: %v\n%s", p.Cmd.Path, p.Err(), p.Output())
		default:
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("vmtest: %q not in the output of %s after %s:\n%s", s, strings.Join(p.Cmd.Args, " "), d, p.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
