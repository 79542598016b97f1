// Package xfs is a small read-only reader of XFS filesystems through an
// io.ReaderAt: enough to find and read a guest's /boot on RHEL-family
// systems, whose /boot is XFS.
//
// It reads v5 (CRC-enabled) and v4 filesystems: the superblock, inodes
// located straight from their numbers (the inode B+trees are not read),
// inode cores v1, v2 and v3 (bigtime and nrext64 large extent counts),
// data forks in local, extents and B+tree (bmbt) formats, directories in
// shortform, block, leaf and node forms (their data blocks are scanned; the
// hash-ordered leaf and free-space blocks are not read), regular files
// (holes and unwritten extents read as zeros), and local and remote
// symlinks. Checksums are not verified, the log is not replayed (changes
// of an unclean shutdown still only in the log are not seen), and realtime
// files, attribute forks and the realtime and external log devices are not
// read.
// Every on-disk number is checked before it sizes an allocation, a read or
// a loop.
package xfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Limits.
const (
	MaxFileSize    = 512 << 20 // largest file ReadFile returns
	maxDirSize     = 64 << 20  // directory data blocks read for one directory
	maxExtents     = 1 << 20   // mappings of one file (also at most the fs's blocks)
	maxBtreeLevels = 9         // bmbt depth, the root in the inode included
	maxSymlinkLen  = 1024      // XFS_SYMLINK_MAXLEN
	dirLeafOffset  = 32 << 30  // XFS_DIR2_LEAF_OFFSET: directory data space ends here
)

// Superblock feature bits the reader looks at.
const (
	versionNumMask   = 0x000f
	versionMoreBits  = 0x8000
	features2FType   = 0x0200 // XFS_SB_VERSION2_FTYPE, v4 only
	incompatFType    = 0x01
	incompatSpinodes = 0x02
	incompatMetaUUID = 0x04
	incompatBigtime  = 0x08
	incompatRepair   = 0x10
	incompatNrext64  = 0x20
	incompatExchange = 0x40 // file range exchange: changes the log only
	incompatParent   = 0x80 // parent pointers: attributes, directories unchanged
	incompatKnown    = incompatFType | incompatSpinodes | incompatMetaUUID | incompatBigtime | incompatRepair |
		incompatNrext64 | incompatExchange | incompatParent
)

// Superblock holds the superblock fields the reader uses (struct xfs_dsb,
// big-endian, at offset 0 of the device).
type Superblock struct {
	MagicNum         uint32   // 0x00 "XFSB"
	BlockSize        uint32   // 0x04
	DBlocks          uint64   // 0x08
	UUID             [16]byte // 0x20
	RootIno          uint64   // 0x38
	AGBlocks         uint32   // 0x54
	AGCount          uint32   // 0x58
	VersionNum       uint16   // 0x64
	SectSize         uint16   // 0x66
	InodeSize        uint16   // 0x68
	InoPBlock        uint16   // 0x6a
	FName            [12]byte // 0x6c
	BlockLog         uint8    // 0x78
	InodeLog         uint8    // 0x7a
	InoPBLog         uint8    // 0x7b
	AGBlkLog         uint8    // 0x7c
	DirBlkLog        uint8    // 0xc0
	Features2        uint32   // 0xc8
	FeaturesIncompat uint32   // 0xd8
}

// FS is an open filesystem.
type FS struct {
	r         io.ReaderAt
	size      int64
	sb        Superblock
	blockSize int64
	dirBlk    int64 // directory block size in bytes
	inodeSize int64
	v5        bool
	ftype     bool // directory entries carry a file type byte
	maxMaps   int  // bound on one file's mappings and bmbt blocks
}

// Open reads the superblock of the filesystem in r (size bytes long).
func Open(r io.ReaderAt, size int64) (*FS, error) {
	b := make([]byte, 512)
	if err := readFull(r, b, 0); err != nil {
		return nil, fmt.Errorf("xfs: superblock: %w", err)
	}
	be := binary.BigEndian
	sb := Superblock{
		MagicNum:         be.Uint32(b[0x00:]),
		BlockSize:        be.Uint32(b[0x04:]),
		DBlocks:          be.Uint64(b[0x08:]),
		RootIno:          be.Uint64(b[0x38:]),
		AGBlocks:         be.Uint32(b[0x54:]),
		AGCount:          be.Uint32(b[0x58:]),
		VersionNum:       be.Uint16(b[0x64:]),
		SectSize:         be.Uint16(b[0x66:]),
		InodeSize:        be.Uint16(b[0x68:]),
		InoPBlock:        be.Uint16(b[0x6a:]),
		BlockLog:         b[0x78],
		InodeLog:         b[0x7a],
		InoPBLog:         b[0x7b],
		AGBlkLog:         b[0x7c],
		DirBlkLog:        b[0xc0],
		Features2:        be.Uint32(b[0xc8:]),
		FeaturesIncompat: be.Uint32(b[0xd8:]),
	}
	copy(sb.UUID[:], b[0x20:])
	copy(sb.FName[:], b[0x6c:])
	if sb.MagicNum != 0x58465342 {
		return nil, fmt.Errorf("xfs: superblock at 0: sb_magicnum %#08x, want 0x58465342 (XFSB)", sb.MagicNum)
	}
	f := &FS{r: r, size: size, sb: sb}
	if err := f.checkGeometry(); err != nil {
		return nil, err
	}
	return f, nil
}

// checkGeometry validates the superblock numbers every later computation
// relies on, so that no address computed from them overflows.
func (f *FS) checkGeometry() error {
	sb := &f.sb
	switch v := sb.VersionNum & versionNumMask; v {
	case 4:
		f.ftype = sb.VersionNum&versionMoreBits != 0 && sb.Features2&features2FType != 0
	case 5:
		f.v5 = true
		if bad := sb.FeaturesIncompat &^ incompatKnown; bad != 0 {
			return fmt.Errorf("xfs: superblock: sb_features_incompat %#x has unknown bits %#x", sb.FeaturesIncompat, bad)
		}
		f.ftype = sb.FeaturesIncompat&incompatFType != 0
	default:
		return fmt.Errorf("xfs: superblock: sb_versionnum %#04x: version %d, want 4 or 5", sb.VersionNum, v)
	}
	if sb.BlockLog < 9 || sb.BlockLog > 16 || sb.BlockSize != 1<<sb.BlockLog {
		return fmt.Errorf("xfs: superblock: sb_blocksize %d, sb_blocklog %d: want a power of two in 512..65536 and its log", sb.BlockSize, sb.BlockLog)
	}
	f.blockSize = int64(sb.BlockSize)
	if sb.InodeLog < 8 || sb.InodeLog > 11 || sb.InodeSize != 1<<sb.InodeLog || int64(sb.InodeSize) > f.blockSize {
		return fmt.Errorf("xfs: superblock: sb_inodesize %d, sb_inodelog %d: want a power of two in 256..2048, at most the block size, and its log", sb.InodeSize, sb.InodeLog)
	}
	f.inodeSize = int64(sb.InodeSize)
	if int(sb.InoPBLog) != int(sb.BlockLog)-int(sb.InodeLog) || int(sb.InoPBlock) != 1<<sb.InoPBLog {
		return fmt.Errorf("xfs: superblock: sb_inopblog %d, sb_inopblock %d: want %d and %d", sb.InoPBLog, sb.InoPBlock, sb.BlockLog-sb.InodeLog, 1<<(sb.BlockLog-sb.InodeLog))
	}
	if sb.AGBlkLog > 31 || sb.AGBlocks == 0 || uint64(sb.AGBlocks) > 1<<sb.AGBlkLog || uint64(sb.AGBlocks) <= 1<<sb.AGBlkLog>>1 {
		return fmt.Errorf("xfs: superblock: sb_agblocks %d, sb_agblklog %d: want agblocks in (2^(agblklog-1), 2^agblklog]", sb.AGBlocks, sb.AGBlkLog)
	}
	if sb.AGCount == 0 || uint64(sb.AGCount-1)*uint64(sb.AGBlocks) >= sb.DBlocks || sb.DBlocks > uint64(sb.AGCount)*uint64(sb.AGBlocks) {
		return fmt.Errorf("xfs: superblock: sb_agcount %d of %d blocks do not make sb_dblocks %d", sb.AGCount, sb.AGBlocks, sb.DBlocks)
	}
	if sb.DBlocks > uint64(f.size/f.blockSize) {
		return fmt.Errorf("xfs: superblock: sb_dblocks %d of %d bytes, but the device holds %d bytes", sb.DBlocks, f.blockSize, f.size)
	}
	if int(sb.BlockLog)+int(sb.DirBlkLog) > 16 {
		return fmt.Errorf("xfs: superblock: sb_dirblklog %d: directory blocks over 64 KiB", sb.DirBlkLog)
	}
	f.dirBlk = f.blockSize << sb.DirBlkLog
	f.maxMaps = int(min(uint64(maxExtents), sb.DBlocks))
	return nil
}

// UUID returns the filesystem UUID as blkid, GRUB and fstab spell it.
func (f *FS) UUID() string {
	u := f.sb.UUID
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// Label returns the volume label (sb_fname).
func (f *FS) Label() string {
	return strings.TrimRight(string(f.sb.FName[:]), "\x00")
}

// Superblock returns the parsed superblock.
func (f *FS) Superblock() Superblock { return f.sb }

// BlockSize returns the block size in bytes.
func (f *FS) BlockSize() int64 { return f.blockSize }

// fsbOffset returns the device offset of filesystem block fsb, which packs
// the AG number above sb_agblklog bits of block-in-AG.
func (f *FS) fsbOffset(fsb uint64) (int64, error) {
	ag := fsb >> f.sb.AGBlkLog
	agbno := fsb & (1<<f.sb.AGBlkLog - 1)
	if ag >= uint64(f.sb.AGCount) || agbno >= uint64(f.sb.AGBlocks) {
		return 0, fmt.Errorf("block %#x (AG %d block %d) outside %d AGs of %d blocks", fsb, ag, agbno, f.sb.AGCount, f.sb.AGBlocks)
	}
	d := ag*uint64(f.sb.AGBlocks) + agbno
	if d >= f.sb.DBlocks {
		return 0, fmt.Errorf("block %#x (AG %d block %d) past sb_dblocks %d", fsb, ag, agbno, f.sb.DBlocks)
	}
	return int64(d) * f.blockSize, nil
}

// extentOffset checks that the n blocks from fsb stay inside one AG and
// returns the device offset of fsb.
func (f *FS) extentOffset(fsb, n uint64) (int64, error) {
	off, err := f.fsbOffset(fsb)
	if err != nil {
		return 0, err
	}
	if n == 0 || (fsb&(1<<f.sb.AGBlkLog-1))+n > uint64(f.sb.AGBlocks) || uint64(off/f.blockSize)+n > f.sb.DBlocks {
		return 0, fmt.Errorf("extent of %d blocks at %#x runs past its AG or the filesystem", n, fsb)
	}
	return off, nil
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
