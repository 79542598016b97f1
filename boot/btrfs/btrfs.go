// Package btrfs is a small read-only reader of single-device btrfs
// filesystems through an io.ReaderAt: enough to find and read a guest's
// /boot inside a subvolume (Fedora's "root", openSUSE's "@" and "@/boot").
//
// It reads the primary superblock, the sys_chunk_array bootstrap and the
// chunk tree (SINGLE and DUP profiles; the first copy of DUP is read), the
// root tree and the subvolume (fs) trees, B-tree nodes of any level up to 8,
// inode items, directory items and indexes, and file extents: inline,
// regular, holes and prealloc, uncompressed or compressed with zlib, lzo or
// zstd. Path lookups cross into nested subvolumes. The superblock's and every
// node's checksum is verified (crc32c, xxhash64 or sha256; blake2b is read
// unverified); file data checksums are not. It does not read multi-device or
// RAID profiles (refused by name), the log tree (data fsynced after the last
// commit is not seen), backup superblocks, or extended attributes. Every
// on-disk number is checked before it sizes an allocation or a read, and
// every tree walk has a node budget.
package btrfs

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"sync"

	"github.com/cespare/xxhash/v2"
)

// Limits.
const (
	MaxFileSize    = 512 << 20 // largest file ReadFile returns
	maxLevel       = 8         // btrfs itself stops at BTRFS_MAX_LEVEL 8
	maxNodeVisits  = 1 << 16   // tree nodes read by one search
	maxDirEntries  = 1 << 20
	maxCompressed  = 128 << 10
	maxSubvolumes  = 1 << 16
	maxSubvolDepth = 256
	nodeCacheSize  = 512

	superblockOff = 0x10000
	superblockLen = 0x1000
	nodeHeaderLen = 0x65
	leafItemLen   = 25
	keyPtrLen     = 33
	keyLen        = 17
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Incompatible feature bits this reader understands; any other is refused.
const (
	incompatMetadataUUID = 0x400
	incompatSupported    = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20 | 0x40 | 0x80 | 0x100 | 0x200 |
		incompatMetadataUUID | 0x800 | 0x1000 | 0x10000
)

// Superblock holds the superblock fields the reader uses, at their on-disk
// offsets (see parseSuperblock).
type Superblock struct {
	Csum            [32]byte
	FSID            [16]byte
	Bytenr          uint64
	Magic           [8]byte
	Generation      uint64
	Root            uint64 // logical address of the root tree
	ChunkRoot       uint64
	LogRoot         uint64
	TotalBytes      uint64
	RootDirObjectID uint64
	NumDevices      uint64
	SectorSize      uint32
	NodeSize        uint32
	SysChunkSize    uint32
	IncompatFlags   uint64
	CsumType        uint16
	RootLevel       uint8
	ChunkRootLevel  uint8
	DevID           uint64 // dev_item.devid: the device this superblock sits on
	Label           [256]byte
	MetadataUUID    [16]byte
	SysChunkArray   [2048]byte
}

// volume is what every subvolume view of one filesystem shares.
type volume struct {
	r      io.ReaderAt
	size   int64
	sb     Superblock
	chunks []chunk // sorted by logical
	verify bool    // check node checksums

	mu    sync.Mutex
	cache map[uint64][]byte // node bytes by logical address
}

// FS is an open filesystem seen from one subvolume.
type FS struct {
	v       *volume
	tree    uint64   // subvolume (fs tree) id
	root    treeRoot // its fs tree
	rootDir uint64   // inode of the subvolume's top directory
}

// Open reads the filesystem in r (size bytes long) and returns it seen from
// its default subvolume: the one the root tree's "default" directory item
// names, else the top level (5).
func Open(r io.ReaderAt, size int64) (*FS, error) {
	return open(r, size, true)
}

func open(r io.ReaderAt, size int64, verify bool) (*FS, error) {
	b := make([]byte, superblockLen)
	if err := readFull(r, size, b, superblockOff); err != nil {
		return nil, fmt.Errorf("btrfs: superblock at %#x: %w", superblockOff, err)
	}
	sb, err := parseSuperblock(b, verify)
	if err != nil {
		return nil, err
	}
	v := &volume{r: r, size: size, sb: sb, verify: verify, cache: map[uint64][]byte{}}
	if err := v.loadSysChunks(); err != nil {
		return nil, err
	}
	if err := v.loadChunkTree(); err != nil {
		return nil, err
	}
	top := &FS{v: v, tree: fsTreeID, rootDir: firstFreeID}
	id, err := top.defaultSubvolume()
	if err != nil {
		return nil, err
	}
	return top.SubvolumeID(id)
}

func parseSuperblock(b []byte, verify bool) (Superblock, error) {
	le := binary.LittleEndian
	var sb Superblock
	copy(sb.Csum[:], b)
	copy(sb.FSID[:], b[0x20:])
	sb.Bytenr = le.Uint64(b[0x30:])
	copy(sb.Magic[:], b[0x40:])
	sb.Generation = le.Uint64(b[0x48:])
	sb.Root = le.Uint64(b[0x50:])
	sb.ChunkRoot = le.Uint64(b[0x58:])
	sb.LogRoot = le.Uint64(b[0x60:])
	sb.TotalBytes = le.Uint64(b[0x70:])
	sb.RootDirObjectID = le.Uint64(b[0x80:])
	sb.NumDevices = le.Uint64(b[0x88:])
	sb.SectorSize = le.Uint32(b[0x90:])
	sb.NodeSize = le.Uint32(b[0x94:])
	sb.SysChunkSize = le.Uint32(b[0xa0:])
	sb.IncompatFlags = le.Uint64(b[0xbc:])
	sb.CsumType = le.Uint16(b[0xc4:])
	sb.RootLevel = b[0xc6]
	sb.ChunkRootLevel = b[0xc7]
	sb.DevID = le.Uint64(b[0xc9:])
	copy(sb.Label[:], b[0x12b:])
	copy(sb.MetadataUUID[:], b[0x23b:])
	copy(sb.SysChunkArray[:], b[0x32b:])

	if string(sb.Magic[:]) != "_BHRfS_M" {
		return sb, fmt.Errorf("btrfs: superblock at %#x: magic %q, want \"_BHRfS_M\"", superblockOff, sb.Magic[:])
	}
	if verify {
		if err := checksum(sb.CsumType, b); err != nil {
			return sb, fmt.Errorf("btrfs: superblock at %#x: %w", superblockOff, err)
		}
	}
	if bad := sb.IncompatFlags &^ incompatSupported; bad != 0 {
		return sb, fmt.Errorf("btrfs: unsupported incompatible features %#x", bad)
	}
	if sb.SectorSize < 4096 || sb.SectorSize > 65536 || sb.SectorSize&(sb.SectorSize-1) != 0 {
		return sb, fmt.Errorf("btrfs: sector size %d, want a power of two in 4096..65536", sb.SectorSize)
	}
	if sb.NodeSize < sb.SectorSize || sb.NodeSize > 65536 || sb.NodeSize&(sb.NodeSize-1) != 0 {
		return sb, fmt.Errorf("btrfs: node size %d, want a power of two in %d..65536", sb.NodeSize, sb.SectorSize)
	}
	if sb.SysChunkSize > uint32(len(sb.SysChunkArray)) {
		return sb, fmt.Errorf("btrfs: sys_chunk_array_size %d, more than %d", sb.SysChunkSize, len(sb.SysChunkArray))
	}
	if sb.RootLevel >= maxLevel || sb.ChunkRootLevel >= maxLevel {
		return sb, fmt.Errorf("btrfs: root level %d, chunk root level %d, want below %d", sb.RootLevel, sb.ChunkRootLevel, maxLevel)
	}
	return sb, nil
}

// UUID returns the filesystem UUID (fsid) as GRUB and fstab spell it.
func (f *FS) UUID() string {
	u := f.v.sb.FSID
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// Label returns the filesystem label.
func (f *FS) Label() string {
	l := f.v.sb.Label[:]
	if i := strings.IndexByte(string(l), 0); i >= 0 {
		l = l[:i]
	}
	return string(l)
}

// Superblock returns the parsed superblock.
func (f *FS) Superblock() Superblock { return f.v.sb }

// ID returns the id of the subvolume f sees (5 for the top level).
func (f *FS) ID() uint64 { return f.tree }

// readPhys reads p at physical offset off of the device.
func (v *volume) readPhys(p []byte, off uint64) error {
	if off > uint64(v.size) {
		return fmt.Errorf("read of %d bytes at %#x past end of device (%d bytes): %w", len(p), off, v.size, io.ErrUnexpectedEOF)
	}
	return readFull(v.r, v.size, p, int64(off))
}

func readFull(r io.ReaderAt, size int64, p []byte, off int64) error {
	if off < 0 || off+int64(len(p)) > size {
		return fmt.Errorf("read of %d bytes at %#x past end of device (%d bytes): %w", len(p), off, size, io.ErrUnexpectedEOF)
	}
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// Checksum types (btrfs_super_block.csum_type).
const (
	csumCRC32C = 0
	csumXXHash = 1
	csumSHA256 = 2
	csumBlake2 = 3
)

// checksum verifies the checksum at the start of a superblock or node over
// the rest of it. BLAKE2b (no library in the module's dependencies) is not
// verified.
func checksum(typ uint16, b []byte) error {
	le := binary.LittleEndian
	data := b[0x20:]
	switch typ {
	case csumCRC32C:
		if got, want := crc32.Checksum(data, castagnoli), le.Uint32(b); got != want {
			return fmt.Errorf("crc32c %#08x, stored %#08x", got, want)
		}
	case csumXXHash:
		if got, want := xxhash.Sum64(data), le.Uint64(b); got != want {
			return fmt.Errorf("xxhash64 %#016x, stored %#016x", got, want)
		}
	case csumSHA256:
		if got := sha256.Sum256(data); !bytes.Equal(got[:], b[:32]) {
			return fmt.Errorf("sha256 %x, stored %x", got, b[:32])
		}
	case csumBlake2:
	default:
		return fmt.Errorf("checksum type %d, want 0 (crc32c), 1 (xxhash64), 2 (sha256) or 3 (blake2b)", typ)
	}
	return nil
}
