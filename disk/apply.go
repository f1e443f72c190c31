package disk

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nixboot/nixboot/internal/filelock"
)

// ApplyOptions tune Apply. The zero value is ready to use.
type ApplyOptions struct {
	// Logger receives one Info line per write step; nil discards.
	Logger *slog.Logger
	// WorkDir holds temporary filesystem images (sparse files as large as
	// the partitions they are for); "" = os.TempDir().
	WorkDir string
	// SettleTimeout bounds the wait for partition device nodes after the
	// kernel re-reads the table; 0 = 10 s.
	SettleTimeout time.Duration
}

// Apply carries out a plan on the disk it was made for.
//
// It re-reads the disk first and returns ErrStale if it no longer looks as
// it did when the plan was made, unless the disk already has the plan's
// table, in which case Apply does nothing (so applying twice is a no-op).
// Plans with refused (conflict) actions are rejected with a *RefusedError.
// When a filesystem's mkfs program is missing, Apply returns an error
// wrapping ErrNoTool before it writes anything.
//
// Write order, chosen so that stopping after any step leaves a valid table
// (old or new) and never touches a kept partition:
//  1. each new filesystem is built in a temporary file, then copied into
//     its partition's area, which is free space in the old table; a new
//     partition without a filesystem gets its first and last MiB zeroed
//     instead, so that no signature left in that space shows through;
//  2. the backup GPT (entry array and header, contiguous) in one write,
//     then fsync; the primary still describes the old table;
//  3. the primary GPT (protective MBR, header and entry array,
//     contiguous) in one write, then fsync: the new table is in force;
//  4. on block devices, the kernel re-reads the table and Apply waits for
//     the partition device nodes.
//
// A block device is opened exclusively, so Apply fails if it is mounted
// or another Apply is at work on it; an image file is locked (flock, or
// LockFileEx on Windows) for the same purpose. Both failures wrap
// syscall.EBUSY.
//
// Block devices are Linux-only (exclusive open, BLKRRPART, BLKPG): on
// other systems Apply to one fails before writing, with an error wrapping
// errors.ErrUnsupported. Image files work everywhere; see the package
// documentation, "Other systems", for what is slower there.
func Apply(ctx context.Context, p Plan, opt ApplyOptions) error {
	return apply(ctx, p, opt, applyHooks{})
}

// applyHooks let tests change how apply behaves; the zero value changes
// nothing.
type applyHooks struct {
	// interrupt makes apply run only the first stopAfter write steps and
	// return errInterrupted if there were more: the fault-injection tests
	// leave a disk exactly as a crash after that step would.
	interrupt bool
	stopAfter int
	// lookTool finds programs; nil = lookTool.
	lookTool func(name string) (string, error)
}

func apply(ctx context.Context, p Plan, opt ApplyOptions, hooks applyHooks) error {
	look := hooks.lookTool
	if look == nil {
		look = lookTool
	}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if refused := p.Refused(); len(refused) > 0 {
		e := &RefusedError{Device: p.Device}
		for _, a := range refused {
			e.Losses = append(e.Losses, a.Loses)
		}
		return e
	}
	for _, a := range p.Actions {
		if a.Destructive() && !p.AllowDestructive {
			return fmt.Errorf("%w: plan for %s has a %s action but was not made with AllowDestructive", ErrRefused, p.Device, a.Kind)
		}
	}
	st, err := os.Stat(p.Device)
	if err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	block := st.Mode()&os.ModeDevice != 0
	var f *os.File
	if block {
		f, err = openBlock(p.Device)
	} else {
		f, err = os.OpenFile(p.Device, os.O_RDWR, 0)
	}
	if err != nil {
		return fmt.Errorf("disk: opening %s for writing: %w", p.Device, err)
	}
	defer f.Close()
	if !block {
		// Image files have no exclusive open: an advisory lock keeps two
		// Applies (in any processes) from interleaving their writes.
		if err := filelock.TryLock(f); err != nil {
			return fmt.Errorf("disk: locking %s (another Apply at work?): %w", p.Device, err)
		}
	}
	size, sector, _, err := geometry(f, p.SectorSize)
	if err != nil {
		return fmt.Errorf("disk: %s: %w", p.Device, err)
	}
	if size != p.Size || sector != p.SectorSize {
		return fmt.Errorf("%w: %s is %d bytes with %d-byte sectors, the plan was for %d with %d", ErrStale, p.Device, size, sector, p.Size, p.SectorSize)
	}
	now, err := readDisk(f, size, sector)
	if err == nil && hasTable(now, p) {
		log.Info("disk already matches the plan", "file", p.Device)
		return nil
	}
	if err != nil {
		now.Problems = append(now.Problems, err.Error())
	}
	now.Path = p.Device
	if now.Fingerprint() != p.Before {
		return fmt.Errorf("%w: %s (inspect and plan again)", ErrStale, p.Device)
	}
	if p.Empty() {
		return nil
	}
	// Find every mkfs program before writing anything, so that a missing
	// one leaves the disk untouched.
	tools := map[string]string{}
	for _, a := range p.Actions {
		if a.Filesystem == nil || !makesFS(a.Kind) {
			continue
		}
		prog := mkfsProgram(a.Filesystem.Type)
		if prog == "" || tools[prog] != "" {
			continue
		}
		path, err := look(prog)
		if err != nil {
			return fmt.Errorf("disk: %s: partition %d (%s) needs %s: %w", p.Device, a.Number, a.Filesystem.Type, prog, err)
		}
		tools[prog] = path
	}

	type step struct {
		what string
		run  func() error
	}
	var steps []step
	bySector := func(lba uint64) int64 { return int64(lba) * int64(sector) }
	for _, a := range p.Actions {
		if !makesFS(a.Kind) {
			continue
		}
		a := a
		if a.Filesystem == nil {
			steps = append(steps, step{
				what: fmt.Sprintf("clear old signatures in partition %d", a.Number),
				run: func() error {
					off, n := bySector(a.FirstLBA), bySector(a.LastLBA-a.FirstLBA+1)
					head := min(n, signatureArea)
					if err := clearRange(ctx, f, block, off, head); err != nil {
						return err
					}
					if tail := min(n-head, signatureArea); tail > 0 {
						if err := clearRange(ctx, f, block, off+n-tail, tail); err != nil {
							return err
						}
					}
					return f.Sync()
				},
			})
			continue
		}
		steps = append(steps, step{
			what: fmt.Sprintf("make %s on partition %d", a.Filesystem.Type, a.Number),
			run: func() error {
				off, n := bySector(a.FirstLBA), bySector(a.LastLBA-a.FirstLBA+1)
				img, err := buildFS(ctx, *a.Filesystem, n, sector, opt.WorkDir, tools[mkfsProgram(a.Filesystem.Type)])
				if err != nil {
					return fmt.Errorf("partition %d: %w", a.Number, err)
				}
				defer os.Remove(img)
				if err := copyFSImage(ctx, f, block, off, n, img); err != nil {
					return fmt.Errorf("partition %d: %w", a.Number, err)
				}
				return f.Sync()
			},
		})
	}
	sectors := uint64(size) / uint64(sector)
	first, last := usableRange(sectors, sector)
	t := gptTable{DiskGUID: p.DiskGUID, FirstUsable: first, LastUsable: last}
	for _, pp := range p.Partitions {
		if pp.FirstLBA < first || pp.LastLBA > last || pp.FirstLBA > pp.LastLBA {
			return fmt.Errorf("disk: plan partition %d (LBA %d-%d) outside usable %d-%d", pp.Number, pp.FirstLBA, pp.LastLBA, first, last)
		}
		t.Entries = append(t.Entries, gptEntry{Number: pp.Number, Type: pp.Type, GUID: pp.GUID, First: pp.FirstLBA,
			Last: pp.LastLBA, Attributes: uint64(pp.Attributes), Name: pp.Name})
	}
	for i, a := range t.Entries {
		for _, b := range t.Entries[i+1:] {
			if a.First <= b.Last && b.First <= a.Last {
				return fmt.Errorf("disk: plan partitions %d and %d overlap", a.Number, b.Number)
			}
		}
	}
	primary, backup, backupOff, err := gptImages(t, sectors, sector)
	if err != nil {
		return fmt.Errorf("disk: encoding the table for %s: %w", p.Device, err)
	}
	if now.Table != TableGPT {
		// Replacing a foreign table: clear the gap between the primary GPT
		// and the first partition, where boot code and old metadata live.
		// LBA 0 (the old MBR) stays until the primary write replaces it.
		end := uint64(len(primary)) / uint64(sector)
		gapEnd := end
		for i, pp := range p.Partitions {
			if i == 0 || pp.FirstLBA < gapEnd {
				gapEnd = pp.FirstLBA
			}
		}
		if gapEnd > end {
			steps = append(steps, step{what: "clear the area before the first partition", run: func() error {
				if _, err := f.WriteAt(make([]byte, bySector(gapEnd-end)), bySector(end)); err != nil {
					return err
				}
				return f.Sync()
			}})
		}
	}
	steps = append(steps,
		step{what: "write the backup GPT", run: func() error {
			if _, err := f.WriteAt(backup, backupOff); err != nil {
				return err
			}
			return f.Sync()
		}},
		step{what: "write the primary GPT", run: func() error {
			if _, err := f.WriteAt(primary, 0); err != nil {
				return err
			}
			return f.Sync()
		}},
	)
	for i, s := range steps {
		if hooks.interrupt && i >= hooks.stopAfter {
			return fmt.Errorf("%w after %d steps", errInterrupted, i)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		log.Info("disk write", "file", p.Device, "step", s.what)
		if err := s.run(); err != nil {
			return fmt.Errorf("disk: %s: %s: %w", p.Device, s.what, err)
		}
	}
	if !block {
		return nil
	}
	return syncKernel(ctx, f, p, opt.SettleTimeout)
}

// makesFS reports whether an action of this kind makes its filesystem.
func makesFS(k ActionKind) bool {
	switch k {
	case ActionCreate, ActionFormat, ActionRecreate, ActionReformat:
		return true
	}
	return false
}

// hasTable reports whether d already holds exactly the plan's table (and
// is healthy), i.e. the plan has been applied.
func hasTable(d Disk, p Plan) bool {
	if d.Table != TableGPT || len(d.Problems) > 0 || !strings.EqualFold(d.GUID, p.DiskGUID) || len(d.Partitions) != len(p.Partitions) {
		return false
	}
	for i, e := range d.Partitions {
		q := p.Partitions[i]
		if e.Number != q.Number || e.FirstLBA != q.FirstLBA || e.LastLBA != q.LastLBA || !strings.EqualFold(e.Type, q.Type) ||
			!strings.EqualFold(e.GUID, q.GUID) || e.Name != q.Name || e.Attributes != q.Attributes {
			return false
		}
	}
	for _, a := range p.Actions {
		if a.Filesystem != nil && a.Kind != ActionConflict {
			for _, e := range d.Partitions {
				if e.Number == a.Number && (e.Filesystem == nil || e.Filesystem.Type != a.Filesystem.Type) {
					return false
				}
			}
		}
	}
	return true
}
