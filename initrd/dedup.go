package initrd

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"runtime"
	"sync"
)

// DedupOptions control Dedup. The zero value is usable.
type DedupOptions struct {
	// MinSize is the smallest file considered; 0 means 1 (empty files
	// are never merged: a link saves nothing there).
	MinSize int64
	// Workers is how many files are hashed at once; 0 means
	// runtime.GOMAXPROCS(0). The result does not depend on it.
	Workers int
}

// DedupStats says what Dedup merged.
type DedupStats struct {
	Files int   // regular files turned into hard links
	Bytes int64 // data bytes no longer stored (nor unpacked into RAM)
}

// Dedup stores identical regular files of one planned segment (Plan's
// output) once: every later file with the same content becomes a hard link
// (TypeLink) to the first one in archive order, which carries the data, and
// existing hard-link groups are merged likewise. Store closures repeat many
// files, so this saves archive size and the RAM the unpacked initramfs
// occupies.
//
// A hard link shares its inode's mode, owner and modification time, so only
// files equal in all of these and in size are compared; their contents are
// compared by SHA-256, read from Data or Source (files of a size no other
// candidate has are not read). The result is as deterministic as the
// input. The input slice is not modified. Errors name the entry; a source
// whose size no longer matches gives ErrChanged.
func Dedup(ctx context.Context, entries []Entry, opt DedupOptions) ([]Entry, DedupStats, error) {
	var stats DedupStats
	minSize := max(opt.MinSize, 1)
	type key struct {
		size            int64
		mode, uid, gid  uint32
		mtime           int64
		hasTime         bool
		contentSHA256   [sha256.Size]byte
		contentComputed bool
	}
	meta := func(e *Entry) key {
		return key{size: e.Size, mode: e.Mode, uid: e.Uid, gid: e.Gid, mtime: e.ModTime.Unix(), hasTime: !e.ModTime.IsZero()}
	}
	// Candidates: regular files sharing their metadata with another one.
	count := map[key]int{}
	for i := range entries {
		if e := &entries[i]; e.Type == TypeReg && e.Size >= minSize {
			count[meta(e)]++
		}
	}
	var todo []int
	for i := range entries {
		if e := &entries[i]; e.Type == TypeReg && e.Size >= minSize && count[meta(e)] > 1 {
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		return append([]Entry(nil), entries...), stats, nil
	}
	sums, err := hashEntries(ctx, entries, todo, opt.Workers)
	if err != nil {
		return nil, stats, err
	}

	out := append([]Entry(nil), entries...)
	first := map[key]int{}     // content key -> index of the file carrying the data
	target := map[string]int{} // name of a merged file -> index of its new leader
	for n, i := range todo {
		k := meta(&out[i])
		k.contentSHA256, k.contentComputed = sums[n], true
		c, ok := first[k]
		if !ok {
			first[k] = i
			continue
		}
		e := &out[i]
		target[e.Name] = c
		stats.Files++
		stats.Bytes += e.Size
		*e = Entry{Header: Header{Name: e.Name, Type: TypeLink, Linkname: out[c].Name,
			Mode: e.Mode, Uid: e.Uid, Gid: e.Gid, ModTime: e.ModTime}}
	}
	if stats.Files == 0 {
		return out, stats, nil
	}
	// Links to a merged file now point at its leader; then count the
	// names of every group.
	links := map[string]int{}
	for i := range out {
		e := &out[i]
		if e.Type != TypeLink {
			continue
		}
		if c, ok := target[e.Linkname]; ok {
			e.Linkname = out[c].Name
		}
		links[e.Linkname]++
	}
	for i := range out {
		if e := &out[i]; e.Type == TypeReg {
			if n := links[e.Name]; n > 0 {
				e.Links = n + 1
			} else {
				e.Links = 0
			}
		}
	}
	return out, stats, nil
}

// hashEntries returns the SHA-256 of the data of entries[todo[k]] at k.
func hashEntries(ctx context.Context, entries []Entry, todo []int, workers int) ([][sha256.Size]byte, error) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, len(todo))
	sums := make([][sha256.Size]byte, len(todo))
	errs := make([]error, len(todo))
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := newSourceOpener()
			defer src.close()
			buf := make([]byte, 128<<10)
			for k := range next {
				sums[k], errs[k] = hashEntry(&entries[todo[k]], src, buf)
			}
		}()
	}
	var err error
	for k := range todo {
		if err = ctx.Err(); err != nil {
			break
		}
		next <- k
	}
	close(next)
	wg.Wait()
	if err != nil {
		return nil, err
	}
	for _, e := range errs {
		if e != nil {
			return nil, e
		}
	}
	return sums, nil
}

func hashEntry(e *Entry, src *sourceOpener, buf []byte) (sum [sha256.Size]byte, err error) {
	h := sha256.New()
	if e.Data != nil {
		h.Write(e.Data)
		copy(sum[:], h.Sum(nil))
		return sum, nil
	}
	if e.Source.IsZero() {
		return sum, entryErr(e.Name, fmt.Errorf("%w: regular file of %d bytes has neither Data nor Source", ErrInvalidHeader, e.Size))
	}
	f, err := src.open(e.Source)
	if err != nil {
		return sum, entryErr(e.Name, err)
	}
	defer f.Close()
	n, err := io.CopyBuffer(h, io.LimitReader(f, e.Size+1), buf)
	if err != nil {
		return sum, entryErr(e.Name, fmt.Errorf("reading %s: %w", e.Source.Path, err))
	}
	if n != e.Size {
		return sum, entryErr(e.Name, fmt.Errorf("%w: %s is %d bytes, planned %d", ErrChanged, e.Source.Path, n, e.Size))
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}
