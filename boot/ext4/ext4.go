// Package ext4 is a small read-only reader of ext2, ext3 and ext4 filesystems
// through an io.ReaderAt: enough to find and read a guest's /boot.
//
// It reads extent trees of any (bounded) depth and classic block maps, 64-bit
// group descriptors, flex_bg and meta_bg layouts, linear and htree directories
// (htree blocks are scanned linearly), inline data, fast and slow symlinks.
// Checksums (metadata_csum) are not verified. Every on-disk number is checked
// before it sizes an allocation or a read.
package ext4

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/vmconv/vmconv/boot/pathwalk"
)

// Limits.
const (
	MaxFileSize   = 512 << 20 // largest file ReadFile returns
	maxDirSize    = 64 << 20
	maxExtentDep  = 5
	maxExtents    = 1 << 20
	maxTreeNodes  = 1 << 16 // extent tree blocks read for one file
	superblockOff = 1024
)

const (
	incompatCompression = 0x1
	incompatFiletype    = 0x2
	incompatRecover     = 0x4
	incompatJournalDev  = 0x8
	incompatMetaBG      = 0x10
	incompatExtents     = 0x40
	incompat64Bit       = 0x80
	incompatInlineData  = 0x8000
	incompatEncrypt     = 0x10000

	roCompatSparseSuper = 0x1

	flagIndex      = 0x1000
	flagExtents    = 0x80000
	flagInlineData = 0x10000000

	modeType = 0xf000
	modeDir  = 0x4000
	modeReg  = 0x8000
	modeLnk  = 0xa000
)

// Superblock holds the superblock fields the reader uses, at their on-disk
// offsets (see Open).
type Superblock struct {
	InodesCount     uint32
	BlocksCount     uint64
	FirstDataBlock  uint32
	LogBlockSize    uint32
	BlocksPerGroup  uint32
	InodesPerGroup  uint32
	Magic           uint16
	RevLevel        uint32
	InodeSize       uint16
	FeatureCompat   uint32
	FeatureIncompat uint32
	FeatureROCompat uint32
	UUID            [16]byte
	VolumeName      [16]byte
	DescSize        uint16
	FirstMetaBG     uint32
}

// FS is an open filesystem.
type FS struct {
	r         io.ReaderAt
	size      int64
	sb        Superblock
	blockSize int64
	groups    int64
	descSize  int64
	inodeSize int64
}

// Open reads the superblock of the filesystem in r (size bytes long).
func Open(r io.ReaderAt, size int64) (*FS, error) {
	b := make([]byte, 1024)
	if err := readFull(r, b, superblockOff); err != nil {
		return nil, fmt.Errorf("ext4: superblock at %#x: %w", superblockOff, err)
	}
	le := binary.LittleEndian
	sb := Superblock{
		InodesCount:     le.Uint32(b[0x0:]),
		BlocksCount:     uint64(le.Uint32(b[0x4:])),
		FirstDataBlock:  le.Uint32(b[0x14:]),
		LogBlockSize:    le.Uint32(b[0x18:]),
		BlocksPerGroup:  le.Uint32(b[0x20:]),
		InodesPerGroup:  le.Uint32(b[0x28:]),
		Magic:           le.Uint16(b[0x38:]),
		RevLevel:        le.Uint32(b[0x4c:]),
		InodeSize:       128,
		FeatureCompat:   le.Uint32(b[0x5c:]),
		FeatureIncompat: le.Uint32(b[0x60:]),
		FeatureROCompat: le.Uint32(b[0x64:]),
		DescSize:        le.Uint16(b[0xfe:]),
		FirstMetaBG:     le.Uint32(b[0x104:]),
	}
	copy(sb.UUID[:], b[0x68:])
	copy(sb.VolumeName[:], b[0x78:])
	if sb.Magic != 0xef53 {
		return nil, fmt.Errorf("ext4: superblock at %#x: magic %#04x, want 0xef53", superblockOff, sb.Magic)
	}
	if sb.RevLevel >= 1 {
		sb.InodeSize = le.Uint16(b[0x58:])
	}
	if sb.FeatureIncompat&incompat64Bit != 0 {
		sb.BlocksCount |= uint64(le.Uint32(b[0x150:])) << 32
	}
	f := &FS{r: r, size: size, sb: sb}
	if sb.LogBlockSize > 6 {
		return nil, fmt.Errorf("ext4: s_log_block_size %d, want 0..6 (1 KiB..64 KiB blocks)", sb.LogBlockSize)
	}
	f.blockSize = 1024 << sb.LogBlockSize
	if sb.InodeSize < 128 || int64(sb.InodeSize) > f.blockSize || sb.InodeSize&(sb.InodeSize-1) != 0 {
		return nil, fmt.Errorf("ext4: inode size %d, want a power of two in 128..%d", sb.InodeSize, f.blockSize)
	}
	f.inodeSize = int64(sb.InodeSize)
	if bad := sb.FeatureIncompat & (incompatCompression | incompatJournalDev | incompatEncrypt); bad != 0 {
		return nil, fmt.Errorf("ext4: unsupported incompatible features %#x", bad)
	}
	if sb.BlocksPerGroup == 0 || sb.InodesPerGroup == 0 || int64(sb.BlocksPerGroup) > 8*f.blockSize {
		return nil, fmt.Errorf("ext4: %d blocks and %d inodes per group, want 1..%d blocks and at least 1 inode", sb.BlocksPerGroup, sb.InodesPerGroup, 8*f.blockSize)
	}
	if sb.BlocksCount == 0 || sb.BlocksCount > uint64(size/f.blockSize)+1 {
		// Allow a partial last block; more than the device holds is corruption.
		if sb.BlocksCount == 0 || int64(sb.BlocksCount) > size/f.blockSize {
			return nil, fmt.Errorf("ext4: %d blocks of %d bytes, but the device holds %d bytes", sb.BlocksCount, f.blockSize, size)
		}
	}
	if uint64(sb.FirstDataBlock) >= sb.BlocksCount {
		return nil, fmt.Errorf("ext4: first data block %d past %d blocks", sb.FirstDataBlock, sb.BlocksCount)
	}
	f.groups = int64((sb.BlocksCount - uint64(sb.FirstDataBlock) + uint64(sb.BlocksPerGroup) - 1) / uint64(sb.BlocksPerGroup))
	if uint64(sb.InodesCount) > uint64(f.groups)*uint64(sb.InodesPerGroup) {
		return nil, fmt.Errorf("ext4: %d inodes but %d groups of %d", sb.InodesCount, f.groups, sb.InodesPerGroup)
	}
	f.descSize = 32
	if sb.FeatureIncompat&incompat64Bit != 0 {
		f.descSize = int64(sb.DescSize)
		if f.descSize < 64 || f.descSize > 1024 || f.descSize&(f.descSize-1) != 0 {
			return nil, fmt.Errorf("ext4: group descriptor size %d, want a power of two in 64..1024", sb.DescSize)
		}
	}
	return f, nil
}

// UUID returns the filesystem UUID as GRUB and fstab spell it.
func (f *FS) UUID() string {
	u := f.sb.UUID
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// Label returns the volume name.
func (f *FS) Label() string {
	return strings.TrimRight(string(f.sb.VolumeName[:]), "\x00")
}

// Superblock returns the parsed superblock.
func (f *FS) Superblock() Superblock { return f.sb }

// BlockSize returns the block size in bytes.
func (f *FS) BlockSize() int64 { return f.blockSize }

// Inode is the part of an on-disk inode the reader uses.
type Inode struct {
	Num   uint32
	Mode  uint16
	Size  int64
	Flags uint32
	Block [60]byte // i_block: extent tree root, block map or inline data
	raw   []byte
}

// IsDir, IsRegular and IsSymlink report the file type.
func (i *Inode) IsDir() bool     { return i.Mode&modeType == modeDir }
func (i *Inode) IsRegular() bool { return i.Mode&modeType == modeReg }
func (i *Inode) IsSymlink() bool { return i.Mode&modeType == modeLnk }

// groupDescBlock returns the block holding group g's descriptor and its offset in it.
func (f *FS) groupDescOffset(g int64) (int64, error) {
	perBlock := f.blockSize / f.descSize
	first := int64(f.sb.FirstDataBlock) + 1
	if f.sb.FeatureIncompat&incompatMetaBG != 0 && g/perBlock >= int64(f.sb.FirstMetaBG) {
		// meta_bg: each metagroup's descriptors sit in its first group,
		// after that group's superblock backup if it has one.
		mg := g / perBlock
		grp := mg * perBlock
		blk := int64(f.sb.FirstDataBlock) + grp*int64(f.sb.BlocksPerGroup)
		if f.hasSuper(grp) {
			blk++
		}
		return blk*f.blockSize + (g%perBlock)*f.descSize, nil
	}
	return first*f.blockSize + g*f.descSize, nil
}

func (f *FS) hasSuper(g int64) bool {
	if f.sb.FeatureROCompat&roCompatSparseSuper == 0 || g <= 1 {
		return true
	}
	for _, b := range []int64{3, 5, 7} {
		n := b
		for n < g {
			n *= b
		}
		if n == g {
			return true
		}
	}
	return false
}

// ReadInode reads inode n.
func (f *FS) ReadInode(n uint32) (*Inode, error) {
	if n == 0 || n > f.sb.InodesCount {
		return nil, fmt.Errorf("ext4: inode %d out of range 1..%d", n, f.sb.InodesCount)
	}
	g := int64(n-1) / int64(f.sb.InodesPerGroup)
	idx := int64(n-1) % int64(f.sb.InodesPerGroup)
	doff, err := f.groupDescOffset(g)
	if err != nil {
		return nil, err
	}
	d := make([]byte, f.descSize)
	if err := f.readAt(d, doff); err != nil {
		return nil, fmt.Errorf("ext4: group %d descriptor at %#x: %w", g, doff, err)
	}
	table := uint64(binary.LittleEndian.Uint32(d[8:]))
	if f.descSize >= 64 {
		table |= uint64(binary.LittleEndian.Uint32(d[0x28:])) << 32
	}
	if table == 0 || table >= f.sb.BlocksCount {
		return nil, fmt.Errorf("ext4: group %d: inode table at block %d outside %d blocks", g, table, f.sb.BlocksCount)
	}
	off := int64(table)*f.blockSize + idx*f.inodeSize
	raw := make([]byte, f.inodeSize)
	if err := f.readAt(raw, off); err != nil {
		return nil, fmt.Errorf("ext4: inode %d at %#x: %w", n, off, err)
	}
	le := binary.LittleEndian
	in := &Inode{
		Num:   n,
		Mode:  le.Uint16(raw[0:]),
		Size:  int64(uint64(le.Uint32(raw[4:])) | uint64(le.Uint32(raw[0x6c:]))<<32),
		Flags: le.Uint32(raw[0x20:]),
		raw:   raw,
	}
	copy(in.Block[:], raw[0x28:0x28+60])
	if in.Size < 0 {
		return nil, fmt.Errorf("ext4: inode %d: size %d", n, in.Size)
	}
	return in, nil
}

// mapping is a run of logical blocks mapped to physical ones.
type mapping struct {
	logical, physical, length int64
	zero                      bool // uninitialized extent: reads as zeros
}

// blockMap returns the mappings of in's first nblocks logical blocks.
func (f *FS) blockMap(in *Inode, nblocks int64) ([]mapping, error) {
	if in.Flags&flagExtents != 0 {
		var out []mapping
		// A sane tree has no more blocks than the file has data blocks.
		nodes := int(max(0, maxTreeNodes-nblocks-64))
		if err := f.walkExtents(in, in.Block[:], maxExtentDep+1, &out, &nodes); err != nil {
			return nil, err
		}
		return out, nil
	}
	return f.indirectMap(in, nblocks)
}

func (f *FS) walkExtents(in *Inode, node []byte, depthLeft int, out *[]mapping, nodes *int) error {
	le := binary.LittleEndian
	if len(node) < 12 || le.Uint16(node) != 0xf30a {
		return fmt.Errorf("ext4: inode %d: extent node without magic 0xf30a", in.Num)
	}
	entries := int(le.Uint16(node[2:]))
	depth := int(le.Uint16(node[6:]))
	if depth > maxExtentDep || depth >= depthLeft {
		return fmt.Errorf("ext4: inode %d: extent depth %d, want at most %d and less than its parent's", in.Num, depth, min(maxExtentDep, depthLeft-1))
	}
	if 12+entries*12 > len(node) {
		return fmt.Errorf("ext4: inode %d: %d extent entries do not fit a %d-byte node", in.Num, entries, len(node))
	}
	for i := 0; i < entries; i++ {
		e := node[12+i*12:]
		if depth == 0 {
			n := int64(le.Uint16(e[4:]))
			zero := false
			if n > 32768 {
				n -= 32768
				zero = true
			}
			phys := int64(le.Uint16(e[6:]))<<32 | int64(le.Uint32(e[8:]))
			if phys+n > int64(f.sb.BlocksCount) {
				return fmt.Errorf("ext4: inode %d: extent at block %d+%d past %d blocks", in.Num, phys, n, f.sb.BlocksCount)
			}
			if len(*out) >= maxExtents {
				return fmt.Errorf("ext4: inode %d: more than %d extents", in.Num, maxExtents)
			}
			*out = append(*out, mapping{logical: int64(le.Uint32(e)), physical: phys, length: n, zero: zero})
			continue
		}
		leaf := int64(le.Uint16(e[8:]))<<32 | int64(le.Uint32(e[4:]))
		if leaf == 0 || leaf >= int64(f.sb.BlocksCount) {
			return fmt.Errorf("ext4: inode %d: extent index points to block %d outside %d blocks", in.Num, leaf, f.sb.BlocksCount)
		}
		if *nodes++; *nodes > maxTreeNodes {
			return fmt.Errorf("ext4: inode %d: more than %d extent tree blocks", in.Num, maxTreeNodes)
		}
		child := make([]byte, f.blockSize)
		if err := f.readAt(child, leaf*f.blockSize); err != nil {
			return fmt.Errorf("ext4: inode %d: extent block %d: %w", in.Num, leaf, err)
		}
		if err := f.walkExtents(in, child, depth, out, nodes); err != nil {
			return err
		}
	}
	return nil
}

// indirectMap follows an ext2/ext3 block map: 12 direct blocks, then single,
// double and triple indirect blocks.
func (f *FS) indirectMap(in *Inode, nblocks int64) ([]mapping, error) {
	le := binary.LittleEndian
	var out []mapping
	add := func(l, p int64) error {
		if p == 0 {
			return nil
		}
		if p >= int64(f.sb.BlocksCount) {
			return fmt.Errorf("ext4: inode %d: block %d maps to %d outside %d blocks", in.Num, l, p, f.sb.BlocksCount)
		}
		if n := len(out); n > 0 && out[n-1].logical+out[n-1].length == l && out[n-1].physical+out[n-1].length == p {
			out[n-1].length++
			return nil
		}
		out = append(out, mapping{logical: l, physical: p, length: 1})
		return nil
	}
	per := f.blockSize / 4
	var walk func(blk int64, level int, logical *int64) error
	walk = func(blk int64, level int, logical *int64) error {
		span := int64(1)
		for i := 0; i < level; i++ {
			span *= per
		}
		if blk == 0 {
			*logical += span * per
			return nil
		}
		if blk >= int64(f.sb.BlocksCount) {
			return fmt.Errorf("ext4: inode %d: indirect block %d outside %d blocks", in.Num, blk, f.sb.BlocksCount)
		}
		b := make([]byte, f.blockSize)
		if err := f.readAt(b, blk*f.blockSize); err != nil {
			return fmt.Errorf("ext4: inode %d: indirect block %d: %w", in.Num, blk, err)
		}
		for i := int64(0); i < per && *logical < nblocks; i++ {
			p := int64(le.Uint32(b[i*4:]))
			if level == 0 {
				if err := add(*logical, p); err != nil {
					return err
				}
				*logical++
				continue
			}
			if err := walk(p, level-1, logical); err != nil {
				return err
			}
		}
		return nil
	}
	logical := int64(0)
	for i := 0; i < 12 && logical < nblocks; i++ {
		if err := add(logical, int64(le.Uint32(in.Block[i*4:]))); err != nil {
			return nil, err
		}
		logical++
	}
	for level := 0; level < 3 && logical < nblocks; level++ {
		if err := walk(int64(le.Uint32(in.Block[(12+level)*4:])), level, &logical); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// readData returns the contents of in, refusing files larger than max.
func (f *FS) readData(in *Inode, max int64) ([]byte, error) {
	if in.Size > max {
		return nil, fmt.Errorf("ext4: inode %d: %d bytes, more than the %d this reader reads", in.Num, in.Size, max)
	}
	if in.Flags&flagInlineData != 0 {
		return f.inlineData(in)
	}
	if in.Size > int64(f.sb.BlocksCount)*f.blockSize {
		return nil, fmt.Errorf("ext4: inode %d: %d bytes, larger than the filesystem", in.Num, in.Size)
	}
	nblocks := (in.Size + f.blockSize - 1) / f.blockSize
	maps, err := f.blockMap(in, nblocks)
	if err != nil {
		return nil, err
	}
	data := make([]byte, in.Size)
	for _, m := range maps {
		if m.zero || m.logical >= nblocks {
			continue
		}
		n := min(m.length, nblocks-m.logical)
		start := m.logical * f.blockSize
		end := min(start+n*f.blockSize, in.Size)
		if err := f.readAt(data[start:end], m.physical*f.blockSize); err != nil {
			return nil, fmt.Errorf("ext4: inode %d: blocks %d+%d: %w", in.Num, m.physical, n, err)
		}
	}
	return data, nil
}

// inlineData returns a file stored in the inode: i_block first, then the
// "system.data" extended attribute in the inode body.
func (f *FS) inlineData(in *Inode) ([]byte, error) {
	if in.Size <= 60 {
		return append([]byte(nil), in.Block[:in.Size]...), nil
	}
	out := append([]byte(nil), in.Block[:]...)
	rest, err := f.inodeXattr(in, 7, "data")
	if err != nil && in.Size <= 60+int64(len(in.raw)) {
		return nil, err
	}
	out = append(out, rest...)
	if int64(len(out)) < in.Size {
		// Past the inline data the file reads as zeros (the kernel's
		// ext4_readpage_inline zeroes the rest), as mke2fs -d leaves sparse files.
		out = append(out, make([]byte, in.Size-int64(len(out)))...)
	}
	return out[:in.Size], nil
}

// inodeXattr finds an extended attribute in the inode body (after i_extra_isize).
func (f *FS) inodeXattr(in *Inode, index uint8, name string) ([]byte, error) {
	le := binary.LittleEndian
	raw := in.raw
	if len(raw) <= 0x82 {
		return nil, fmt.Errorf("ext4: inode %d: no room for in-inode attributes", in.Num)
	}
	extra := int(le.Uint16(raw[0x80:]))
	base := 128 + extra
	if base+4 > len(raw) || le.Uint32(raw[base:]) != 0xea020000 {
		return nil, fmt.Errorf("ext4: inode %d: no in-inode attributes", in.Num)
	}
	start := base + 4
	for p := start; p+16 <= len(raw); {
		nlen := int(raw[p])
		if nlen == 0 && raw[p+1] == 0 {
			break
		}
		idx := raw[p+1]
		voff := int(le.Uint16(raw[p+2:]))
		vsize := int(le.Uint32(raw[p+8:]))
		if p+16+nlen > len(raw) {
			break
		}
		if idx == index && string(raw[p+16:p+16+nlen]) == name {
			if start+voff+vsize > len(raw) {
				return nil, fmt.Errorf("ext4: inode %d: attribute value past the inode", in.Num)
			}
			return raw[start+voff : start+voff+vsize], nil
		}
		p += (16 + nlen + 3) &^ 3
	}
	return nil, fmt.Errorf("ext4: inode %d: attribute %q not found", in.Num, name)
}

// DirEntry is one directory entry.
type DirEntry struct {
	Name  string
	Inode uint32
	Type  uint8 // ext4 file type: 1 regular, 2 directory, 7 symlink, 0 unknown
}

// readDir returns the entries of directory inode in, "." and ".." included.
// Hashed (htree) directories are read as plain blocks: their index blocks
// look like empty entries spanning the block.
func (f *FS) readDir(in *Inode) ([]DirEntry, error) {
	if !in.IsDir() {
		return nil, fmt.Errorf("ext4: inode %d is not a directory", in.Num)
	}
	data, err := f.readData(in, maxDirSize)
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	var out []DirEntry
	if in.Flags&flagInlineData != 0 {
		// Inline directories: the parent inode number, then entries.
		if len(data) < 4 {
			return nil, fmt.Errorf("ext4: inode %d: inline directory of %d bytes", in.Num, len(data))
		}
		out = append(out, DirEntry{Name: ".", Inode: in.Num, Type: 2}, DirEntry{Name: "..", Inode: le.Uint32(data), Type: 2})
		ents, err := parseDirBlock(in.Num, data[4:], int64(len(data)-4))
		return append(out, ents...), err
	}
	for off := int64(0); off < int64(len(data)); off += f.blockSize {
		end := min(off+f.blockSize, int64(len(data)))
		ents, err := parseDirBlock(in.Num, data[off:end], f.blockSize)
		if err != nil {
			return nil, fmt.Errorf("%w (directory block %d)", err, off/f.blockSize)
		}
		out = append(out, ents...)
	}
	return out, nil
}

func parseDirBlock(ino uint32, b []byte, blockSize int64) ([]DirEntry, error) {
	le := binary.LittleEndian
	var out []DirEntry
	for p := 0; p+8 <= len(b); {
		inode := le.Uint32(b[p:])
		rec := int(le.Uint16(b[p+4:]))
		if rec == 0xffff || rec == 0 && blockSize == 65536 {
			rec = 65536
		}
		nlen := int(b[p+6])
		if rec < 8 || rec%4 != 0 || p+rec > len(b) || 8+nlen > rec {
			return nil, fmt.Errorf("ext4: directory inode %d: entry at %d: rec_len %d, name_len %d do not fit the block", ino, p, rec, nlen)
		}
		if inode != 0 && nlen > 0 {
			out = append(out, DirEntry{Name: string(b[p+8 : p+8+nlen]), Inode: inode, Type: b[p+7]})
		}
		p += rec
	}
	return out, nil
}

// RootInode is the inode of "/".
const RootInode = 2

// Lookup resolves name (absolute, or relative to "/") to an inode, following
// symlinks within the filesystem (absolute targets from its root) up to a
// fixed number of hops. The final component is followed too.
func (f *FS) Lookup(name string) (*Inode, error) {
	return pathwalk.Resolve[*Inode](walker{f}, "ext4", name, true)
}

// walker is the filesystem as pathwalk sees it.
type walker struct{ f *FS }

func (w walker) Root() (*Inode, error)              { return w.f.ReadInode(RootInode) }
func (w walker) Readlink(in *Inode) (string, error) { return w.f.readlink(in) }
func (w walker) ID(in *Inode) string                { return fmt.Sprintf("inode %d", in.Num) }

func (w walker) Child(dir *Inode, name string) (*Inode, bool, error) {
	ents, err := w.f.readDir(dir)
	if err != nil {
		return nil, false, err
	}
	for _, e := range ents {
		if e.Name == name {
			in, err := w.f.ReadInode(e.Inode)
			return in, err == nil, err
		}
	}
	return nil, false, nil
}

// readlink returns a symlink's target: in i_block when short ("fast"
// symlinks), else in its data blocks.
func (f *FS) readlink(in *Inode) (string, error) {
	if in.Size == 0 || in.Size > 4096 {
		return "", fmt.Errorf("ext4: symlink inode %d: target length %d, want 1..4096", in.Num, in.Size)
	}
	if in.Size < 60 && in.Flags&(flagExtents|flagInlineData) == 0 {
		return string(in.Block[:in.Size]), nil
	}
	b, err := f.readData(in, 4096)
	return string(b), err
}

// Readlink returns the target of the symlink at name (not followed).
func (f *FS) Readlink(name string) (string, error) {
	in, err := pathwalk.Resolve[*Inode](walker{f}, "ext4", name, false)
	if err != nil {
		return "", err
	}
	if !in.IsSymlink() {
		return "", fmt.Errorf("ext4: %s is not a symlink", name)
	}
	return f.readlink(in)
}

// ReadFile returns the contents of the regular file at name, following
// symlinks, refusing files larger than max (and than MaxFileSize).
func (f *FS) ReadFile(name string, max int64) ([]byte, error) {
	in, err := f.Lookup(name)
	if err != nil {
		return nil, err
	}
	if !in.IsRegular() {
		return nil, fmt.Errorf("ext4: %s is not a regular file (mode %#o)", name, in.Mode)
	}
	b, err := f.readData(in, min(max, MaxFileSize))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return b, nil
}

// ReadDir returns the names in directory name ("." and ".." left out).
func (f *FS) ReadDir(name string) ([]DirEntry, error) {
	in, err := f.Lookup(name)
	if err != nil {
		return nil, err
	}
	ents, err := f.readDir(in)
	if err != nil {
		return nil, err
	}
	out := ents[:0]
	for _, e := range ents {
		if e.Name != "." && e.Name != ".." {
			out = append(out, e)
		}
	}
	return out, nil
}

// Stat returns the size of name (symlinks followed) and whether it is a directory.
func (f *FS) Stat(name string) (size int64, dir bool, err error) {
	in, err := f.Lookup(path.Clean("/" + name))
	if err != nil {
		return 0, false, err
	}
	return in.Size, in.IsDir(), nil
}

func (f *FS) readAt(p []byte, off int64) error {
	if off < 0 || off+int64(len(p)) > f.size {
		return fmt.Errorf("read of %d bytes at %#x past end of device (%d bytes): %w", len(p), off, f.size, io.ErrUnexpectedEOF)
	}
	return readFull(f.r, p, off)
}

func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}
