package initrd

import (
	"context"
	"runtime"
	"sync"
)

// Reading ahead.
//
// Writing a segment of many small files is bound by the goroutine that
// walks the inputs and opens, reads and closes each file (about 4 system
// calls a file), not by the copying. With ReadAhead, that goroutine only
// writes: another one walks the inputs and hands the small files to
// reader goroutines, which read each whole into a ring buffer; the writer
// takes them in archive order. The bytes written are the same, and so are
// the errors: each is reported when the writer reaches its entry.

const (
	// prefetchRing is the ring's size: the most file data read ahead.
	prefetchRing = 4 << 20
	// prefetchMax is the largest file read ahead; larger ones are
	// streamed by the writer, as without ReadAhead.
	prefetchMax = 256 << 10
	// prefetchSlots is the most entries queued ahead of the writer.
	prefetchSlots = 512
)

// readAhead returns how many reader goroutines to use for n (see
// WriteOptions.ReadAhead) in a segment compressed with c.
func readAhead(n int, c Compression) int {
	if n != 0 {
		return max(n, 0)
	}
	procs := runtime.GOMAXPROCS(0)
	if c == None {
		// Only the writer is busy: readers use the other CPUs.
		return min(procs-1, 4)
	}
	// The compressor's workers keep every CPU of a small machine busy;
	// readers there would only add handoffs.
	return min(max(procs/2-1, 0), 4)
}

// prefetchSlot is one entry on its way to the writer.
type prefetchSlot struct {
	entry Entry
	err   error // of the walk: nothing after it is written

	read    bool          // data is read ahead into data
	data    []byte        // entry.Size bytes of the ring, when read
	readErr error         // of reading it, set before done
	done    chan struct{} // receives when the read is finished
	end     uint64        // the ring's allocation mark after data
}

// prefetcher runs the walk and the readers for one segment.
type prefetcher struct {
	ctx   context.Context // of the write: copySource looks at it
	slots []prefetchSlot
	free  chan int // slots the walk may fill
	order chan int // filled slots, in archive order
	jobs  chan int // slots to read
	stop  chan struct{}
	wg    sync.WaitGroup

	mu        sync.Mutex
	cond      *sync.Cond
	ring      []byte
	allocated uint64 // bytes of the ring handed out, ever
	released  uint64 // bytes of the ring given back, ever
	stopped   bool
}

// startPrefetch starts walking entries (each is called like an
// iter.Seq2) and reading ahead with readers goroutines. The caller takes
// slots from order and must call finish.
func startPrefetch(ctx context.Context, each func(yield func(*Entry, error) bool), readers int) *prefetcher {
	p := &prefetcher{
		ctx:   ctx,
		slots: make([]prefetchSlot, prefetchSlots),
		free:  make(chan int, prefetchSlots),
		order: make(chan int, prefetchSlots),
		jobs:  make(chan int, prefetchSlots),
		stop:  make(chan struct{}),
		ring:  make([]byte, prefetchRing),
	}
	p.cond = sync.NewCond(&p.mu)
	for i := range p.slots {
		p.slots[i].done = make(chan struct{}, 1)
		p.free <- i
	}
	p.wg.Add(1 + readers)
	go p.walk(each)
	for range readers {
		go p.reader()
	}
	return p
}

// walk fills slots in archive order, reserving ring space for the files
// to read ahead.
func (p *prefetcher) walk(each func(yield func(*Entry, error) bool)) {
	defer p.wg.Done()
	defer close(p.order)
	defer close(p.jobs)
	each(func(e *Entry, err error) bool {
		var i int
		select {
		case i = <-p.free:
		case <-p.stop:
			return false
		}
		s := &p.slots[i]
		s.err, s.read, s.data, s.readErr = err, false, nil, nil
		if err == nil {
			s.entry = *e
			if e.Type == TypeReg && e.Data == nil && !e.Source.IsZero() && e.Size > 0 && e.Size <= prefetchMax {
				buf, end, ok := p.alloc(int(e.Size))
				if !ok {
					return false
				}
				s.read, s.data, s.end = true, buf, end
			}
		}
		if s.read {
			p.jobs <- i // never blocks: at most len(slots) are out
		}
		p.order <- i // nor does this
		return err == nil
	})
}

// reader reads the files of the slots it is given.
func (p *prefetcher) reader() {
	defer p.wg.Done()
	src := newSourceOpener()
	defer src.close()
	// One byte more than the largest file: copySource reads a small
	// file and sees its end in one read.
	buf := make([]byte, prefetchMax+1)
	var into sliceWriter
	for i := range p.jobs {
		s := &p.slots[i]
		select {
		case <-p.stop:
			s.readErr = context.Canceled
		default:
			into.b = s.data[:0]
			s.readErr = copySource(p.ctx, &into, &s.entry, src, buf)
			s.data = into.b
		}
		s.done <- struct{}{}
	}
}

// sliceWriter appends to b, in place: copySource writes no more than the
// entry's size, which is what b has room for.
type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// alloc returns n contiguous bytes of the ring and the allocation mark
// after them, waiting until the writer has released enough. It returns
// false when the prefetcher stops first.
func (p *prefetcher) alloc(n int) ([]byte, uint64, bool) {
	size := uint64(len(p.ring))
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if p.stopped {
			return nil, 0, false
		}
		pos := p.allocated % size
		skip := uint64(0)
		if pos+uint64(n) > size {
			skip = size - pos // the end of the ring is too short: wrap
		}
		if p.allocated-p.released+skip+uint64(n) <= size {
			p.allocated += skip
			pos = p.allocated % size
			p.allocated += uint64(n)
			return p.ring[pos : pos+uint64(n)], p.allocated, true
		}
		p.cond.Wait()
	}
}

// release gives back the ring up to mark, once the writer is done with
// a slot's data.
func (p *prefetcher) release(mark uint64) {
	p.mu.Lock()
	p.released = mark
	p.mu.Unlock()
	p.cond.Signal()
}

// finish stops the walk and the readers and waits for them.
func (p *prefetcher) finish() {
	close(p.stop)
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.cond.Broadcast()
	// The walk never blocks sending to order or jobs (they have room
	// for every slot), so it sees stop at its next entry.
	p.wg.Wait()
}
