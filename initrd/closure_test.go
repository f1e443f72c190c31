//go:build linux

package initrd_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/initrd"
	"github.com/nixboot/nixboot/internal/nixtest"
	"github.com/nixboot/nixboot/internal/testenv"
)

// A real closure (nix-build in a private store) given as a closure-info
// directory: the initrd holds every store path and the registration, and a
// fresh Nix store made from the unpacked archive loads that registration
// and verifies every path's contents against its recorded hash.
func TestClosureInfoLoadsIntoNix(t *testing.T) {
	testenv.Root(t)
	cpio := testenv.Command(t, "cpio")
	c := nixtest.Build(t, "NBI-CLOSURE-INFO")
	info := filepath.Join(t.TempDir(), "closure-info")
	require.NoError(t, os.MkdirAll(info, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(info, "store-paths"), []byte(strings.Join(c.Paths, "\n")+"\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(info, "registration"), c.Registration, 0o644))

	entries, err := initrd.ClosureInfo(info, c.StoreDir())
	require.NoError(t, err)
	planned, err := initrd.Plan(entries, initrd.PlanOptions{RootOwner: true})
	require.NoError(t, err)
	var buf bytes.Buffer
	_, err = initrd.Write(context.Background(), &buf, []initrd.Segment{{Compression: initrd.Zstd, Entries: planned}}, initrd.WriteOptions{})
	require.NoError(t, err)

	// The streaming path gives the same bytes for a real closure.
	in, err := initrd.ClosureInfoInput(info, c.StoreDir())
	require.NoError(t, err)
	st, err := initrd.PlanStream([]initrd.Input{in}, initrd.PlanOptions{RootOwner: true})
	require.NoError(t, err)
	var streamed bytes.Buffer
	_, err = initrd.Write(context.Background(), &streamed, []initrd.Segment{{Compression: initrd.Zstd, Stream: st}}, initrd.WriteOptions{})
	require.NoError(t, err)
	require.True(t, bytes.Equal(buf.Bytes(), streamed.Bytes()), "streamed closure differs (%d and %d bytes)", buf.Len(), streamed.Len())

	rep, err := initrd.Inspect(context.Background(), bytes.NewReader(buf.Bytes()), initrd.InspectOptions{Entries: true})
	require.NoError(t, err)
	require.Empty(t, rep.Dropped)
	top := map[string]bool{}
	for _, e := range rep.Entries {
		if rest, ok := strings.CutPrefix(e.Name, "nix/store/"); ok && !strings.Contains(rest, "/") {
			top["/nix/store/"+rest] = true
		}
	}
	want := map[string]bool{}
	for _, p := range c.Paths {
		want[p] = true
	}
	assert.Equal(t, want, top, "every store path of the closure, nothing else")

	root := t.TempDir()
	run(t, root, decompress(t, initrd.Zstd, buf.Bytes()), cpio, "-idm", "--quiet")
	reg, err := os.ReadFile(filepath.Join(root, initrd.RegistrationName))
	require.NoError(t, err)
	assert.Equal(t, c.Registration, reg)

	// The booted system's first step: load the registration into a store
	// rooted at the unpacked archive, then check every path.
	c.Nix(t, "sh", "-c", `nix-store --store "$1" --load-db < "$1/`+initrd.RegistrationName+`"`, "sh", root)
	c.Nix(t, "nix-store", "--store", root, "--verify", "--check-contents")
	got := strings.Fields(string(c.Nix(t, "nix-store", "--store", root, "-qR", c.Toplevel)))
	sort.Strings(got)
	wantPaths := append([]string(nil), c.Paths...)
	sort.Strings(wantPaths)
	assert.Equal(t, wantPaths, got)
}
