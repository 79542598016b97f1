package disk

import (
	"fmt"
	"io"
	"os"
	"sync"
)

// overlayBlock is the copy-on-write granule: a guest write into a block
// copies the whole block from the base first.
const overlayBlock = 64 << 10

// Overlay is a copy-on-write view of a base image: writes land in a sparse,
// already-unlinked temporary file, reads come from it where blocks were
// written and from the base elsewhere. The base is never written, and nothing
// is left on disk when the process ends. It is safe for concurrent use.
type Overlay struct {
	base    Image
	size    int64
	mu      sync.RWMutex
	written []uint64 // one bit per overlayBlock
	tmp     *os.File
}

// NewOverlay returns a writable copy-on-write view of base; its temporary
// file lives in os.TempDir().
func NewOverlay(base Image) (*Overlay, error) {
	f, err := os.CreateTemp("", "vmconv-overlay-*")
	if err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	os.Remove(f.Name())
	// Sparse at full size, so reads of written blocks never meet its end.
	if err := f.Truncate(base.Size()); err != nil {
		f.Close()
		return nil, fmt.Errorf("overlay: %w", err)
	}
	nblocks := (base.Size() + overlayBlock - 1) / overlayBlock
	return &Overlay{base: base, size: base.Size(), written: make([]uint64, (nblocks+63)/64), tmp: f}, nil
}

func (o *Overlay) isWritten(b int64) bool { return o.written[b/64]&(1<<(b%64)) != 0 }

func (o *Overlay) Size() int64 { return o.size }

// Close releases the overlay's temporary file; the base is left open (its
// owner closes it).
func (o *Overlay) Close() error { return o.tmp.Close() }

func (o *Overlay) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("overlay: read at %d: %w", off, ErrOutOfRange)
	}
	if off >= o.size {
		return 0, io.EOF
	}
	want := len(p)
	if int64(len(p)) > o.size-off {
		p = p[:o.size-off]
	}
	o.mu.RLock()
	defer o.mu.RUnlock()
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		b := pos / overlayBlock
		// Extend the run over blocks of the same state.
		written := o.isWritten(b)
		end := (b + 1) * overlayBlock
		for end < off+int64(len(p)) && o.isWritten(end/overlayBlock) == written {
			end += overlayBlock
		}
		n := int(min(end, off+int64(len(p))) - pos)
		var err error
		if written {
			_, err = o.tmp.ReadAt(p[done:done+n], pos)
		} else {
			var k int
			k, err = o.base.ReadAt(p[done:done+n], pos)
			if err == io.EOF && k == n {
				err = nil
			}
		}
		if err != nil {
			return done, err
		}
		done += n
	}
	if done < want {
		return done, io.EOF
	}
	return done, nil
}

// WriteAt writes p at off into the overlay. Writes past the end fail.
func (o *Overlay) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off > o.size || int64(len(p)) > o.size-off {
		return 0, fmt.Errorf("overlay: write of %d bytes at %d past the size %d: %w", len(p), off, o.size, ErrOutOfRange)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	end := off + int64(len(p))
	buf := make([]byte, 0)
	for b := off / overlayBlock; b*overlayBlock < end; b++ {
		if o.isWritten(b) {
			continue
		}
		bs := b * overlayBlock
		be := min(bs+overlayBlock, o.size)
		// Only the parts of the block the write does not cover come from
		// the base.
		if bs < off || be > end {
			if cap(buf) < overlayBlock {
				buf = make([]byte, overlayBlock)
			}
			blk := buf[:be-bs]
			n, err := o.base.ReadAt(blk, bs)
			if err != nil && !(err == io.EOF && n == len(blk)) {
				return 0, fmt.Errorf("overlay: copy block at %#x: %w", bs, err)
			}
			if _, err := o.tmp.WriteAt(blk, bs); err != nil {
				return 0, fmt.Errorf("overlay: %w", err)
			}
		}
		o.written[b/64] |= 1 << (b % 64)
	}
	n, err := o.tmp.WriteAt(p, off)
	if err != nil {
		return n, fmt.Errorf("overlay: %w", err)
	}
	return n, nil
}

// Extents reports written blocks as data and the base's map elsewhere.
func (o *Overlay) Extents(off, length int64) ([]Extent, error) {
	off, end, ok := clipRange(off, length, o.size)
	if !ok {
		return nil, nil
	}
	o.mu.RLock()
	defer o.mu.RUnlock()
	var out []Extent
	pos := off
	for pos < end {
		b := pos / overlayBlock
		written := o.isWritten(b)
		runEnd := min((b+1)*overlayBlock, end)
		for runEnd < end && o.isWritten(runEnd/overlayBlock) == written {
			runEnd = min(runEnd+overlayBlock, end)
		}
		if written {
			out = append(out, Extent{Offset: pos, Length: runEnd - pos, Kind: Data})
		} else {
			exts, err := o.base.Extents(pos, runEnd-pos)
			if err != nil {
				return nil, err
			}
			out = append(out, exts...)
		}
		pos = runEnd
	}
	return out, nil
}

// ZeroAt makes [off, off+n) read as zeros. Whole blocks become holes in the
// overlay's file, so zeroing a large range costs no writes.
func (o *Overlay) ZeroAt(off, n int64) error {
	if off < 0 || n < 0 || off > o.size || n > o.size-off {
		return fmt.Errorf("overlay: zero %d bytes at %d past the size %d: %w", n, off, o.size, ErrOutOfRange)
	}
	end := off + n
	// Partial blocks at either end are ordinary writes.
	firstFull := (off + overlayBlock - 1) / overlayBlock * overlayBlock
	lastFull := end / overlayBlock * overlayBlock
	if end == o.size {
		lastFull = end // the short last block counts as whole
	}
	if firstFull >= lastFull {
		_, err := o.WriteAt(make([]byte, n), off)
		return err
	}
	if firstFull > off {
		if _, err := o.WriteAt(make([]byte, firstFull-off), off); err != nil {
			return err
		}
	}
	if end > lastFull {
		if _, err := o.WriteAt(make([]byte, end-lastFull), lastFull); err != nil {
			return err
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := punchHole(o.tmp, firstFull, lastFull-firstFull); err != nil {
		return fmt.Errorf("overlay: zero at %#x: %w", firstFull, err)
	}
	for b := firstFull / overlayBlock; b*overlayBlock < lastFull; b++ {
		o.written[b/64] |= 1 << (b % 64)
	}
	return nil
}
