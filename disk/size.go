package disk

import (
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
)

// ByteSize is a number of bytes. In JSON it is a string with an optional
// unit: "4096", "512MiB", "8G" (K, M, G, T without "B" and the "iB" forms
// are powers of 1024; KB, MB, GB, TB are powers of 1000).
type ByteSize uint64

// Binary units, for building layouts in Go.
const (
	KiB ByteSize = 1 << 10
	MiB ByteSize = 1 << 20
	GiB ByteSize = 1 << 30
	TiB ByteSize = 1 << 40
)

var units = map[string]uint64{
	"": 1, "B": 1,
	"K": 1 << 10, "KIB": 1 << 10, "KB": 1e3,
	"M": 1 << 20, "MIB": 1 << 20, "MB": 1e6,
	"G": 1 << 30, "GIB": 1 << 30, "GB": 1e9,
	"T": 1 << 40, "TIB": 1 << 40, "TB": 1e12,
	"P": 1 << 50, "PIB": 1 << 50, "PB": 1e15,
}

// ParseByteSize parses "512MiB", "8G", "4096".
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("%q: want a whole number of bytes with an optional unit (512MiB, 8G)", s)
	}
	n, err := strconv.ParseUint(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: number too large", s)
	}
	unit, ok := units[strings.ToUpper(strings.TrimSpace(t[i:]))]
	if !ok {
		return 0, fmt.Errorf("%q: unknown unit %q (use B, KiB, MiB, GiB, TiB, K, M, G, T, KB, MB, GB, TB)", s, t[i:])
	}
	hi, lo := bits.Mul64(n, unit)
	if hi != 0 {
		return 0, fmt.Errorf("%q: size overflows 64 bits", s)
	}
	return ByteSize(lo), nil
}

// String renders the size with the largest binary unit that divides it.
func (b ByteSize) String() string {
	v := uint64(b)
	for _, u := range []struct {
		name string
		n    uint64
	}{{"PiB", 1 << 50}, {"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if v != 0 && v%u.n == 0 {
			return strconv.FormatUint(v/u.n, 10) + u.name
		}
	}
	return strconv.FormatUint(v, 10)
}

// MarshalText implements encoding.TextMarshaler.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (b *ByteSize) UnmarshalText(p []byte) error {
	v, err := ParseByteSize(string(p))
	if err != nil {
		return fmt.Errorf("%w: size %w", ErrLayout, err)
	}
	*b = v
	return nil
}

// SizeKind says how a partition's size is chosen.
type SizeKind uint8

// Size kinds.
const (
	// SizeFixed is an exact number of bytes (rounded down to the alignment).
	SizeFixed SizeKind = iota + 1
	// SizePercent is a percentage of the disk's usable space.
	SizePercent
	// SizeRange takes as much of the free space as it can between Min and
	// Max (Max 0 = no upper bound).
	SizeRange
	// SizeRest takes all space left after every other partition; at most
	// one partition may use it.
	SizeRest
)

// Size is a partition size expression. Its JSON form is a string:
// "512MiB" (fixed), "25%" (of the usable space), "4GiB..100GiB" or "4GiB.."
// (a range), or "rest". The zero Size is invalid.
type Size struct {
	Kind    SizeKind
	Bytes   ByteSize // SizeFixed
	Percent uint8    // SizePercent, 1..100
	Min     ByteSize // SizeRange
	Max     ByteSize // SizeRange; 0 = unbounded
}

// Fixed returns a fixed Size.
func Fixed(b ByteSize) Size { return Size{Kind: SizeFixed, Bytes: b} }

// Percent returns a Size that is p percent of the usable disk space.
func Percent(p uint8) Size { return Size{Kind: SizePercent, Percent: p} }

// Range returns a Size between minimum and maximum (0 = unbounded).
func Range(minimum, maximum ByteSize) Size {
	return Size{Kind: SizeRange, Min: minimum, Max: maximum}
}

// Rest returns a Size that takes the remaining space.
func Rest() Size { return Size{Kind: SizeRest} }

// ParseSize parses a size expression (see Size).
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	switch {
	case strings.EqualFold(t, "rest"):
		return Rest(), nil
	case strings.HasSuffix(t, "%"):
		p, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(t, "%")), 10, 8)
		if err != nil || p < 1 || p > 100 {
			return Size{}, fmt.Errorf("%q: a percentage must be a whole number from 1 to 100", s)
		}
		return Percent(uint8(p)), nil
	case strings.Contains(t, ".."):
		lo, hi, _ := strings.Cut(t, "..")
		minimum, err := ParseByteSize(lo)
		if err != nil {
			return Size{}, fmt.Errorf("range minimum: %w", err)
		}
		var maximum ByteSize
		if strings.TrimSpace(hi) != "" {
			if maximum, err = ParseByteSize(hi); err != nil {
				return Size{}, fmt.Errorf("range maximum: %w", err)
			}
			if maximum < minimum {
				return Size{}, fmt.Errorf("%q: maximum is below minimum", s)
			}
		}
		return Range(minimum, maximum), nil
	}
	b, err := ParseByteSize(t)
	if err != nil {
		return Size{}, err
	}
	if b == 0 {
		return Size{}, fmt.Errorf("%q: size must not be zero", s)
	}
	return Fixed(b), nil
}

// String renders the canonical form that ParseSize accepts.
func (s Size) String() string {
	switch s.Kind {
	case SizeFixed:
		return s.Bytes.String()
	case SizePercent:
		return strconv.Itoa(int(s.Percent)) + "%"
	case SizeRange:
		if s.Max == 0 {
			return s.Min.String() + ".."
		}
		return s.Min.String() + ".." + s.Max.String()
	case SizeRest:
		return "rest"
	}
	return "invalid"
}

// MarshalText implements encoding.TextMarshaler.
func (s Size) MarshalText() ([]byte, error) {
	if s.Kind < SizeFixed || s.Kind > SizeRest {
		return nil, fmt.Errorf("%w: size has no kind", ErrLayout)
	}
	return []byte(s.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Size) UnmarshalText(p []byte) error {
	v, err := ParseSize(string(p))
	if err != nil {
		return fmt.Errorf("%w: size %w", ErrLayout, err)
	}
	*s = v
	return nil
}

// roundDown rounds v down to a multiple of m (m > 0).
func roundDown(v, m uint64) uint64 { return v - v%m }

// roundUp rounds v up to a multiple of m (m > 0), saturating.
func roundUp(v, m uint64) uint64 {
	if r := v % m; r != 0 {
		if v > math.MaxUint64-(m-r) {
			return math.MaxUint64 - (math.MaxUint64 % m)
		}
		return v + m - r
	}
	return v
}
