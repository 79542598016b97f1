package btrfs

import (
	"encoding/binary"
	"fmt"
)

const (
	modeType = 0xf000
	modeDir  = 0x4000
	modeReg  = 0x8000
	modeLnk  = 0xa000

	inodeItemLen = 160

	extentInline   = 0
	extentRegular  = 1
	extentPrealloc = 2
	extentHeader   = 21 // bytes before inline data or the regular extent's fields
	extentRegLen   = extentHeader + 32
)

// Inode is the part of an INODE_ITEM the reader uses, and where it lives.
type Inode struct {
	Tree uint64 // subvolume id
	Num  uint64
	Mode uint32
	Size int64

	root treeRoot
}

// IsDir, IsRegular and IsSymlink report the file type.
func (i *Inode) IsDir() bool     { return i.Mode&modeType == modeDir }
func (i *Inode) IsRegular() bool { return i.Mode&modeType == modeReg }
func (i *Inode) IsSymlink() bool { return i.Mode&modeType == modeLnk }

// readInode reads inode ino of the fs tree at root (subvolume tree).
func (v *volume) readInode(tree uint64, root treeRoot, ino uint64) (*Inode, error) {
	b, err := v.lookupItem(root, key{objectid: ino, typ: typeInodeItem})
	if err != nil {
		return nil, fmt.Errorf("btrfs: %w", err)
	}
	if b == nil {
		return nil, fmt.Errorf("btrfs: subvolume %d: inode %d has no INODE_ITEM", tree, ino)
	}
	if len(b) < inodeItemLen {
		return nil, fmt.Errorf("btrfs: subvolume %d: inode %d: INODE_ITEM of %d bytes, want %d", tree, ino, len(b), inodeItemLen)
	}
	le := binary.LittleEndian
	in := &Inode{Tree: tree, Num: ino, Size: int64(le.Uint64(b[16:])), Mode: le.Uint32(b[52:]), root: root}
	if in.Size < 0 {
		return nil, fmt.Errorf("btrfs: subvolume %d: inode %d: size %d", tree, ino, in.Size)
	}
	return in, nil
}

// readData returns the contents of in, refusing files larger than max.
func (v *volume) readData(in *Inode, max int64) ([]byte, error) {
	if in.Size > max {
		return nil, fmt.Errorf("btrfs: subvolume %d: inode %d: %d bytes, more than the %d this reader reads", in.Tree, in.Num, in.Size, max)
	}
	if in.Size > int64(v.sb.TotalBytes) && in.Size > int64(v.size) {
		return nil, fmt.Errorf("btrfs: subvolume %d: inode %d: %d bytes, larger than the filesystem", in.Tree, in.Num, in.Size)
	}
	// Extents not found (holes, with the no-holes feature) read as zeros.
	data := make([]byte, in.Size)
	var buf extentBuf
	start := key{objectid: in.Num, typ: typeExtentData}
	err := v.scan(in.root, start, func(k key, item []byte) (bool, error) {
		if k.objectid != in.Num || k.typ != typeExtentData {
			return true, nil
		}
		if k.offset >= uint64(in.Size) {
			return true, nil
		}
		// Extents start on sector boundaries (the kernel's tree checker
		// refuses others), which bounds how many one file can have.
		if k.offset%uint64(v.sb.SectorSize) != 0 {
			return true, fmt.Errorf("extent at file offset %d: not a multiple of the sector size %d", k.offset, v.sb.SectorSize)
		}
		if err := v.readExtent(data[k.offset:], item, &buf); err != nil {
			return true, fmt.Errorf("extent at file offset %d: %w", k.offset, err)
		}
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("btrfs: subvolume %d: inode %d: %w", in.Tree, in.Num, err)
	}
	return data, nil
}

// readExtent fills dst (the file from the extent's offset to its end) from
// one EXTENT_DATA item.
func (v *volume) readExtent(dst []byte, item []byte, buf *extentBuf) error {
	le := binary.LittleEndian
	if len(item) < extentHeader {
		return fmt.Errorf("item of %d bytes, want at least %d", len(item), extentHeader)
	}
	ram := le.Uint64(item[8:])
	comp, enc, other, typ := item[16], item[17], le.Uint16(item[18:]), item[20]
	if enc != 0 || other != 0 {
		return fmt.Errorf("encryption %d, encoding %d: not read", enc, other)
	}
	switch typ {
	case extentInline:
		inline := item[extentHeader:]
		if comp == compressNone {
			copy(dst, inline)
			return nil
		}
		if ram > uint64(v.sb.SectorSize) {
			return fmt.Errorf("compressed inline extent of %d bytes, more than a sector (%d)", ram, v.sb.SectorSize)
		}
		out := make([]byte, ram)
		if err := decompress(comp, inline, out, int(v.sb.SectorSize)); err != nil {
			return err
		}
		copy(dst, out)
		return nil
	case extentRegular, extentPrealloc:
	default:
		return fmt.Errorf("extent type %d, want 0 (inline), 1 (regular) or 2 (prealloc)", typ)
	}
	if len(item) < extentRegLen {
		return fmt.Errorf("regular extent item of %d bytes, want %d", len(item), extentRegLen)
	}
	diskBytenr, diskBytes := le.Uint64(item[21:]), le.Uint64(item[29:])
	offset, num := le.Uint64(item[37:]), le.Uint64(item[45:])
	if typ == extentPrealloc || diskBytenr == 0 {
		return nil // prealloc and holes read as zeros, which dst already is
	}
	n := min(num, uint64(len(dst)))
	if comp == compressNone {
		if err := v.readLogical(dst[:n], diskBytenr+offset); err != nil {
			return fmt.Errorf("data at %#x+%d: %w", diskBytenr, offset, err)
		}
		return nil
	}
	// btrfs compresses at most 128 KiB of file into one extent.
	if ram > maxCompressed || diskBytes > maxCompressed || offset > ram || n > ram-offset {
		return fmt.Errorf("compressed extent: %d bytes on disk, %d in memory, window %d+%d: want at most %d and the window inside", diskBytes, ram, offset, num, maxCompressed)
	}
	src, out := buf.get(diskBytes, ram)
	if err := v.readLogical(src, diskBytenr); err != nil {
		return fmt.Errorf("compressed data at %#x: %w", diskBytenr, err)
	}
	if err := decompress(comp, src, out, int(v.sb.SectorSize)); err != nil {
		return fmt.Errorf("compressed data at %#x: %w", diskBytenr, err)
	}
	copy(dst, out[offset:offset+n])
	return nil
}

// extentBuf holds one compressed extent and its expansion, reused across a
// file's extents.
type extentBuf struct{ src, out []byte }

// get returns zeroed buffers of n and ram bytes (both at most maxCompressed).
func (b *extentBuf) get(n, ram uint64) ([]byte, []byte) {
	if b.src == nil {
		b.src, b.out = make([]byte, maxCompressed), make([]byte, maxCompressed)
	}
	src, out := b.src[:n], b.out[:ram]
	clear(out)
	return src, out
}
