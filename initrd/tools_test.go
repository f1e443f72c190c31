//go:build linux

package initrd_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/nixboot/nixboot/initrd"
	"github.com/nixboot/nixboot/internal/testenv"
)

// makeTree writes a source tree with every kind of entry. Device nodes need
// root (mknod).
func makeTree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "src")
	mk := func(p string, perm os.FileMode) { require.NoError(t, os.MkdirAll(filepath.Join(dir, p), perm)) }
	wr := func(p, data string, perm os.FileMode) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, p), []byte(data), perm))
		require.NoError(t, os.Chmod(filepath.Join(dir, p), perm))
	}
	mk("bin", 0o755)
	mk("etc/ssh", 0o700)
	mk("dev", 0o755)
	mk("tmp", 0o755)
	require.NoError(t, os.Chmod(filepath.Join(dir, "tmp"), os.ModeSticky|0o777))
	mk("empty", 0o750)
	wr("bin/busybox", strings.Repeat("busybox\x00", 5000), 0o755)
	wr("etc/ssh/key", "secret\n", 0o600)
	wr("etc/hostname", "nbi\n", 0o644)
	wr("etc/zero", "", 0o644)
	wr("bin/suid", "x", os.ModeSetuid|0o755)
	big := make([]byte, 3<<20+7) // spans several 1 MiB compression chunks
	for i := range big {
		big[i] = byte(i*7 + i>>11)
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bin/big"), big, 0o644))
	require.NoError(t, os.Symlink("busybox", filepath.Join(dir, "bin/sh")))
	require.NoError(t, os.Symlink("/etc/hostname", filepath.Join(dir, "etc/abs")))
	require.NoError(t, os.Symlink("../../outside", filepath.Join(dir, "etc/escape")))
	require.NoError(t, os.Link(filepath.Join(dir, "bin/busybox"), filepath.Join(dir, "bin/ls")))
	require.NoError(t, os.Link(filepath.Join(dir, "bin/busybox"), filepath.Join(dir, "bin/cat")))
	require.NoError(t, os.Chown(filepath.Join(dir, "etc/hostname"), 1234, 5678))
	require.NoError(t, unix.Mkfifo(filepath.Join(dir, "dev/fifo"), 0o640))
	require.NoError(t, unix.Mknod(filepath.Join(dir, "dev/console"), unix.S_IFCHR|0o600, int(unix.Mkdev(5, 1))))
	require.NoError(t, unix.Mknod(filepath.Join(dir, "dev/sda"), unix.S_IFBLK|0o660, int(unix.Mkdev(8, 0))))
	require.NoError(t, unix.Mknod(filepath.Join(dir, "dev/big"), unix.S_IFCHR|0o600, int(unix.Mkdev(4095, 1048575))))
	return dir
}

// snapshot describes a tree the way the tests compare them: type, mode,
// owner, size, content hash, symlink target, device number, and which
// names share an inode.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	inodes := map[uint64][]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		fi, err := os.Lstat(p)
		require.NoError(t, err)
		st := fi.Sys().(*syscall.Stat_t)
		s := fmt.Sprintf("%v uid=%d gid=%d", fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			require.NoError(t, err)
			s += fmt.Sprintf(" size=%d sha=%x mtime=%d", len(data), sha256.Sum256(data), fi.ModTime().Unix())
			if st.Nlink > 1 {
				inodes[st.Ino] = append(inodes[st.Ino], rel)
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			require.NoError(t, err)
			s += " -> " + target
		case fi.Mode()&fs.ModeDevice != 0:
			s += fmt.Sprintf(" dev=%d,%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		out[rel] = s
		return nil
	})
	require.NoError(t, err)
	for _, names := range inodes {
		sort.Strings(names)
		for _, n := range names {
			out[n] += " links=" + strings.Join(names, ",")
		}
	}
	return out
}

func buildTree(t *testing.T, src string, comp initrd.Compression, chunk int) []byte {
	t.Helper()
	entries, err := initrd.Tree(src, "")
	require.NoError(t, err)
	planned, err := initrd.Plan(entries, initrd.PlanOptions{})
	require.NoError(t, err)
	var buf bytes.Buffer
	_, err = initrd.Write(context.Background(), &buf, []initrd.Segment{
		{Compression: comp, Compress: initrd.CompressOptions{ChunkSize: chunk}, Entries: planned},
	}, initrd.WriteOptions{})
	require.NoError(t, err)
	return buf.Bytes()
}

var decompressors = map[initrd.Compression][]string{
	initrd.None: {"cat"},
	initrd.Gzip: {"gzip", "-dc"},
	initrd.Zstd: {"zstd", "-dc"},
	initrd.XZ:   {"xz", "-dc"},
	initrd.LZ4:  {"lz4", "-dc"},
}

func decompress(t *testing.T, comp initrd.Compression, data []byte) []byte {
	t.Helper()
	args := decompressors[comp]
	testenv.Command(t, args[0])
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "%s: %s", args, stderr.String())
	return out
}

func run(t *testing.T, dir string, stdin []byte, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s %s: %s", name, args, out)
	return string(out)
}

// The central check: GNU cpio and bsdtar reproduce the source
// tree exactly from our archives, in every compression.
func TestExtractMatchesSource(t *testing.T) {
	testenv.Root(t)
	cpio := testenv.Command(t, "cpio")
	bsdtar := testenv.Command(t, "bsdtar")
	src := makeTree(t)
	want := snapshot(t, src)
	require.Contains(t, want["dev/big"], "dev=4095,1048575")
	for comp := range decompressors {
		t.Run(comp.String(), func(t *testing.T) {
			archive := buildTree(t, src, comp, 1<<20)
			raw := decompress(t, comp, archive)

			gnu := t.TempDir()
			run(t, gnu, raw, cpio, "-idm", "--quiet")
			assert.Equal(t, want, snapshot(t, gnu), "GNU cpio extraction")

			bsd := t.TempDir()
			run(t, bsd, raw, bsdtar, "-xpf", "-")
			assert.Equal(t, want, snapshot(t, bsd), "bsdtar extraction")

			// bsdtar reads compressed input itself.
			bsd2 := t.TempDir()
			run(t, bsd2, archive, bsdtar, "-xpf", "-")
			assert.Equal(t, want, snapshot(t, bsd2), "bsdtar on compressed input")
		})
	}
}

// cpio -tv shows device numbers and symlink targets as written.
func TestCpioListing(t *testing.T) {
	testenv.Root(t)
	cpio := testenv.Command(t, "cpio")
	src := makeTree(t)
	raw := buildTree(t, src, initrd.None, 0)
	list := strings.Join(strings.Fields(run(t, t.TempDir(), raw, cpio, "-tv", "--quiet")), " ")
	for _, want := range []string{
		`crw------- 1 root root 5, 1`,
		`brw-r----- 1 root root 8, 0`,
		`crw------- 1 root root 4095, 1048575`,
		`bin/sh -> busybox`,
		`etc/escape -> ../../outside`,
		`prw-r-----`,
		`-rwsr-xr-x`,
		`drwxrwxrwt`,
		`1234 5678`,
	} {
		assert.Contains(t, list, want)
	}
	assert.Equal(t, 3, strings.Count(list, "-rwxr-xr-x 3 root root"), "three names of one hard-linked file:\n%s", list)
}

// Two builds of the same inputs are byte-identical, whatever the number of
// compression workers.
func TestReproducible(t *testing.T) {
	testenv.Root(t)
	src := makeTree(t)
	for comp := range decompressors {
		t.Run(comp.String(), func(t *testing.T) {
			a := buildTree(t, src, comp, 1<<20)
			entries, err := initrd.Tree(src, "")
			require.NoError(t, err)
			// Reverse the input order: Plan's order must not depend on it.
			for i, j := 0, len(entries)-1; i < j; i, j = i+1, j-1 {
				entries[i], entries[j] = entries[j], entries[i]
			}
			planned, err := initrd.Plan(entries, initrd.PlanOptions{})
			require.NoError(t, err)
			for _, workers := range []int{1, 7} {
				var b bytes.Buffer
				_, err = initrd.Write(context.Background(), &b, []initrd.Segment{
					{Compression: comp, Compress: initrd.CompressOptions{ChunkSize: 1 << 20, Workers: workers}, Entries: planned},
				}, initrd.WriteOptions{})
				require.NoError(t, err)
				assert.True(t, bytes.Equal(a, b.Bytes()), "builds with %d workers differ", workers)
			}
		})
	}
}

// SOURCE_DATE_EPOCH-style clamping and root ownership.
func TestClampAndOwner(t *testing.T) {
	testenv.Root(t)
	cpio := testenv.Command(t, "cpio")
	src := makeTree(t)
	entries, err := initrd.Tree(src, "")
	require.NoError(t, err)
	epoch := time.Unix(315532800, 0) // 1980-01-01
	planned, err := initrd.Plan(entries, initrd.PlanOptions{ClampTime: epoch, RootOwner: true})
	require.NoError(t, err)
	var buf bytes.Buffer
	_, err = initrd.Write(context.Background(), &buf, []initrd.Segment{{Entries: planned}}, initrd.WriteOptions{})
	require.NoError(t, err)
	dst := t.TempDir()
	run(t, dst, buf.Bytes(), cpio, "-idm", "--quiet")
	fi, err := os.Stat(filepath.Join(dst, "etc/hostname"))
	require.NoError(t, err)
	assert.Equal(t, epoch.Unix(), fi.ModTime().Unix())
	st := fi.Sys().(*syscall.Stat_t)
	assert.Equal(t, uint32(0), st.Uid)
	assert.Equal(t, uint32(0), st.Gid)
}

// Inspect reads initrds made by other tools: GNU cpio archives (padded to
// 512 bytes), compressed by the command-line gzip, zstd, xz and lz4 -l,
// each after an uncompressed one, as the kernel would see them.
func TestInspectForeignArchives(t *testing.T) {
	testenv.Root(t)
	cpio := testenv.Command(t, "cpio")
	src := makeTree(t)
	want := snapshot(t, src)
	list := run(t, src, nil, "sh", "-c", "find . -mindepth 1 | LC_ALL=C sort")
	raw := []byte(run(t, src, []byte(list), cpio, "-o", "-H", "newc", "--quiet"))
	for _, tc := range []struct {
		comp initrd.Compression
		cmd  []string
	}{
		{initrd.Gzip, []string{"gzip", "-9c"}},
		{initrd.Zstd, []string{"zstd", "-T2", "-19", "-c"}},
		{initrd.XZ, []string{"xz", "--check=crc32", "-c"}},
		{initrd.LZ4, []string{"lz4", "-l", "-c"}},
	} {
		t.Run(tc.comp.String(), func(t *testing.T) {
			testenv.Command(t, tc.cmd[0])
			cmd := exec.Command(tc.cmd[0], tc.cmd[1:]...)
			cmd.Stdin = bytes.NewReader(raw)
			packed, err := cmd.Output()
			require.NoError(t, err)
			in := append(append(append([]byte(nil), raw...), make([]byte, 512)...), packed...)
			rep, err := initrd.Inspect(context.Background(), bytes.NewReader(in), initrd.InspectOptions{Entries: true})
			require.NoError(t, err)
			require.Len(t, rep.Segments, 2)
			assert.Equal(t, initrd.None, rep.Segments[0].Compression)
			assert.Equal(t, tc.comp, rep.Segments[1].Compression)
			assert.Equal(t, int64(len(in)), rep.Size)
			for i, s := range rep.Segments {
				names := map[string]bool{}
				for _, e := range rep.Entries {
					if e.Segment == i {
						n := strings.TrimPrefix(e.Name, "./")
						names[n] = true
						if n == "dev/big" {
							assert.Equal(t, [2]uint32{4095, 1048575}, [2]uint32{e.Devmajor, e.Devminor})
						}
					}
				}
				assert.Len(t, names, len(want), "segment %d (%s)", i, s.Compression)
				for n := range want {
					assert.True(t, names[n], "segment %d lacks %s", i, n)
				}
			}
			assert.Empty(t, rep.Dropped)
			// The second segment repeats every path: the kernel overwrites.
			assert.NotEmpty(t, rep.Clashes)
		})
	}
}
