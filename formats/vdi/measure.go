package vdi

import (
	"fmt"
	"iter"

	"github.com/vmconv/vmconv/disk"
)

// Measure says how large the VDI that Create and a copy write is, for a
// disk of size bytes whose data lies in the extents data yields (sorted):
// the header, the block map and the gap up to the 1 MiB-aligned data area,
// then a whole block for every block the data touches (every block of a
// static image).
func Measure(size int64, data iter.Seq[disk.Extent], opt Options) (disk.Measurement, error) {
	l, err := layoutFor(size)
	if err != nil {
		return disk.Measurement{}, fmt.Errorf("vdi: %w", err)
	}
	full := l.dataOff + l.blocks*defaultBlockSize
	if opt.Static {
		return disk.Measurement{Required: full, FullyAllocated: full}, nil
	}
	return disk.Measurement{
		Required:       l.dataOff + disk.CountBlocks(data, defaultBlockSize)*defaultBlockSize,
		FullyAllocated: full,
	}, nil
}
