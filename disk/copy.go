package disk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
)

// CopyOptions tunes the copy engine. The zero value is ready to use.
type CopyOptions struct {
	// Workers reading, zero-checking and preparing chunks; 0 means one per core.
	Workers int
	// Window is the number of chunks in flight; 0 means 4 per worker (3
	// for a Preparer, whose chunks also hold their prepared output). Memory
	// use is about Window × ChunkSize whatever the size of the disk.
	Window int
	// Progress, when set, is called from one goroutine with the bytes of the
	// virtual disk done so far and the total.
	Progress func(done, total int64)
}

func (o CopyOptions) workers() int {
	if o.Workers > 0 {
		return o.Workers
	}
	return Cores()
}

// startProcs is GOMAXPROCS as the process started: the CPUs it may use
// (the machine's, or its container's quota).
var startProcs = runtime.GOMAXPROCS(0)

// Cores is the number of CPUs the process may use, as GOMAXPROCS said at
// start: a program that raises GOMAXPROCS past it (to keep a P idle while
// workers sit in long cgo calls) still runs one worker a core.
func Cores() int { return startProcs }

func (o CopyOptions) window() int { return o.windowFor(false) }

// windowFor is the window for a destination that prepares chunks or not:
// a prepared chunk holds its output (compressed grains) beside its buffer
// until it is written, so one chunk less per worker keeps a streamOptimized
// write under 64 MiB of peak RSS (66 with four, 61 with three, for ~3 % of
// its speed).
func (o CopyOptions) windowFor(prepares bool) int {
	if o.Window > 0 {
		return o.Window
	}
	if prepares {
		return 3 * o.workers()
	}
	return 4 * o.workers()
}

// planWindow is how much of the image's allocation map is asked for at once.
const planWindow = 1024 * ChunkSize

// copyJob is one chunk on its way from the planner to the writer.
type copyJob struct {
	seq    int64
	chunk  Chunk
	data   []Extent // Data extents inside the chunk, image offsets
	filled bool     // chunk.Data already holds the bytes (streams)
	err    error
}

// Copy reads src and hands its chunks to dst in increasing offset order, then
// closes dst. Only the Data extents of src are read; chunks that are entirely
// zero are skipped unless dst wants them (ZeroSkipper). Chunks are read,
// zero-checked and prepared (Preparer) on Workers goroutines; at most Window
// chunks are in flight. On error dst is not closed: the caller aborts its
// output.
func Copy(ctx context.Context, src Image, dst Writer, opt CopyOptions) error {
	size := src.Size()
	plan := func(ctx context.Context, wantZero bool, emit func(*copyJob) error) error {
		for winOff := int64(0); winOff < size; winOff += planWindow {
			winLen := min(planWindow, size-winOff)
			exts, err := src.Extents(winOff, winLen)
			if err != nil {
				return err
			}
			ei := 0
			for off := winOff; off < winOff+winLen; off += ChunkSize {
				n := min(int64(ChunkSize), size-off)
				var data []Extent
				for ei < len(exts) && exts[ei].End() <= off {
					ei++
				}
				for j := ei; j < len(exts) && exts[j].Offset < off+n; j++ {
					e := exts[j]
					if e.Kind != Data {
						continue
					}
					s, t := max(e.Offset, off), min(e.End(), off+n)
					if s < t {
						data = append(data, Extent{Offset: s, Length: t - s, Kind: Data})
					}
				}
				if len(data) == 0 && !wantZero {
					continue
				}
				if err := emit(&copyJob{chunk: Chunk{Offset: off, Length: int(n)}, data: data}); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return runCopy(ctx, size, dst, opt, plan, func(j *copyJob, bufs *bufferPool) error {
		return readChunk(src, j, bufs)
	})
}

// CopyStream is Copy for a source read once, front to back. Reading is
// sequential; zero checks and Prepare still run on the workers.
func CopyStream(ctx context.Context, src Stream, dst Writer, opt CopyOptions) error {
	size := src.Size()
	var bufs *bufferPool
	plan := func(ctx context.Context, wantZero bool, emit func(*copyJob) error) error {
		var cur *copyJob // chunk being filled
		nextChunk := int64(0)
		flush := func() error {
			if cur == nil {
				return nil
			}
			j := cur
			cur = nil
			nextChunk = j.chunk.Offset + ChunkSize
			return emit(j)
		}
		// emitZeros hands over zero chunks in [nextChunk, upto) when wanted.
		emitZeros := func(upto int64) error {
			for ; nextChunk < upto; nextChunk += ChunkSize {
				if wantZero {
					n := min(int64(ChunkSize), size-nextChunk)
					if err := emit(&copyJob{chunk: Chunk{Offset: nextChunk, Length: int(n)}}); err != nil {
						return err
					}
				}
			}
			return nil
		}
		last := int64(0)
		for {
			off, p, err := src.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			if off < last || off < 0 || int64(len(p)) > size-off {
				return fmt.Errorf("stream run at %#x (+%d) is out of order or past the size %d", off, len(p), size)
			}
			last = off + int64(len(p))
			for len(p) > 0 {
				base := off &^ (ChunkSize - 1)
				if cur != nil && cur.chunk.Offset != base {
					if err := flush(); err != nil {
						return err
					}
				}
				if cur == nil {
					if err := emitZeros(base); err != nil {
						return err
					}
					n := min(int64(ChunkSize), size-base)
					buf := bufs.get()[:n]
					clear(buf)
					cur = &copyJob{chunk: Chunk{Offset: base, Length: int(n), Data: buf}, filled: true}
				}
				k := copy(cur.chunk.Data[off-base:], p)
				p = p[k:]
				off += int64(k)
			}
		}
		if err := flush(); err != nil {
			return err
		}
		return emitZeros(size)
	}
	return runCopy(ctx, size, dst, opt, plan, func(j *copyJob, b *bufferPool) error {
		c := &j.chunk
		if c.Data == nil || IsZero(c.Data) {
			b.put(c.Data)
			c.Data, c.Zero = nil, true
		}
		return nil
	}, func(b *bufferPool) { bufs = b })
}

// runCopy is the engine shared by Copy and CopyStream: plan emits jobs in
// offset order, workers run read (and Prepare), and the caller's goroutine
// delivers them to dst in order.
func runCopy(ctx context.Context, size int64, dst Writer, opt CopyOptions,
	plan func(ctx context.Context, wantZero bool, emit func(*copyJob) error) error,
	read func(*copyJob, *bufferPool) error, init ...func(*bufferPool)) error {
	wantZero := false
	if zs, ok := dst.(ZeroSkipper); ok {
		wantZero = zs.WantsZeroChunks()
	}
	prep, _ := dst.(Preparer)
	workers, window := opt.workers(), opt.windowFor(prep != nil)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	tokens := make(chan struct{}, window) // one per chunk in flight
	jobs := make(chan *copyJob, window)
	results := make(chan *copyJob, window)
	bufs := newBufferPool(window)
	for _, f := range init {
		f(bufs)
	}

	planErr := make(chan error, 1)
	go func() {
		defer close(jobs)
		var seq int64
		emit := func(j *copyJob) error {
			select {
			case tokens <- struct{}{}:
			case <-ctx.Done():
				bufs.put(j.chunk.Data)
				return ctx.Err()
			}
			j.seq = seq
			seq++
			jobs <- j // never blocks for long: jobs has room for every token
			return nil
		}
		planErr <- plan(ctx, wantZero, emit)
	}()

	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if ctx.Err() == nil {
					j.err = read(j, bufs)
					if j.err == nil && prep != nil && (!j.chunk.Zero || wantZero) {
						j.err = prep.Prepare(&j.chunk)
					}
				} else {
					j.err = ctx.Err()
				}
				results <- j
			}
		}()
	}
	go func() { wg.Wait(); close(results) }()

	var next int64
	pending := map[int64]*copyJob{}
	var firstErr error
	for j := range results {
		if firstErr != nil {
			bufs.put(j.chunk.Data)
			<-tokens
			continue
		}
		pending[j.seq] = j
		for {
			j, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			next++
			err := j.err
			if err == nil && (!j.chunk.Zero || wantZero) {
				err = dst.WriteChunk(&j.chunk)
			}
			bufs.put(j.chunk.Data)
			<-tokens
			if err != nil {
				firstErr = err
				cancel()
				break
			}
			if opt.Progress != nil {
				opt.Progress(j.chunk.Offset+int64(j.chunk.Length), size)
			}
		}
	}
	if err := <-planErr; err != nil && firstErr == nil {
		firstErr = err
	}
	if firstErr != nil {
		for _, j := range pending {
			bufs.put(j.chunk.Data)
		}
		return firstErr
	}
	if opt.Progress != nil {
		opt.Progress(size, size)
	}
	return dst.Close()
}

// readChunk fills j.chunk from the Data extents of src, or marks it Zero.
func readChunk(src Image, j *copyJob, bufs *bufferPool) error {
	c := &j.chunk
	if len(j.data) == 0 {
		c.Zero = true
		return nil
	}
	buf := bufs.get()[:c.Length]
	pos := c.Offset
	for _, e := range j.data {
		clear(buf[pos-c.Offset : e.Offset-c.Offset])
		p := buf[e.Offset-c.Offset : e.End()-c.Offset]
		n, err := src.ReadAt(p, e.Offset)
		if err != nil && !(errors.Is(err, io.EOF) && n == len(p)) {
			bufs.put(buf)
			return fmt.Errorf("read at %#x: %w", e.Offset, err)
		}
		pos = e.End()
	}
	clear(buf[pos-c.Offset:])
	if IsZero(buf) {
		bufs.put(buf)
		c.Zero = true
		return nil
	}
	c.Data = buf
	return nil
}

// bufferPool hands out at most n ChunkSize buffers, allocated on first use and
// reused: fresh memory is slow to fault in.
type bufferPool struct {
	free chan []byte
}

func newBufferPool(n int) *bufferPool {
	return &bufferPool{free: make(chan []byte, n)}
}

func (p *bufferPool) get() []byte {
	select {
	case b := <-p.free:
		return b
	default:
		return make([]byte, ChunkSize)
	}
}

func (p *bufferPool) put(b []byte) {
	if b == nil {
		return
	}
	select {
	case p.free <- b[:cap(b)]:
	default:
	}
}

// zeros is a read-only block of zeros for comparisons.
var zeros = make([]byte, ChunkSize)

// IsZero reports whether p holds only zero bytes.
func IsZero(p []byte) bool {
	for len(p) > 0 {
		n := min(len(p), len(zeros))
		if !bytesEqual(p[:n], zeros[:n]) {
			return false
		}
		p = p[n:]
	}
	return true
}
