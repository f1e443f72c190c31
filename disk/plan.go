package disk

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// ActionKind names what Apply does to one partition or to the table.
type ActionKind string

// Action kinds. Keep, create, grow, format (of a blank partition), modify
// and the table actions lose nothing. Conflict is a destructive change the
// caller did not allow; with permission it becomes one of the destructive
// kinds (recreate, delete, reformat, replace-table).
const (
	ActionKeep         ActionKind = "keep"
	ActionCreate       ActionKind = "create"
	ActionGrow         ActionKind = "grow"
	ActionFormat       ActionKind = "format"
	ActionModify       ActionKind = "modify"        // name, attributes or GUID in the table only
	ActionCreateTable  ActionKind = "create-table"  // blank disk: write a new GPT
	ActionRepairTable  ActionKind = "repair-table"  // rewrite both GPT copies from the good one
	ActionConflict     ActionKind = "conflict"      // destructive and not allowed
	ActionRecreate     ActionKind = "recreate"      // destructive: entry replaced (moved, shrunk, retyped)
	ActionDelete       ActionKind = "delete"        // destructive: foreign partition removed
	ActionReformat     ActionKind = "reformat"      // destructive: filesystem replaced
	ActionReplaceTable ActionKind = "replace-table" // destructive: foreign table or data replaced
)

// Action is one step of a Plan.
type Action struct {
	Kind ActionKind `json:"action"`
	// Would is, for a conflict, the destructive action that was refused.
	Would ActionKind `json:"would,omitempty"`
	// Number is the partition number (0 for table actions).
	Number int    `json:"number,omitempty"`
	Name   string `json:"name,omitempty"`
	// FirstLBA and LastLBA are the partition's position after the action.
	FirstLBA uint64 `json:"firstLBA,omitempty"`
	LastLBA  uint64 `json:"lastLBA,omitempty"`
	// OldLastLBA is the end before a grow.
	OldLastLBA uint64 `json:"oldLastLBA,omitempty"`
	// Filesystem is made by create, format, recreate and reformat.
	Filesystem *Filesystem `json:"filesystem,omitempty"`
	// Reason says why, for people.
	Reason string `json:"reason,omitempty"`
	// Loses names exactly what a destructive action destroys.
	Loses string `json:"loses,omitempty"`
}

// Destructive reports whether the action destroys data.
func (a Action) Destructive() bool {
	switch a.Kind {
	case ActionConflict, ActionRecreate, ActionDelete, ActionReformat, ActionReplaceTable:
		return true
	}
	return false
}

// PlannedPartition is one entry of the table a Plan writes.
type PlannedPartition struct {
	Number     int        `json:"number"`
	FirstLBA   uint64     `json:"firstLBA"`
	LastLBA    uint64     `json:"lastLBA"`
	Type       string     `json:"type"`
	GUID       string     `json:"guid"`
	Name       string     `json:"name"`
	Attributes Attributes `json:"attributes,omitempty"`
}

// Plan is what Apply will do to one disk. It is a plain value: print it
// with String, serialise it with encoding/json.
type Plan struct {
	Device     string `json:"device"`
	Size       int64  `json:"size"`
	SectorSize int    `json:"sectorSize"`
	// Before fingerprints the inspected disk; Apply refuses with ErrStale
	// when the disk no longer matches it.
	Before string `json:"before"`
	// AllowDestructive records that the plan was made with permission.
	AllowDestructive bool `json:"allowDestructive"`
	// DiskGUID, Partitions: the table after Apply.
	DiskGUID   string             `json:"diskGUID"`
	Partitions []PlannedPartition `json:"partitions"`
	Actions    []Action           `json:"actions"`
}

// Empty reports whether the plan changes nothing: the disk already matches.
func (p Plan) Empty() bool {
	for _, a := range p.Actions {
		if a.Kind != ActionKeep {
			return false
		}
	}
	return true
}

// Refused returns the destructive actions the caller did not allow.
func (p Plan) Refused() []Action {
	var out []Action
	for _, a := range p.Actions {
		if a.Kind == ActionConflict {
			out = append(out, a)
		}
	}
	return out
}

// String renders the plan for people, one line per action.
func (p Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "disk %s: %s, %d-byte sectors\n", p.Device, ByteSize(p.Size), p.SectorSize)
	if p.Empty() {
		b.WriteString("  nothing to do: the disk matches the layout\n")
	}
	for _, a := range p.Actions {
		fmt.Fprintf(&b, "  %-13s", a.Kind)
		if a.Number != 0 {
			fmt.Fprintf(&b, " %d %q LBA %d-%d (%s)", a.Number, a.Name, a.FirstLBA, a.LastLBA,
				ByteSize((a.LastLBA-a.FirstLBA+1)*uint64(p.SectorSize)))
		}
		if a.Filesystem != nil {
			fmt.Fprintf(&b, " %s", a.Filesystem.Type)
			if a.Filesystem.Label != "" {
				fmt.Fprintf(&b, " label %q", a.Filesystem.Label)
			}
		}
		if a.Would != "" {
			fmt.Fprintf(&b, " [would %s]", a.Would)
		}
		if a.Reason != "" {
			fmt.Fprintf(&b, ": %s", a.Reason)
		}
		if a.Loses != "" {
			fmt.Fprintf(&b, "; LOSES %s", a.Loses)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// RefusedError is returned (wrapping ErrRefused) when a plan needs
// destructive actions that were not allowed. Losses lists what they would
// destroy.
type RefusedError struct {
	Device string
	Losses []string
}

// Error lists everything that would be lost.
func (e *RefusedError) Error() string {
	return fmt.Sprintf("disk: %s: destructive change refused (allow destruction to proceed); it would lose: %s",
		e.Device, strings.Join(e.Losses, "; "))
}

// Unwrap lets errors.Is(err, ErrRefused) work.
func (e *RefusedError) Unwrap() error { return ErrRefused }

// PlanOptions tune Plan. The zero value refuses destruction and draws
// random GUIDs from crypto/rand.
type PlanOptions struct {
	// AllowDestructive permits deleting, shrinking, moving and
	// re-formatting partitions and replacing foreign tables.
	AllowDestructive bool
	// Rand is the source of random GUIDs for layouts without a Seed; nil = crypto/rand.
	Rand io.Reader
}

// Fingerprint hashes what Plan looked at, so Apply can tell whether the
// disk changed in between.
func (d Disk) Fingerprint() string {
	c := d
	c.Path = ""
	c.BlockDevice = false
	b, _ := json.Marshal(c)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// Plan compares an inspected disk with a layout and decides, per declared
// partition, what to do. It is pure: it reads only its arguments (and
// opt.Rand). When destructive actions are needed and not allowed it
// returns the plan (with those actions as conflicts) and a *RefusedError.
// Layout errors wrap ErrLayout, lack of space ErrNoSpace.
func MakePlan(d Disk, l Layout, opt PlanOptions) (Plan, error) {
	if err := l.Validate(); err != nil {
		return Plan{}, err
	}
	if l.Table == TableMBR {
		return Plan{}, fmt.Errorf("%w: planning MBR layouts (use gpt)", ErrUnsupported)
	}
	if d.SectorSize != 512 && d.SectorSize != 4096 {
		return Plan{}, fmt.Errorf("disk: %s: sector size %d is not 512 or 4096", d.Path, d.SectorSize)
	}
	rnd := opt.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	newGUID := func(purpose string) (string, error) {
		if l.Seed != "" {
			return derivedGUID(l.Seed, purpose), nil
		}
		b := make([]byte, 16)
		if _, err := io.ReadFull(rnd, b); err != nil {
			return "", fmt.Errorf("disk: random GUID: %w", err)
		}
		b[6] = b[6]&0x0f | 0x40
		b[8] = b[8]&0x3f | 0x80
		return formatGUIDBytes(b), nil
	}
	sector := uint64(d.SectorSize)
	sectors := uint64(d.Size) / sector
	slots, err := resolve(l, sectors, d.SectorSize)
	if err != nil {
		return Plan{}, fmt.Errorf("%w (disk %s)", err, d.Path)
	}
	for i, lp := range l.Partitions {
		if lp.Filesystem == nil || lp.Filesystem.Type != FSVFAT {
			continue
		}
		// FAT32 needs 65525 clusters; go-diskfs uses one-sector clusters
		// up to 260 MB, so 4Kn disks need an ESP of about 260 MiB.
		need := uint64(33 * MiB)
		if d.SectorSize == 4096 {
			need = uint64(260 * MiB)
		}
		if got := (slots[i].Last - slots[i].First + 1) * sector; got < need {
			return Plan{}, fmt.Errorf("%w: field partitions[%d].size: FAT32 on %d-byte sectors needs at least %s, the partition gets %s",
				ErrLayout, i, d.SectorSize, ByteSize(need), ByteSize(got))
		}
	}
	p := Plan{Device: d.Path, Size: d.Size, SectorSize: d.SectorSize, Before: d.Fingerprint(),
		AllowDestructive: opt.AllowDestructive}
	var losses []string
	destroy := func(a Action, would ActionKind) {
		losses = append(losses, a.Loses)
		if opt.AllowDestructive {
			a.Kind = would
		} else {
			a.Kind, a.Would = ActionConflict, would
		}
		p.Actions = append(p.Actions, a)
	}
	size := func(first, last uint64) ByteSize { return ByteSize((last - first + 1) * sector) }
	describe := func(e PartitionInfo) string {
		s := fmt.Sprintf("partition %d %q (%s, %s", e.Number, e.Name, TypeName(e.Type), e.Size)
		if e.Filesystem != nil {
			s += fmt.Sprintf(", %s filesystem", e.Filesystem.Type)
			if e.Filesystem.Label != "" {
				s += fmt.Sprintf(" %q", e.Filesystem.Label)
			}
			if e.Filesystem.UUID != "" {
				s += " " + e.Filesystem.UUID
			}
		} else if !e.Blank {
			s += ", unrecognised data"
		}
		return s + ")"
	}

	// Existing entries that survive, by number. A foreign table or data
	// means starting from an empty table.
	existing := map[int]PartitionInfo{}
	fresh := false
	switch {
	case d.Table == TableGPT:
		for _, e := range d.Partitions {
			existing[e.Number] = e
		}
		p.DiskGUID = d.GUID
		first, last := usableRange(sectors, d.SectorSize)
		if len(d.Problems) > 0 || d.FirstUsableLBA != first || d.LastUsableLBA != last {
			reason := strings.Join(d.Problems, "; ")
			if reason == "" {
				reason = fmt.Sprintf("usable LBAs %d-%d become %d-%d", d.FirstUsableLBA, d.LastUsableLBA, first, last)
			}
			p.Actions = append(p.Actions, Action{Kind: ActionRepairTable, Reason: reason})
		}
	case d.Table == "" && d.Filesystem == nil && d.Blank:
		fresh = true
		p.Actions = append(p.Actions, Action{Kind: ActionCreateTable, Reason: "the disk is blank"})
	default:
		fresh = true
		var what string
		switch {
		case d.Table == TableMBR:
			var parts []string
			for _, e := range d.Partitions {
				parts = append(parts, describe(e))
			}
			what = fmt.Sprintf("the MBR partition table with %d partitions: %s", len(d.Partitions), strings.Join(parts, ", "))
		case d.Filesystem != nil:
			what = fmt.Sprintf("the %s filesystem %q (%s) on the whole disk", d.Filesystem.Type, d.Filesystem.Label, d.Filesystem.UUID)
		default:
			what = "unrecognised data at the start of the disk"
		}
		destroy(Action{Reason: "the disk holds no GPT", Loses: what}, ActionReplaceTable)
	}
	if p.DiskGUID == "" {
		if l.GUID != "" {
			p.DiskGUID = strings.ToUpper(l.GUID)
		} else if p.DiskGUID, err = newGUID("disk"); err != nil {
			return Plan{}, err
		}
	}

	newFS := func(i int) (*Filesystem, error) {
		fs := l.Partitions[i].Filesystem
		if fs == nil {
			return nil, nil
		}
		c := *fs
		if c.UUID == "" {
			g, err := newGUID(fmt.Sprintf("filesystem %d", i+1))
			if err != nil {
				return nil, err
			}
			if c.Type == FSVFAT {
				c.UUID = g[:4] + "-" + g[4:8]
			} else {
				c.UUID = strings.ToLower(g)
			}
		}
		return &c, nil
	}

	table := map[int]PlannedPartition{}
	if !fresh {
		for n, e := range existing {
			table[n] = PlannedPartition{Number: n, FirstLBA: e.FirstLBA, LastLBA: e.LastLBA, Type: e.Type,
				GUID: e.GUID, Name: e.Name, Attributes: e.Attributes}
		}
	}
	overlaps := func(a, b slot) bool { return a.First <= b.Last && b.First <= a.Last }

	for i, lp := range l.Partitions {
		n := i + 1
		s := slots[i]
		typ, _ := TypeGUID(lp.Type)
		act := Action{Number: n, Name: lp.Name, FirstLBA: s.First, LastLBA: s.Last}
		guid := strings.ToUpper(lp.GUID)
		e, ok := existing[n]
		if fresh {
			ok = false
		}
		if ok {
			var why string
			switch {
			case !strings.EqualFold(e.Type, typ):
				why = fmt.Sprintf("type is %s, the layout wants %s", TypeName(e.Type), lp.Type)
			case e.FirstLBA != s.First:
				why = fmt.Sprintf("starts at LBA %d, the layout wants %d", e.FirstLBA, s.First)
			case e.LastLBA > s.Last:
				why = fmt.Sprintf("is %s, the layout wants %s (shrinking)", e.Size, size(s.First, s.Last))
			}
			if why != "" {
				act.Reason = "partition " + why
				act.Loses = describe(e)
				fs, err := newFS(i)
				if err != nil {
					return Plan{}, err
				}
				act.Filesystem = fs
				if guid == "" {
					if guid, err = newGUID(fmt.Sprintf("partition %d", n)); err != nil {
						return Plan{}, err
					}
				}
				destroy(act, ActionRecreate)
				table[n] = PlannedPartition{Number: n, FirstLBA: s.First, LastLBA: s.Last, Type: typ, GUID: guid, Name: lp.Name, Attributes: lp.Attributes}
				continue
			}
			// Same type and start, not larger: keep or grow the entry.
			pp := table[n]
			var mods []string
			if e.Name != lp.Name {
				mods = append(mods, fmt.Sprintf("name %q -> %q", e.Name, lp.Name))
				pp.Name = lp.Name
			}
			if e.Attributes != lp.Attributes {
				mods = append(mods, fmt.Sprintf("attributes %#x -> %#x", uint64(e.Attributes), uint64(lp.Attributes)))
				pp.Attributes = lp.Attributes
			}
			if guid != "" && !strings.EqualFold(e.GUID, guid) {
				mods = append(mods, fmt.Sprintf("GUID %s -> %s", e.GUID, guid))
				pp.GUID = guid
			}
			if e.LastLBA < s.Last {
				pp.LastLBA = s.Last
				fsNote := "the filesystem is not resized"
				if lp.Attributes&attrGrowFS != 0 {
					fsNote += " here (the grow-fs attribute asks systemd to grow it when mounted)"
				}
				p.Actions = append(p.Actions, Action{Kind: ActionGrow, Number: n, Name: lp.Name, FirstLBA: s.First, LastLBA: s.Last,
					OldLastLBA: e.LastLBA, Reason: fmt.Sprintf("%s -> %s; %s", e.Size, size(s.First, s.Last), fsNote)})
			}
			if len(mods) > 0 {
				p.Actions = append(p.Actions, Action{Kind: ActionModify, Number: n, Name: lp.Name, FirstLBA: s.First, LastLBA: s.Last,
					Reason: strings.Join(mods, ", ")})
			}
			table[n] = pp
			fsChange := false
			if fs := lp.Filesystem; fs != nil {
				have := e.Filesystem
				switch {
				case have == nil && e.Blank:
					nf, err := newFS(i)
					if err != nil {
						return Plan{}, err
					}
					fsChange = true
					p.Actions = append(p.Actions, Action{Kind: ActionFormat, Number: n, Name: lp.Name, FirstLBA: s.First, LastLBA: s.Last,
						Filesystem: nf, Reason: "the partition is blank"})
				case have == nil || have.Type != fs.Type || have.Label != fs.Label || (fs.UUID != "" && !strings.EqualFold(have.UUID, fs.UUID)):
					nf, err := newFS(i)
					if err != nil {
						return Plan{}, err
					}
					reason := "the partition holds unrecognised data"
					if have != nil {
						reason = fmt.Sprintf("found %s %q %s, the layout wants %s %q %s", have.Type, have.Label, have.UUID, fs.Type, fs.Label, fs.UUID)
					}
					fsChange = true
					destroy(Action{Number: n, Name: lp.Name, FirstLBA: s.First, LastLBA: s.Last, Filesystem: nf,
						Reason: reason, Loses: describe(e)}, ActionReformat)
				}
			}
			if e.LastLBA == s.Last && len(mods) == 0 && !fsChange {
				p.Actions = append(p.Actions, Action{Kind: ActionKeep, Number: n, Name: lp.Name, FirstLBA: s.First, LastLBA: s.Last})
			}
			continue
		}
		fs, err := newFS(i)
		if err != nil {
			return Plan{}, err
		}
		if guid == "" {
			if guid, err = newGUID(fmt.Sprintf("partition %d", n)); err != nil {
				return Plan{}, err
			}
		}
		act.Kind, act.Filesystem, act.Reason = ActionCreate, fs, "not on the disk"
		p.Actions = append(p.Actions, act)
		table[n] = PlannedPartition{Number: n, FirstLBA: s.First, LastLBA: s.Last, Type: typ, GUID: guid, Name: lp.Name, Attributes: lp.Attributes}
	}
	// Partitions the layout does not declare are foreign: kept unless they
	// overlap a declared one.
	for n := len(l.Partitions) + 1; n <= gptEntries; n++ {
		e, ok := existing[n]
		if !ok || fresh {
			continue
		}
		es := slot{e.FirstLBA, e.LastLBA}
		for _, s := range slots {
			if overlaps(es, s) {
				destroy(Action{Number: n, Name: e.Name, FirstLBA: e.FirstLBA, LastLBA: e.LastLBA,
					Reason: "not in the layout and in the way of a declared partition", Loses: describe(e)}, ActionDelete)
				delete(table, n)
				break
			}
		}
	}
	for n := 1; n <= gptEntries; n++ {
		if pp, ok := table[n]; ok {
			p.Partitions = append(p.Partitions, pp)
		}
	}
	if len(losses) > 0 && !opt.AllowDestructive {
		return p, &RefusedError{Device: d.Path, Losses: losses}
	}
	return p, nil
}
