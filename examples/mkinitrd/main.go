// Command mkinitrd builds, appends to, lists and verifies initramfs images
// with the initrd package.
//
//	go run ./examples/mkinitrd -o initrd.img -tree ./root -file /bin/busybox:bin/busybox -compress zstd
//	go run ./examples/mkinitrd -o initrd.img -closure-info ./closure-info -compress zstd
//	go run ./examples/mkinitrd -append initrd.img -manifest machine.list -compress none
//	go run ./examples/mkinitrd -list initrd.img
//	go run ./examples/mkinitrd -verify initrd.img
//
// SOURCE_DATE_EPOCH clamps modification times.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/nixboot/nixboot/initrd"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func main() {
	var trees, files, manifests multi
	out := flag.String("o", "", "output initrd (written atomically)")
	appendTo := flag.String("append", "", "append one segment to this existing initrd")
	list := flag.String("list", "", "list the entries of an initrd")
	verify := flag.String("verify", "", "check an initrd the way the kernel unpacks it")
	comp := flag.String("compress", "zstd", "none, gzip, zstd, xz or lz4")
	level := flag.Int("level", 0, "compression level (0: the tool's default)")
	closureInfo := flag.String("closure-info", "", "closure-info directory (store-paths, registration)")
	storeDir := flag.String("store-dir", "/nix/store", "host directory holding the store paths")
	lastWins := flag.Bool("last-wins", false, "let later duplicate paths replace earlier ones")
	rootOwner := flag.Bool("root-owner", false, "set every uid and gid to 0")
	flag.Var(&trees, "tree", "host directory, or DIR:PREFIX (repeatable)")
	flag.Var(&files, "file", "host file as PATH:NAME (repeatable)")
	flag.Var(&manifests, "manifest", "gen_init_cpio-style list (repeatable)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, log, *out, *appendTo, *list, *verify, *comp, *level, *closureInfo, *storeDir, *lastWins, *rootOwner, trees, files, manifests); err != nil {
		log.Error("mkinitrd failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, out, appendTo, list, verify, comp string, level int, closureInfo, storeDir string, lastWins, rootOwner bool, trees, files, manifests []string) error {
	if list != "" || verify != "" {
		name := list + verify
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		rep, err := initrd.Inspect(ctx, f, initrd.InspectOptions{Entries: list != ""})
		for _, e := range rep.Entries {
			extra := e.Linkname
			if e.Type == initrd.TypeChar || e.Type == initrd.TypeBlock {
				extra = fmt.Sprintf("%d,%d", e.Devmajor, e.Devminor)
			}
			fmt.Printf("%d %-5s %04o %d/%d %10d %s %s\n", e.Segment, e.Type, e.Mode, e.Uid, e.Gid, e.Size, e.Name, extra)
		}
		for i, s := range rep.Segments {
			fmt.Printf("segment %d: %s at %d, %d bytes, %d unpacked, %d entries\n", i, s.Compression, s.Offset, s.Size, s.Unpacked, s.Entries)
		}
		for _, d := range rep.Dropped {
			fmt.Println("dropped:", d)
		}
		for _, c := range rep.Clashes {
			fmt.Println("clash:", c)
		}
		for _, w := range rep.Warnings {
			fmt.Println("warning:", w)
		}
		if err != nil {
			return err
		}
		if verify != "" && len(rep.Dropped)+len(rep.Clashes) > 0 {
			return fmt.Errorf("%s: %d dropped, %d clashes", name, len(rep.Dropped), len(rep.Clashes))
		}
		return nil
	}
	c, err := initrd.ParseCompression(comp)
	if err != nil {
		return err
	}
	var entries []initrd.Entry
	for _, t := range trees {
		dir, prefix, _ := strings.Cut(t, ":")
		es, err := initrd.Tree(dir, prefix)
		if err != nil {
			return err
		}
		entries = append(entries, es...)
	}
	for _, f := range files {
		p, name, ok := strings.Cut(f, ":")
		if !ok {
			return fmt.Errorf("-file %q: want PATH:NAME", f)
		}
		e, err := initrd.File(p, name)
		if err != nil {
			return err
		}
		entries = append(entries, e)
	}
	for _, m := range manifests {
		text, err := os.ReadFile(m)
		if err != nil {
			return err
		}
		es, err := initrd.ParseManifest(text)
		if err != nil {
			return fmt.Errorf("%s: %w", m, err)
		}
		if es, err = initrd.ResolveManifest(es, filepath.Dir(m)); err != nil {
			return fmt.Errorf("%s: %w", m, err)
		}
		entries = append(entries, es...)
	}
	if closureInfo != "" {
		es, err := initrd.ClosureInfo(closureInfo, storeDir)
		if err != nil {
			return err
		}
		entries = append(entries, es...)
	}
	epoch, err := initrd.EpochFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	opt := initrd.PlanOptions{LastWins: lastWins, ClampTime: epoch, RootOwner: rootOwner}
	if appendTo != "" {
		f, err := os.Open(appendTo)
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
				opt.Existing = append(opt.Existing, e.Name)
			}
		}
	}
	planned, err := initrd.Plan(entries, opt)
	if err != nil {
		return err
	}
	seg := initrd.Segment{Compression: c, Compress: initrd.CompressOptions{Level: level}, Entries: planned}
	last := int64(-1)
	wopt := initrd.WriteOptions{Logger: log, Progress: func(done, total int64) {
		if pct := done * 100 / max(total, 1); pct/10 != last/10 {
			last = pct
			fmt.Fprintf(os.Stderr, "\r%3d%% of %d MiB", pct, total>>20)
		}
	}}
	if appendTo != "" {
		info, err := initrd.AppendFile(ctx, appendTo, seg, wopt)
		if err != nil {
			return err
		}
		log.Info("segment appended", "file", appendTo, "bytes", info.Size, "entries", info.Entries)
		return nil
	}
	if out == "" {
		return fmt.Errorf("no -o, -append, -list or -verify given")
	}
	infos, err := initrd.WriteFile(ctx, out, []initrd.Segment{seg}, wopt)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return err
	}
	log.Info("initrd written", "file", out, "bytes", infos[0].Size, "unpacked", infos[0].Unpacked, "entries", infos[0].Entries)
	return nil
}
