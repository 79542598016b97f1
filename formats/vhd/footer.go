// Package vhd reads and writes Microsoft's VHD (qemu-img's "vpc"): fixed,
// dynamic and (read only) differencing disks with their parent locators.
// Sizes and geometry follow qemu-img, so the two agree on every image's
// virtual size.
package vhd

import (
	"encoding/binary"
	"fmt"
)

const (
	sectorSize = 512
	footerSize = 512
	headerSize = 1024

	typeFixed        = 2
	typeDynamic      = 3
	typeDifferencing = 4

	batUnused = 0xFFFFFFFF
	noOffset  = 0xFFFFFFFFFFFFFFFF

	defaultBlockSize = 2 << 20
	maxBlockSize     = 256 << 20
	// maxSectors is qemu's limit: 2040 GiB.
	maxSectors = (2040 << 30) / sectorSize
	// maxGeometry is the largest CHS geometry; qemu then uses the footer size.
	maxGeometry = 65535 * 16 * 255

	// vhdEpoch is 2000-01-01T00:00:00Z, where VHD timestamps start.
	vhdEpoch = 946684800
)

// Footer is the 512-byte VHD footer, big-endian, at the end of every VHD and
// copied at offset 0 of dynamic and differencing disks.
type Footer struct {
	Cookie             [8]byte // "conectix"
	Features           uint32
	FileFormatVersion  uint32
	DataOffset         uint64 // dynamic header; noOffset for fixed disks
	Timestamp          uint32
	CreatorApplication [4]byte
	CreatorVersion     uint32
	CreatorHostOS      [4]byte
	OriginalSize       uint64
	CurrentSize        uint64
	Cylinders          uint16
	Heads              uint8
	SectorsPerTrack    uint8
	DiskType           uint32
	Checksum           uint32
	UniqueID           [16]byte
	SavedState         uint8
	Reserved           [427]byte
}

// DynamicHeader is the 1024-byte header of dynamic and differencing disks.
type DynamicHeader struct {
	Cookie            [8]byte // "cxsparse"
	DataOffset        uint64
	TableOffset       uint64
	HeaderVersion     uint32
	MaxTableEntries   uint32
	BlockSize         uint32
	Checksum          uint32
	ParentUniqueID    [16]byte
	ParentTimestamp   uint32
	Reserved1         uint32
	ParentUnicodeName [512]byte // UTF-16 big-endian
	ParentLocators    [8]ParentLocator
	Reserved2         [256]byte
}

// ParentLocator says where one platform's spelling of the parent's path is.
type ParentLocator struct {
	PlatformCode       uint32
	PlatformDataSpace  uint32 // sectors (bytes in some writers)
	PlatformDataLength uint32 // bytes
	Reserved           uint32
	PlatformDataOffset uint64 // bytes
}

const (
	platW2ku = 0x5732756B // absolute Windows path, UTF-16LE
	platW2ru = 0x57327275 // relative Windows path, UTF-16LE
	platMacX = 0x4D616358 // file URL, UTF-8
)

// checksum is the one's complement of the byte sum, the checksum field
// counted as zero.
func checksum(b []byte, field int) uint32 {
	var s uint32
	for i, x := range b {
		if i >= field && i < field+4 {
			continue
		}
		s += uint32(x)
	}
	return ^s
}

func decodeFooter(b []byte) (Footer, error) {
	var f Footer
	if _, err := binary.Decode(b[:footerSize], binary.BigEndian, &f); err != nil {
		return f, err
	}
	if string(f.Cookie[:]) != "conectix" {
		return f, fmt.Errorf("cookie %q, want \"conectix\"", f.Cookie[:])
	}
	if sum := checksum(b[:footerSize], 64); sum != f.Checksum {
		return f, fmt.Errorf("checksum %#08x, computed %#08x", f.Checksum, sum)
	}
	return f, nil
}

func (f *Footer) encode() []byte {
	b := make([]byte, footerSize)
	f.Checksum = 0
	binary.Encode(b, binary.BigEndian, f)
	f.Checksum = checksum(b, 64)
	binary.BigEndian.PutUint32(b[64:], f.Checksum)
	return b
}

func decodeHeader(b []byte) (DynamicHeader, error) {
	var h DynamicHeader
	if _, err := binary.Decode(b[:headerSize], binary.BigEndian, &h); err != nil {
		return h, err
	}
	if string(h.Cookie[:]) != "cxsparse" {
		return h, fmt.Errorf("cookie %q, want \"cxsparse\"", h.Cookie[:])
	}
	if sum := checksum(b[:headerSize], 36); sum != h.Checksum {
		return h, fmt.Errorf("checksum %#08x, computed %#08x", h.Checksum, sum)
	}
	return h, nil
}

func (h *DynamicHeader) encode() []byte {
	b := make([]byte, headerSize)
	h.Checksum = 0
	binary.Encode(b, binary.BigEndian, h)
	h.Checksum = checksum(b, 36)
	binary.BigEndian.PutUint32(b[36:], h.Checksum)
	return b
}

// geometry is the VHD specification's CHS for a number of sectors, as qemu
// computes it.
func geometry(total int64) (cyls, heads, spt int64) {
	total = min(total, maxGeometry)
	var cth int64
	if total >= 65535*16*63 {
		spt, heads = 255, 16
		cth = total / spt
	} else {
		spt = 17
		cth = total / spt
		heads = max((cth+1023)/1024, 4)
		if cth >= heads*1024 || heads > 16 {
			spt, heads = 31, 16
			cth = total / spt
		}
		if cth >= heads*1024 {
			spt, heads = 63, 16
			cth = total / spt
		}
	}
	return cth / heads, heads, spt
}

// sizeFor returns the size qemu-img gives a new VHD asked to hold size
// bytes, with its geometry: rounded up until the CHS geometry holds it,
// unless forceSize keeps the exact size (with the maximal geometry that
// tells readers to use the footer's size).
func sizeFor(size int64, forceSize bool) (total, cyls, heads, spt int64, err error) {
	sectors := (size + sectorSize - 1) / sectorSize
	if forceSize {
		cyls, heads, spt = 65535, 16, 255
	} else {
		want := min(int64(maxGeometry), sectors)
		for i := int64(0); want > cyls*heads*spt; i++ {
			cyls, heads, spt = geometry(want + i)
		}
	}
	if cyls*heads*spt == maxGeometry {
		if sectors > maxSectors {
			return 0, 0, 0, 0, fmt.Errorf("size %d is larger than VHD's 2040 GiB", size)
		}
	} else {
		sectors = cyls * heads * spt
	}
	return sectors * sectorSize, cyls, heads, spt, nil
}

// virtualSize is the size qemu reads from a footer: Virtual PC and qemu's
// "qemu" creator size disks by their geometry, Hyper-V and the others by
// the footer's current size, and a maximal geometry always means the size.
func (f *Footer) virtualSize() int64 {
	chs := int64(f.Cylinders) * int64(f.Heads) * int64(f.SectorsPerTrack)
	switch string(f.CreatorApplication[:]) {
	case "win ", "qem2", "d2v ", "CTXS", "tap\x00":
		return int64(f.CurrentSize) / sectorSize * sectorSize
	}
	if chs == maxGeometry {
		return int64(f.CurrentSize) / sectorSize * sectorSize
	}
	return chs * sectorSize
}
