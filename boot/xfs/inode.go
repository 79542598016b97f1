package xfs

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
)

// Data fork formats (di_format).
const (
	fmtDev     = 0
	fmtLocal   = 1
	fmtExtents = 2
	fmtBtree   = 3
)

const (
	modeType = 0xf000
	modeDir  = 0x4000
	modeReg  = 0x8000
	modeLnk  = 0xa000

	diflagRealtime = 0x1
	diflag2Nrext64 = 1 << 4

	inodeMagic = 0x494e // "IN"
)

// Inode is the part of an on-disk inode (struct xfs_dinode) the reader uses.
type Inode struct {
	Num      uint64
	Mode     uint16
	Version  uint8
	Format   uint8 // data fork format
	Size     int64
	NExtents uint64 // data fork extents (di_nextents or di_big_nextents)
	Flags    uint16
	Flags2   uint64
	fork     []byte // the data fork, inside the inode
}

// IsDir, IsRegular and IsSymlink report the file type.
func (i *Inode) IsDir() bool     { return i.Mode&modeType == modeDir }
func (i *Inode) IsRegular() bool { return i.Mode&modeType == modeReg }
func (i *Inode) IsSymlink() bool { return i.Mode&modeType == modeLnk }

// inodeOffset returns the device offset of inode ino: its number packs the
// AG, the block in the AG and the slot in the block.
func (f *FS) inodeOffset(ino uint64) (int64, error) {
	slot := ino & (1<<f.sb.InoPBLog - 1)
	off, err := f.fsbOffset(ino >> f.sb.InoPBLog)
	if err != nil || ino>>(uint(f.sb.InoPBLog)+uint(f.sb.AGBlkLog)) >= uint64(f.sb.AGCount) {
		return 0, fmt.Errorf("xfs: inode %d outside the filesystem's %d AGs: %v", ino, f.sb.AGCount, err)
	}
	return off + int64(slot)*f.inodeSize, nil
}

// ReadInode reads inode ino.
func (f *FS) ReadInode(ino uint64) (*Inode, error) {
	off, err := f.inodeOffset(ino)
	if err != nil {
		return nil, err
	}
	raw := make([]byte, f.inodeSize)
	if err := f.readAt(raw, off); err != nil {
		return nil, fmt.Errorf("xfs: inode %d at %#x: %w", ino, off, err)
	}
	be := binary.BigEndian
	if m := be.Uint16(raw); m != inodeMagic {
		return nil, fmt.Errorf("xfs: inode %d at %#x: di_magic %#04x, want 0x494e (IN)", ino, off, m)
	}
	in := &Inode{
		Num:      ino,
		Mode:     be.Uint16(raw[0x02:]),
		Version:  raw[0x04],
		Format:   raw[0x05],
		Size:     int64(be.Uint64(raw[0x38:])),
		NExtents: uint64(be.Uint32(raw[0x4c:])),
		Flags:    be.Uint16(raw[0x5a:]),
	}
	core := 100 // v1 and v2 cores
	switch in.Version {
	case 1, 2:
	case 3:
		core = 176
		in.Flags2 = be.Uint64(raw[0x78:])
		if in.Flags2&diflag2Nrext64 != 0 {
			in.NExtents = be.Uint64(raw[0x18:])
		}
		if n := be.Uint64(raw[0x98:]); n != ino {
			return nil, fmt.Errorf("xfs: inode %d at %#x: di_ino says %d", ino, off, n)
		}
	default:
		return nil, fmt.Errorf("xfs: inode %d at %#x: di_version %d, want 1..3", ino, off, in.Version)
	}
	if in.Size < 0 {
		return nil, fmt.Errorf("xfs: inode %d: di_size %d", ino, in.Size)
	}
	end := len(raw)
	if fo := int(raw[0x52]); fo != 0 {
		end = core + fo*8 // di_forkoff: the attribute fork starts here, in 8-byte units
		if end > len(raw) {
			return nil, fmt.Errorf("xfs: inode %d: di_forkoff %d past the %d-byte inode", ino, fo, len(raw))
		}
	}
	in.fork = raw[core:end]
	return in, nil
}

// mapping is a run of file blocks mapped to filesystem blocks (one bmbt record).
type mapping struct {
	logical, fsb, length uint64
	unwritten            bool // preallocated, reads as zeros
}

// blockMap returns the data fork's mappings, sorted by file offset.
func (f *FS) blockMap(in *Inode) ([]mapping, error) {
	var maps []mapping
	switch in.Format {
	case fmtExtents:
		if in.NExtents > uint64(len(in.fork)/16) {
			return nil, fmt.Errorf("xfs: inode %d: %d extents do not fit its %d-byte data fork", in.Num, in.NExtents, len(in.fork))
		}
		var err error
		if maps, err = f.appendRecs(in, nil, in.fork, int(in.NExtents)); err != nil {
			return nil, err
		}
	case fmtBtree:
		var err error
		if maps, err = f.walkBmbtRoot(in); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("xfs: inode %d: data fork format %d has no block map", in.Num, in.Format)
	}
	sort.Slice(maps, func(i, j int) bool { return maps[i].logical < maps[j].logical })
	return maps, nil
}

// appendRecs decodes n packed 128-bit bmbt records from b.
func (f *FS) appendRecs(in *Inode, out []mapping, b []byte, n int) ([]mapping, error) {
	if len(out)+n > f.maxMaps {
		return nil, fmt.Errorf("xfs: inode %d: more than %d extents", in.Num, f.maxMaps)
	}
	be := binary.BigEndian
	for i := 0; i < n; i++ {
		l0, l1 := be.Uint64(b[i*16:]), be.Uint64(b[i*16+8:])
		m := mapping{
			unwritten: l0>>63 != 0,
			logical:   l0 >> 9 & (1<<54 - 1),
			fsb:       (l0&0x1ff)<<43 | l1>>21,
			length:    l1 & (1<<21 - 1),
		}
		if m.logical+m.length > math.MaxInt64/uint64(f.blockSize) {
			return nil, fmt.Errorf("xfs: inode %d: extent %d: file blocks %d+%d past the largest file offset", in.Num, len(out), m.logical, m.length)
		}
		if _, err := f.extentOffset(m.fsb, m.length); err != nil {
			return nil, fmt.Errorf("xfs: inode %d: extent %d (file block %d): %w", in.Num, len(out), m.logical, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// walkBmbtRoot reads a B+tree data fork: the root (xfs_bmdr_block) sits in
// the inode, its keys and pointers laid out for as many records as fit.
func (f *FS) walkBmbtRoot(in *Inode) ([]mapping, error) {
	be := binary.BigEndian
	if len(in.fork) < 4 {
		return nil, fmt.Errorf("xfs: inode %d: %d-byte B+tree root", in.Num, len(in.fork))
	}
	level := int(be.Uint16(in.fork))
	n := int(be.Uint16(in.fork[2:]))
	maxRecs := (len(in.fork) - 4) / 16
	if level == 0 || level >= maxBtreeLevels || n == 0 || n > maxRecs {
		return nil, fmt.Errorf("xfs: inode %d: B+tree root level %d with %d records, want level 1..%d and 1..%d records", in.Num, level, n, maxBtreeLevels-1, maxRecs)
	}
	w := &bmbtWalk{in: in, nodes: f.maxMaps}
	ptrs := in.fork[4+maxRecs*8:]
	for i := 0; i < n; i++ {
		if err := f.walkBmbt(w, be.Uint64(ptrs[i*8:]), level-1); err != nil {
			return nil, err
		}
	}
	return w.out, nil
}

type bmbtWalk struct {
	in    *Inode
	out   []mapping
	nodes int // bmbt blocks still allowed
	buf   [maxBtreeLevels][]byte
}

// walkBmbt reads bmbt block fsb, which must be at level: each level down is
// one less, so the walk ends however the pointers loop.
func (f *FS) walkBmbt(w *bmbtWalk, fsb uint64, level int) error {
	if w.nodes--; w.nodes < 0 {
		return fmt.Errorf("xfs: inode %d: more than %d B+tree blocks", w.in.Num, f.maxMaps)
	}
	off, err := f.fsbOffset(fsb)
	if err != nil {
		return fmt.Errorf("xfs: inode %d: B+tree block: %w", w.in.Num, err)
	}
	if w.buf[level] == nil {
		w.buf[level] = make([]byte, f.blockSize)
	}
	b := w.buf[level]
	if err := f.readAt(b, off); err != nil {
		return fmt.Errorf("xfs: inode %d: B+tree block %#x: %w", w.in.Num, fsb, err)
	}
	be := binary.BigEndian
	magic, hdr := uint32(0x424d4150), 24 // "BMAP": v4 long-form block header
	if f.v5 {
		magic, hdr = 0x424d4133, 72 // "BMA3": plus blkno, lsn, uuid, owner, crc
	}
	if m := be.Uint32(b); m != magic {
		return fmt.Errorf("xfs: inode %d: B+tree block %#x: bb_magic %#08x, want %#08x", w.in.Num, fsb, m, magic)
	}
	lv, n := int(be.Uint16(b[4:])), int(be.Uint16(b[6:]))
	maxRecs := (len(b) - hdr) / 16
	if lv != level || n == 0 || n > maxRecs {
		return fmt.Errorf("xfs: inode %d: B+tree block %#x: bb_level %d, bb_numrecs %d, want level %d and 1..%d records", w.in.Num, fsb, lv, n, level, maxRecs)
	}
	if level == 0 {
		w.out, err = f.appendRecs(w.in, w.out, b[hdr:], n)
		return err
	}
	// Children overwrite buf[level-1] only, so this block's pointers stay put.
	ptrs := b[hdr+maxRecs*8:]
	for i := 0; i < n; i++ {
		if err := f.walkBmbt(w, be.Uint64(ptrs[i*8:]), level-1); err != nil {
			return err
		}
	}
	return nil
}

// readLogical fills p with the file's bytes from offset off, through maps
// (sorted by file offset); holes and unwritten extents read as zeros.
func (f *FS) readLogical(in *Inode, maps []mapping, off int64, p []byte) error {
	clear(p)
	bs := uint64(f.blockSize)
	start, end := uint64(off), uint64(off)+uint64(len(p))
	i := sort.Search(len(maps), func(i int) bool { return (maps[i].logical+maps[i].length)*bs > start })
	for ; i < len(maps) && maps[i].logical*bs < end; i++ {
		m := maps[i]
		if m.unwritten {
			continue
		}
		lo, hi := max(start, m.logical*bs), min(end, (m.logical+m.length)*bs)
		dev, err := f.fsbOffset(m.fsb)
		if err != nil {
			return fmt.Errorf("xfs: inode %d: %w", in.Num, err)
		}
		if err := f.readAt(p[lo-start:hi-start], dev+int64(lo-m.logical*bs)); err != nil {
			return fmt.Errorf("xfs: inode %d: file bytes %#x..%#x: %w", in.Num, lo, hi, err)
		}
	}
	return nil
}

// readData returns the contents of in, refusing files larger than max.
func (f *FS) readData(in *Inode, max int64) ([]byte, error) {
	if in.Size > max {
		return nil, fmt.Errorf("xfs: inode %d: %d bytes, more than the %d this reader reads", in.Num, in.Size, max)
	}
	if in.Flags&diflagRealtime != 0 {
		return nil, fmt.Errorf("xfs: inode %d: a realtime file, whose data is on the realtime device", in.Num)
	}
	if in.Format == fmtLocal {
		if in.Size > int64(len(in.fork)) {
			return nil, fmt.Errorf("xfs: inode %d: %d local bytes do not fit its %d-byte data fork", in.Num, in.Size, len(in.fork))
		}
		return append([]byte(nil), in.fork[:in.Size]...), nil
	}
	maps, err := f.blockMap(in)
	if err != nil {
		return nil, err
	}
	data := make([]byte, in.Size)
	if err := f.readLogical(in, maps, 0, data); err != nil {
		return nil, err
	}
	return data, nil
}
