// Package vhdx reads and writes Microsoft's VHDX: the file identifier, both
// headers, both region tables (CRC-32C checked), the metadata region and the
// BAT with its interleaved sector bitmap entries. A non-empty log (an image
// not closed cleanly) is refused by name; replay is not supported, nor are
// differencing VHDX. The writer produces dynamic (and fixed) images laid out
// as qemu-img lays them out.
package vhdx

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"strings"
)

const (
	kib = 1 << 10
	mib = 1 << 20

	headerOff1 = 64 * kib
	headerOff2 = 128 * kib
	regionOff1 = 192 * kib
	regionOff2 = 256 * kib
	headerLen  = 4 * kib
	regionLen  = 64 * kib

	maxEntries     = 2047
	maxBlockSize   = 256 * mib
	minBlockSize   = 1 * mib
	maxVirtualSize = 64 << 40
	// sectorsPerChunk: each sector bitmap block covers 2^23 sectors.
	sectorsPerChunk = 1 << 23

	// BAT entry states.
	payloadNotPresent = 0
	payloadUndefined  = 1
	payloadZero       = 2
	payloadUnmapped   = 3
	payloadFull       = 6
	payloadPartial    = 7
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// GUID is a GUID in its on-disk (Windows, mixed-endian) byte order.
type GUID [16]byte

func mustGUID(s string) GUID {
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 {
		panic("bad GUID " + s)
	}
	var g GUID
	binary.LittleEndian.PutUint32(g[0:], binary.BigEndian.Uint32(b[0:]))
	binary.LittleEndian.PutUint16(g[4:], binary.BigEndian.Uint16(b[4:]))
	binary.LittleEndian.PutUint16(g[6:], binary.BigEndian.Uint16(b[6:]))
	copy(g[8:], b[8:])
	return g
}

func (g GUID) String() string {
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X", binary.LittleEndian.Uint32(g[0:]), binary.LittleEndian.Uint16(g[4:]),
		binary.LittleEndian.Uint16(g[6:]), g[8:10], g[10:])
}

var (
	regionBAT      = mustGUID("2DC27766-F623-4200-9D64-115E9BFD4A08")
	regionMetadata = mustGUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")

	itemFileParams   = mustGUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
	itemDiskSize     = mustGUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
	itemDiskID       = mustGUID("BECA12AB-B2E6-4523-93EF-C309E000C746")
	itemLogicalSect  = mustGUID("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
	itemPhysicalSect = mustGUID("CDA348C7-445D-4471-9CC9-E9885251C556")
	itemParentLoc    = mustGUID("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
)

// Header is one of the two 4 KiB headers, little-endian.
type Header struct {
	Signature      [4]byte // "head"
	Checksum       uint32  // CRC-32C of the 4 KiB with this field zero
	SequenceNumber uint64
	FileWriteGUID  GUID
	DataWriteGUID  GUID
	LogGUID        GUID
	LogVersion     uint16
	Version        uint16
	LogLength      uint32
	LogOffset      uint64
}

// RegionTableHeader starts a 64 KiB region table.
type RegionTableHeader struct {
	Signature  [4]byte // "regi"
	Checksum   uint32  // CRC-32C of the 64 KiB
	EntryCount uint32
	Reserved   uint32
}

// RegionEntry places one region.
type RegionEntry struct {
	GUID       GUID
	FileOffset uint64
	Length     uint32
	Required   uint32
}

// MetadataTableHeader starts the metadata region.
type MetadataTableHeader struct {
	Signature  [8]byte // "metadata"
	Reserved   uint16
	EntryCount uint16
	Reserved2  [20]byte
}

// MetadataEntry places one metadata item inside the region.
type MetadataEntry struct {
	ItemID   GUID
	Offset   uint32
	Length   uint32
	Flags    uint32 // bit 0 user, bit 1 virtual disk, bit 2 required
	Reserved uint32
}

const (
	metaIsVirtualDisk = 1 << 1
	metaIsRequired    = 1 << 2
)

// FileParameters is the file parameters metadata item.
type FileParameters struct {
	BlockSize uint32
	Flags     uint32 // bit 0 leave blocks allocated, bit 1 has parent
}

// checksumOK verifies a CRC-32C stored at b[4:8] over b with it zeroed.
func checksumOK(b []byte) (stored, computed uint32) {
	stored = binary.LittleEndian.Uint32(b[4:])
	c := crc32.Update(0, castagnoli, b[:4])
	c = crc32.Update(c, castagnoli, []byte{0, 0, 0, 0})
	c = crc32.Update(c, castagnoli, b[8:])
	return stored, c
}

// seal writes the CRC-32C of b into b[4:8].
func seal(b []byte) {
	binary.LittleEndian.PutUint32(b[4:], 0)
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b, castagnoli))
}

// geometry derived from the block size, as the specification defines it.
type geometry struct {
	blockSize   int64
	sectorSize  int64
	chunkRatio  int64 // payload blocks per sector bitmap block
	dataBlocks  int64
	batEntries  int64
	virtualSize int64
}

func newGeometry(size, blockSize, sectorSize int64) geometry {
	g := geometry{blockSize: blockSize, sectorSize: sectorSize, virtualSize: size}
	g.chunkRatio = sectorsPerChunk * sectorSize / blockSize
	g.dataBlocks = (size + blockSize - 1) / blockSize
	// As qemu counts them for a disk without a parent: a sector bitmap
	// entry after every chunkRatio payload entries, none after the last.
	g.batEntries = g.dataBlocks
	if g.dataBlocks > 0 {
		g.batEntries += (g.dataBlocks - 1) / g.chunkRatio
	}
	return g
}

// batIndex is the BAT entry of payload block b.
func (g geometry) batIndex(b int64) int64 { return b + b/g.chunkRatio }
