// Package vdi reads and writes VirtualBox's VDI: dynamic ("normal") and
// static ("fixed") images, as VirtualBox and qemu-img write them.
// Differencing and undo images, whose parent only VirtualBox's .vbox
// names, are refused.
package vdi

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strings"
)

const (
	signature = 0xBEDA107F
	// version11 is the only version qemu reads; VirtualBox reads any 1.x.
	version11 = 0x00010001

	preHeaderSize = 0x48
	// headerSize1 is the version 1 header up to the parent's UUID, as
	// qemu writes it; headerSize1Plus adds the LCHS geometry VirtualBox
	// writes.
	headerSize1     = 0x180
	headerSize1Plus = 0x190
	headerEnd       = preHeaderSize + headerSize1Plus

	sectorSize = 512

	typeDynamic = 1 // VirtualBox's "normal"
	typeStatic  = 2 // VirtualBox's "fixed"
	typeUndo    = 3
	typeDiff    = 4

	// Block map entries that are not data block indices.
	unallocated = 0xFFFFFFFF // reads as zeros (or the parent's, in a diff)
	zeroBlock   = 0xFFFFFFFE // discarded: reads as zeros

	defaultBlockSize = 1 << 20
	minBlockSize     = sectorSize
	maxBlockSize     = 1 << 31 // the largest power of two a u32 holds
	// maxBlocks is qemu's VDI_BLOCKS_IN_IMAGE_MAX: the map's bytes fit a u32.
	maxBlocks = 0x3FFFFFFF

	// bmapOffset is where qemu and vmconv put the block map: the first
	// sector after the header.
	bmapOffset = 0x200
	// dataAlign aligns the data area as VirtualBox aligns it, so that
	// blocks lie on 1 MiB boundaries of the host file.
	dataAlign = 1 << 20
)

// textVirtualBox is the pre-header text VirtualBox writes; the text is not
// checked by VirtualBox or qemu, but some other readers match it.
const textVirtualBox = "<<< Oracle VM VirtualBox Disk Image >>>\n"

// Header is the pre-header and the version 1.1 header at the start of
// every VDI, little-endian, as qemu's VdiHeader and VirtualBox's
// VDIPREHEADER + VDIHEADER1PLUS lay them out.
type Header struct {
	Text            [64]byte // "<<< ... Disk Image >>>\n", zero padded
	Signature       uint32
	Version         uint32
	HeaderSize      uint32 // bytes of header after the pre-header
	ImageType       uint32
	ImageFlags      uint32
	Description     [256]byte
	OffsetBmap      uint32
	OffsetData      uint32
	Legacy          Geometry // unused by qemu and VirtualBox 1.1
	Unused1         uint32
	DiskSize        uint64
	BlockSize       uint32
	BlockExtra      uint32 // bytes of private data before each block's data
	BlocksInImage   uint32
	BlocksAllocated uint32
	UUIDImage       [16]byte // VirtualBox's byte order (little-endian fields)
	UUIDLastSnap    [16]byte // the modification UUID
	UUIDLink        [16]byte // the parent's UUID, in a differencing image
	UUIDParent      [16]byte // the parent's modification UUID
	LCHS            Geometry // when HeaderSize >= headerSize1Plus
}

// Geometry is a CHS geometry and its sector size.
type Geometry struct {
	Cylinders, Heads, Sectors, SectorSize uint32
}

// decodeHeader decodes the first headerEnd bytes of a file (fewer when the
// header has no LCHS geometry; the rest zero).
func decodeHeader(b []byte) Header {
	var h Header
	buf := make([]byte, headerEnd)
	copy(buf, b)
	binary.Decode(buf, binary.LittleEndian, &h)
	if h.HeaderSize < headerSize1Plus {
		h.LCHS = Geometry{} // those bytes are not the header's
	}
	return h
}

func (h *Header) encode() []byte {
	b := make([]byte, headerEnd)
	binary.Encode(b, binary.LittleEndian, h)
	return b
}

// text is the pre-header's text without its frame: "QEMU VM Virtual Disk
// Image", "Oracle VM VirtualBox Disk Image".
func (h *Header) text() string {
	s, _, _ := strings.Cut(string(h.Text[:]), "\x00")
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "<<<")
	s = strings.TrimSuffix(s, ">>>")
	return strings.TrimSpace(s)
}

// uuidString formats a UUID stored as VirtualBox stores it (its first
// three fields little-endian) in the usual notation, as VBoxManage shows it.
func uuidString(u [16]byte) string {
	le := binary.LittleEndian
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x", le.Uint32(u[0:]), le.Uint16(u[4:]), le.Uint16(u[6:]), u[8:10], u[10:16])
}

// newUUID is a random (version 4) UUID in VirtualBox's byte order.
func newUUID() [16]byte {
	var u [16]byte
	rand.Read(u[:])
	u[6] = u[6]&0x0F | 0x40 // version 4, in the usual order
	u[8] = u[8]&0x3F | 0x80 // RFC 4122 variant
	le, be := binary.LittleEndian, binary.BigEndian
	le.PutUint32(u[0:], be.Uint32(u[0:]))
	le.PutUint16(u[4:], be.Uint16(u[4:]))
	le.PutUint16(u[6:], be.Uint16(u[6:]))
	return u
}

func isNull(u [16]byte) bool { return u == [16]byte{} }

// layout is where a new image's parts go.
type layout struct {
	size    int64 // disk size: the size asked for, rounded up to a sector
	blocks  int64
	dataOff int64
}

// layoutFor lays out an image of size bytes with 1 MiB blocks: the header,
// the block map at bmapOffset, the data area at the next 1 MiB boundary.
func layoutFor(size int64) (layout, error) {
	if size < 0 || size > maxBlocks*defaultBlockSize {
		return layout{}, fmt.Errorf("size %d is not one a VDI holds (0 to %d)", size, int64(maxBlocks)*defaultBlockSize)
	}
	l := layout{size: (size + sectorSize - 1) / sectorSize * sectorSize}
	l.blocks = (l.size + defaultBlockSize - 1) / defaultBlockSize
	l.dataOff = (bmapOffset + 4*l.blocks + dataAlign - 1) / dataAlign * dataAlign
	if l.dataOff > 0xFFFFFFFF {
		// The data offset is a u32: a few blocks short of qemu's limit.
		return layout{}, fmt.Errorf("size %d needs a block map too large for a VDI", size)
	}
	return l, nil
}
