package vdi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"syscall"

	"github.com/vmconv/vmconv/disk"
)

// Offsets of the header fields that errors name.
const (
	offSignature     = 0x40
	offVersion       = 0x44
	offHeaderSize    = 0x48
	offImageType     = 0x4C
	offOffsetBmap    = 0x154
	offOffsetData    = 0x158
	offSectorSize    = 0x168
	offDiskSize      = 0x170
	offBlockSize     = 0x178
	offBlockExtra    = 0x17C
	offBlocksInImage = 0x180
	offBlocksAlloc   = 0x184
	offUUIDImage     = 0x188
	offUUIDLastSnap  = 0x198
	offUUIDLink      = 0x1A8
	offUUIDParent    = 0x1B8
)

// Info describes an open VDI.
type Info struct {
	Filename         string `json:"filename"`
	Subformat        string `json:"subformat"` // dynamic or static
	VirtualSize      int64  `json:"virtual-size"`
	ActualSize       int64  `json:"actual-size"`
	Version          string `json:"version"`
	Creator          string `json:"creator"` // the pre-header's text
	Description      string `json:"description,omitempty"`
	UUID             string `json:"uuid"`
	ModificationUUID string `json:"modification-uuid"`
	BlockSize        int64  `json:"block-size"`
	Blocks           int64  `json:"blocks"`
	AllocatedBlocks  int64  `json:"allocated-blocks"` // counted in the block map
	ZeroBlocks       int64  `json:"zero-blocks,omitempty"`
}

// Image is an open VDI. ReadAt and Extents are safe for concurrent use.
type Image struct {
	path     string
	r        io.ReaderAt
	raw      *disk.Raw // the file, for its holes; nil when read from memory
	fileSize int64
	hdr      Header

	size      int64 // the disk size rounded up to a sector, as qemu reads it
	blockSize int64
	extra     int64
	dataOff   int64
	bmap      []uint32
	info      Info
}

var _ disk.Image = (*Image)(nil)

// Detect reports whether head is the start of a VDI: the signature after
// the pre-header's text, which is all qemu's probe looks at.
func Detect(head []byte) bool {
	return len(head) >= preHeaderSize && binary.LittleEndian.Uint32(head[offSignature:]) == signature
}

// Open opens a dynamic or static VDI.
func Open(path string) (*Image, error) {
	raw, err := disk.OpenRaw(path)
	if err != nil {
		return nil, fmt.Errorf("vdi: %w", err)
	}
	img, err := newImage(path, raw, raw.Size())
	if err != nil {
		raw.Close()
		return nil, err
	}
	img.raw = raw
	if fi, err := os.Stat(path); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			img.info.ActualSize = st.Blocks * 512
		}
	}
	return img, nil
}

// newImage reads and checks the header and the block map of a file of
// fileSize bytes read through r; every size and offset is checked against
// the file before anything is allocated.
func newImage(path string, r io.ReaderAt, fileSize int64) (*Image, error) {
	img := &Image{path: path, r: r, fileSize: fileSize}
	if err := img.readHeader(); err != nil {
		return nil, err
	}
	if err := img.readMap(); err != nil {
		return nil, err
	}
	if f := img.mapFaults(1); len(f) > 0 {
		return nil, fmt.Errorf("vdi %s: %s", path, f[0])
	}
	img.fillInfo()
	return img, nil
}

func (img *Image) readHeader() error {
	if img.fileSize < preHeaderSize+headerSize1 {
		return fmt.Errorf("vdi %s: file of %d bytes is too short for a header (%d bytes)", img.path, img.fileSize, preHeaderSize+headerSize1)
	}
	b := make([]byte, min(img.fileSize, headerEnd))
	if err := img.readFile(b, 0); err != nil {
		return err
	}
	img.hdr = decodeHeader(b)
	if err := img.checkKind(); err != nil {
		return err
	}
	return img.checkLayout()
}

// fieldErr is an error about the header field at off.
func (img *Image) fieldErr(field string, off int, format string, args ...any) error {
	return fmt.Errorf("vdi %s: header: %s at %#x: %s", img.path, field, off, fmt.Sprintf(format, args...))
}

// checkKind checks that the file is a VDI this package reads: signature,
// version, and an image type that needs no parent.
func (img *Image) checkKind() error {
	h := &img.hdr
	if h.Signature != signature {
		return img.fieldErr("signature", offSignature, "%#08x, want %#08x", h.Signature, signature)
	}
	if h.Version>>16 != 1 {
		return img.fieldErr("version", offVersion, "%d.%d, want 1.x", h.Version>>16, h.Version&0xFFFF)
	}
	const parentOnly = "its parent is named only by VirtualBox's .vbox file: clone it into a standalone image first (VBoxManage clonemedium)"
	switch h.ImageType {
	case typeDynamic, typeStatic:
	case typeDiff:
		return img.fieldErr("image type", offImageType, "4, a differencing image: %s", parentOnly)
	case typeUndo:
		return img.fieldErr("image type", offImageType, "3, an undo image: %s", parentOnly)
	default:
		return img.fieldErr("image type", offImageType, "%d, want 1 (dynamic) or 2 (static)", h.ImageType)
	}
	if !isNull(h.UUIDLink) {
		return img.fieldErr("link UUID", offUUIDLink, "%s names a parent, as in a differencing image: %s", uuidString(h.UUIDLink), parentOnly)
	}
	if !isNull(h.UUIDParent) {
		return img.fieldErr("parent UUID", offUUIDParent, "%s names a parent, as in a differencing image: %s", uuidString(h.UUIDParent), parentOnly)
	}
	return nil
}

// checkLayout checks the sizes and offsets against each other and the
// file, as VirtualBox and qemu check them: the header before the block
// map, the map before the data area and inside the file, and enough blocks
// for the disk size.
func (img *Image) checkLayout() error {
	h := &img.hdr
	if h.HeaderSize < headerSize1 {
		return img.fieldErr("header size", offHeaderSize, "%#x, smaller than a version 1 header (%#x)", h.HeaderSize, headerSize1)
	}
	if hdrEnd := int64(preHeaderSize) + int64(h.HeaderSize); int64(h.OffsetBmap) < hdrEnd {
		return img.fieldErr("block map offset", offOffsetBmap, "%#x lies inside the header, which ends at %#x", h.OffsetBmap, hdrEnd)
	}
	bs := int64(h.BlockSize)
	if bs < minBlockSize || bs > maxBlockSize || bits.OnesCount64(uint64(bs)) != 1 {
		return img.fieldErr("block size", offBlockSize, "%d, want a power of two from %d to %d", bs, minBlockSize, int64(maxBlockSize))
	}
	if h.BlockExtra != 0 && bits.OnesCount32(h.BlockExtra) != 1 {
		return img.fieldErr("block extra size", offBlockExtra, "%d, want 0 or a power of two", h.BlockExtra)
	}
	blocks := int64(h.BlocksInImage)
	if blocks > maxBlocks {
		return img.fieldErr("blocks in image", offBlocksInImage, "%d, more than the %d a block map holds", blocks, maxBlocks)
	}
	if h.DiskSize > uint64(blocks*bs) {
		return img.fieldErr("disk size", offDiskSize, "%d needs %d blocks of %d bytes, the header has %d", h.DiskSize, (h.DiskSize+uint64(bs)-1)/uint64(bs), bs, blocks)
	}
	if end := int64(h.OffsetBmap) + 4*blocks; end > img.fileSize {
		return img.fieldErr("block map offset", offOffsetBmap, "map at %#x of %d entries ends at %#x, past the end of the file (%#x)", h.OffsetBmap, blocks, end, img.fileSize)
	} else if int64(h.OffsetData) < end {
		return img.fieldErr("data offset", offOffsetData, "%#x lies inside the block map, which ends at %#x", h.OffsetData, end)
	}
	// qemu reads a size that is no multiple of a sector (VBoxManage
	// convertfromraw writes them) rounded up; blocks*bs is a multiple.
	img.size = int64(h.DiskSize+sectorSize-1) / sectorSize * sectorSize
	img.blockSize, img.extra, img.dataOff = bs, int64(h.BlockExtra), int64(h.OffsetData)
	return nil
}

// readMap reads the block map, whose place checkLayout found in the file.
func (img *Image) readMap() error {
	n := int64(img.hdr.BlocksInImage)
	b := make([]byte, 4*n)
	if err := img.readFile(b, int64(img.hdr.OffsetBmap)); err != nil {
		return err
	}
	img.bmap = make([]uint32, n)
	for i := range img.bmap {
		img.bmap[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return nil
}

// fault is a bad block map entry.
type fault struct {
	entry int64
	off   int64 // of the entry in the file
	what  string
}

func (f fault) String() string {
	return fmt.Sprintf("block map entry %d at %#x: %s", f.entry, f.off, f.what)
}

// mapFaults lists up to limit (0: all) entries whose data block is not one
// of the image's, lies past the end of the file, or is another entry's.
func (img *Image) mapFaults(limit int) []fault {
	var out []fault
	blocks := int64(len(img.bmap))
	owner := make([]uint32, blocks) // entry+1 that holds each data block
	for i, e := range img.bmap {
		if e == unallocated || e == zeroBlock {
			continue
		}
		var what string
		if int64(e) >= blocks {
			what = fmt.Sprintf("data block %d, past the image's %d blocks", e, blocks)
		} else if at, end := img.dataPos(e), img.dataPos(e)+img.used(int64(i)); end > img.fileSize {
			what = fmt.Sprintf("data block %d at %#x ends at %#x, past the end of the file (%#x)", e, at, end, img.fileSize)
		} else if owner[e] != 0 {
			what = fmt.Sprintf("data block %d is also entry %d's", e, owner[e]-1)
		} else {
			owner[e] = uint32(i) + 1
			continue
		}
		out = append(out, fault{int64(i), int64(img.hdr.OffsetBmap) + 4*int64(i), what})
		if len(out) == limit {
			break
		}
	}
	return out
}

// dataPos is where data block e's bytes start in the file.
func (img *Image) dataPos(e uint32) int64 {
	return img.dataOff + int64(e)*(img.blockSize+img.extra) + img.extra
}

// used is how many bytes of block i the disk holds: a whole block but for
// the last. Only those need be in the file.
func (img *Image) used(i int64) int64 {
	return min(max(img.size-i*img.blockSize, 0), img.blockSize)
}

func (img *Image) fillInfo() {
	h := &img.hdr
	in := &img.info
	in.Filename = img.path
	in.Subformat = map[uint32]string{typeDynamic: "dynamic", typeStatic: "static"}[h.ImageType]
	in.VirtualSize = img.size
	in.Version = fmt.Sprintf("%d.%d", h.Version>>16, h.Version&0xFFFF)
	in.Creator = h.text()
	in.Description = cString(h.Description[:])
	in.UUID = uuidString(h.UUIDImage)
	in.ModificationUUID = uuidString(h.UUIDLastSnap)
	in.BlockSize = img.blockSize
	in.Blocks = int64(len(img.bmap))
	for _, e := range img.bmap {
		switch e {
		case unallocated:
		case zeroBlock:
			in.ZeroBlocks++
		default:
			in.AllocatedBlocks++
		}
	}
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// Info describes the image.
func (img *Image) Info() Info { return img.info }

// Size is the virtual size in bytes.
func (img *Image) Size() int64 { return img.size }

// Close closes the file.
func (img *Image) Close() error {
	if img.raw == nil {
		return nil
	}
	err := img.raw.Close()
	img.raw = nil
	return err
}

// ReadAt reads the guest-visible bytes at off.
func (img *Image) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("vdi %s: read at %d: %w", img.path, off, disk.ErrOutOfRange)
	}
	if off >= img.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := len(p)
	var eof error
	if int64(n) > img.size-off {
		n, eof = int(img.size-off), io.EOF
	}
	for q, o := p[:n], off; len(q) > 0; {
		b, in := o/img.blockSize, o%img.blockSize
		k := min(int64(len(q)), img.blockSize-in)
		if e := img.bmap[b]; e == unallocated || e == zeroBlock {
			clear(q[:k])
		} else if err := img.readFile(q[:k], img.dataPos(e)+in); err != nil {
			return 0, err
		}
		q, o = q[k:], o+k
	}
	return n, eof
}

func (img *Image) readFile(p []byte, at int64) error {
	n, err := img.r.ReadAt(p, at)
	if err != nil && !(errors.Is(err, io.EOF) && n == len(p)) {
		return fmt.Errorf("vdi %s: read at %#x: %w", img.path, at, err)
	}
	return nil
}

// Extents maps [off, off+length) block by block: unallocated blocks,
// zero (discarded) blocks, and data blocks, where the file's own holes
// (a static image qemu made is mostly holes) are zero.
func (img *Image) Extents(off, length int64) ([]disk.Extent, error) {
	if off < 0 || length < 0 {
		return nil, fmt.Errorf("vdi %s: extents at %d+%d: %w", img.path, off, length, disk.ErrOutOfRange)
	}
	end := img.size
	if length < img.size-off {
		end = off + length
	}
	var out []disk.Extent
	add := func(o, l int64, k disk.Kind) {
		if n := len(out); n > 0 && out[n-1].Kind == k && out[n-1].End() == o {
			out[n-1].Length += l
		} else if l > 0 {
			out = append(out, disk.Extent{Offset: o, Length: l, Kind: k})
		}
	}
	for off < end {
		b := off / img.blockSize
		e := img.bmap[b]
		n := min(end, (b+1)*img.blockSize) - off
		switch e {
		case unallocated:
			add(off, n, disk.Unallocated)
		case zeroBlock:
			add(off, n, disk.Zero)
		default:
			// Blocks whose data follow each other in the file are
			// asked for their holes at once.
			for k := int64(1); img.extra == 0 && off+n < end && img.bmap[b+k] == e+uint32(k); k++ {
				n = min(end, (b+k+1)*img.blockSize) - off
			}
			if err := img.dataExtents(off, n, img.dataPos(e)+off%img.blockSize, add); err != nil {
				return nil, err
			}
		}
		off += n
	}
	return out, nil
}

// dataExtents adds the guest range [off, off+n), stored at file offset at,
// as data where the file holds data and as zero where it has holes.
func (img *Image) dataExtents(off, n, at int64, add func(o, l int64, k disk.Kind)) error {
	done := int64(0)
	if img.raw != nil {
		ext, err := img.raw.Extents(at, n)
		if err != nil {
			return fmt.Errorf("vdi %s: holes at %#x: %w", img.path, at, err)
		}
		for _, x := range ext {
			if x.Offset != at+done || x.End() > at+n {
				break
			}
			k := disk.Data
			if x.Kind != disk.Data {
				k = disk.Zero
			}
			add(off+done, x.Length, k)
			done += x.Length
		}
	}
	add(off+done, n-done, disk.Data)
	return nil
}
