// Package disk is the virtual-disk model every format shares: an image read
// through io.ReaderAt that can describe its own allocation, a writer that takes
// chunks in increasing offset order, the parallel copy engine between them, the
// content digest, raw images, the copy-on-write overlay and atomic outputs.
package disk

import (
	"errors"
	"fmt"
	"io"
)

// Kind says what a range of an image holds.
type Kind uint8

const (
	// Data ranges are allocated and must be read (they may still hold zeros).
	Data Kind = iota
	// Zero ranges are allocated but known to read as zeros (VMDK zeroed grains,
	// ZERO extents).
	Zero
	// Unallocated ranges hold nothing in the image and read as zeros.
	Unallocated
)

func (k Kind) String() string {
	switch k {
	case Data:
		return "data"
	case Zero:
		return "zero"
	case Unallocated:
		return "unallocated"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Extent is one run of an image's allocation map.
type Extent struct {
	Offset int64
	Length int64
	Kind   Kind
}

// End returns the offset just past the extent.
func (e Extent) End() int64 { return e.Offset + e.Length }

// Image is a readable virtual disk.
//
// ReadAt reads the guest-visible contents (zeros where nothing is allocated).
// A read that reaches past Size returns io.EOF like a file does.
type Image interface {
	io.ReaderAt
	// Size is the virtual size in bytes.
	Size() int64
	// Extents describes [off, off+length) clipped to Size: sorted, contiguous,
	// non-overlapping runs covering the whole range. Adjacent runs of the same
	// kind may or may not be merged.
	Extents(off, length int64) ([]Extent, error)
	// Close releases the image's files.
	Close() error
}

// ChunkSize is the unit of the copy engine and the content digest: 1 MiB, the
// XVA chunk and the bundle chunk.
const ChunkSize = 1 << 20

// ErrOutOfRange is returned for reads and writes beyond an image's size.
var ErrOutOfRange = errors.New("offset out of range")
