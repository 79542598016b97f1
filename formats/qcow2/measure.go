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
	if opt.Preallocation == "falloc" || opt.Preallocation == "full" {
		data = disk.AllData(size) // every cluster takes space (metadata leaves holes, as qemu-img measure counts it)
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
	clusters := (w.size + w.cs - 1) / w.cs
	for r := range disk.BlockRuns(data, w.cs) {
		w.countRun(r.First, min(r.Count, clusters-r.First))
	}
	w.finish()
	return w.hostEnd, w.err
}

// countRun counts data clusters vc to vc+n-1 appended in turn, as
// writeData appends them, each L2 table and refcount block where the
// writer puts it, but a refcount block's worth of clusters at a time: the
// fully allocated size of a 64 TiB disk is 2^30 clusters. Only a writer
// without a file (measuring) may count.
func (w *writer) countRun(vc, n int64) {
	for n > 0 && w.err == nil {
		w.closeOpen()
		w.useL2(vc)
		inTable := min(n, w.l2Entries-vc%w.l2Entries)
		for inTable > 0 && w.err == nil {
			w.allocCluster() // counts the first, flushing full refcount blocks
			inBlock := min(inTable, w.perBlock-(w.hostEnd/w.cs)%w.perBlock)
			w.hostEnd += inBlock * w.cs
			inTable, vc, n = inTable-inBlock, vc+inBlock, n-inBlock
		}
	}
}
