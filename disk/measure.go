package disk

import (
	"errors"
	"fmt"
	"io"
	"iter"
)

// Measurement is how large a writer's output is for some content, as
// qemu-img measure reports it: Required for the content measured (every
// block that the source's data touches allocated; blocks that hold only
// zeros are left out when converting, so it is exact when there are none
// and an upper bound otherwise), FullyAllocated with every block of the
// disk allocated. Both count the bytes of every file the writer makes.
type Measurement struct {
	Required       int64 `json:"required"`
	FullyAllocated int64 `json:"fully-allocated"`
}

// BlockRun is Count blocks from block First on.
type BlockRun struct{ First, Count int64 }

// BlockRuns yields, in order, the runs of consecutive blocks of blockSize
// (aligned at offset 0) that the extents touch, each block once. The
// extents must be sorted and must not overlap.
func BlockRuns(data iter.Seq[Extent], blockSize int64) iter.Seq[BlockRun] {
	return func(yield func(BlockRun) bool) {
		run := BlockRun{}
		for e := range data {
			if e.Length <= 0 {
				continue
			}
			first, last := e.Offset/blockSize, (e.End()-1)/blockSize
			end := run.First + run.Count // first block not yet in a run
			switch {
			case last < end:
				continue // inside blocks already counted
			case first <= end && run.Count > 0:
				run.Count = last + 1 - run.First
				continue
			}
			if run.Count > 0 && !yield(run) {
				return
			}
			run = BlockRun{First: first, Count: last + 1 - first}
		}
		if run.Count > 0 {
			yield(run)
		}
	}
}

// CountBlocks counts the blocks of blockSize that the extents touch.
func CountBlocks(data iter.Seq[Extent], blockSize int64) int64 {
	n := int64(0)
	for r := range BlockRuns(data, blockSize) {
		n += r.Count
	}
	return n
}

// DataExtents yields img's Data extents in order, asking for them a window
// at a time so that a huge fragmented disk is never listed at once; an
// error ends the sequence and is stored in *err.
func DataExtents(img Image, err *error) iter.Seq[Extent] {
	const window = 1 << 30
	return func(yield func(Extent) bool) {
		for off := int64(0); off < img.Size(); off += window {
			ext, e := img.Extents(off, min(window, img.Size()-off))
			if e != nil {
				*err = e
				return
			}
			for _, x := range ext {
				if x.Kind == Data && !yield(x) {
					return
				}
			}
		}
	}
}

// AllData is a disk of size bytes that holds data everywhere, to measure
// the fully allocated size.
func AllData(size int64) iter.Seq[Extent] {
	return func(yield func(Extent) bool) {
		if size > 0 {
			yield(Extent{Offset: 0, Length: size, Kind: Data})
		}
	}
}

// NonZero yields the parts of the data extents that are not all zeros, at
// the granularity at which a raw copy leaves zeros out (holeBlock), reading
// img to find them (data yields img's Data extents). A read error ends the
// sequence and is stored in *err.
func NonZero(img Image, data iter.Seq[Extent], err *error) iter.Seq[Extent] {
	return func(yield func(Extent) bool) {
		buf := make([]byte, ChunkSize)
		run := Extent{Kind: Data} // the non-zero run being gathered, across reads
		stopped := errors.New("stopped")
		add := func(at, end int64) error {
			if run.Length > 0 && run.End() == at {
				run.Length = end - run.Offset
				return nil
			}
			if run.Length > 0 && !yield(run) {
				return stopped
			}
			run = Extent{Offset: at, Length: end - at, Kind: Data}
			return nil
		}
		for e := range data {
			for off := e.Offset; off < e.End(); {
				n := min(int64(len(buf)), e.End()-off)
				if _, rerr := img.ReadAt(buf[:n], off); rerr != nil && !(rerr == io.EOF && off+n == img.Size()) {
					*err = fmt.Errorf("read at %#x: %w", off, rerr)
					return
				}
				if nonZeroRuns(buf[:n], func(s, e int) error { return add(off+int64(s), off+int64(e)) }) != nil {
					return
				}
				off += n
			}
		}
		if run.Length > 0 {
			yield(run)
		}
	}
}
