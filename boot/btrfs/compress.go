package btrfs

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	lzo "github.com/anchore/go-lzo"
	"github.com/klauspost/compress/zstd"
)

// Compression types of a file extent.
const (
	compressNone = 0
	compressZlib = 1
	compressLZO  = 2
	compressZstd = 3
)

var compressNames = map[uint8]string{compressZlib: "zlib", compressLZO: "lzo", compressZstd: "zstd"}

// decompress expands src, one extent compressed with method c, into out
// (its len the extent's ram_bytes). Output the stream does not fill reads as
// zeros, as in the kernel; trailing bytes after the stream (the sector's
// padding) are ignored. sectorSize frames lzo's segments.
func decompress(c uint8, src, out []byte, sectorSize int) error {
	var err error
	switch c {
	case compressZlib:
		err = inflate(src, out)
	case compressZstd:
		err = unzstd(src, out)
	case compressLZO:
		err = unlzo(src, out, sectorSize)
	default:
		return fmt.Errorf("compression type %d, want 1 (zlib), 2 (lzo) or 3 (zstd)", c)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", compressNames[c], err)
	}
	return nil
}

func inflate(src, out []byte) error {
	zr, err := zlib.NewReader(bytes.NewReader(src))
	if err != nil {
		return err
	}
	if _, err := io.ReadFull(zr, out); err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return err
	}
	return nil
}

// zstdDecoders are reused: a decoder's tables cost more than a small
// extent's decoding.
var zstdDecoders sync.Pool

func unzstd(src, out []byte) error {
	zr, _ := zstdDecoders.Get().(*zstd.Decoder)
	if zr == nil {
		// btrfs writes one frame with a window of at most 128 KiB (an
		// extent's largest size); the bound keeps a hostile frame from
		// sizing the window.
		var err error
		zr, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(1<<20), zstd.WithDecoderMaxMemory(1<<21))
		if err != nil {
			return err
		}
	}
	defer zstdDecoders.Put(zr)
	if err := zr.Reset(bytes.NewReader(src)); err != nil {
		return err
	}
	n, err := io.ReadFull(zr, out)
	// The frame may hold less than ram_bytes (a file's last extent); the
	// decoder then reads the sector's zero padding as a next frame.
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF && !(n > 0 && errors.Is(err, zstd.ErrMagicMismatch)) {
		return err
	}
	return nil
}

// unlzo expands btrfs's lzo framing: a 4-byte little-endian total length
// (itself included), then segments, each a 4-byte length and that many
// bytes of LZO1X holding up to one sector of output. A segment header never
// straddles a sector boundary: fewer than 4 bytes left in a sector are
// padding (fs/btrfs/lzo.c).
func unlzo(src, out []byte, sectorSize int) error {
	le := binary.LittleEndian
	if len(src) < 4 {
		return fmt.Errorf("%d bytes, too short for the length header", len(src))
	}
	total := int(le.Uint32(src))
	if total < 4 || total > len(src) {
		return fmt.Errorf("total length %d, want 4..%d", total, len(src))
	}
	seg := make([]byte, sectorSize)
	in, done := 4, 0
	for in < total && done < len(out) {
		if left := sectorSize - in%sectorSize; left < 4 {
			in += left
			continue
		}
		if in+4 > total {
			return fmt.Errorf("segment header at %d past the total length %d", in, total)
		}
		n := int(le.Uint32(src[in:]))
		in += 4
		if n == 0 || n > total-in {
			return fmt.Errorf("segment at %d: length %d, want 1..%d", in-4, n, total-in)
		}
		got, err := lzo.Decompress(src[in:in+n], seg)
		if err != nil {
			return fmt.Errorf("segment at %d: %w", in-4, err)
		}
		done += copy(out[done:], seg[:got])
		in += n
	}
	return nil
}
