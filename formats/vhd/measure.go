package vhd

import (
	"iter"

	"github.com/vmconv/vmconv/disk"
)

// Measure says how large the VHD that Create and a copy write is, for a
// disk of size bytes whose data lies in the extents data yields (sorted):
// a fixed disk is its (geometry-rounded) size and the footer; a dynamic one
// the footer copy, header and BAT, a sector bitmap and block for every
// block the data touches, and the footer.
func Measure(size int64, data iter.Seq[disk.Extent], opt Options) (disk.Measurement, error) {
	w, err := newWriter("(measured)", size, opt)
	if err != nil {
		return disk.Measurement{}, err
	}
	if !w.dyn {
		n := w.size + footerSize
		return disk.Measurement{Required: n, FullyAllocated: n}, nil
	}
	per := w.bitmapSize + w.blockSize
	blocks := disk.CountBlocks(data, w.blockSize)
	return disk.Measurement{
		Required:       w.next + blocks*per + footerSize,
		FullyAllocated: w.next + int64(len(w.bat))*per + footerSize,
	}, nil
}
