package vhdx

import (
	"iter"

	"github.com/vmconv/vmconv/disk"
)

// Measure says how large the VHDX that Create and a copy write is, for a
// disk of size bytes whose data lies in the extents data yields (sorted):
// the headers, log, metadata and BAT, then one block for every block the
// data touches (every block, for a fixed disk).
func Measure(size int64, data iter.Seq[disk.Extent], opt Options) (disk.Measurement, error) {
	w, err := newWriter("(measured)", size, opt)
	if err != nil {
		return disk.Measurement{}, err
	}
	meta := batOff + w.batLn
	full := meta + w.geo.dataBlocks*w.geo.blockSize
	if w.fixed {
		return disk.Measurement{Required: full, FullyAllocated: full}, nil
	}
	blocks := disk.CountBlocks(data, w.geo.blockSize)
	return disk.Measurement{Required: meta + blocks*w.geo.blockSize, FullyAllocated: full}, nil
}
