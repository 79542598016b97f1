package vmdk

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/vmconv/vmconv/disk"
)

// streamReader reads a streamOptimized VMDK in one pass: the markers give
// each grain's LBA, so no seeking is needed.
type streamReader struct {
	r          *bufio.Reader
	hdr        SparseHeader
	size       int64
	grainBytes int64
	pos        int64 // bytes consumed
	nextLBA    uint64
	inf        inflater
	rec        []byte
	done       bool
}

// OpenStream reads a streamOptimized VMDK from r, front to back (a pipe is
// fine). Grains must appear in increasing LBA order.
func OpenStream(r io.Reader) (disk.Stream, error) {
	s := &streamReader{r: bufio.NewReaderSize(r, 256<<10)}
	var b [sectorSize]byte
	if _, err := io.ReadFull(s.r, b[:]); err != nil {
		return nil, fmt.Errorf("vmdk stream: truncated header: %w", err)
	}
	s.pos = sectorSize
	s.hdr = decodeHeader(b[:])
	if err := s.hdr.validate("header"); err != nil {
		return nil, fmt.Errorf("vmdk stream: %w", err)
	}
	if !s.hdr.compressed() || !s.hdr.markers() {
		return nil, fmt.Errorf("vmdk stream: header flags %#x: not streamOptimized (want compressed grains with markers)", s.hdr.Flags)
	}
	if s.hdr.OverHead < 1 || s.hdr.OverHead > maxCapacitySectors {
		return nil, fmt.Errorf("vmdk stream: header overHead %d sectors out of range", s.hdr.OverHead)
	}
	s.size = int64(s.hdr.Capacity) * sectorSize
	s.grainBytes = int64(s.hdr.GrainSize) * sectorSize
	s.inf.out = make([]byte, s.grainBytes)
	// Skip the embedded descriptor and any metadata up to the first grain.
	if err := s.skip(int64(s.hdr.OverHead-1) * sectorSize); err != nil {
		return nil, fmt.Errorf("vmdk stream: skip to overHead sector %d: %w", s.hdr.OverHead, err)
	}
	return s, nil
}

func (s *streamReader) Size() int64 { return s.size }

func (s *streamReader) skip(n int64) error {
	m, err := io.CopyN(io.Discard, s.r, n)
	s.pos += m
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func (s *streamReader) read(p []byte) error {
	n, err := io.ReadFull(s.r, p)
	s.pos += int64(n)
	return err
}

// Next returns the next grain's data (zero-filled to the grain, clipped to the
// disk size).
func (s *streamReader) Next() (int64, []byte, error) {
	for !s.done {
		at := s.pos
		var m [sectorSize]byte
		if err := s.read(m[:12]); err != nil {
			if err == io.EOF {
				// qemu's layout ends after the last grain, without markers.
				s.done = true
				break
			}
			return 0, nil, fmt.Errorf("vmdk stream: marker at %#x: %w", at, err)
		}
		mk := decodeMarker(m[:])
		if mk.Size == 0 {
			if err := s.read(m[12:]); err != nil {
				return 0, nil, fmt.Errorf("vmdk stream: marker at %#x: %w", at, unexpected(err))
			}
			mk = decodeMarker(m[:])
			switch mk.Type {
			case markerEOS:
				s.done = true
				continue
			case markerGT, markerGD, markerFooter:
			default:
				return 0, nil, fmt.Errorf("vmdk stream: marker at %#x: unknown type %d", at, mk.Type)
			}
			if mk.Val > maxCapacitySectors {
				return 0, nil, fmt.Errorf("vmdk stream: %s marker at %#x: %d sectors out of range", markerName(mk.Type), at, mk.Val)
			}
			if err := s.skip(int64(mk.Val) * sectorSize); err != nil {
				return 0, nil, fmt.Errorf("vmdk stream: %s at %#x: %w", markerName(mk.Type), at+sectorSize, err)
			}
			continue
		}
		lba := mk.Val
		if lba%s.hdr.GrainSize != 0 || lba >= s.hdr.Capacity {
			return 0, nil, fmt.Errorf("vmdk stream: grain marker at %#x: LBA %d is not a grain start inside the capacity (%d sectors)", at, lba, s.hdr.Capacity)
		}
		if lba < s.nextLBA {
			return 0, nil, fmt.Errorf("vmdk stream: grain marker at %#x: LBA %d out of order (after %d)", at, lba, s.nextLBA-s.hdr.GrainSize)
		}
		size := int64(mk.Size)
		if size > 2*s.grainBytes {
			return 0, nil, fmt.Errorf("vmdk stream: grain marker at %#x: compressed size %d, want at most %d", at, size, 2*s.grainBytes)
		}
		total := (12 + size + sectorSize - 1) / sectorSize * sectorSize
		if int64(cap(s.rec)) < total-12 {
			s.rec = make([]byte, 0, 2*s.grainBytes+sectorSize)
		}
		s.rec = s.rec[:total-12]
		if err := s.read(s.rec); err != nil {
			return 0, nil, fmt.Errorf("vmdk stream: grain at %#x (LBA %d): %w", at, lba, unexpected(err))
		}
		n, err := inflateGrain(&s.inf, s.inf.out, s.rec[:size])
		if err != nil {
			return 0, nil, fmt.Errorf("vmdk stream: grain at %#x (LBA %d): %w", at, lba, err)
		}
		clear(s.inf.out[n:])
		s.nextLBA = lba + s.hdr.GrainSize
		off := int64(lba) * sectorSize
		return off, s.inf.out[:min(s.grainBytes, s.size-off)], nil
	}
	return 0, nil, io.EOF
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
