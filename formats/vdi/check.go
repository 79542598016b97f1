package vdi

import (
	"fmt"
	"io"

	"github.com/vmconv/vmconv/disk"
)

// Check verifies a VDI as qemu-img check does and more: every bad block
// map entry (Open stops at the first), the header's count of allocated
// blocks against the map, data blocks the next allocation would reuse, a
// static image's unallocated blocks, and what qemu or VirtualBox refuse
// although vmconv reads it. The error is for files that cannot be parsed
// at all.
func Check(path string) ([]disk.Problem, error) {
	f, err := disk.OpenFile(path)
	if err != nil {
		return nil, fmt.Errorf("vdi: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("vdi: %w", err)
	}
	return check(path, f, fi.Size())
}

type addFunc func(off int64, format string, args ...any)

func check(path string, r io.ReaderAt, size int64) ([]disk.Problem, error) {
	img := &Image{path: path, r: r, fileSize: size}
	if err := img.readHeader(); err != nil {
		return nil, err
	}
	if err := img.readMap(); err != nil {
		return nil, err
	}
	var out []disk.Problem
	add := func(off int64, format string, args ...any) {
		out = append(out, disk.Problemf(path, off, format, args...))
	}
	for _, f := range img.mapFaults(0) {
		add(f.off, "block map entry %d: %s", f.entry, f.what)
	}
	img.checkAllocation(add)
	img.checkPortable(add)
	return out, nil
}

// checkAllocation compares the map with the header's count of allocated
// blocks, which qemu and VirtualBox take as the index of the next block
// they allocate.
func (img *Image) checkAllocation(add addFunc) {
	h := &img.hdr
	var n int64
	for i, e := range img.bmap {
		at := int64(h.OffsetBmap) + 4*int64(i)
		switch {
		case e == unallocated || e == zeroBlock:
			if h.ImageType == typeStatic {
				add(at, "block map entry %d: block %d is not allocated in a static image", i, i)
			}
		case int64(e) < int64(len(img.bmap)):
			n++
			if e >= h.BlocksAllocated {
				add(at, "block map entry %d: data block %d is not below the header's %d allocated blocks: the next block written would reuse it", i, e, h.BlocksAllocated)
			}
		}
	}
	if n != int64(h.BlocksAllocated) {
		add(offBlocksAlloc, "header: blocks allocated %d, the block map has %d", h.BlocksAllocated, n)
	}
}

// checkPortable reports what vmconv reads but qemu or VirtualBox refuse
// (or, for extra block data, qemu misreads).
func (img *Image) checkPortable(add addFunc) {
	h := &img.hdr
	if h.Version != version11 {
		add(offVersion, "header: version %d.%d: qemu reads only 1.1", h.Version>>16, h.Version&0xFFFF)
	}
	if h.BlockSize != defaultBlockSize {
		add(offBlockSize, "header: block size %d: qemu reads only %d", h.BlockSize, defaultBlockSize)
	}
	if h.BlockExtra != 0 {
		add(offBlockExtra, "header: block extra size %d: qemu reads the blocks without skipping it", h.BlockExtra)
	}
	if h.OffsetBmap%sectorSize != 0 {
		add(offOffsetBmap, "header: block map offset %#x is not a multiple of %d, which qemu refuses", h.OffsetBmap, sectorSize)
	}
	if h.OffsetData%sectorSize != 0 {
		add(offOffsetData, "header: data offset %#x is not a multiple of %d, which qemu refuses", h.OffsetData, sectorSize)
	}
	if h.Legacy.SectorSize != sectorSize {
		add(offSectorSize, "header: sector size %d: qemu reads only %d", h.Legacy.SectorSize, sectorSize)
	}
	if h.HeaderSize >= headerSize1Plus && h.LCHS.SectorSize != sectorSize {
		add(offUUIDParent+16+12, "header: LCHS sector size %d: VirtualBox reads only %d", h.LCHS.SectorSize, sectorSize)
	}
	if isNull(h.UUIDImage) {
		add(offUUIDImage, "header: the image UUID is zero, which VirtualBox refuses")
	}
	if isNull(h.UUIDLastSnap) {
		add(offUUIDLastSnap, "header: the modification UUID is zero, which VirtualBox refuses")
	}
}
