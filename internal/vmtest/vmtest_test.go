package vmtest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/nixboot/nixboot/internal/testenv"
)

func TestParseMarker(t *testing.T) {
	tests := []struct {
		name string
		line string
		want Marker
		err  bool
	}{
		{
			name: "one NIC",
			line: "NIXBOOT-E2E-OK token=abc mac=52:54:00:12:34:56 cmdline=console=ttyS0 nbv.token=abc",
			want: Marker{Token: "abc", MACs: []string{"52:54:00:12:34:56"}, Cmdline: "console=ttyS0 nbv.token=abc"},
		},
		{
			name: "escape sequences before, two NICs",
			line: "\x1b[2J\x1b[01;01HNIXBOOT-E2E-OK token=t1 mac=52:54:00:00:00:01,52:54:00:00:00:02 cmdline=x",
			want: Marker{Token: "t1", MACs: []string{"52:54:00:00:00:01", "52:54:00:00:00:02"}, Cmdline: "x"},
		},
		{
			name: "no NIC",
			line: "NIXBOOT-E2E-OK token=- mac=- cmdline=",
			want: Marker{Token: "-"},
		},
		{name: "failure line", line: "NIXBOOT-E2E-FAIL missing paths: /x", err: true},
		{name: "no mac", line: "NIXBOOT-E2E-OK token=a cmdline=x", err: true},
		{name: "no cmdline", line: "NIXBOOT-E2E-OK token=a mac=-", err: true},
		{name: "empty", line: "", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMarker(tt.line)
			if tt.err {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestQEMUArgs(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:aa:bb:01")
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings that must appear, in order, in the joined args
		err  bool
	}{
		{
			name: "direct kernel",
			cfg:  Config{Kernel: "/k", Initrd: "/i", Append: "console=ttyS0"},
			want: []string{"-machine pc,graphics=off", "-accel " + Accel(), "-kernel /k -initrd /i -append console=ttyS0"},
		},
		{
			name: "OVMF, NIC without ROM",
			cfg:  Config{Firmware: OVMF, NICs: []NIC{{Tap: "nbvtap0", MAC: mac, NoROM: true, BootIndex: 1}}},
			want: []string{"if=pflash,format=raw,unit=0,readonly=on,file=" + OVMFCode, "unit=1,file=",
				"-netdev tap,id=n0,ifname=nbvtap0,script=no,downscript=no",
				"-device virtio-net-pci,netdev=n0,mac=52:54:00:aa:bb:01,romfile=,bootindex=1"},
		},
		{
			name: "e1000 with ROM",
			cfg:  Config{NICs: []NIC{{Tap: "t", MAC: mac, Model: "e1000"}}},
			want: []string{"-device e1000,netdev=n0,mac=52:54:00:aa:bb:01"},
		},
		{name: "NIC without MAC", cfg: Config{NICs: []NIC{{Tap: "t"}}}, err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args, err := qemuArgs(tt.cfg, t.TempDir())
			if tt.err {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			joined := strings.Join(args, " ")
			for _, w := range tt.want {
				i := strings.Index(joined, w)
				require.GreaterOrEqual(t, i, 0, "missing %q in %q", w, joined)
				joined = joined[i+len(w):]
			}
		})
	}
}

// TestNetServesInsideNamespace checks that a Go server whose listener was
// opened with Net.Listen is reachable from inside the namespace (curl run
// with ip netns exec) at the bridge address.
func TestNetServesInsideNamespace(t *testing.T) {
	testenv.Root(t)
	curl := testenv.Command(t, "curl")
	n := NewNet(t, NetConfig{})
	l := n.Listen("tcp4", net.JoinHostPort(n.IP().String(), "8080"))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello from "+n.Name)
	})}
	n.Go(func(ctx context.Context) error {
		go func() { <-ctx.Done(); _ = srv.Close() }()
		if err := srv.Serve(l); err != http.ErrServerClosed {
			return err
		}
		return nil
	})
	out, err := n.Command(t.Context(), curl, "-sS", "--max-time", "5", "http://"+l.Addr().String()+"/").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Equal(t, "hello from "+n.Name, string(out))

	// The address exists only in the namespace: from the host it is not ours.
	addrs, err := net.InterfaceAddrs()
	require.NoError(t, err)
	for _, a := range addrs {
		assert.NotContains(t, a.String(), n.IP().String()+"/")
	}
}

// TestRouterAdvertisements listens on a veth port of the bridge and checks
// that Net's RAs arrive with hop limit 255 from the bridge's link-local
// address.
func TestRouterAdvertisements(t *testing.T) {
	testenv.Root(t)
	n := NewNet(t, NetConfig{})
	n.run("-n", n.Name, "link", "add", "nbvra0", "type", "veth", "peer", "name", "nbvra1")
	n.run("-n", n.Name, "link", "set", "nbvra1", "master", n.Bridge, "up")
	n.run("-n", n.Name, "link", "set", "nbvra0", "up")

	var fd int
	require.NoError(t, n.Do(func() (err error) {
		fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
		if err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVHOPLIMIT, 1); err != nil {
			return err
		}
		return unix.BindToDevice(fd, "nbvra0")
	}))
	t.Cleanup(func() { unix.Close(fd) })
	require.NoError(t, unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 1}))

	deadline := time.Now().Add(5 * time.Second)
	buf := make([]byte, 1500)
	oob := make([]byte, 128)
	for time.Now().Before(deadline) {
		nb, noob, _, from, err := unix.Recvmsg(fd, buf, oob, 0)
		if err != nil || nb < 1 || buf[0] != 134 {
			continue
		}
		src := from.(*unix.SockaddrInet6)
		assert.Equal(t, "fe80::1", net.IP(src.Addr[:]).String())
		msgs, err := unix.ParseSocketControlMessage(oob[:noob])
		require.NoError(t, err)
		hop := -1
		for _, m := range msgs {
			if m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_HOPLIMIT && len(m.Data) >= 4 {
				hop = int(m.Data[0])
			}
		}
		assert.Equal(t, 255, hop)
		assert.Equal(t, RouterAdvertisement(n.MAC)[4:], buf[4:nb], "RA body (checksum aside)")
		return
	}
	t.Fatal("no router advertisement within 5 s")
}

// TestKernelBoot boots the test kernel directly (-kernel) with the test
// initrd, one VM per NIC model, and checks testinit's marker: the token
// from the command line, the NIC's MAC, and a path check.
func TestKernelBoot(t *testing.T) {
	testenv.Root(t)
	testenv.Short(t)
	kernel := testenv.Kernel(t)
	initrd := Initrd(t, InitFiles(t))
	n := NewNet(t, NetConfig{})
	for i, model := range []string{"virtio-net-pci", "e1000"} {
		t.Run(model, func(t *testing.T) {
			token := fmt.Sprintf("kb%d-%s", i, n.Name)
			mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x6e, 0x62, byte(0x10 + i)}
			m := Start(t, Config{
				Name:   model,
				Kernel: kernel, Initrd: initrd,
				Append: "console=ttyS0 panic=-1 quiet nbv.token=" + token + " nbv.check=/init,/lib/modules/nbv",
				NICs:   []NIC{{Tap: n.AddTap(), MAC: mac, Model: model}},
				Netns:  n.Name,
			})
			ctx, cancel := context.WithTimeout(t.Context(), 180*time.Second)
			defer cancel()
			got, err := m.WaitBoot(ctx)
			require.NoError(t, err)
			t.Logf("%s: marker after %s", model, time.Since(m.Started).Round(time.Millisecond))
			assert.Equal(t, token, got.Token)
			assert.Equal(t, []string{mac.String()}, got.MACs)
			assert.Contains(t, got.Cmdline, "nbv.token="+token)
			select {
			case <-m.Done():
			case <-ctx.Done():
				t.Fatal("VM did not power off after its marker")
			}
		})
	}
}

// TestKernelBootFailure checks that a missing nbv.check path makes the guest
// report failure, which WaitBoot returns as ErrBootFailed.
func TestKernelBootFailure(t *testing.T) {
	testenv.Root(t)
	testenv.Short(t)
	kernel := testenv.Kernel(t)
	initrd := Initrd(t, InitFiles(t))
	m := Start(t, Config{
		Kernel: kernel, Initrd: initrd,
		Append: "console=ttyS0 panic=-1 quiet nbv.token=x nbv.check=/no/such/file",
	})
	ctx, cancel := context.WithTimeout(t.Context(), 180*time.Second)
	defer cancel()
	_, err := m.WaitBoot(ctx)
	require.ErrorIs(t, err, ErrBootFailed)
	assert.Contains(t, err.Error(), "/no/such/file")
}
