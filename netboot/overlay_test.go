package netboot_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nixboot/nixboot/initrd"
	"github.com/nixboot/nixboot/internal/testenv"
	"github.com/nixboot/nixboot/netboot"
)

// extractWithCPIO unpacks one file from a gzip-compressed newc archive with
// gzip and GNU cpio.
func extractWithCPIO(t *testing.T, archive []byte, name string) string {
	t.Helper()
	gz := testenv.Command(t, "gzip")
	cp := testenv.Command(t, "cpio")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", `"$0" -dc | "$1" -i --quiet --to-stdout "$2"`, gz, cp, name)
	cmd.Stdin = bytes.NewReader(archive)
	out, err := cmd.Output()
	require.NoError(t, err)
	return string(out)
}

func TestOverlayAppendedToInitrd(t *testing.T) {
	for _, baseSize := range []int{4096, 5001} { // aligned, and needing 3 bytes of padding
		t.Run(strconv.Itoa(baseSize), func(t *testing.T) {
			dir := t.TempDir()
			base := randomBytes(t, baseSize)
			require.NoError(t, os.WriteFile(filepath.Join(dir, "initrd"), base, 0o644))
			require.NoError(t, os.WriteFile(filepath.Join(dir, "vmlinuz"), []byte("kernel"), 0o644))
			c := &netboot.Config{
				Profiles: map[string]netboot.ProfileConfig{"p": {
					Kernel:  filepath.Join(dir, "vmlinuz"),
					Initrds: []string{filepath.Join(dir, "initrd")},
					Overlay: map[string]string{
						"etc/hostname":             "{{.Hostname}}\n",
						"/etc/ssh/authorized_keys": "{{.Vars.key}}\n",
					},
				}},
				Machines: []netboot.MachineConfig{{MAC: "52:54:00:00:00:01", Profile: "p", Hostname: "web1", Vars: map[string]string{"key": "ssh-ed25519 AAAA test"}}},
			}
			inv, err := c.Compile()
			require.NoError(t, err)
			h := &netboot.HTTPHandler{Inventory: inv}
			srvURL := startHTTP(t, h)
			u := srvURL + "/m/52:54:00:00:00:01/initrd/0"
			resp, body := get(t, u)
			require.Equal(t, 200, resp.StatusCode)
			assert.Equal(t, strconv.Itoa(len(body)), resp.Header.Get("Content-Length"))
			require.True(t, bytes.Equal(base, body[:baseSize]), "base initrd changed")
			pad := (4 - baseSize%4) % 4
			assert.Equal(t, make([]byte, pad), body[baseSize:baseSize+pad])
			seg := body[baseSize+pad:]
			assert.Equal(t, "web1\n", extractWithCPIO(t, seg, "etc/hostname"))
			assert.Equal(t, "ssh-ed25519 AAAA test\n", extractWithCPIO(t, seg, "etc/ssh/authorized_keys"))

			// The project's own reader sees the same segment.
			r := initrd.NewReader(bytes.NewReader(seg))
			var names []string
			for {
				rec, err := r.Next()
				if err != nil {
					break
				}
				names = append(names, rec.Name)
			}
			assert.Contains(t, names, "etc/ssh/authorized_keys")

			// Range requests across the boundary return the same bytes.
			code, part := curl(t, "-r", strconv.Itoa(baseSize-10)+"-"+strconv.Itoa(baseSize+20), u)
			assert.Equal(t, "206", code)
			assert.Equal(t, string(body[baseSize-10:baseSize+21]), part)
			// And the ETag revalidates.
			code, _ = curl(t, "-H", "If-None-Match: "+resp.Header.Get("ETag"), u)
			assert.Equal(t, "304", code)
		})
	}
}
