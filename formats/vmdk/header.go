// Package vmdk reads and writes VMware virtual disks: every hosted createType
// (monolithicSparse, streamOptimized, monolithicFlat, twoGbMaxExtentSparse,
// twoGbMaxExtentFlat), descriptor files with mixed extents, and snapshot
// chains, whose links may be ESXi's own deltas (vmfsSparse, seSparse: read).
package vmdk

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

const (
	sectorSize = 512

	sparseMagic = 0x564D444B // "KDMV" little-endian

	flagNewlineTest   = 1 << 0
	flagRedundantGD   = 1 << 1
	flagZeroedGrain   = 1 << 2
	flagCompressed    = 1 << 16
	flagMarkers       = 1 << 17
	knownIncompatible = flagCompressed | flagMarkers

	compressNone    = 0
	compressDeflate = 1

	gdAtEnd = 0xFFFFFFFFFFFFFFFF

	gtesPerGT = 512

	markerEOS    = 0
	markerGT     = 1
	markerGD     = 2
	markerFooter = 3

	// Bounds on untrusted header fields.
	maxGrainSectors      = 2048    // 1 MiB grains; every producer uses 128
	maxCapacitySectors   = 1 << 40 // 512 TiB
	maxDescriptorSectors = 4096    // 2 MiB embedded descriptor
	maxDescriptorFile    = 2 << 20 // 2 MiB text descriptor

	// gteZeroed marks a grain that reads as zeros without consulting a parent.
	gteZeroed = 1
)

// SparseHeader is the 512-byte header of a hosted sparse extent ("KDMV"),
// also used as the footer of a streamOptimized file.
type SparseHeader struct {
	Magic              uint32
	Version            uint32
	Flags              uint32
	Capacity           uint64 // sectors
	GrainSize          uint64 // sectors
	DescriptorOffset   uint64 // sectors
	DescriptorSize     uint64 // sectors
	NumGTEsPerGT       uint32
	RGDOffset          uint64 // sectors
	GDOffset           uint64 // sectors, gdAtEnd for a footer-located GD
	OverHead           uint64 // sectors
	UncleanShutdown    uint8
	SingleEndLineChar  byte
	NonEndLineChar     byte
	DoubleEndLineChar1 byte
	DoubleEndLineChar2 byte
	CompressAlgorithm  uint16
	Pad                [433]byte
}

func decodeHeader(b []byte) SparseHeader {
	var h SparseHeader
	le := binary.LittleEndian
	h.Magic = le.Uint32(b[0:])
	h.Version = le.Uint32(b[4:])
	h.Flags = le.Uint32(b[8:])
	h.Capacity = le.Uint64(b[12:])
	h.GrainSize = le.Uint64(b[20:])
	h.DescriptorOffset = le.Uint64(b[28:])
	h.DescriptorSize = le.Uint64(b[36:])
	h.NumGTEsPerGT = le.Uint32(b[44:])
	h.RGDOffset = le.Uint64(b[48:])
	h.GDOffset = le.Uint64(b[56:])
	h.OverHead = le.Uint64(b[64:])
	h.UncleanShutdown = b[72]
	h.SingleEndLineChar = b[73]
	h.NonEndLineChar = b[74]
	h.DoubleEndLineChar1 = b[75]
	h.DoubleEndLineChar2 = b[76]
	h.CompressAlgorithm = le.Uint16(b[77:])
	copy(h.Pad[:], b[79:512])
	return h
}

func (h *SparseHeader) encode(b []byte) {
	le := binary.LittleEndian
	le.PutUint32(b[0:], h.Magic)
	le.PutUint32(b[4:], h.Version)
	le.PutUint32(b[8:], h.Flags)
	le.PutUint64(b[12:], h.Capacity)
	le.PutUint64(b[20:], h.GrainSize)
	le.PutUint64(b[28:], h.DescriptorOffset)
	le.PutUint64(b[36:], h.DescriptorSize)
	le.PutUint32(b[44:], h.NumGTEsPerGT)
	le.PutUint64(b[48:], h.RGDOffset)
	le.PutUint64(b[56:], h.GDOffset)
	le.PutUint64(b[64:], h.OverHead)
	b[72] = h.UncleanShutdown
	b[73] = h.SingleEndLineChar
	b[74] = h.NonEndLineChar
	b[75] = h.DoubleEndLineChar1
	b[76] = h.DoubleEndLineChar2
	le.PutUint16(b[77:], h.CompressAlgorithm)
	copy(b[79:512], h.Pad[:])
}

func (h *SparseHeader) compressed() bool { return h.Flags&flagCompressed != 0 }
func (h *SparseHeader) markers() bool    { return h.Flags&flagMarkers != 0 }

// gdEntries is the number of grain directory entries the capacity needs.
func (h *SparseHeader) gdEntries() uint64 {
	per := uint64(gtesPerGT) * h.GrainSize
	return (h.Capacity + per - 1) / per
}

// validate checks the fields that do not depend on the file's size. what names
// the structure ("header", "footer") in errors.
func (h *SparseHeader) validate(what string) error {
	if h.Magic != sparseMagic {
		return fmt.Errorf("%s: magic %#08x, want %#08x (\"KDMV\")", what, h.Magic, sparseMagic)
	}
	if h.Version < 1 || h.Version > 3 {
		return fmt.Errorf("%s: version %d, want 1, 2 or 3", what, h.Version)
	}
	if unk := h.Flags &^ 0xFFFF &^ knownIncompatible; unk != 0 {
		return fmt.Errorf("%s: unknown incompatible flags %#x", what, unk)
	}
	if h.GrainSize == 0 || bits.OnesCount64(h.GrainSize) != 1 || h.GrainSize > maxGrainSectors {
		return fmt.Errorf("%s: grainSize %d sectors, want a power of two from 1 to %d", what, h.GrainSize, maxGrainSectors)
	}
	if h.NumGTEsPerGT != gtesPerGT {
		return fmt.Errorf("%s: numGTEsPerGT %d, want %d", what, h.NumGTEsPerGT, gtesPerGT)
	}
	if h.Capacity == 0 || h.Capacity > maxCapacitySectors {
		return fmt.Errorf("%s: capacity %d sectors, want 1 to %d", what, h.Capacity, uint64(maxCapacitySectors))
	}
	if h.DescriptorSize > maxDescriptorSectors {
		return fmt.Errorf("%s: descriptorSize %d sectors, want at most %d", what, h.DescriptorSize, maxDescriptorSectors)
	}
	if h.DescriptorOffset > maxCapacitySectors {
		return fmt.Errorf("%s: descriptorOffset %d out of range", what, h.DescriptorOffset)
	}
	if h.compressed() && h.CompressAlgorithm != compressDeflate {
		return fmt.Errorf("%s: compressAlgorithm %d, want 1 (deflate) for a compressed extent", what, h.CompressAlgorithm)
	}
	if !h.compressed() && h.CompressAlgorithm != compressNone {
		return fmt.Errorf("%s: compressAlgorithm %d without the compressed-grains flag", what, h.CompressAlgorithm)
	}
	if h.Flags&flagNewlineTest != 0 && (h.SingleEndLineChar != '\n' || h.NonEndLineChar != ' ' ||
		h.DoubleEndLineChar1 != '\r' || h.DoubleEndLineChar2 != '\n') {
		return fmt.Errorf("%s: newline check bytes %02x %02x %02x %02x, want 0a 20 0d 0a (file went through a text-mode transfer?)",
			what, h.SingleEndLineChar, h.NonEndLineChar, h.DoubleEndLineChar1, h.DoubleEndLineChar2)
	}
	return nil
}

// Marker is the 512-byte (or shorter, for grains) record that precedes data in
// an extent with the markers flag.
type marker struct {
	Val  uint64 // LBA for grains, numSectors for metadata
	Size uint32 // compressed bytes; 0 for metadata markers
	Type uint32 // metadata markers only
}

func decodeMarker(b []byte) marker {
	le := binary.LittleEndian
	m := marker{Val: le.Uint64(b[0:]), Size: le.Uint32(b[8:])}
	if len(b) >= 16 {
		m.Type = le.Uint32(b[12:])
	}
	return m
}

func markerName(t uint32) string {
	switch t {
	case markerEOS:
		return "end-of-stream"
	case markerGT:
		return "grain table"
	case markerGD:
		return "grain directory"
	case markerFooter:
		return "footer"
	}
	return fmt.Sprintf("type %d", t)
}
