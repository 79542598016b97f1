package disk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Compare reports whether a and b hold the same bytes and, when they do not,
// the first offset where they differ. Like qemu-img compare, images of
// different sizes are equal when the larger one is zero past the smaller's
// end. Chunks unallocated in both are not read.
func Compare(ctx context.Context, a, b Image, opt CopyOptions) (int64, bool, error) {
	size := max(a.Size(), b.Size())
	workers := opt.workers()
	batch := int64(opt.window())
	type result struct {
		diff int64 // -1: equal
		err  error
	}
	bufsA, bufsB := newBufferPool(int(batch)), newBufferPool(int(batch))
	for start := int64(0); start < size; start += batch * ChunkSize {
		if err := ctx.Err(); err != nil {
			return 0, false, err
		}
		n := min(batch, (size-start+ChunkSize-1)/ChunkSize)
		res := make([]result, n)
		var wg sync.WaitGroup
		next := make(chan int64, n)
		for i := range n {
			next <- i
		}
		close(next)
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					off := start + i*ChunkSize
					l := min(int64(ChunkSize), size-off)
					ba, bb := bufsA.get()[:l], bufsB.get()[:l]
					d, err := compareChunk(a, b, off, ba, bb)
					bufsA.put(ba)
					bufsB.put(bb)
					res[i] = result{d, err}
				}
			}()
		}
		wg.Wait()
		for i, r := range res {
			if r.err != nil {
				return 0, false, r.err
			}
			if r.diff >= 0 {
				return start + int64(i)*ChunkSize + r.diff, false, nil
			}
		}
		if opt.Progress != nil {
			opt.Progress(min(start+n*ChunkSize, size), size)
		}
	}
	return 0, true, nil
}

// compareChunk returns the first differing byte in the chunk at off, or -1.
func compareChunk(a, b Image, off int64, ba, bb []byte) (int64, error) {
	if err := readOrZero(a, off, ba); err != nil {
		return 0, err
	}
	if err := readOrZero(b, off, bb); err != nil {
		return 0, err
	}
	if bytes.Equal(ba, bb) {
		return -1, nil
	}
	for i := range ba {
		if ba[i] != bb[i] {
			return int64(i), nil
		}
	}
	return -1, nil
}

// readOrZero fills p from img at off, with zeros past its end and where it
// has no data.
func readOrZero(img Image, off int64, p []byte) error {
	clear(p)
	exts, err := img.Extents(off, int64(len(p)))
	if err != nil {
		return err
	}
	for _, e := range exts {
		if e.Kind != Data {
			continue
		}
		q := p[e.Offset-off : e.End()-off]
		n, err := img.ReadAt(q, e.Offset)
		if err != nil && !(errors.Is(err, io.EOF) && n == len(q)) {
			return fmt.Errorf("read at %#x: %w", e.Offset, err)
		}
	}
	return nil
}
