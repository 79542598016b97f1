package qcow2

import (
	"errors"
	"iter"

	"github.com/vmconv/vmconv/disk"
)

// Measure says how large the image that Create and a copy write is, for a
// disk of size bytes whose data lies in the extents data yields (sorted):
// the writer is run without a file, counting the clusters it would append.
// Compressed clusters are refused: their size is known only once
// compressed.
func Measure(size int64, data iter.Seq[disk.Extent], opt Options) (disk.Measurement, error) {
	opt.fill()
	if opt.Compress {
		return disk.Measurement{}, errors.New("qcow2: the size of compressed clusters is known only once they are written")
	}
	req, err := measureData(size, data, opt)
	if err != nil {
		return disk.Measurement{}, err
	}
	full, err := measureData(size, disk.AllData(size), opt)
	return disk.Measurement{Required: req, FullyAllocated: full}, err
}

func measureData(size int64, data iter.Seq[disk.Extent], opt Options) (int64, error) {
	w, err := newWriter("(measured)", size, opt)
	if err != nil {
		return 0, err
	}
	w.reserve()
	for vc := range disk.Blocks(data, w.cs) {
		if vc*w.cs >= w.size {
			break
		}
		w.writeData(vc, 0, zeroCluster[:w.cs])
	}
	w.finish()
	return w.hostEnd, w.err
}
