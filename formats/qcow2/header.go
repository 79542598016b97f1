// Package qcow2 reads and writes QEMU's qcow2 images: versions 2 and 3, L1/L2
// tables with standard and extended (subcluster) L2 entries, zero clusters,
// zlib (raw deflate) and zstd compressed clusters, and backing chains. The
// writer produces version 3 (compat 1.1) images, sparse by the allocation
// map, optionally compressed on the copy engine's workers.
package qcow2

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

const (
	magic = 0x514649FB // "QFI\xfb"

	// Incompatible feature bits (header byte 72).
	incDirty       = 1 << 0
	incCorrupt     = 1 << 1
	incDataFile    = 1 << 2
	incCompression = 1 << 3
	incExtendedL2  = 1 << 4
	incKnown       = incDirty | incCorrupt | incDataFile | incCompression | incExtendedL2

	// Compatible feature bits (header byte 80).
	compatLazyRefcounts = 1 << 0

	// Autoclear feature bits (header byte 88).
	autoclearBitmaps     = 1 << 0
	autoclearDataFileRaw = 1 << 1

	compressionZlib = 0
	compressionZstd = 1

	// Header extension types.
	extEnd           = 0x00000000
	extBackingFormat = 0xE2792ACA
	extFeatureTable  = 0x6803F857
	extBitmaps       = 0x23852875
	extCrypto        = 0x0537BE77
	extDataFile      = 0x44415441

	// L1/L2 entry bits.
	oflagCopied     = uint64(1) << 63
	oflagCompressed = uint64(1) << 62
	oflagZero       = uint64(1) << 0
	offsetMask      = uint64(0x00FFFFFFFFFFFE00)

	// Bounds from qemu (block/qcow2.h): clusters of 512 B to 2 MiB, an L1 table
	// of at most 32 MiB, a refcount table of at most 8 MiB, backing file
	// names of at most 1023 bytes.
	minClusterBits  = 9
	maxClusterBits  = 21
	maxL1Bytes      = 32 << 20
	maxRefTable     = 8 << 20
	maxBackingName  = 1023
	subclusters     = 32 // per cluster with extended L2 entries
	v2HeaderLength  = 72
	v3HeaderLength  = 104
	ourHeaderLength = 112
)

// Header is the qcow2 header, big-endian, as it lies at offset 0. Version 2
// headers end at IncompatibleFeatures (72 bytes); the rest then reads as
// zero. CompressionType exists when HeaderLength is at least 105.
type Header struct {
	Magic                 uint32
	Version               uint32
	BackingFileOffset     uint64
	BackingFileSize       uint32
	ClusterBits           uint32
	Size                  uint64
	CryptMethod           uint32
	L1Size                uint32
	L1TableOffset         uint64
	RefcountTableOffset   uint64
	RefcountTableClusters uint32
	NbSnapshots           uint32
	SnapshotsOffset       uint64
	// Version 3 from here.
	IncompatibleFeatures uint64
	CompatibleFeatures   uint64
	AutoclearFeatures    uint64
	RefcountOrder        uint32
	HeaderLength         uint32
	CompressionType      uint8
	Pad                  [7]byte
}

// headerSize is the encoded size of Header.
const headerSize = ourHeaderLength

// decodeHeader decodes b (at least 72 bytes) into a header; for version 2
// the version 3 fields take their implied values.
func decodeHeader(b []byte) Header {
	var buf [headerSize]byte
	copy(buf[:], b)
	var h Header
	binary.Decode(buf[:], binary.BigEndian, &h)
	if h.Version == 2 {
		h.IncompatibleFeatures, h.CompatibleFeatures, h.AutoclearFeatures = 0, 0, 0
		h.RefcountOrder, h.HeaderLength, h.CompressionType = 4, v2HeaderLength, 0
	} else if h.HeaderLength < 105 {
		h.CompressionType = 0
	}
	return h
}

// encode encodes the header; a version 2 header ends at 72 bytes, and the
// zeros after it read as the end of its (absent) extensions.
func (h *Header) encode() []byte {
	b := make([]byte, headerSize)
	binary.Encode(b, binary.BigEndian, h)
	if h.Version == 2 {
		clear(b[v2HeaderLength:])
	}
	return b
}

// validate checks the fields that size and place everything else, against
// the file's size, before anything is allocated from them.
func (h *Header) validate(fileSize int64) error {
	if h.Magic != magic {
		return fmt.Errorf("header: magic %#x, want %#x (QFI\\xfb)", h.Magic, magic)
	}
	if h.Version != 2 && h.Version != 3 {
		return fmt.Errorf("header: version %d, want 2 or 3", h.Version)
	}
	if h.ClusterBits < minClusterBits || h.ClusterBits > maxClusterBits {
		return fmt.Errorf("header: cluster_bits %d, want %d to %d", h.ClusterBits, minClusterBits, maxClusterBits)
	}
	cs := uint64(1) << h.ClusterBits
	if h.Version == 3 {
		if h.HeaderLength < v3HeaderLength || uint64(h.HeaderLength) > cs || h.HeaderLength%8 != 0 {
			return fmt.Errorf("header: header_length %d, want a multiple of 8 from %d to the cluster size %d", h.HeaderLength, v3HeaderLength, cs)
		}
		if unknown := h.IncompatibleFeatures &^ incKnown; unknown != 0 {
			return fmt.Errorf("header: unknown incompatible features %#x", unknown)
		}
		if h.RefcountOrder > 6 {
			return fmt.Errorf("header: refcount_order %d, want 0 to 6", h.RefcountOrder)
		}
	}
	if h.CryptMethod != 0 {
		return fmt.Errorf("header: crypt_method %d: encrypted images are not supported", h.CryptMethod)
	}
	switch {
	case h.IncompatibleFeatures&incCompression == 0 && h.CompressionType != compressionZlib:
		return fmt.Errorf("header: compression_type %d without the compression type feature bit", h.CompressionType)
	case h.CompressionType > compressionZstd:
		return fmt.Errorf("header: compression_type %d, want 0 (zlib) or 1 (zstd)", h.CompressionType)
	}
	if h.IncompatibleFeatures&incExtendedL2 != 0 && h.ClusterBits < 14 {
		return fmt.Errorf("header: extended L2 entries with cluster_bits %d, want at least 14", h.ClusterBits)
	}
	if h.Size > 1<<62 {
		return fmt.Errorf("header: size %#x is too large", h.Size)
	}
	l2Bits := h.l2Bits()
	need := (h.Size + (uint64(1) << (h.ClusterBits + l2Bits)) - 1) >> (h.ClusterBits + l2Bits)
	if uint64(h.L1Size) < need {
		return fmt.Errorf("header: l1_size %d, the virtual size %d needs %d entries", h.L1Size, h.Size, need)
	}
	l1Bytes := uint64(h.L1Size) * 8
	if l1Bytes > maxL1Bytes {
		return fmt.Errorf("header: l1_size %d: an L1 table of %d bytes is larger than %d", h.L1Size, l1Bytes, maxL1Bytes)
	}
	if h.L1Size > 0 {
		if h.L1TableOffset%cs != 0 || h.L1TableOffset > uint64(fileSize) || l1Bytes > uint64(fileSize)-h.L1TableOffset {
			return fmt.Errorf("header: L1 table at %#x (%d entries) is unaligned or past the end of the file (%#x)", h.L1TableOffset, h.L1Size, fileSize)
		}
	}
	// As qemu reads it: the name lies in the first cluster, is at most
	// 1023 bytes, and an empty one (size 0) is no backing file.
	if h.BackingFileOffset != 0 {
		if h.BackingFileOffset > cs {
			return fmt.Errorf("header: backing_file_offset %#x is past the first cluster (%#x bytes)", h.BackingFileOffset, cs)
		}
		if h.BackingFileSize > maxBackingName {
			return fmt.Errorf("header: backing file name of %d bytes, want at most %d", h.BackingFileSize, maxBackingName)
		}
		if uint64(h.BackingFileSize) > cs-h.BackingFileOffset {
			return fmt.Errorf("header: backing file name at %#x (%d bytes) is not inside the first cluster", h.BackingFileOffset, h.BackingFileSize)
		}
	}
	return nil
}

// l2Bits is log2 of the entries in one L2 table.
func (h *Header) l2Bits() uint32 {
	if h.IncompatibleFeatures&incExtendedL2 != 0 {
		return h.ClusterBits - 4
	}
	return h.ClusterBits - 3
}

// compat is how qemu-img names the version.
func (h *Header) compat() string {
	if h.Version == 2 {
		return "0.10"
	}
	return "1.1"
}

func log2(v uint64) int { return bits.Len64(v) - 1 }

// extension is one header extension.
type extension struct {
	Type uint32
	Len  uint32
	off  int64
	data []byte
}

// readExtensions parses the header extensions between the header and the end
// of the first cluster (or the backing file name, which qemu puts after
// them).
func readExtensions(b []byte, start int) ([]extension, error) {
	var out []extension
	off := start
	for {
		if off+8 > len(b) {
			return nil, fmt.Errorf("header extension at %#x: runs past the end of the header area (%#x) without an end marker", off, len(b))
		}
		e := extension{Type: binary.BigEndian.Uint32(b[off:]), Len: binary.BigEndian.Uint32(b[off+4:]), off: int64(off)}
		if e.Type == extEnd {
			return out, nil
		}
		end := off + 8 + int(e.Len)
		if int(e.Len) > len(b) || end > len(b) {
			return nil, fmt.Errorf("header extension %#x at %#x: length %d runs past the end of the header area (%#x)", e.Type, off, e.Len, len(b))
		}
		e.data = b[off+8 : end]
		out = append(out, e)
		off = (end + 7) &^ 7
	}
}
