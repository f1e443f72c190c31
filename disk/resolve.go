package disk

import "fmt"

// slot is a resolved partition position in LBAs (Last inclusive).
type slot struct{ First, Last uint64 }

// resolve places the layout's partitions on a disk of `sectors` sectors of
// `sector` bytes: in order, packed from the first aligned usable LBA, sizes
// rounded to the alignment. Fixed and percent sizes come first, ranges get
// their minimum, then the leftover grows ranges in order up to their
// maximum, and "rest" takes what remains.
func resolve(l Layout, sectors uint64, sector int) ([]slot, error) {
	align := l.alignment()
	if align < uint64(sector) {
		align = uint64(sector)
	}
	grain := align / uint64(sector)
	firstUsable, lastUsable := usableRange(sectors, sector)
	start := roundUp(firstUsable, grain)
	end := roundDown(lastUsable+1, grain) // exclusive
	if end <= start {
		return nil, fmt.Errorf("%w: disk of %d sectors has no aligned usable space", ErrNoSpace, sectors)
	}
	total := end - start
	sizes := make([]uint64, len(l.Partitions))
	var used uint64
	toSectors := func(b ByteSize) uint64 { return roundUp((uint64(b)+uint64(sector)-1)/uint64(sector), grain) }
	for i, p := range l.Partitions {
		switch p.Size.Kind {
		case SizeFixed:
			sizes[i] = toSectors(p.Size.Bytes)
		case SizePercent:
			sizes[i] = roundDown(total/100*uint64(p.Size.Percent)+total%100*uint64(p.Size.Percent)/100, grain)
			if sizes[i] == 0 {
				sizes[i] = grain
			}
		case SizeRange:
			sizes[i] = toSectors(p.Size.Min)
			if sizes[i] == 0 {
				sizes[i] = grain
			}
		case SizeRest:
		}
		if sizes[i] > total || used > total-sizes[i] {
			return nil, fmt.Errorf("%w: partitions[%d] (%s, %s) needs %s but only %s of %s usable remain",
				ErrNoSpace, i, p.Name, p.Size, ByteSize(sizes[i]*uint64(sector)), ByteSize((total-min(used, total))*uint64(sector)), ByteSize(total*uint64(sector)))
		}
		used += sizes[i]
	}
	left := total - used
	for i, p := range l.Partitions {
		if p.Size.Kind != SizeRange {
			continue
		}
		grow := left
		if p.Size.Max != 0 {
			maxS := roundDown(uint64(p.Size.Max)/uint64(sector), grain)
			if maxS <= sizes[i] {
				continue
			}
			grow = min(grow, maxS-sizes[i])
		}
		sizes[i] += grow
		left -= grow
	}
	for i, p := range l.Partitions {
		if p.Size.Kind == SizeRest {
			if left == 0 {
				return nil, fmt.Errorf("%w: no space left for partitions[%d] (%s, rest)", ErrNoSpace, i, p.Name)
			}
			sizes[i] = left
			left = 0
		}
	}
	out := make([]slot, len(sizes))
	at := start
	for i, s := range sizes {
		out[i] = slot{First: at, Last: at + s - 1}
		at += s
	}
	return out, nil
}
