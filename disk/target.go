package disk

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"runtime"
	"sort"
	"strconv"
	"strings"
)

// BlockDevice is a whole disk as the kernel describes it in sysfs.
type BlockDevice struct {
	Name      string   `json:"name"` // kernel name: vda, nvme0n1
	Path      string   `json:"path"` // /dev/<name>
	Size      ByteSize `json:"size"`
	Removable bool     `json:"removable"`
	ReadOnly  bool     `json:"readOnly"`
	// Virtual is true for devices without a backing hardware device:
	// loop, ram, zram, device-mapper, md.
	Virtual bool     `json:"virtual"`
	Model   string   `json:"model,omitempty"`
	IDs     []string `json:"ids,omitempty"` // names under /dev/disk/by-id
}

// ListDisks lists whole disks from sysfs (sys is rooted at /sys) in kernel
// name order, with their /dev/disk/by-id names (byID rooted there; nil or
// missing skips them).
func ListDisks(sys, byID fs.FS) ([]BlockDevice, error) {
	ents, err := fs.ReadDir(sys, "block")
	if err != nil {
		return nil, fmt.Errorf("disk: listing block devices: %w", err)
	}
	ids := map[string][]string{}
	if byID != nil {
		links, _ := fs.ReadDir(byID, ".")
		for _, l := range links {
			target, err := fs.ReadLink(byID, l.Name())
			if err != nil {
				continue
			}
			// Partitions' links (…-part1) point at partition nodes and so
			// never match a whole disk's name.
			ids[path.Base(target)] = append(ids[path.Base(target)], l.Name())
		}
	}
	var out []BlockDevice
	for _, e := range ents {
		name := e.Name()
		read := func(f string) string {
			b, err := fs.ReadFile(sys, path.Join("block", name, f))
			if err != nil {
				return ""
			}
			return strings.TrimSpace(string(b))
		}
		sectors, err := strconv.ParseUint(read("size"), 10, 64)
		if err != nil {
			continue
		}
		_, devErr := fs.Stat(sys, path.Join("block", name, "device"))
		d := BlockDevice{
			Name: name, Path: "/dev/" + name,
			Size:      ByteSize(sectors * 512), // sysfs counts 512-byte units
			Removable: read("removable") == "1",
			ReadOnly:  read("ro") == "1",
			Virtual:   devErr != nil,
			Model:     read("device/model"),
			IDs:       ids[name],
		}
		sort.Strings(d.IDs)
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// SelectDisk picks the disk a target names from disks (as ListDisks
// returns them). A Path target is returned as is, so image files work.
// It is pure. No match gives ErrNoDisk with the candidates considered.
func SelectDisk(disks []BlockDevice, t Target) (string, error) {
	switch {
	case t.Path != "":
		return t.Path, nil
	case t.ID != "":
		for _, d := range disks {
			for _, id := range d.IDs {
				if id == t.ID {
					return d.Path, nil
				}
			}
		}
		return "", fmt.Errorf("%w: no disk has the id %q", ErrNoDisk, t.ID)
	case t.Rule != nil:
		r := t.Rule
		var why []string
		for _, d := range disks {
			var no string
			switch {
			case d.Virtual:
				no = "virtual"
			case d.ReadOnly:
				no = "read-only"
			case d.Removable && !r.AllowRemovable:
				no = "removable"
			case d.Size < r.MinSize:
				no = "smaller than " + r.MinSize.String()
			case r.MaxSize != 0 && d.Size > r.MaxSize:
				no = "larger than " + r.MaxSize.String()
			}
			if no == "" {
				return d.Path, nil
			}
			why = append(why, fmt.Sprintf("%s (%s): %s", d.Name, d.Size, no))
		}
		return "", fmt.Errorf("%w: no disk fits the rule; %s", ErrNoDisk, strings.Join(why, "; "))
	}
	return "", fmt.Errorf("%w: the layout names no target", ErrNoDisk)
}

// ResolveTarget finds the device path for a layout's target on this
// machine, reading /sys/block and /dev/disk/by-id. A target with a Path
// resolves to it everywhere; any other target needs Linux's sysfs, and
// on other systems fails with an error wrapping errors.ErrUnsupported.
func ResolveTarget(ctx context.Context, t Target) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if t.Path != "" {
		return t.Path, nil
	}
	if runtime.GOOS != "linux" {
		return "", fmt.Errorf("disk: finding the target disk needs /sys/block, which %s does not have (give Target.Path): %w", runtime.GOOS, errors.ErrUnsupported)
	}
	var byID fs.FS
	if _, err := os.Stat("/dev/disk/by-id"); err == nil {
		byID = os.DirFS("/dev/disk/by-id")
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("disk: %w", err)
	}
	disks, err := ListDisks(os.DirFS("/sys"), byID)
	if err != nil {
		return "", err
	}
	return SelectDisk(disks, t)
}
