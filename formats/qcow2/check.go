package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/vmconv/vmconv/disk"
)

// CheckResult lists the problems Check found.
type CheckResult struct {
	Problems []disk.Problem `json:"problems"`
	// Notes are facts that limited the check (snapshots, bitmaps).
	Notes []string `json:"notes,omitempty"`
	// Clusters counts guest clusters that map to data (compressed included).
	Clusters int64 `json:"allocated-clusters"`
}

// OK reports whether no problem was found.
func (r *CheckResult) OK() bool { return len(r.Problems) == 0 }

const maxProblems = 1000

// checkWindow is how many host clusters' references are counted at once:
// a huge file is checked in several passes over its tables instead of with
// one counter per cluster.
const checkWindow = 4 << 20

type checker struct {
	img *Image
	res *CheckResult
}

func (c *checker) add(off int64, format string, args ...any) {
	if len(c.res.Problems) == maxProblems {
		c.res.Notes = append(c.res.Notes, fmt.Sprintf("more than %d problems; the rest are not listed", maxProblems))
	}
	if len(c.res.Problems) >= maxProblems {
		return
	}
	c.res.Problems = append(c.res.Problems, disk.Problemf(c.img.path, off, format, args...))
}

// Check verifies an image's structure as qemu-img check does: every table
// and cluster inside the file and aligned, every compressed cluster
// inflating to a whole cluster, and each cluster's stored refcount equal to
// the references to it (more is a leak, fewer is corruption), with the
// copied flag set exactly where the refcount is 1. The backing file is not
// examined. The error is for files that cannot be parsed at all.
func Check(path string) (*CheckResult, error) {
	f, err := disk.OpenFile(path)
	if err != nil {
		return nil, fmt.Errorf("qcow2: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("qcow2 %s: %w", path, err)
	}
	return check(path, f, fi.Size())
}

func check(path string, r io.ReaderAt, size int64) (*CheckResult, error) {
	img, err := newImage(path, r, size)
	if err != nil {
		return nil, err
	}
	if err := img.openDataFile(); err != nil {
		return nil, err
	}
	defer img.Close() // the data file; r is the caller's
	c := &checker{img: img, res: &CheckResult{}}
	if img.hdr.IncompatibleFeatures&incCorrupt != 0 {
		c.add(72, "the corrupt bit is set")
	}
	rt, err := c.refcountTable()
	if err != nil {
		return nil, err
	}
	c.mapping()
	switch {
	case img.hdr.NbSnapshots > 0:
		c.res.Notes = append(c.res.Notes, fmt.Sprintf("%d internal snapshots: refcounts not compared", img.hdr.NbSnapshots))
	case img.hdr.AutoclearFeatures&autoclearBitmaps != 0:
		c.res.Notes = append(c.res.Notes, "persistent bitmaps: refcounts not compared")
	default:
		hostClusters := (size + img.clusterSize - 1) / img.clusterSize
		for start := int64(0); start < hostClusters; start += checkWindow {
			c.refcounts(rt, start, min(hostClusters, start+checkWindow))
		}
	}
	return c.res, nil
}

// refcountTable reads the refcount table, bounded by the file size.
func (c *checker) refcountTable() ([]uint64, error) {
	img := c.img
	h := &img.hdr
	n := int64(h.RefcountTableClusters) * img.clusterSize
	off := int64(h.RefcountTableOffset)
	if n > maxRefTable || off%img.clusterSize != 0 || off > img.fileSize || n > img.fileSize-off {
		return nil, fmt.Errorf("qcow2 %s: refcount table at %#x (%d clusters) is unaligned, too large or past the end of the file (%#x)",
			img.path, off, h.RefcountTableClusters, img.fileSize)
	}
	b := make([]byte, n)
	if _, err := img.r.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("qcow2 %s: read refcount table at %#x: %w", img.path, off, err)
	}
	rt := make([]uint64, n/8)
	for i := range rt {
		rt[i] = binary.BigEndian.Uint64(b[i*8:])
		if e := rt[i] & offsetMask; e != 0 && (e%uint64(img.clusterSize) != 0 || int64(e) > img.fileSize-img.clusterSize) {
			c.add(off+int64(i)*8, "refcount block %d at %#x is unaligned or past the end of the file", i, e)
			rt[i] = 0
		}
	}
	return rt, nil
}

// refs calls fn with every host byte range the image's metadata uses, with
// the copied flag expected on its pointer (nil when it has none).
func (c *checker) refs(rt []uint64, fn func(off, n int64, copied *bool)) {
	img := c.img
	h := &img.hdr
	cs := img.clusterSize
	fn(0, cs, nil)
	fn(int64(h.L1TableOffset), int64(h.L1Size)*8, nil)
	fn(int64(h.RefcountTableOffset), int64(h.RefcountTableClusters)*cs, nil)
	for _, b := range rt {
		if b != 0 {
			fn(int64(b&offsetMask), cs, nil)
		}
	}
	for i, e := range img.l1 {
		off := int64(e & offsetMask)
		if off == 0 {
			continue
		}
		cp := e&oflagCopied != 0
		fn(off, cs, &cp)
		t, err := img.l2Table(int64(i))
		if err != nil {
			continue // reported by mapping
		}
		for j := int64(0); j < int64(1)<<img.l2Bits; j++ {
			e := binary.BigEndian.Uint64(t[j*img.entryBytes:])
			switch {
			case e&oflagCompressed != 0:
				coff, csize := img.compressedRange(e)
				fn(coff&^511, (csize+coff&511+511)&^511, nil)
			case e&offsetMask != 0 && img.dataFile == nil: // data file clusters are not refcounted
				cp := e&oflagCopied != 0
				fn(int64(e&offsetMask), cs, &cp)
			}
		}
	}
}

// mapping walks every guest cluster, reporting entries that point outside
// the file and compressed clusters that do not inflate.
func (c *checker) mapping() {
	img := c.img
	var buf []byte
	for off := int64(0); off < img.size; {
		r, err := img.mapAt(off)
		if err != nil {
			c.add(0, "%v", err)
			off = (off/img.clusterSize + 1) * img.clusterSize
			continue
		}
		switch r.kind {
		case kCompressed:
			c.res.Clusters++
			if buf == nil {
				buf = make([]byte, img.clusterSize)
			}
			if err := img.readCompressed(buf, off, r.entry); err != nil {
				c.add(0, "%v", err)
			}
		case kData:
			if (off+r.n-1)%img.clusterSize == img.clusterSize-1 || off+r.n >= img.size {
				c.res.Clusters++
			}
		}
		off += r.n
	}
}

// refcounts compares stored and counted refcounts of host clusters
// [start, end).
func (c *checker) refcounts(rt []uint64, start, end int64) {
	img := c.img
	cs := img.clusterSize
	counts := make([]uint32, end-start)
	type flagAt struct {
		cluster int64
		copied  bool
	}
	var flags []flagAt
	c.refs(rt, func(off, n int64, copied *bool) {
		if n <= 0 {
			return
		}
		first, last := off/cs, (off+n-1)/cs
		for k := max(first, start); k <= min(last, end-1); k++ {
			counts[k-start]++
		}
		if copied != nil && first >= start && first < end {
			flags = append(flags, flagAt{first, *copied})
		}
	})
	order := img.hdr.RefcountOrder
	perBlock := cs * 8 >> order
	var block []byte
	blockIdx := int64(-1)
	stored := func(k int64) uint64 {
		i := k / perBlock
		if i >= int64(len(rt)) || rt[i] == 0 {
			return 0
		}
		if i != blockIdx {
			if block == nil {
				block = make([]byte, cs)
			}
			clear(block)
			if _, err := img.r.ReadAt(block, int64(rt[i]&offsetMask)); err != nil && !errors.Is(err, io.EOF) {
				c.add(int64(rt[i]), "read refcount block %d: %v", i, err)
			}
			blockIdx = i
		}
		return refcountAt(block, k%perBlock, order)
	}
	for k := start; k < end; k++ {
		got, want := stored(k), uint64(counts[k-start])
		switch {
		case got < want:
			c.add(k*cs, "cluster %d has refcount %d but %d references", k, got, want)
		case got > want:
			c.add(k*cs, "leaked cluster %d: refcount %d, %d references", k, got, want)
		}
	}
	for _, f := range flags {
		if rc := stored(f.cluster); (rc == 1) != f.copied {
			c.add(f.cluster*cs, "copied flag %v on the pointer to cluster %d, whose refcount is %d", f.copied, f.cluster, rc)
		}
	}
}

// refcountAt decodes refcount i of a block of 2^order-bit big-endian
// refcounts.
func refcountAt(b []byte, i int64, order uint32) uint64 {
	bitsPer := int64(1) << order
	if bitsPer < 8 {
		byteAt := b[i*bitsPer/8]
		shift := (i * bitsPer) % 8
		return uint64(byteAt>>shift) & (1<<bitsPer - 1)
	}
	n := bitsPer / 8
	var v uint64
	for _, x := range b[i*n : (i+1)*n] {
		v = v<<8 | uint64(x)
	}
	return v
}
