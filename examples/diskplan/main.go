// Command diskplan compares a disk (or disk image) with a declared layout,
// prints what would change, and changes it only when asked to.
//
//	go run ./examples/diskplan -layout layout.json -disk disk.img               # plan: changes nothing
//	go run ./examples/diskplan -layout layout.json -disk disk.img -json         # the plan as JSON
//	go run ./examples/diskplan -layout layout.json -disk disk.img inspect       # what is on the disk
//	go run ./examples/diskplan -layout layout.json -disk /dev/vdb apply -yes    # carry the plan out
//
// Without -disk the layout's target (path, by-id name or rule) picks the
// disk. Destructive changes also need -allow-destructive.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/nixboot/nixboot/disk"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "diskplan:", err)
		stop()
		os.Exit(1)
	}
}

// errUsage marks bad command lines.
var errUsage = errors.New("usage: diskplan -layout FILE [-disk PATH] [-json] [-sector-size N] [-allow-destructive] [plan|inspect|apply -yes]")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("diskplan", flag.ContinueOnError)
	fl.SetOutput(stderr)
	layoutFile := fl.String("layout", "", "JSON layout file (required)")
	dev := fl.String("disk", "", "disk or image to check (default: the layout's target)")
	asJSON := fl.Bool("json", false, "print JSON instead of text")
	sector := fl.Int("sector-size", 0, "logical sector size of an image file without a GPT (512 or 4096)")
	destructive := fl.Bool("allow-destructive", false, "permit changes that destroy data (shown in the plan)")
	yes := fl.Bool("yes", false, "with apply: really write to the disk")
	if err := fl.Parse(args); err != nil {
		return err
	}
	cmd := "plan"
	rest := fl.Args()
	if len(rest) > 0 {
		cmd, rest = rest[0], rest[1:]
		// Flags may also follow the command: "apply -yes".
		if err := fl.Parse(rest); err != nil {
			return err
		}
		if fl.NArg() > 0 {
			return fmt.Errorf("%w: unexpected %q", errUsage, fl.Arg(0))
		}
	}
	if *layoutFile == "" && cmd != "inspect" {
		return errUsage
	}
	var layout disk.Layout
	if *layoutFile != "" {
		f, err := os.Open(*layoutFile)
		if err != nil {
			return err
		}
		layout, err = disk.ParseLayout(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", *layoutFile, err)
		}
	}
	path := *dev
	if path == "" {
		var err error
		if path, err = disk.ResolveTarget(ctx, layout.Target); err != nil {
			return err
		}
	}
	d, err := disk.Inspect(ctx, path, disk.InspectOptions{SectorSize: *sector})
	if err != nil {
		return err
	}
	if cmd == "inspect" {
		if *asJSON {
			return printJSON(stdout, d)
		}
		fmt.Fprintf(stdout, "%s: %s, %d-byte sectors, table %q\n", d.Path, disk.ByteSize(d.Size), d.SectorSize, d.Table)
		for _, p := range d.Partitions {
			fs := "-"
			if p.Filesystem != nil {
				fs = fmt.Sprintf("%s %q %s", p.Filesystem.Type, p.Filesystem.Label, p.Filesystem.UUID)
			}
			fmt.Fprintf(stdout, "  %d %q %s at %s, %s: %s\n", p.Number, p.Name, disk.TypeName(p.Type), p.Start, p.Size, fs)
		}
		for _, pr := range d.Problems {
			fmt.Fprintf(stdout, "  problem: %s\n", pr)
		}
		return nil
	}
	if cmd != "plan" && cmd != "apply" {
		return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
	plan, planErr := disk.MakePlan(d, layout, disk.PlanOptions{AllowDestructive: *destructive})
	var refused *disk.RefusedError
	if planErr != nil && !errors.As(planErr, &refused) {
		return planErr
	}
	if *asJSON {
		if err := printJSON(stdout, plan); err != nil {
			return err
		}
	} else {
		fmt.Fprint(stdout, plan.String())
	}
	if planErr != nil {
		return planErr
	}
	if cmd == "plan" {
		return nil
	}
	if !*yes {
		return errors.New("apply writes to the disk: add -yes to proceed")
	}
	if plan.Empty() {
		return nil
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	if err := disk.Apply(ctx, plan, disk.ApplyOptions{Logger: logger}); err != nil {
		return err
	}
	if !*asJSON {
		fmt.Fprintln(stdout, "applied")
	}
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
