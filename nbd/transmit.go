package nbd

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/vmconv/vmconv/disk"
)

// request is one transmission-phase command.
type request struct {
	flags  uint16
	typ    uint16
	cookie uint64
	off    uint64
	length uint32
	data   []byte // WRITE payload
	errno  uint32 // set when the request was refused before dispatch
	cost   int64  // bytes held against the connection's budget
}

// inflightBudget bounds the payload bytes a connection holds at once (write
// payloads read ahead, read buffers being filled).
const inflightBudget = 2 * MaxRequest

const knownCmdFlags = cmdFlagFUA | cmdFlagNoHole | cmdFlagDF | cmdFlagReqOne | cmdFlagFastZero

// transmit reads requests until the client disconnects, serving them on a
// few workers; replies are written whole, one at a time.
func (c *conn) transmit(x *export) error {
	workers := c.srv.Workers
	if workers <= 0 {
		workers = 4
	}
	var (
		wg     sync.WaitGroup
		queue  = make(chan *request)
		budget = newBudget(inflightBudget)
		werr   error
		werrMu sync.Mutex
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range queue {
				err := c.serve(x, r)
				putBuf(r.data)
				budget.release(r.cost)
				if err != nil {
					werrMu.Lock()
					if werr == nil {
						werr = err
						c.nc.Close() // the reply stream is broken: stop reading too
					}
					werrMu.Unlock()
				}
			}
		}()
	}
	rerr := c.readRequests(x, queue, budget)
	close(queue)
	wg.Wait()
	if werr != nil {
		return werr
	}
	return rerr
}

func (c *conn) readRequests(x *export, queue chan<- *request, budget *budget) error {
	var h [requestHeaderSize]byte
	for {
		if _, err := io.ReadFull(c.br, h[:]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("request header: %w", err)
			}
			return err
		}
		if m := be.Uint32(h[0:]); m != magicRequest {
			// Nothing after a bad header can be trusted to line up.
			return fmt.Errorf("request magic %#x, want %#x", m, uint32(magicRequest))
		}
		r := &request{
			flags:  be.Uint16(h[4:]),
			typ:    be.Uint16(h[6:]),
			cookie: be.Uint64(h[8:]),
			off:    be.Uint64(h[16:]),
			length: be.Uint32(h[24:]),
		}
		switch r.typ {
		case cmdDisc:
			return nil
		case cmdWrite:
			switch {
			case r.length > MaxRequest:
				r.errno = errInval
			case x.w == nil:
				r.errno = errPerm
			case !inRange(x, r):
				r.errno = errNoSpc
			}
			if r.errno != 0 {
				// Keep the stream in step without holding the payload.
				if _, err := io.CopyN(io.Discard, c.br, int64(r.length)); err != nil {
					return fmt.Errorf("write payload: %w", err)
				}
				break
			}
			r.cost = int64(r.length)
			budget.acquire(r.cost)
			r.data = getBuf(int(r.length))
			if _, err := io.ReadFull(c.br, r.data); err != nil {
				putBuf(r.data)
				budget.release(r.cost)
				return fmt.Errorf("write payload: %w", err)
			}
		case cmdRead:
			if r.length <= MaxRequest {
				r.cost = int64(r.length)
				budget.acquire(r.cost)
			}
		}
		queue <- r
	}
}

func inRange(x *export, r *request) bool {
	size := uint64(x.Image.Size())
	return r.off <= size && uint64(r.length) <= size-r.off
}

// serve answers one request. Only a failure to send the reply is returned.
func (c *conn) serve(x *export, r *request) error {
	if r.errno != 0 {
		return c.replyError(r, r.errno, "")
	}
	if r.flags&^knownCmdFlags != 0 {
		return c.replyError(r, errInval, fmt.Sprintf("unknown command flags %#x", r.flags))
	}
	switch r.typ {
	case cmdRead:
		if r.length > MaxRequest {
			return c.replyError(r, errInval, fmt.Sprintf("read of %d bytes exceeds the maximum %d", r.length, MaxRequest))
		}
		if !inRange(x, r) {
			return c.replyError(r, errInval, "read past the end of the export")
		}
		if c.structured && r.flags&cmdFlagDF == 0 && r.length >= holeReadMin && allZero(x, r) {
			// Nothing to send but the range: the client fills in the zeros.
			b := be.AppendUint64(nil, r.off)
			return c.chunk(r, replyTypeOffsetHole, be.AppendUint32(b, r.length))
		}
		buf := getBuf(int(r.length))
		defer putBuf(buf)
		x.mu.RLock()
		n, err := x.Image.ReadAt(buf, int64(r.off))
		x.mu.RUnlock()
		if n < len(buf) {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			c.srv.logf("nbd: export %q: read %d bytes at %#x: %v", x.name, len(buf), r.off, err)
			return c.replyError(r, errIO, "read failed")
		}
		return c.replyRead(r, buf)

	case cmdWrite:
		x.mu.Lock()
		_, err := x.w.WriteAt(r.data, int64(r.off))
		if err == nil && r.flags&cmdFlagFUA != 0 {
			err = flush(x)
		}
		x.mu.Unlock()
		if err != nil {
			c.srv.logf("nbd: export %q: write %d bytes at %#x: %v", x.name, len(r.data), r.off, err)
			return c.replyError(r, errIO, "write failed")
		}
		return c.replyOK(r)

	case cmdFlush:
		if err := flush(x); err != nil {
			return c.replyError(r, errIO, "flush failed")
		}
		return c.replyOK(r)

	case cmdTrim, cmdWriteZeroes:
		if x.w == nil {
			return c.replyError(r, errPerm, "read-only export")
		}
		if !inRange(x, r) {
			return c.replyError(r, errNoSpc, "range past the end of the export")
		}
		var err error
		x.mu.Lock()
		if r.typ == cmdTrim {
			if t, ok := x.Image.(Trimmer); ok {
				err = t.TrimAt(int64(r.off), int64(r.length))
			}
		} else if z, ok := x.Image.(Zeroer); ok {
			err = z.ZeroAt(int64(r.off), int64(r.length))
		} else if r.flags&cmdFlagFastZero != 0 {
			x.mu.Unlock()
			return c.replyError(r, errNotSup, "no fast zeroing for this export")
		} else {
			err = writeZeroes(x.w, int64(r.off), int64(r.length))
		}
		if err == nil && r.flags&cmdFlagFUA != 0 {
			err = flush(x)
		}
		x.mu.Unlock()
		if err != nil {
			return c.replyError(r, errIO, "zeroing failed")
		}
		return c.replyOK(r)

	case cmdBlockStatus:
		if !c.metaAlloc {
			return c.replyError(r, errInval, "no metadata context was selected")
		}
		if r.length == 0 || !inRange(x, r) {
			return c.replyError(r, errInval, "block status range is empty or past the end of the export")
		}
		x.mu.RLock()
		ext, err := x.Image.Extents(int64(r.off), int64(r.length))
		x.mu.RUnlock()
		if err != nil {
			c.srv.logf("nbd: export %q: extents at %#x+%d: %v", x.name, r.off, r.length, err)
			return c.replyError(r, errIO, "allocation map unreadable")
		}
		return c.replyBlockStatus(r, ext)
	}
	return c.replyError(r, errInval, fmt.Sprintf("command %d is not supported", r.typ))
}

// zeroBlock is written, never modified, for WRITE_ZEROES on images that
// cannot zero a range themselves.
var zeroBlock = make([]byte, 1<<20)

func writeZeroes(w io.WriterAt, off, n int64) error {
	for n > 0 {
		k := min(n, int64(len(zeroBlock)))
		if _, err := w.WriteAt(zeroBlock[:k], off); err != nil {
			return err
		}
		off += k
		n -= k
	}
	return nil
}

// holeReadMin is the smallest read answered with a hole chunk when its range
// holds no data: below it, the allocation lookup costs more than the bytes.
const holeReadMin = 64 << 10

// allZero reports whether the image's allocation map says r's range reads as
// zeros.
func allZero(x *export, r *request) bool {
	x.mu.RLock()
	ext, err := x.Image.Extents(int64(r.off), int64(r.length))
	x.mu.RUnlock()
	if err != nil || len(ext) == 0 {
		return false
	}
	next := int64(r.off)
	for _, e := range ext {
		if e.Kind == disk.Data || e.Offset != next {
			return false
		}
		next = e.End()
	}
	return next == int64(r.off)+int64(r.length)
}

func flush(x *export) error {
	if f, ok := x.Image.(Flusher); ok {
		return f.Flush()
	}
	return nil
}

// structuredFor says whether r's reply must be structured.
func (c *conn) structuredFor(r *request) bool {
	return c.structured && (r.typ == cmdRead || r.typ == cmdBlockStatus)
}

func (c *conn) replyOK(r *request) error {
	return c.simpleReply(r.cookie, 0, nil)
}

func (c *conn) simpleReply(cookie uint64, errno uint32, data []byte) error {
	var h [16]byte
	be.PutUint32(h[0:], magicSimpleReply)
	be.PutUint32(h[4:], errno)
	be.PutUint64(h[8:], cookie)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.bw.Write(h[:])
	c.bw.Write(data)
	return c.bw.Flush()
}

func (c *conn) chunk(r *request, typ uint16, parts ...[]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	var h [20]byte
	be.PutUint32(h[0:], magicStructReply)
	be.PutUint16(h[4:], replyFlagDone)
	be.PutUint16(h[6:], typ)
	be.PutUint64(h[8:], r.cookie)
	be.PutUint32(h[16:], uint32(n))
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.bw.Write(h[:])
	for _, p := range parts {
		c.bw.Write(p)
	}
	return c.bw.Flush()
}

func (c *conn) replyError(r *request, errno uint32, msg string) error {
	if !c.structuredFor(r) {
		return c.simpleReply(r.cookie, errno, nil)
	}
	b := make([]byte, 6, 6+len(msg))
	be.PutUint32(b, errno)
	be.PutUint16(b[4:], uint16(len(msg)))
	return c.chunk(r, replyTypeError, append(b, msg...))
}

func (c *conn) replyRead(r *request, data []byte) error {
	if !c.structured {
		return c.simpleReply(r.cookie, 0, data)
	}
	if len(data) == 0 {
		return c.chunk(r, replyTypeNone)
	}
	return c.chunk(r, replyTypeOffsetData, be.AppendUint64(nil, r.off), data)
}

// replyBlockStatus sends base:allocation descriptors for ext, merged where
// neighbours share a state, at most maxExtents of them (one with REQ_ONE).
func (c *conn) replyBlockStatus(r *request, ext []disk.Extent) error {
	limit := maxExtents
	if r.flags&cmdFlagReqOne != 0 {
		limit = 1
	}
	type desc struct{ length, state uint32 }
	var ds []desc
	end := int64(r.off) + int64(r.length)
	next := int64(r.off)
	for _, e := range ext {
		if e.Offset != next || e.Length <= 0 || e.End() > end {
			break // a map that does not tile the range: report what does
		}
		next = e.End()
		var st uint32
		switch e.Kind {
		case disk.Zero:
			st = stateZero
		case disk.Unallocated:
			st = stateHole | stateZero
		}
		if n := len(ds); n > 0 && ds[n-1].state == st {
			ds[n-1].length += uint32(e.Length) // the sum is within r.length
			continue
		}
		if len(ds) == limit {
			break
		}
		ds = append(ds, desc{uint32(e.Length), st})
	}
	if len(ds) == 0 {
		c.srv.logf("nbd: block status at %#x+%d: the allocation map does not start at the offset", r.off, r.length)
		return c.replyError(r, errIO, "allocation map does not cover the range")
	}
	b := make([]byte, 4, 4+8*len(ds))
	be.PutUint32(b, metaBaseAllocationID)
	for _, d := range ds {
		b = be.AppendUint32(b, d.length)
		b = be.AppendUint32(b, d.state)
	}
	return c.chunk(r, replyTypeBlockStatus, b)
}

// budget is a counting semaphore over bytes.
type budget struct {
	mu    sync.Mutex
	cond  sync.Cond
	avail int64
}

func newBudget(n int64) *budget {
	b := &budget{avail: n}
	b.cond.L = &b.mu
	return b
}

func (b *budget) acquire(n int64) {
	b.mu.Lock()
	for b.avail < n {
		b.cond.Wait()
	}
	b.avail -= n
	b.mu.Unlock()
}

func (b *budget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.avail += n
	b.mu.Unlock()
	b.cond.Broadcast()
}

// Buffers come from pools by power-of-two size class, 4 KiB to MaxRequest.
var bufPools [14]sync.Pool // 4K << 0 … 4K << 13 = 32 MiB

func sizeClass(n int) int {
	c := 0
	for size := 4096; size < n; size <<= 1 {
		c++
	}
	return c
}

func getBuf(n int) []byte {
	if n == 0 {
		return nil
	}
	c := sizeClass(n)
	if c >= len(bufPools) {
		return make([]byte, n)
	}
	if p, ok := bufPools[c].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, 4096<<c)
}

func putBuf(b []byte) {
	if cap(b) == 0 {
		return
	}
	c := sizeClass(cap(b))
	if c >= len(bufPools) || cap(b) != 4096<<c {
		return
	}
	b = b[:cap(b)]
	bufPools[c].Put(&b)
}
