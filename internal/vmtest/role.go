package vmtest

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Servers that open sockets after they start (pin/tftp opens one per
// transfer) cannot run in the test process: Go moves goroutines between
// threads, so those sockets would land in the host's namespace, not the
// test network. Such servers run as a role: the test binary re-executed
// inside the namespace with `ip netns exec`, where every socket it opens
// belongs to the test network.

// Environment variables that make a test binary run a role instead of its
// tests.
const (
	RoleEnv       = "NIXBOOT_VMTEST_ROLE"
	RoleConfigEnv = "NIXBOOT_VMTEST_ROLE_CONFIG"
	// ReadyLine is what a role prints on stdout once it serves.
	ReadyLine = "vmtest: role ready"
)

// Role is a server a test binary can run inside a namespace. config is
// what the test passed to Net.StartRole. The role calls ready once its
// sockets are open, and returns when ctx is cancelled (SIGTERM).
type Role func(ctx context.Context, config []byte, ready func()) error

// Main is a TestMain body: it runs the role named by RoleEnv when set
// (the test binary was started by Net.StartRole) and the tests otherwise.
//
//	func TestMain(m *testing.M) { vmtest.Main(m, map[string]vmtest.Role{"nixboot": runNixboot}) }
func Main(m *testing.M, roles map[string]Role) {
	name := os.Getenv(RoleEnv)
	if name == "" {
		os.Exit(m.Run())
	}
	role, ok := roles[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "vmtest: unknown role %q\n", name)
		os.Exit(2)
	}
	config, err := os.ReadFile(os.Getenv(RoleConfigEnv))
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmtest: role %s: %v\n", name, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err = role(ctx, config, func() { fmt.Fprintln(os.Stdout, ReadyLine) })
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmtest: role %s: %v\n", name, err)
		stop()
		os.Exit(1)
	}
}

// StartRole runs this test binary's role name inside the namespace with
// config, and waits until the role is ready (30 s at most). At test end the
// process gets SIGTERM, then SIGKILL if it has not exited within 10 s; its
// output is logged if the test failed. The test binary's TestMain must call
// Main.
func (n *Net) StartRole(name string, config []byte) *Process {
	n.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		n.t.Fatalf("vmtest: finding the test binary: %v", err)
	}
	cfg := filepath.Join(n.t.TempDir(), name+".config")
	if err := os.WriteFile(cfg, config, 0o600); err != nil {
		n.t.Fatalf("vmtest: role config: %v", err)
	}
	// env execs the test binary in place, so the PID stays the role's.
	p := n.Start("env", RoleEnv+"="+name, RoleConfigEnv+"="+cfg, exe, "-test.run=^$")
	n.t.Cleanup(func() {
		// Registered after Start's cleanup, so it runs first: a graceful
		// stop lets the role close its sockets and report errors.
		_ = p.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.Done():
			if p.Err() != nil {
				n.t.Errorf("vmtest: role %s exited: %v\n%s", name, p.Err(), p.Output())
			}
		case <-time.After(10 * time.Second):
			n.t.Errorf("vmtest: role %s ignored SIGTERM for 10 s", name)
		}
	})
	n.waitOutput(p, ReadyLine, 30*time.Second)
	return p
}
