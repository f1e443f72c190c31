// Command mkinitrd builds, appends to, lists and verifies initramfs images
// with the initrd package.
//
//	go run ./examples/mkinitrd -o initrd.img -tree ./root -file /bin/busybox:bin/busybox -compress zstd
//	go run ./examples/mkinitrd -o initrd.img -closure-info ./closure-info -dedup
//	go run ./examples/mkinitrd -o initrd.img -segment none -tree ./ucode -segment zstd -tree ./root
//	go run ./examples/mkinitrd -append initrd.img -manifest machine.list -compress none
//	go run ./examples/mkinitrd -list initrd.img
//	go run ./examples/mkinitrd -verify initrd.img
//
// Sources (-tree, -file, -manifest, -closure-info) go into the current
// segment. The first segment is compressed as -compress says; each
// -segment COMP starts another one compressed with COMP (none, gzip, zstd,
// xz, lz4), typically an uncompressed early-microcode segment and then the
// compressed main one. Directories of earlier segments are not created
// again. SOURCE_DATE_EPOCH clamps modification times. Progress goes to
// standard error. Trees and closures are streamed (initrd.PlanStream): read
// once to plan and once to write, never held in memory, so memory does
// not grow with the number of files; -dedup needs every entry at once and
// holds them (about 200 bytes each).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strings"

	"github.com/nixboot/nixboot/initrd"
)

// source is one -tree, -file, -manifest or -closure-info flag.
type source struct{ kind, arg string }

// segSpec is one segment being assembled from flags; comp "" means the
// -compress value.
type segSpec struct {
	comp    string
	sources []source
}

// specs collects sources and segments in command-line order.
type specs struct{ segs []segSpec }

func (s *specs) add(kind, arg string) {
	if len(s.segs) == 0 {
		s.segs = append(s.segs, segSpec{})
	}
	last := &s.segs[len(s.segs)-1]
	last.sources = append(last.sources, source{kind, arg})
}

// sourceFlag is a repeatable flag adding a source of one kind.
type sourceFlag struct {
	s    *specs
	kind string
}

func (f sourceFlag) String() string { return "" }
func (f sourceFlag) Set(v string) error {
	f.s.add(f.kind, v)
	return nil
}

type segmentFlag struct{ s *specs }

func (f segmentFlag) String() string { return "" }
func (f segmentFlag) Set(v string) error {
	if _, err := initrd.ParseCompression(v); err != nil {
		return err
	}
	if len(f.s.segs) == 1 && len(f.s.segs[0].sources) == 0 && f.s.segs[0].comp == "" {
		f.s.segs = nil // nothing before the first -segment
	}
	f.s.segs = append(f.s.segs, segSpec{comp: v})
	return nil
}

type options struct {
	out, appendTo, list, verify string
	comp                        string
	level, chunk, readAhead     int
	storeDir                    string
	lastWins, rootOwner, dedup  bool
	memLimit                    int64
	cpuProfile, memProfile      string
	specs                       specs
}

func newFlagSet(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("mkinitrd", flag.ContinueOnError)
	fs.StringVar(&o.out, "o", "", "output initrd (written atomically)")
	fs.StringVar(&o.appendTo, "append", "", "append one segment to this existing initrd")
	fs.StringVar(&o.list, "list", "", "list the entries of an initrd")
	fs.StringVar(&o.verify, "verify", "", "check an initrd the way the kernel unpacks it")
	fs.StringVar(&o.comp, "compress", "zstd", "compression of the first segment: none, gzip, zstd, xz or lz4")
	fs.IntVar(&o.level, "level", 0, "compression level (0: the tool's default)")
	fs.IntVar(&o.chunk, "chunk-size", 0, "bytes per parallel compression job (0: the package default; more compresses a little better and uses more memory)")
	fs.StringVar(&o.storeDir, "store-dir", "/nix/store", "host directory holding the store paths")
	fs.BoolVar(&o.lastWins, "last-wins", false, "let later duplicate paths replace earlier ones")
	fs.BoolVar(&o.rootOwner, "root-owner", false, "set every uid and gid to 0")
	fs.BoolVar(&o.dedup, "dedup", false, "store identical files once, as hard links")
	fs.IntVar(&o.readAhead, "read-ahead", 0, "goroutines reading small files ahead of the writer (0: by the number of CPUs; -1: none)")
	fs.Int64Var(&o.memLimit, "mem-limit", 56<<20, "soft memory limit for the Go runtime in bytes (0: none)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the run to this file")
	fs.StringVar(&o.memProfile, "memprofile", "", "write a heap profile (allocations and what is live at the end) to this file")
	fs.Var(sourceFlag{&o.specs, "tree"}, "tree", "host directory, or DIR:PREFIX (repeatable)")
	fs.Var(sourceFlag{&o.specs, "file"}, "file", "host file as PATH:NAME (repeatable)")
	fs.Var(sourceFlag{&o.specs, "manifest"}, "manifest", "gen_init_cpio-style list (repeatable)")
	fs.Var(sourceFlag{&o.specs, "closure-info"}, "closure-info", "closure-info directory with store-paths and registration (repeatable)")
	fs.Var(segmentFlag{&o.specs}, "segment", "start a new segment with this compression (repeatable)")
	return fs
}

func main() {
	var o options
	fs := newFlagSet(&o)
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	memLimit := &o.memLimit
	if *memLimit > 0 {
		// Memory use is dominated by the compressor's jobs (and, with
		// -dedup, the entry list: about 200 bytes an entry); the limit
		// keeps the garbage collector from letting the heap double on
		// top of them. 56 MiB rather than less: with a 100 000-entry list
		// both took about 40 MB, and at 48 MiB the collector ran about
		// 265 times per build instead of about 30, for the same peak RSS
		// (bench/initrd/README.md).
		debug.SetMemoryLimit(*memLimit)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := profiled(o.cpuProfile, o.memProfile, func() error { return run(ctx, log, os.Stdout, os.Stderr, o) })
	stop()
	if err != nil {
		log.Error("mkinitrd failed", "err", err)
		os.Exit(1)
	}
}

// profiled runs f, writing a CPU profile of it to cpu and a heap profile
// taken when it returns to mem, each unless "".
func profiled(cpu, mem string, f func() error) error {
	if cpu != "" {
		out, err := os.Create(cpu)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(out); err != nil {
			out.Close()
			return err
		}
		defer out.Close()
		defer pprof.StopCPUProfile()
	}
	err := f()
	if mem != "" {
		out, cerr := os.Create(mem)
		if cerr == nil {
			cerr = pprof.Lookup("heap").WriteTo(out, 0)
			cerr = errors.Join(cerr, out.Close())
		}
		err = errors.Join(err, cerr)
	}
	return err
}

func run(ctx context.Context, log *slog.Logger, stdout, stderr io.Writer, o options) error {
	if o.list != "" || o.verify != "" {
		return inspect(ctx, stdout, o)
	}
	if len(o.specs.segs) == 0 {
		return errors.New("no sources given (-tree, -file, -manifest, -closure-info)")
	}
	epoch, err := initrd.EpochFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	var existing []string
	if o.appendTo != "" {
		if len(o.specs.segs) != 1 {
			return errors.New("-append adds exactly one segment")
		}
		f, err := os.Open(o.appendTo)
		if err != nil {
			return err
		}
		rep, err := initrd.Inspect(ctx, f, initrd.InspectOptions{Entries: true})
		f.Close()
		if err != nil {
			return err
		}
		for _, e := range rep.Entries {
			if e.Type == initrd.TypeDir {
				existing = append(existing, e.Name)
			}
		}
	}
	var segs []initrd.Segment
	for i, spec := range o.specs.segs {
		name := spec.comp
		if name == "" {
			name = o.comp
		}
		c, err := initrd.ParseCompression(name)
		if err != nil {
			return err
		}
		popt := initrd.PlanOptions{LastWins: o.lastWins, ClampTime: epoch, RootOwner: o.rootOwner, Existing: existing}
		seg := initrd.Segment{Compression: c, Compress: initrd.CompressOptions{Level: o.level, ChunkSize: o.chunk}}
		if !o.dedup {
			// Trees and closures are read while planning and again
			// while writing, not held in memory.
			inputs, err := inputsOf(spec.sources, o.storeDir)
			if err != nil {
				return err
			}
			if seg.Stream, err = initrd.PlanStream(inputs, popt); err != nil {
				return fmt.Errorf("segment %d: %w", i, err)
			}
			existing = append(existing, seg.Stream.Dirs()...)
			segs = append(segs, seg)
			continue
		}
		// Dedup needs every entry at once.
		entries, err := collect(spec.sources, o.storeDir)
		if err != nil {
			return err
		}
		planned, err := initrd.Plan(entries, popt)
		if err != nil {
			return fmt.Errorf("segment %d: %w", i, err)
		}
		var stats initrd.DedupStats
		if planned, stats, err = initrd.Dedup(ctx, planned, initrd.DedupOptions{}); err != nil {
			return fmt.Errorf("segment %d: %w", i, err)
		}
		log.Info("deduplicated", "segment", i, "files", stats.Files, "bytes", stats.Bytes)
		for _, e := range planned {
			if e.Type == initrd.TypeDir {
				existing = append(existing, e.Name)
			}
		}
		seg.Entries = planned
		segs = append(segs, seg)
	}
	last := int64(-1)
	wopt := initrd.WriteOptions{Logger: log, ReadAhead: o.readAhead, Progress: func(done, total int64) {
		if pct := done * 100 / max(total, 1); pct/10 != last/10 {
			last = pct
			fmt.Fprintf(stderr, "\r%3d%% of %d MiB", pct, total>>20)
		}
	}}
	if o.appendTo != "" {
		info, err := initrd.AppendFile(ctx, o.appendTo, segs[0], wopt)
		fmt.Fprintln(stderr)
		if err != nil {
			return err
		}
		log.Info("segment appended", "file", o.appendTo, "bytes", info.Size, "entries", info.Entries)
		return nil
	}
	if o.out == "" {
		return errors.New("no -o, -append, -list or -verify given")
	}
	infos, err := initrd.WriteFile(ctx, o.out, segs, wopt)
	fmt.Fprintln(stderr)
	if err != nil {
		return err
	}
	for i, s := range infos {
		log.Info("segment written", "file", o.out, "segment", i, "compression", s.Compression.String(), "bytes", s.Size, "unpacked", s.Unpacked, "entries", s.Entries)
	}
	return nil
}

// inputsOf turns a segment's sources into PlanStream inputs, in flag
// order.
func inputsOf(sources []source, storeDir string) ([]initrd.Input, error) {
	var inputs []initrd.Input
	for _, s := range sources {
		switch s.kind {
		case "tree":
			dir, prefix, _ := strings.Cut(s.arg, ":")
			inputs = append(inputs, initrd.TreeInput(dir, prefix))
		case "closure-info":
			in, err := initrd.ClosureInfoInput(s.arg, storeDir)
			if err != nil {
				return nil, err
			}
			inputs = append(inputs, in)
		default:
			es, err := collect([]source{s}, storeDir)
			if err != nil {
				return nil, err
			}
			inputs = append(inputs, initrd.EntriesInput(es...))
		}
	}
	return inputs, nil
}

// collect turns a segment's sources into entries, in flag order.
func collect(sources []source, storeDir string) ([]initrd.Entry, error) {
	var entries []initrd.Entry
	for _, s := range sources {
		switch s.kind {
		case "tree":
			dir, prefix, _ := strings.Cut(s.arg, ":")
			es, err := initrd.Tree(dir, prefix)
			if err != nil {
				return nil, err
			}
			entries = append(entries, es...)
		case "file":
			p, name, ok := strings.Cut(s.arg, ":")
			if !ok {
				return nil, fmt.Errorf("-file %q: want PATH:NAME", s.arg)
			}
			e, err := initrd.File(p, name)
			if err != nil {
				return nil, err
			}
			entries = append(entries, e)
		case "manifest":
			text, err := os.ReadFile(s.arg)
			if err != nil {
				return nil, err
			}
			es, err := initrd.ParseManifest(text)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.arg, err)
			}
			if es, err = initrd.ResolveManifest(es, filepath.Dir(s.arg)); err != nil {
				return nil, fmt.Errorf("%s: %w", s.arg, err)
			}
			entries = append(entries, es...)
		case "closure-info":
			es, err := initrd.ClosureInfo(s.arg, storeDir)
			if err != nil {
				return nil, err
			}
			entries = append(entries, es...)
		}
	}
	return entries, nil
}

// inspect implements -list and -verify.
func inspect(ctx context.Context, stdout io.Writer, o options) error {
	name := o.list + o.verify
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	rep, err := initrd.Inspect(ctx, f, initrd.InspectOptions{Entries: o.list != ""})
	for _, e := range rep.Entries {
		extra := e.Linkname
		if e.Type == initrd.TypeChar || e.Type == initrd.TypeBlock {
			extra = fmt.Sprintf("%d,%d", e.Devmajor, e.Devminor)
		}
		fmt.Fprintf(stdout, "%d %-5s %04o %d/%d %10d %s %s\n", e.Segment, e.Type, e.Mode, e.Uid, e.Gid, e.Size, e.Name, extra)
	}
	for i, s := range rep.Segments {
		fmt.Fprintf(stdout, "segment %d: %s at %d, %d bytes, %d unpacked, %d entries\n", i, s.Compression, s.Offset, s.Size, s.Unpacked, s.Entries)
	}
	for _, d := range rep.Dropped {
		fmt.Fprintln(stdout, "dropped:", d)
	}
	for _, c := range rep.Clashes {
		fmt.Fprintln(stdout, "clash:", c)
	}
	for _, w := range rep.Warnings {
		fmt.Fprintln(stdout, "warning:", w)
	}
	if err != nil {
		return err
	}
	if o.verify != "" && len(rep.Dropped)+len(rep.Clashes) > 0 {
		return fmt.Errorf("%s: %d dropped, %d clashes", name, len(rep.Dropped), len(rep.Clashes))
	}
	return nil
}
