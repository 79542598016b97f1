package vhd

import (
	"bytes"
	"fmt"
	"io"
	"sort"

	"github.com/vmconv/vmconv/disk"
)

// Check verifies a VHD: footer and header checksums (opening does), the
// footer copy of a dynamic disk agreeing with the footer, and every BAT
// block inside the file, after the BAT, and overlapping no other block.
// The error is for files that cannot be parsed at all.
func Check(path string) ([]disk.Problem, error) {
	f, err := disk.OpenFile(path)
	if err != nil {
		return nil, fmt.Errorf("vhd: %w", err)
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
		add(size-footerSize, "%s", w)
	}
	if img.bat == nil {
		return out, nil
	}
	var head [footerSize]byte
	if _, err := r.ReadAt(head[:], 0); err == nil {
		if want := img.footer.encode(); !bytes.Equal(head[:], want) {
			add(0, "the footer copy at offset 0 differs from the footer at the end")
		}
	}
	metaEnd := int64(img.hdr.TableOffset) + (int64(len(img.bat))*4+sectorSize-1)/sectorSize*sectorSize
	type blk struct{ idx, start int64 }
	var blocks []blk
	for i, e := range img.bat {
		if e == batUnused {
			continue
		}
		start := int64(e) * sectorSize
		if start < metaEnd {
			add(int64(img.hdr.TableOffset)+int64(i)*4, "BAT entry %d: block at %#x overlaps the headers or the BAT (which end at %#x)", i, start, metaEnd)
		}
		blocks = append(blocks, blk{int64(i), start})
	}
	sort.Slice(blocks, func(a, b int) bool { return blocks[a].start < blocks[b].start })
	span := img.bitmapSize + img.blockSize
	for i := 1; i < len(blocks); i++ {
		if blocks[i].start < blocks[i-1].start+span {
			add(blocks[i].start, "blocks %d and %d overlap", blocks[i-1].idx, blocks[i].idx)
		}
	}
	if n := len(blocks); n > 0 && blocks[n-1].start+span > size-footerSize {
		add(blocks[n-1].start, "block %d overlaps the footer", blocks[n-1].idx)
	}
	return out, nil
}
