package netboot_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
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

// baseInitrd writes a gzip initrd with etc (0755), root (0700) and a file
// in root, of a length that is a multiple of 4 or not, as aligned asks.
func baseInitrd(t *testing.T, path string, aligned bool) []byte {
	t.Helper()
	for n := 100; n < 400; n++ {
		entries := []initrd.Entry{
			{Header: initrd.Header{Name: "etc", Type: initrd.TypeDir, Mode: 0o755}},
			{Header: initrd.Header{Name: "root", Type: initrd.TypeDir, Mode: 0o700}},
			{Header: initrd.Header{Name: "root/notes", Type: initrd.TypeReg, Mode: 0o600, Size: int64(n)}, Data: randomBytes(t, n)},
		}
		var b bytes.Buffer
		_, err := initrd.Write(t.Context(), &b, []initrd.Segment{{Compression: initrd.Gzip, Entries: entries}}, initrd.WriteOptions{})
		require.NoError(t, err)
		if (b.Len()%4 == 0) == aligned {
			require.NoError(t, os.WriteFile(path, b.Bytes(), 0o644))
			return b.Bytes()
		}
	}
	t.Fatal("no base initrd of the wanted alignment")
	return nil
}

func TestOverlayAppendedToInitrd(t *testing.T) {
	for _, aligned := range []bool{true, false} { // aligned, and needing padding
		t.Run(fmt.Sprint("aligned=", aligned), func(t *testing.T) {
			dir := t.TempDir()
			base := baseInitrd(t, filepath.Join(dir, "initrd"), aligned)
			baseSize := len(base)
			require.NoError(t, os.WriteFile(filepath.Join(dir, "vmlinuz"), []byte("kernel"), 0o644))
			c := &netboot.Config{
				Profiles: map[string]netboot.ProfileConfig{"p": {
					Kernel:  filepath.Join(dir, "vmlinuz"),
					Initrds: []string{filepath.Join(dir, "initrd")},
					Overlay: map[string]string{
						"etc/hostname":              "{{.Hostname}}\n",
						"/etc/ssh/authorized_keys":  "{{.Vars.key}}\n",
						"root/.ssh/authorized_keys": "{{.Vars.key}}\n",
					},
				}},
				Machines: []netboot.MachineConfig{{MAC: "52:54:00:00:00:01", Profile: "p", Hostname: "web1", Vars: map[string]string{"key": "ssh-ed25519 AAAA test"}}},
			}
			inv, err := c.Compile()
			require.NoError(t, err)
			_, err = inv.Boot(t.Context(), &netboot.Machine{MAC: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}})
			require.NoError(t, err)
			h := &netboot.HTTPHandler{Inventory: inv}
			srvURL := startHTTP(t, h)
			u := srvURL + "/m/52:54:00:00:00:01/initrd/0"
			resp, body := get(t, u)
			require.Equal(t, 200, resp.StatusCode, "%s", body)
			assert.Equal(t, strconv.Itoa(len(body)), resp.Header.Get("Content-Length"))
			require.True(t, bytes.Equal(base, body[:baseSize]), "base initrd changed")
			pad := (4 - baseSize%4) % 4
			assert.Equal(t, make([]byte, pad), body[baseSize:baseSize+pad])
			seg := body[baseSize+pad:]
			assert.Equal(t, "web1\n", extractWithCPIO(t, seg, "etc/hostname"))
			assert.Equal(t, "ssh-ed25519 AAAA test\n", extractWithCPIO(t, seg, "etc/ssh/authorized_keys"))

			// The project's own reader sees the same segment. It holds the
			// directories the base lacks, and not those it has: the kernel
			// would give an existing directory the record's mode and owner.
			r := initrd.NewReader(bytes.NewReader(seg))
			var names []string
			for {
				rec, err := r.Next()
				if err != nil {
					break
				}
				names = append(names, rec.Name)
			}
			assert.Equal(t, []string{"etc/hostname", "etc/ssh", "etc/ssh/authorized_keys", "root/.ssh", "root/.ssh/authorized_keys"}, names)

			// Unpacked over the base by GNU cpio, as the kernel unpacks
			// segments in turn: root keeps its 0700.
			root := t.TempDir()
			cpioExtract(t, root, base, seg)
			st, err := os.Stat(filepath.Join(root, "root"))
			require.NoError(t, err)
			assert.Equal(t, os.FileMode(0o700), st.Mode().Perm())
			got, err := os.ReadFile(filepath.Join(root, "root/.ssh/authorized_keys"))
			require.NoError(t, err)
			assert.Equal(t, "ssh-ed25519 AAAA test\n", string(got))

			// Range requests across the boundary return the same bytes.
			code, part := curl(t, "-r", strconv.Itoa(baseSize-10)+"-"+strconv.Itoa(baseSize+20), u)
			assert.Equal(t, "206", code)
			assert.Equal(t, string(body[baseSize-10:baseSize+21]), part)
			// And the ETag revalidates.
			code, _ = curl(t, "-H", "If-None-Match: "+resp.Header.Get("ETag"), u)
			assert.Equal(t, "304", code)
			// A rebuilt base of the same size (here: a new modification
			// time) is new content: the old ETag no longer matches, and
			// no Last-Modified invites If-Modified-Since.
			assert.Empty(t, resp.Header.Get("Last-Modified"))
			later := time.Now().Add(time.Hour)
			require.NoError(t, os.Chtimes(filepath.Join(dir, "initrd"), later, later))
			code, _ = curl(t, "-H", "If-None-Match: "+resp.Header.Get("ETag"), u)
			assert.Equal(t, "200", code)
			code, _ = curl(t, "-r", "0-9", "-H", "If-Range: "+resp.Header.Get("ETag"), u)
			assert.Equal(t, "200", code, "If-Range with the old ETag must get the whole new file")
		})
	}
}

// cpioExtract unpacks gzip-compressed newc segments into dir in turn, as
// the kernel unpacks an initrd's segments, with gzip and GNU cpio.
func cpioExtract(t *testing.T, dir string, segments ...[]byte) {
	t.Helper()
	gz := testenv.Command(t, "gzip")
	cp := testenv.Command(t, "cpio")
	for _, seg := range segments {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		cmd := exec.CommandContext(ctx, "sh", "-c", `"$0" -dc | "$1" -idm --quiet --no-absolute-filenames`, gz, cp)
		cmd.Dir, cmd.Stdin = dir, bytes.NewReader(seg)
		out, err := cmd.CombinedOutput()
		cancel()
		require.NoError(t, err, "%s", out)
	}
}
