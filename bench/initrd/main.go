// Command initrd-bench compares building a zstd initrd with nixboot's
// initrd package (through examples/mkinitrd) against the classic pipeline
//
//	find . | LC_ALL=C sort | cpio -o -H newc --reproducible | zstd -T0 -3
//
// on a generated tree of about 500 MB (about 100 000 small files and a few
// large ones) in /dev/shm, deleted afterwards. Both sides run alternately
// in one invocation, so they share the machine's load. It prints median wall
// and CPU times, their ratios, output sizes and each side's peak RSS (for
// the pipeline, its largest process), and whether the targets are
// met: at least 2x faster, output no larger, peak RSS under 64 MiB.
//
// With -stages it first times the stages on their own: find|sort|cpio,
// zstd on the archive it wrote, and mkinitrd without compression. -tree
// keeps the generated tree for later runs.
//
//	go run ./bench/initrd [-dir /dev/shm] [-small 100000] [-large 4] [-runs 3] [-level 3] [-stages] [-tree DIR]
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	base := flag.String("dir", "/dev/shm", "where to generate the tree and outputs")
	small := flag.Int("small", 100000, "number of small files")
	large := flag.Int("large", 4, "number of large files (40 MiB each)")
	runs := flag.Int("runs", 3, "runs of each side")
	level := flag.Int("level", 3, "zstd level for both sides")
	keep := flag.String("tree", "", "use this tree and keep it (generated there first if it does not exist)")
	stages := flag.Bool("stages", false, "also time each side's stages on their own")
	flag.Parse()
	if err := run(*base, *keep, *small, *large, *runs, *level, *stages); err != nil {
		fmt.Fprintln(os.Stderr, "initrd-bench:", err)
		os.Exit(1)
	}
}

func run(base, keep string, small, large, runs, level int, stages bool) error {
	work, err := os.MkdirTemp(base, "nbi-initrd-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	tree := filepath.Join(work, "tree")
	if keep != "" {
		tree = keep
	}
	if _, err := os.Stat(tree); err == nil && keep != "" {
		fmt.Printf("tree: %s (kept from an earlier run)\n", tree)
	} else {
		total, err := generate(tree, small, large)
		if err != nil {
			return err
		}
		fmt.Printf("tree: %d small + %d large files, %d MB\n", small, large, total/1e6)
	}

	mk := filepath.Join(work, "mkinitrd")
	if out, err := exec.Command("go", "build", "-o", mk, "./examples/mkinitrd").CombinedOutput(); err != nil {
		return fmt.Errorf("building mkinitrd: %v: %s", err, out)
	}
	oursOut, peerOut := filepath.Join(work, "ours.img"), filepath.Join(work, "peer.img")
	ours := func() *exec.Cmd {
		c := exec.Command(mk, "-o", oursOut, "-tree", tree, "-compress", "zstd", "-level", fmt.Sprint(level))
		c.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1700000000")
		return c
	}
	peer := func() *exec.Cmd {
		c := exec.Command("bash", "-c", fmt.Sprintf(
			"set -o pipefail; find . | LC_ALL=C sort | cpio -o -H newc --reproducible --quiet | zstd -T0 -%d -q -f -o %s", level, peerOut))
		c.Dir = tree
		return c
	}
	if stages {
		if err := timeStages(work, tree, mk, runs, level); err != nil {
			return err
		}
	}
	var tOurs, tPeer, cOurs, cPeer []time.Duration
	var rssOurs, rssPeer []int64
	fmt.Printf("load average at start: %s", loadavg())
	for range runs {
		for _, side := range []struct {
			cmd func() *exec.Cmd
			t   *[]time.Duration
			cpu *[]time.Duration
			rss *[]int64
		}{{peer, &tPeer, &cPeer, &rssPeer}, {ours, &tOurs, &cOurs, &rssOurs}} {
			c := side.cmd()
			var stderr strings.Builder
			c.Stderr = &stderr
			start := time.Now()
			if err := c.Run(); err != nil {
				return fmt.Errorf("%s: %v: %s", c.Args, err, stderr.String())
			}
			*side.t = append(*side.t, time.Since(start))
			// User and system time include the waited-for children (the
			// pipeline's processes); Maxrss is the largest of them, in KiB.
			*side.cpu = append(*side.cpu, c.ProcessState.UserTime()+c.ProcessState.SystemTime())
			*side.rss = append(*side.rss, int64(c.ProcessState.SysUsage().(*syscall.Rusage).Maxrss))
		}
	}
	so, err := os.Stat(oursOut)
	if err != nil {
		return err
	}
	sp, err := os.Stat(peerOut)
	if err != nil {
		return err
	}
	mo, mp := median(tOurs), median(tPeer)
	co, cp := median(cOurs), median(cPeer)
	ro, rp := slices.Max(rssOurs), slices.Max(rssPeer)
	fmt.Printf("peer (find|sort|cpio|zstd -T0 -%d): wall %v  cpu %v  %d bytes  peak RSS %d MiB\n", level, mp.Round(time.Millisecond), cp.Round(time.Millisecond), sp.Size(), rp/1024)
	fmt.Printf("nixboot mkinitrd (zstd level %d):   wall %v  cpu %v  %d bytes  peak RSS %d MiB\n", level, mo.Round(time.Millisecond), co.Round(time.Millisecond), so.Size(), ro/1024)
	speed := float64(mp) / float64(mo)
	size := float64(so.Size()) / float64(sp.Size())
	fmt.Printf("wall-time ratio peer/ours: %.2fx (target >= 2x: %s); cpu-time ratio peer/ours: %.2fx\n", speed, verdict(speed >= 2), float64(cp)/float64(co))
	fmt.Printf("size ours/peer: %.4f (target <= 1: %s); our peak RSS %.1f MiB (target < 64 MiB: %s)\n", size, verdict(size <= 1), float64(ro)/1024, verdict(ro < 64*1024))
	fmt.Printf("all runs: peer wall %v cpu %v; ours wall %v cpu %v\n", round(tPeer), round(cPeer), round(tOurs), round(cOurs))
	return nil
}

// timeStages times the pipeline's stages on their own, each -runs times
// in turn: the archive alone (to /dev/null and to a file next to the
// tree), zstd alone on that file (with all cores and with one worker),
// and mkinitrd without compression.
func timeStages(work, tree, mk string, runs, level int) error {
	cpioOut := filepath.Join(work, "stage.cpio")
	list := "find . | LC_ALL=C sort | cpio -o -H newc --reproducible --quiet"
	stages := []struct {
		name string
		cmd  func() *exec.Cmd
	}{
		{"find|sort|cpio > /dev/null", func() *exec.Cmd { return exec.Command("bash", "-c", "set -o pipefail; "+list+" > /dev/null") }},
		{"find|sort|cpio > file", func() *exec.Cmd { return exec.Command("bash", "-c", "set -o pipefail; "+list+" > "+cpioOut) }},
		{fmt.Sprintf("zstd -T0 -%d on that file", level), func() *exec.Cmd {
			return exec.Command("zstd", "-T0", fmt.Sprintf("-%d", level), "-q", "-f", "-o", cpioOut+".zst", cpioOut)
		}},
		{fmt.Sprintf("zstd -T1 -%d on that file", level), func() *exec.Cmd {
			return exec.Command("zstd", "-T1", fmt.Sprintf("-%d", level), "-q", "-f", "-o", cpioOut+".zst", cpioOut)
		}},
		{"mkinitrd -compress none", func() *exec.Cmd {
			c := exec.Command(mk, "-o", filepath.Join(work, "none.img"), "-tree", tree, "-compress", "none")
			c.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1700000000")
			return c
		}},
	}
	fmt.Printf("stages, load average at start: %s", loadavg())
	wall := make([][]time.Duration, len(stages))
	cpu := make([][]time.Duration, len(stages))
	for range runs {
		for i, st := range stages {
			c := st.cmd()
			c.Dir = tree
			var stderr strings.Builder
			c.Stderr = &stderr
			start := time.Now()
			if err := c.Run(); err != nil {
				return fmt.Errorf("%s: %v: %s", st.name, err, stderr.String())
			}
			wall[i] = append(wall[i], time.Since(start))
			cpu[i] = append(cpu[i], c.ProcessState.UserTime()+c.ProcessState.SystemTime())
		}
	}
	for i, st := range stages {
		fmt.Printf("stage %-28s wall %v  cpu %v\n", st.name+":", median(wall[i]).Round(time.Millisecond), median(cpu[i]).Round(time.Millisecond))
	}
	for _, f := range []string{cpioOut, cpioOut + ".zst", filepath.Join(work, "none.img")} {
		os.Remove(f)
	}
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func round(d []time.Duration) []time.Duration {
	out := make([]time.Duration, len(d))
	for i, v := range d {
		out[i] = v.Round(10 * time.Millisecond)
	}
	return out
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown\n"
	}
	return string(b)
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// generate writes small files of word-like text (compressible, like
// configuration and scripts) in 1000 directories, and large files that
// mix text with incompressible runs (like binaries).
func generate(dir string, small, large int) (int64, error) {
	rng := rand.New(rand.NewPCG(1, 2))
	words := make([]string, 4096)
	for i := range words {
		b := make([]byte, 2+rng.IntN(9))
		for j := range b {
			b[j] = byte('a' + rng.IntN(26))
		}
		words[i] = string(b)
	}
	text := func(n int) []byte {
		var sb strings.Builder
		for sb.Len() < n {
			sb.WriteString(words[rng.IntN(len(words))])
			if rng.IntN(12) == 0 {
				sb.WriteByte('\n')
			} else {
				sb.WriteByte(' ')
			}
		}
		return []byte(sb.String()[:n])
	}
	var total int64
	ndirs := max(small/100, 1)
	for i := range small {
		d := filepath.Join(dir, fmt.Sprintf("d%03d", i%ndirs%37), fmt.Sprintf("sub%04d", i%ndirs))
		if i < ndirs {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return 0, err
			}
		}
		n := 64 + rng.IntN(7000)
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%06d.txt", i)), text(n), 0o644); err != nil {
			return 0, err
		}
		total += int64(n)
	}
	for i := range large {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("large%d.bin", i)))
		if err != nil {
			return 0, err
		}
		for k := 0; k < 40; k++ {
			chunk := text(1 << 20)
			if k%3 == 0 { // incompressible stretch
				for j := range chunk {
					chunk[j] = byte(rng.Uint32())
				}
			}
			if _, err := f.Write(chunk); err != nil {
				f.Close()
				return 0, err
			}
			total += 1 << 20
		}
		if err := f.Close(); err != nil {
			return 0, err
		}
	}
	return total, nil
}
