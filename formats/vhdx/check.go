package vhdx

import (
	"bytes"
	"fmt"
	"io"
	"sort"

	"github.com/vmconv/vmconv/disk"
)

// Check verifies a VHDX: both headers and both region tables valid (opening
// needs only one of each), the two region tables equal, and every payload
// block inside the file, after the BAT and overlapping no other block.
func Check(path string) ([]disk.Problem, error) {
	f, err := disk.OpenFile(path)
	if err != nil {
		return nil, fmt.Errorf("vhdx: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return check(path, f, fi.Size())
}

func check(path string, r io.ReaderAt, size int64) ([]disk.Problem, error) {
	img, err := newImage(path, r, size)
	if err != nil {
		return nil, err
	}
	var out []disk.Problem
	add := func(off int64, format string, args ...any) {
		out = append(out, disk.Problemf(path, off, format, args...))
	}
	for _, w := range img.info.Warnings {
		add(0, "%s", w)
	}
	a, b := make([]byte, regionLen), make([]byte, regionLen)
	r.ReadAt(a, regionOff1)
	r.ReadAt(b, regionOff2)
	if !bytes.Equal(a, b) {
		add(regionOff2, "the two region tables differ")
	}
	type blk struct{ idx, off int64 }
	var blocks []blk
	g := img.geo
	batEnd := img.batOff + (g.batEntries*8+mib-1)/mib*mib
	for i := int64(0); i < g.dataBlocks; i++ {
		st, off := img.block(i)
		if st != payloadFull {
			continue
		}
		if off < batEnd {
			add(img.batOff+g.batIndex(i)*8, "block %d at %#x overlaps the metadata or the BAT", i, off)
		}
		if off+g.blockSize > size {
			add(img.batOff+g.batIndex(i)*8, "block %d at %#x runs past the end of the file (%#x)", i, off, size)
		}
		blocks = append(blocks, blk{i, off})
	}
	sort.Slice(blocks, func(x, y int) bool { return blocks[x].off < blocks[y].off })
	for i := 1; i < len(blocks); i++ {
		if blocks[i].off < blocks[i-1].off+g.blockSize {
			add(blocks[i].off, "blocks %d and %d overlap", blocks[i-1].idx, blocks[i].idx)
		}
	}
	return out, nil
}
