// Package disk checks a local disk against a declared partition layout,
// plans the change and applies it without losing data.
//
// A network-booted machine's initrd calls, on every boot:
//
//	dev, _ := disk.ResolveTarget(ctx, layout.Target)   // path, by-id name or rule
//	d, _ := disk.Inspect(ctx, dev, disk.InspectOptions{})
//	plan, err := disk.MakePlan(d, layout, disk.PlanOptions{})
//	// err wraps ErrRefused when the layout would destroy data
//	if !plan.Empty() { err = disk.Apply(ctx, plan, disk.ApplyOptions{}) }
//
// On the first boot the plan creates the table, the partitions and their
// filesystems; on every later boot it is empty and nothing is written.
//
// # Three layers
//
//   - Plain data: Layout (what is wanted, parsed strictly from JSON by
//     ParseLayout), Disk (what Inspect found), Plan (what Apply will do;
//     printable with String and serialisable as JSON).
//   - Pure functions: MakePlan, SelectDisk, ParseSize, Layout.Validate.
//   - I/O: Inspect (read-only), Apply, ListDisks, ResolveTarget.
//
// # How a plan is decided
//
// Following systemd-repart's safety model and Ignition's strict matching:
// the layout's partitions are placed in order from the first 1 MiB boundary
// (sizes: fixed, percent of the usable space, min..max ranges, "rest").
// Declared partition i is compared with existing partition number i:
// same type, same start and the same size is "keep"; smaller with free
// space behind it is "grow" (the entry only; the filesystem is not
// resized); missing is "create"; a blank partition that should hold a
// filesystem is "format"; a different name or attributes is "modify".
// Filesystems are compared by type and label, and by UUID when the layout
// gives one. Partitions the layout does not declare are left alone.
// Shrinking, moving, retyping, deleting a partition in the way,
// re-formatting a filesystem or unknown data, and replacing a foreign
// (MBR) table or whole-disk filesystem are destructive: without
// PlanOptions.AllowDestructive they become "conflict" actions and MakePlan
// returns a *RefusedError saying exactly what would be lost.
//
// # How a plan is applied
//
// Apply re-reads the disk and refuses a stale plan. New filesystems are
// built in temporary sparse files (FAT32 with go-diskfs, checked against
// the cluster-count bug of go-diskfs v1.9.4; ext4, xfs, btrfs and swap with
// the system's mkfs.* programs, ErrNoTool when missing) and copied into
// their partitions' areas while those are still free space; new
// partitions without a filesystem get the first and last MiB of their
// area zeroed, so that old signatures there do not show through. Then the
// backup GPT is written (entry array and header in one write) and synced,
// then the primary GPT (protective MBR, header and array in one write) and
// synced. Stopping after any step leaves the old table in force, or the
// new one, and never touches kept partitions; the only intermediate state
// tools notice is "backup newer than primary", which the next
// Inspect-MakePlan-Apply repairs. On block devices the kernel re-reads
// the table (BLKRRPART, or BLKPG partition by partition when a partition
// is busy or the kernel cannot parse GPT) and Apply waits for the
// partition device nodes.
//
// The GPT reader and writer are our own (UEFI 2.10 section 5.3): go-diskfs
// writes each GPT copy as two separately synced writes, which a crash can
// split into a copy with a bad CRC. go-diskfs is used for FAT32 only, so
// its global logrus logger is never reached.
//
// Sector sizes of 512 and 4096 bytes are supported; for an image file the
// size is detected from its GPT or given in InspectOptions.SectorSize.
//
// # Concurrency
//
// Values (Layout, Disk, Plan) are plain data. All functions may be called
// concurrently, except that only one Apply may run per disk at a time: for
// block devices the exclusive open enforces it, which also makes Apply fail
// while a partition of the disk is mounted, and for image files an flock.
// The loser gets an error wrapping syscall.EBUSY.
//
// # Other systems
//
// The package builds on every system Go supports, and everything that
// works on data or on image files works everywhere: ParseLayout, MakePlan,
// SelectDisk, ListDisks (given a copy of sysfs), Inspect and Apply on image
// files. Block devices are Linux-only: their size and sector size come from
// ioctls (BLKGETSIZE64, BLKSSZGET), Apply relies on the exclusive open
// (O_EXCL) and makes the kernel re-read the table (BLKRRPART, BLKPG), and
// ResolveTarget reads /sys/block. Elsewhere these fail with an error
// wrapping errors.ErrUnsupported that names the feature and the system.
// An image file is locked with flock(2), or LockFileEx on Windows; freed
// space is cleared by punching a hole and filesystem images are copied by
// data extent (SEEK_DATA) only on Linux, elsewhere by writing every byte,
// which gives the same image more slowly. The mkfs programs Apply runs for
// ext4, xfs, btrfs and swap are rarely installed outside Linux (ErrNoTool).
//
// # Non-goals
//
// Applying MBR layouts (they can be declared and inspected), LUKS, LVM,
// RAID, resizing filesystems, copying files into filesystems, and hybrid
// MBRs. Alignment below 4 KiB is refused.
//
// Neighbours: the initrd package builds the initramfs whose install
// program calls this package; netboot serves it. This package imports
// neither.
package disk
