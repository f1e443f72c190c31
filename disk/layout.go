package disk

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// TableGPT and TableMBR name partition table types.
const (
	TableGPT = "gpt"
	TableMBR = "mbr"
)

// DefaultAlignment is where partitions start and end unless the layout says
// otherwise: 1 MiB, as sgdisk, sfdisk and parted do.
const DefaultAlignment = MiB

// Layout declares how a disk must be partitioned. Build it in Go or parse
// it with ParseLayout; Validate checks it. The zero value is invalid (it
// has no partitions).
type Layout struct {
	// Table is "gpt" (also when empty) or "mbr". Apply supports GPT only.
	Table string `json:"table,omitempty"`
	// Target says which disk the layout is for. It may be empty when the
	// caller names the device itself.
	Target Target `json:"target,omitzero"`
	// Alignment is the grain for partition starts and sizes; 0 = 1 MiB.
	// It must be a power of two of at least 4 KiB.
	Alignment ByteSize `json:"alignment,omitempty"`
	// GUID is the disk GUID for a new table; empty = derived from Seed, or
	// random when Seed is empty too.
	GUID string `json:"guid,omitempty"`
	// Seed, when set, makes every GUID and filesystem UUID the layout does
	// not give explicitly a hash of the seed, so images are reproducible.
	Seed string `json:"seed,omitempty"`
	// Partitions, in table order: Partitions[0] is partition number 1.
	Partitions []Partition `json:"partitions"`
}

// Target selects the disk by exactly one of Path, ID or Rule.
type Target struct {
	// Path is a device or image path, such as /dev/vda.
	Path string `json:"path,omitempty"`
	// ID is a name under /dev/disk/by-id, such as "nvme-eui.0025...".
	ID string `json:"id,omitempty"`
	// Rule picks the first whole disk (in kernel name order) that fits.
	Rule *Rule `json:"rule,omitempty"`
}

// Rule describes a disk by its properties. The zero Rule matches the first
// non-removable, non-virtual (loop, ram, zram, device-mapper) disk.
type Rule struct {
	MinSize        ByteSize `json:"minSize,omitempty"`        // 0 = any
	MaxSize        ByteSize `json:"maxSize,omitempty"`        // 0 = any
	AllowRemovable bool     `json:"allowRemovable,omitempty"` // also removable disks (USB sticks, SD cards)
}

// Partition declares one partition.
type Partition struct {
	// Name is the GPT partition name (its "label"): ASCII, at most 36 characters.
	Name string `json:"name"`
	// Type is a symbolic name (see PartitionTypes) or a type GUID.
	Type string `json:"type"`
	// Size chooses the partition's size.
	Size Size `json:"size"`
	// GUID is the unique partition GUID; empty = derived from the layout's
	// Seed, or random. Only an explicit GUID is compared with an existing
	// partition.
	GUID string `json:"guid,omitempty"`
	// Attributes are the GPT attribute bits.
	Attributes Attributes `json:"attributes,omitempty"`
	// Filesystem, when set, is made on a new or empty partition.
	Filesystem *Filesystem `json:"filesystem,omitempty"`
}

// Filesystem declares what a partition holds.
type Filesystem struct {
	// Type is vfat (FAT32, made in Go), ext4, xfs, btrfs or swap (made by
	// the system's mkfs.* programs).
	Type string `json:"type"`
	// Label is the filesystem label (vfat: 11 characters, xfs: 12, others: 16).
	Label string `json:"label,omitempty"`
	// UUID is the filesystem UUID (vfat: the volume serial, "ABCD-1234");
	// empty = derived from the layout's Seed, or random. Only an explicit
	// UUID is compared with an existing filesystem.
	UUID string `json:"uuid,omitempty"`
}

// Filesystem types.
const (
	FSVFAT  = "vfat"
	FSExt4  = "ext4"
	FSXFS   = "xfs"
	FSBtrfs = "btrfs"
	FSSwap  = "swap"
)

// fatLabelBad are the characters fsck.fat (dosfstools 4.2) rejects in a
// volume label.
const fatLabelBad = "\"*+,./:;<=>?[\\]|"

var fsLabelMax = map[string]int{FSVFAT: 11, FSExt4: 16, FSXFS: 12, FSBtrfs: 255, FSSwap: 16}

// PartitionTypes maps the symbolic type names (from the UAPI Discoverable
// Partitions Specification, as systemd-repart spells them) to GPT type GUIDs.
var PartitionTypes = map[string]string{
	"esp":         "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
	"bios-boot":   "21686148-6449-6E6F-744E-656564454649",
	"linux":       "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
	"root-x86-64": "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
	"root-arm64":  "B921B045-1DF0-41C3-AF44-4C6F280D3FAE",
	"swap":        "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",
	"home":        "933AC7E1-2EB4-4F13-B844-0E14E2AEF915",
	"xbootldr":    "BC13C2FF-59E6-4262-A352-B275FD6F7172",
	"srv":         "3B8F8425-20E0-4F3B-907F-1A25A76F98E8",
	"var":         "4D21B016-B534-45C2-A9FB-5C16E091FD2D",
	"lvm":         "E6D6D379-F507-44C2-A23C-238F2A3DF928",
	"raid":        "A19D880F-05FC-4D3B-A006-743F0F84911E",
}

// TypeGUID resolves a symbolic type name or GUID to an upper-case GUID.
func TypeGUID(t string) (string, error) {
	if g, ok := PartitionTypes[strings.ToLower(t)]; ok {
		return g, nil
	}
	if err := checkGUID(t); err != nil {
		return "", fmt.Errorf("type %q is neither a known name (esp, bios-boot, linux, root-x86-64, root-arm64, swap, home, ...) nor a GUID", t)
	}
	return strings.ToUpper(t), nil
}

// TypeName returns the symbolic name of a type GUID, or the GUID itself.
func TypeName(guid string) string {
	for n, g := range PartitionTypes {
		if strings.EqualFold(g, guid) {
			return n
		}
	}
	return strings.ToUpper(guid)
}

// Attributes are GPT partition attribute bits. In JSON they are a list of
// names ("required", "no-block-io", "legacy-bios-bootable", "grow-fs",
// "read-only", "no-auto") and bit numbers (0-63).
type Attributes uint64

// attrGrowFS is the Discoverable Partitions Specification's bit 59:
// systemd grows the partition's filesystem to the partition when mounting it.
const attrGrowFS Attributes = 1 << 59

var attrNames = map[string]uint{
	"required": 0, "no-block-io": 1, "legacy-bios-bootable": 2,
	"grow-fs": 59, "read-only": 60, "no-auto": 63,
}

// MarshalJSON implements json.Marshaler.
func (a Attributes) MarshalJSON() ([]byte, error) {
	out := []any{}
	for bit := uint(0); bit < 64; bit++ {
		if a&(1<<bit) == 0 {
			continue
		}
		name := any(bit)
		for n, b := range attrNames {
			if b == bit {
				name = n
			}
		}
		out = append(out, name)
	}
	return json.Marshal(out)
}

// UnmarshalJSON implements json.Unmarshaler.
func (a *Attributes) UnmarshalJSON(p []byte) error {
	v, err := parseAttributes(p)
	if err != nil {
		return fmt.Errorf("%w: attributes: %w", ErrLayout, err)
	}
	*a = v
	return nil
}

func parseAttributes(p []byte) (Attributes, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal(p, &raw); err != nil {
		return 0, errors.New("want a list of names or bit numbers")
	}
	var v Attributes
	for _, r := range raw {
		var name string
		if json.Unmarshal(r, &name) == nil {
			bit, ok := attrNames[name]
			if !ok {
				return 0, fmt.Errorf("unknown attribute %q", name)
			}
			v |= 1 << bit
			continue
		}
		n, err := strconv.ParseUint(string(bytes.TrimSpace(r)), 10, 8)
		if err != nil || n > 63 {
			return 0, fmt.Errorf("%s is neither a name nor a bit number 0-63", r)
		}
		v |= 1 << n
	}
	return v, nil
}

// maxLayoutBytes bounds what ParseLayout reads.
const maxLayoutBytes = 1 << 20

// rawLayout mirrors Layout with sizes as strings, so that ParseLayout can
// name the field of a bad size (encoding/json does not for Unmarshalers).
type rawLayout struct {
	Table      string         `json:"table"`
	Target     rawTarget      `json:"target"`
	Alignment  *string        `json:"alignment"`
	GUID       string         `json:"guid"`
	Seed       string         `json:"seed"`
	Partitions []rawPartition `json:"partitions"`
}

type rawTarget struct {
	Path string   `json:"path"`
	ID   string   `json:"id"`
	Rule *rawRule `json:"rule"`
}

type rawRule struct {
	MinSize        *string `json:"minSize"`
	MaxSize        *string `json:"maxSize"`
	AllowRemovable bool    `json:"allowRemovable"`
}

type rawPartition struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Size       string          `json:"size"`
	GUID       string          `json:"guid"`
	Attributes json.RawMessage `json:"attributes"`
	Filesystem *Filesystem     `json:"filesystem"`
}

// ParseLayout parses and validates a JSON layout strictly: unknown fields,
// trailing data and invalid values are errors naming the field.
func ParseLayout(r io.Reader) (Layout, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxLayoutBytes+1))
	if err != nil {
		return Layout{}, fmt.Errorf("disk: reading layout: %w", err)
	}
	if len(data) > maxLayoutBytes {
		return Layout{}, fmt.Errorf("%w: larger than %d bytes", ErrLayout, maxLayoutBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var raw rawLayout
	if err := dec.Decode(&raw); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return Layout{}, fmt.Errorf("%w: field %s: got JSON %s, want %s", ErrLayout, te.Field, te.Value, te.Type)
		}
		if errors.Is(err, ErrLayout) {
			return Layout{}, err
		}
		return Layout{}, fmt.Errorf("%w: %w", ErrLayout, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Layout{}, fmt.Errorf("%w: trailing data after the layout object", ErrLayout)
	}
	l := Layout{Table: raw.Table, Target: Target{Path: raw.Target.Path, ID: raw.Target.ID}, GUID: raw.GUID, Seed: raw.Seed}
	byteSize := func(field string, v *string) (ByteSize, error) {
		if v == nil {
			return 0, nil
		}
		b, err := ParseByteSize(*v)
		if err != nil {
			return 0, fmt.Errorf("%w: field %s: %w", ErrLayout, field, err)
		}
		return b, nil
	}
	if r := raw.Target.Rule; r != nil {
		l.Target.Rule = &Rule{AllowRemovable: r.AllowRemovable}
		if l.Target.Rule.MinSize, err = byteSize("target.rule.minSize", r.MinSize); err != nil {
			return Layout{}, err
		}
		if l.Target.Rule.MaxSize, err = byteSize("target.rule.maxSize", r.MaxSize); err != nil {
			return Layout{}, err
		}
	}
	if raw.Alignment != nil {
		if l.Alignment, err = byteSize("alignment", raw.Alignment); err != nil {
			return Layout{}, err
		}
		if l.Alignment == 0 {
			return Layout{}, fmt.Errorf("%w: field alignment: must not be zero (omit it for 1 MiB)", ErrLayout)
		}
	}
	if raw.Partitions != nil {
		l.Partitions = make([]Partition, len(raw.Partitions))
	}
	for i, rp := range raw.Partitions {
		sz, err := ParseSize(rp.Size)
		if err != nil {
			return Layout{}, fmt.Errorf("%w: field partitions[%d].size: %w", ErrLayout, i, err)
		}
		var attrs Attributes
		if len(rp.Attributes) > 0 && string(rp.Attributes) != "null" {
			if attrs, err = parseAttributes(rp.Attributes); err != nil {
				return Layout{}, fmt.Errorf("%w: field partitions[%d].attributes: %w", ErrLayout, i, err)
			}
		}
		l.Partitions[i] = Partition{Name: rp.Name, Type: rp.Type, Size: sz, GUID: rp.GUID,
			Attributes: attrs, Filesystem: rp.Filesystem}
	}
	if err := l.Validate(); err != nil {
		return Layout{}, err
	}
	return l, nil
}

// Validate checks everything that does not depend on the disk. Errors wrap
// ErrLayout and name the field.
func (l Layout) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: field %s: %s", ErrLayout, field, fmt.Sprintf(format, args...))
	}
	if l.Table != "" && l.Table != TableGPT && l.Table != TableMBR {
		return bad("table", "%q is not gpt or mbr", l.Table)
	}
	n := 0
	if l.Target.Path != "" {
		n++
	}
	if l.Target.ID != "" {
		n++
		if strings.ContainsAny(l.Target.ID, "/\x00") || l.Target.ID == "." || l.Target.ID == ".." {
			return bad("target.id", "%q is not a /dev/disk/by-id name", l.Target.ID)
		}
	}
	if l.Target.Rule != nil {
		n++
		if r := l.Target.Rule; r.MaxSize != 0 && r.MaxSize < r.MinSize {
			return bad("target.rule.maxSize", "below minSize")
		}
	}
	if n > 1 {
		return bad("target", "give only one of path, id and rule")
	}
	if a := uint64(l.Alignment); a != 0 && (a < 4096 || a&(a-1) != 0) {
		return bad("alignment", "%s is not a power of two of at least 4KiB", l.Alignment)
	}
	if l.GUID != "" {
		if err := checkGUID(l.GUID); err != nil {
			return bad("guid", "%v", err)
		}
	}
	if len(l.Partitions) == 0 {
		return bad("partitions", "at least one partition is required")
	}
	maxParts := 128
	if l.Table == TableMBR {
		maxParts = 4
	}
	if len(l.Partitions) > maxParts {
		return bad("partitions", "%d partitions, the table holds %d", len(l.Partitions), maxParts)
	}
	rest, unbounded := -1, -1
	names := map[string]int{}
	for i, p := range l.Partitions {
		f := func(name string) string { return fmt.Sprintf("partitions[%d].%s", i, name) }
		if p.Name == "" {
			return bad(f("name"), "required")
		}
		if len(p.Name) > 36 {
			return bad(f("name"), "%q is longer than 36 characters", p.Name)
		}
		for _, c := range p.Name {
			if c < 0x20 || c > 0x7e {
				return bad(f("name"), "%q: only printable ASCII is allowed", p.Name)
			}
		}
		if j, dup := names[p.Name]; dup {
			return bad(f("name"), "%q is also the name of partitions[%d]", p.Name, j)
		}
		names[p.Name] = i
		if p.Type == "" {
			return bad(f("type"), "required")
		}
		if _, err := TypeGUID(p.Type); err != nil {
			return bad(f("type"), "%v", err)
		}
		switch p.Size.Kind {
		case SizeFixed:
			if p.Size.Bytes == 0 {
				return bad(f("size"), "must not be zero")
			}
		case SizePercent:
			if p.Size.Percent < 1 || p.Size.Percent > 100 {
				return bad(f("size"), "percentage %d is not within 1-100", p.Size.Percent)
			}
		case SizeRange:
			if p.Size.Max != 0 && p.Size.Max < p.Size.Min {
				return bad(f("size"), "maximum below minimum")
			}
			if p.Size.Max == 0 {
				if unbounded >= 0 || rest >= 0 {
					return bad(f("size"), "an unbounded range takes all remaining space; another partition already does")
				}
				unbounded = i
			}
		case SizeRest:
			if rest >= 0 || unbounded >= 0 {
				return bad(f("size"), "only one partition may take the remaining space (partitions[%d] does)", max(rest, unbounded))
			}
			rest = i
		default:
			return bad(f("size"), "required")
		}
		if p.GUID != "" {
			if err := checkGUID(p.GUID); err != nil {
				return bad(f("guid"), "%v", err)
			}
		}
		if fs := p.Filesystem; fs != nil {
			maxLabel, ok := fsLabelMax[fs.Type]
			if !ok {
				return bad(f("filesystem.type"), "%q is not vfat, ext4, xfs, btrfs or swap", fs.Type)
			}
			if len(fs.Label) > maxLabel {
				return bad(f("filesystem.label"), "%q is longer than %d characters for %s", fs.Label, maxLabel, fs.Type)
			}
			for _, c := range fs.Label {
				if c < 0x20 || c > 0x7e {
					return bad(f("filesystem.label"), "%q: only printable ASCII is allowed", fs.Label)
				}
			}
			if fs.Type == FSVFAT {
				// fsck.fat rejects these; trailing blanks are padding and
				// would not read back.
				if i := strings.IndexAny(fs.Label, fatLabelBad); i >= 0 {
					return bad(f("filesystem.label"), "%q: a FAT label cannot contain %q", fs.Label, fs.Label[i])
				}
				if strings.HasPrefix(fs.Label, " ") || strings.HasSuffix(fs.Label, " ") {
					return bad(f("filesystem.label"), "%q: a FAT label cannot start or end with a blank", fs.Label)
				}
				if fs.Label == "NO NAME" {
					return bad(f("filesystem.label"), "%q means no label on FAT: leave the label empty", fs.Label)
				}
			}
			if fs.UUID != "" {
				if err := checkFSUUID(fs.Type, fs.UUID); err != nil {
					return bad(f("filesystem.uuid"), "%v", err)
				}
			}
		}
	}
	return nil
}

// alignment returns the layout's alignment in bytes.
func (l Layout) alignment() uint64 {
	if l.Alignment == 0 {
		return uint64(DefaultAlignment)
	}
	return uint64(l.Alignment)
}

func checkGUID(s string) error {
	if len(s) != 36 {
		return fmt.Errorf("%q is not a GUID (8-4-4-4-12 hex digits)", s)
	}
	for i, c := range s {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return fmt.Errorf("%q is not a GUID (8-4-4-4-12 hex digits)", s)
			}
			continue
		}
		if !isHex(c) {
			return fmt.Errorf("%q is not a GUID (8-4-4-4-12 hex digits)", s)
		}
	}
	return nil
}

func isHex(c rune) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func checkFSUUID(fsType, s string) error {
	if fsType == FSVFAT {
		if len(s) != 9 || s[4] != '-' {
			return fmt.Errorf("%q is not a FAT volume serial (XXXX-XXXX)", s)
		}
		for i, c := range s {
			if i != 4 && !isHex(c) {
				return fmt.Errorf("%q is not a FAT volume serial (XXXX-XXXX)", s)
			}
		}
		return nil
	}
	return checkGUID(s)
}

// derivedGUID hashes the seed and a purpose into a version-4-shaped GUID,
// so that a seeded layout always produces the same identifiers.
func derivedGUID(seed, purpose string) string {
	h := sha256.Sum256([]byte("nixboot-disk\x00" + seed + "\x00" + purpose))
	h[6] = h[6]&0x0f | 0x40
	h[8] = h[8]&0x3f | 0x80
	return formatGUIDBytes(h[:16])
}

// formatGUIDBytes formats 16 bytes in big-endian (RFC 9562) order.
func formatGUIDBytes(b []byte) string {
	return strings.ToUpper(fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]))
}
