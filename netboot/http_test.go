package netboot_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/internal/testenv"
	"github.com/nixboot/nixboot/netboot"
)

// bootFixture is a directory with a kernel and two initrds and an inventory
// booting them.
type bootFixture struct {
	dir             string
	kernel, initrd0 []byte
	initrd1         []byte
	inv             *netboot.StaticInventory
}

func newBootFixture(t *testing.T, extra func(c *netboot.Config)) *bootFixture {
	t.Helper()
	fx := &bootFixture{dir: t.TempDir(), kernel: randomBytes(t, 300_000), initrd0: randomBytes(t, 1_000_000), initrd1: randomBytes(t, 5000)}
	write := func(name string, b []byte) string {
		p := filepath.Join(fx.dir, name)
		require.NoError(t, os.WriteFile(p, b, 0o644))
		return p
	}
	c := &netboot.Config{
		Profiles: map[string]netboot.ProfileConfig{
			"linux": {
				Kernel:  write("vmlinuz", fx.kernel),
				Initrds: []string{write("initrd.img", fx.initrd0), write("extra.cpio", fx.initrd1)},
				Cmdline: "console=ttyS0 hostname={{.Hostname}} role={{.Vars.role}}",
				Message: "Booting linux",
			},
		},
		Machines: []netboot.MachineConfig{{MAC: "52:54:00:12:34:56", Profile: "linux", Hostname: "db1", Vars: map[string]string{"role": "db"}}},
		Default:  "linux",
	}
	if extra != nil {
		extra(c)
	}
	inv, err := c.Compile()
	require.NoError(t, err)
	fx.inv = inv
	return fx
}

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, b
}

// scriptURLs returns the kernel and initrd URLs of a rendered script.
func scriptURLs(t *testing.T, script string) (kernel string, initrds []string) {
	t.Helper()
	for _, line := range strings.Split(script, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "kernel":
			kernel = f[1]
		case "initrd":
			initrds = append(initrds, f[len(f)-1])
		}
	}
	return kernel, initrds
}

func TestHTTPChainPattern(t *testing.T) {
	fx := newBootFixture(t, nil)
	tracker := &netboot.Tracker{}
	h := &netboot.HTTPHandler{Inventory: fx.inv, Tracker: tracker}
	srv := httptest.NewServer(h)
	defer srv.Close()

	resp, body := get(t, srv.URL+"/boot.ipxe")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "#!ipxe\nchain "+srv.URL+"/boot.ipxe?mac=${mac}&uuid=${uuid}&arch=${buildarch}\n", string(body))

	resp, body = get(t, srv.URL+"/boot.ipxe?mac=52:54:00:12:34:56&uuid=8a0e2b34-aaaa-bbbb-cccc-0123456789ab&arch=x86_64")
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	script := string(body)
	assert.True(t, strings.HasPrefix(script, "#!ipxe\n"))
	assert.Contains(t, script, "echo Booting linux\n")
	assert.Contains(t, script, "console=ttyS0 hostname=db1 role=db")
	assert.Contains(t, script, "initrd=initrd.img initrd=extra.cpio")
	assert.Contains(t, script, "imgfetch --name nixboot-beacon "+srv.URL+"/beacon?mac=52%3A54%3A00%3A12%3A34%3A56&phase=done")
	assert.True(t, strings.HasSuffix(script, "\nboot\n"), script)

	kernel, initrds := scriptURLs(t, script)
	require.Len(t, initrds, 2)
	_, got := get(t, kernel)
	assert.True(t, bytes.Equal(fx.kernel, got), "kernel differs")
	_, got = get(t, initrds[0])
	assert.True(t, bytes.Equal(fx.initrd0, got), "initrd 0 differs")
	_, got = get(t, initrds[1])
	assert.True(t, bytes.Equal(fx.initrd1, got), "initrd 1 differs")

	states := tracker.States()
	require.Len(t, states, 1)
	assert.Equal(t, netboot.PhaseInitrd, states[0].Phase)
	assert.Equal(t, "linux", states[0].Profile)

	resp, _ = get(t, srv.URL+"/beacon?mac=52:54:00:12:34:56&phase=done")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, netboot.PhaseDone, tracker.States()[0].Phase)

	// The state is served as JSON.
	rec := httptest.NewRecorder()
	tracker.ServeHTTP(rec, httptest.NewRequest("GET", "/state", nil))
	var decoded []netboot.MachineState
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &decoded))
	require.Len(t, decoded, 1)
	assert.Equal(t, "52:54:00:12:34:56", decoded[0].MAC)
	assert.Contains(t, decoded[0].Phases, netboot.PhaseKernel)

	t.Run("bad requests", func(t *testing.T) {
		for _, u := range []string{
			"/boot.ipxe?mac=zz",
			"/boot.ipxe?mac=52:54:00:12:34:56&uuid=a%0Ab",
			"/beacon?mac=52:54:00:12:34:56&phase=pwned",
			"/m/52:54:00:12:34:56/initrd/7",
			"/m/52:54:00:12:34:56/initrd/-1",
			"/m/52:54:00:12:34:56/../../etc/passwd",
			"/m/nonsense/kernel",
		} {
			resp, _ := get(t, srv.URL+u)
			assert.Contains(t, []int{400, 404}, resp.StatusCode, u)
		}
	})
}

func TestHTTPUnknownMachine(t *testing.T) {
	fx := newBootFixture(t, func(c *netboot.Config) { c.IgnoreUnknown = true })
	srv := httptest.NewServer(&netboot.HTTPHandler{Inventory: fx.inv})
	defer srv.Close()
	resp, _ := get(t, srv.URL+"/boot.ipxe?mac=52:54:00:00:00:01")
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, _ = get(t, srv.URL+"/m/52:54:00:00:00:01/kernel")
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, _ = get(t, srv.URL+"/boot.ipxe?mac=52:54:00:12:34:56")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

func curl(t *testing.T, args ...string) (string, string) {
	t.Helper()
	bin := testenv.Command(t, "curl")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out := filepath.Join(t.TempDir(), "body")
	cmd := exec.CommandContext(ctx, bin, append([]string{"-sS", "--path-as-is", "-o", out, "-w", "%{http_code}"}, args...)...)
	code, err := cmd.Output()
	require.NoError(t, err, "curl %v", args)
	body, err := os.ReadFile(out)
	if err != nil {
		body = nil
	}
	return string(code), string(body)
}

func TestHTTPCurl(t *testing.T) {
	data := randomBytes(t, 2_000_000)
	mod := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	files := fstest.MapFS{"ipxe.efi": {Data: data, ModTime: mod}}
	srv := httptest.NewServer(&netboot.HTTPHandler{Files: netboot.FS(files)})
	defer srv.Close()
	u := srv.URL + "/ipxe.efi"

	t.Run("full", func(t *testing.T) {
		code, body := curl(t, u)
		assert.Equal(t, "200", code)
		assert.True(t, body == string(data), "content differs")
	})
	ranges := []struct {
		spec  string
		start int
		end   int // exclusive
	}{
		{"0-0", 0, 1},
		{"100-199", 100, 200},
		{"1999000-", 1_999_000, 2_000_000},
		{"-500", 2_000_000 - 500, 2_000_000},
	}
	for _, r := range ranges {
		t.Run("range "+r.spec, func(t *testing.T) {
			code, body := curl(t, "-r", r.spec, u)
			assert.Equal(t, "206", code)
			assert.True(t, body == string(data[r.start:r.end]), "range content differs (%d bytes)", len(body))
		})
	}
	t.Run("range unsatisfiable", func(t *testing.T) {
		code, _ := curl(t, "-r", "3000000-3000010", u)
		assert.Equal(t, "416", code)
	})
	t.Run("if-modified-since", func(t *testing.T) {
		code, _ := curl(t, "-H", "If-Modified-Since: "+mod.Format(http.TimeFormat), u)
		assert.Equal(t, "304", code)
		code, _ = curl(t, "-H", "If-Modified-Since: "+mod.Add(-time.Hour).Format(http.TimeFormat), u)
		assert.Equal(t, "200", code)
	})
	t.Run("etag", func(t *testing.T) {
		etag := filepath.Join(t.TempDir(), "etag")
		code, _ := curl(t, "--etag-save", etag, u)
		require.Equal(t, "200", code)
		saved, err := os.ReadFile(etag)
		require.NoError(t, err)
		require.NotEmpty(t, strings.TrimSpace(string(saved)))
		code, _ = curl(t, "--etag-compare", etag, u)
		assert.Equal(t, "304", code)
		code, _ = curl(t, "-H", `If-None-Match: "other"`, u)
		assert.Equal(t, "200", code)
	})
	t.Run("head", func(t *testing.T) {
		code, _ := curl(t, "-I", u)
		assert.Equal(t, "200", code)
	})
	t.Run("post refused", func(t *testing.T) {
		code, _ := curl(t, "-X", "POST", u)
		assert.Equal(t, "405", code)
	})
}

func TestHTTPTraversal(t *testing.T) {
	root := traversalRoot(t)
	srv := httptest.NewServer(&netboot.HTTPHandler{Files: netboot.FS(root.FS())})
	defer srv.Close()
	attempts := []string{
		"/../secret.txt",
		"/%2e%2e/secret.txt",
		"/%2E%2E%2Fsecret.txt",
		"/..%2fsecret.txt",
		"/..%5csecret.txt",
		"/%5c..%5csecret.txt",
		"/root/../../secret.txt",
		"//../secret.txt",
		"/escape/secret.txt",
		"/a/b/../../../secret.txt",
		"/.%2e/secret.txt",
		"/ok.txt%00",
	}
	for _, a := range attempts {
		t.Run(a, func(t *testing.T) {
			code, body := curl(t, srv.URL+a)
			assert.NotEqual(t, "200", code)
			assert.NotContains(t, body, "SECRET")
		})
	}
	t.Run("control", func(t *testing.T) {
		code, body := curl(t, srv.URL+"/ok.txt")
		assert.Equal(t, "200", code)
		assert.Equal(t, "fine", body)
	})
}

func TestHTTPNixOSProfile(t *testing.T) {
	dir, err := filepath.Abs("testdata/nixos-netboot")
	require.NoError(t, err)
	c := &netboot.Config{
		Profiles: map[string]netboot.ProfileConfig{"nixos": {NixOS: dir, Cmdline: "console=ttyS0"}},
		Default:  "nixos",
	}
	inv, err := c.Compile()
	require.NoError(t, err)
	srv := httptest.NewServer(&netboot.HTTPHandler{Inventory: inv})
	defer srv.Close()
	_, body := get(t, srv.URL+"/boot.ipxe?mac=52:54:00:aa:bb:cc&arch=x86_64")
	script := string(body)
	assert.Contains(t, script, "init=/nix/store/qw3x7bbqj5k0v4ml4hjb1b8wnaw1hjmz-nixos-system-nixos-24.11.20250101.abcdef0/init initrd=initrd nohibernate loglevel=4 ${cmdline} console=ttyS0")
	kernel, initrds := scriptURLs(t, script)
	require.Len(t, initrds, 1)
	assert.Contains(t, script, "initrd --name initrd "+initrds[0])
	for path, u := range map[string]string{"bzImage": kernel, "initrd": initrds[0]} {
		want, err := os.ReadFile(filepath.Join(dir, path))
		require.NoError(t, err)
		_, got := get(t, u)
		assert.Equal(t, want, got, path)
	}
}

func Example_genericScript() {
	b, err := netboot.GenericScript("http://10.0.0.1:8080")
	if err != nil {
		panic(err)
	}
	fmt.Print(string(b))
	// Output:
	// #!ipxe
	// chain http://10.0.0.1:8080/boot.ipxe?mac=${mac}&uuid=${uuid}&arch=${buildarch}
}

func startHTTP(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// Identity values in a request reach kernel command line templates: only what
// iPXE expands ${uuid}, ${buildarch} and ${hostname} to on real machines is
// taken, anything else is a 400, not a 502 and an error in the log.
func TestHTTPIdentityValues(t *testing.T) {
	fx := newBootFixture(t, nil)
	tracker := &netboot.Tracker{}
	srv := httptest.NewServer(&netboot.HTTPHandler{Inventory: fx.inv, Tracker: tracker})
	defer srv.Close()
	const unknown = "/boot.ipxe?mac=52:54:00:00:00:07"

	resp, body := get(t, srv.URL+unknown+"&arch=x86_64&hostname=web-1.rack_a")
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	assert.Contains(t, string(body), "console=ttyS0 hostname=web-1.rack_a role=")
	for _, v := range []string{"x%3Dy%2Cz", "%22", "%C3%28", "a%24%7Bb%7D", "a'b"} {
		resp, body := get(t, srv.URL+unknown+"&hostname="+v)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "hostname=%s: %s", v, body)
	}
	resp, _ = get(t, srv.URL+unknown+"&arch=x86%2064")
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)

	// HEAD is not a boot step: only GET moves the machine on.
	tracker2 := &netboot.Tracker{}
	srv2 := httptest.NewServer(&netboot.HTTPHandler{Inventory: fx.inv, Tracker: tracker2})
	defer srv2.Close()
	head, err := http.Head(srv2.URL + "/boot.ipxe?mac=52:54:00:12:34:56")
	require.NoError(t, err)
	head.Body.Close()
	assert.Equal(t, http.StatusOK, head.StatusCode)
	assert.Empty(t, tracker2.States(), "a HEAD marked a phase")
	get(t, srv2.URL+"/boot.ipxe?mac=52:54:00:12:34:56")
	require.Len(t, tracker2.States(), 1)
	assert.Equal(t, netboot.PhaseScript, tracker2.States()[0].Phase)
}
