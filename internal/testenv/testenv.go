// Package testenv decides whether a test that needs something from the
// machine (root, a Debian package's command, a kernel image) can run.
//
// Outside CI such a test skips with a reason, so that `go test ./...` works
// anywhere. When NIXBOOT_REQUIRE_ALL=1 (set by .ci/run), a missing
// requirement fails the test instead: in CI a skipped end-to-end test is a
// failing one.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// RequireAllEnv is the environment variable that turns skips into failures.
const RequireAllEnv = "NIXBOOT_REQUIRE_ALL"

// Strict reports whether missing requirements fail tests instead of skipping them.
func Strict() bool { return os.Getenv(RequireAllEnv) == "1" }

// Unavailable skips the test with reason, or fails it when Strict.
func Unavailable(t testing.TB, reason string) {
	t.Helper()
	if Strict() {
		t.Fatalf("requirement missing (and %s=1 forbids skipping): %s", RequireAllEnv, reason)
	}
	t.Skip(reason)
}

// Short skips a slow test under -short. -short is never used in CI.
func Short(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("slow test skipped with -short")
	}
}

// Root requires the test to run as root.
func Root(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root")
	}
}

// Command requires the named program on PATH (or in /usr/sbin and /sbin,
// which non-root PATHs often lack) and returns its path.
func Command(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	Unavailable(t, name+" not found (install its Debian package; scripts/test.sh does)")
	return ""
}

// File requires one of the given paths to exist and returns the first that does.
func File(t testing.TB, paths ...string) string {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	Unavailable(t, "none of these files exist: "+strings.Join(paths, ", "))
	return ""
}

// Kernel returns the path of a bootable x86-64 Linux kernel image: $NIXBOOT_KERNEL,
// the one scripts/test.sh extracts from Debian's linux-image-amd64, or the
// newest /boot/vmlinuz-*.
func Kernel(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("NIXBOOT_KERNEL"); p != "" {
		return File(t, p)
	}
	cands := []string{"/var/cache/nixboot/vmlinuz"}
	boot, _ := filepath.Glob("/boot/vmlinuz-*")
	sort.Sort(sort.Reverse(sort.StringSlice(boot)))
	cands = append(cands, boot...)
	return File(t, cands...)
}
