package vmdk

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/vmconv/vmconv/disk"
)

// streamBatch is how many grains the stream reader reads ahead and inflates
// in parallel (16 grains: 1 MiB of disk).
const streamBatch = 16

// streamReader reads a streamOptimized VMDK in one pass: the markers give
// each grain's LBA, so no seeking is needed. Grains are read a batch at a
// time and inflated on every core; all goroutines end within Next.
type streamReader struct {
	r          *bufio.Reader
	hdr        SparseHeader
	size       int64
	grainBytes int64
	pos        int64 // bytes consumed
	nextLBA    uint64
	done       bool

	batch   []*streamGrainBuf
	slots   [streamBatch]*streamGrainBuf
	bi      int
	pending error // a read error to report after the batch
}

type streamGrainBuf struct {
	lba uint64
	at  int64
	rec []byte // record after the 12-byte marker, sector padded
	cmp int    // compressed bytes in rec
	n   int    // inflated bytes
	err error
	inf inflater
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
	if s.bi >= len(s.batch) {
		if s.pending != nil {
			return 0, nil, s.pending
		}
		if err := s.fill(); err != nil {
			return 0, nil, err
		}
		if len(s.batch) == 0 {
			if s.pending != nil {
				return 0, nil, s.pending
			}
			return 0, nil, io.EOF
		}
	}
	g := s.batch[s.bi]
	s.bi++
	if g.err != nil {
		s.pending = g.err
		s.batch = s.batch[:0]
		return 0, nil, g.err
	}
	clear(g.inf.out[g.n:])
	off := int64(g.lba) * sectorSize
	return off, g.inf.out[:min(s.grainBytes, s.size-off)], nil
}

// fill reads up to streamBatch grain records and inflates them in parallel.
func (s *streamReader) fill() error {
	s.batch, s.bi = s.batch[:0], 0
	for len(s.batch) < streamBatch && !s.done {
		g, err := s.nextRecord(len(s.batch))
		if err != nil {
			if len(s.batch) == 0 {
				return err
			}
			s.pending = err
			break
		}
		if g != nil {
			s.batch = append(s.batch, g)
		}
	}
	workers := min(disk.Cores(), len(s.batch))
	if workers <= 1 {
		for _, g := range s.batch {
			s.inflate(g)
		}
		return nil
	}
	var wg sync.WaitGroup
	var next int
	var mu sync.Mutex
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= len(s.batch) {
					return
				}
				s.inflate(s.batch[i])
			}
		}()
	}
	wg.Wait()
	return nil
}

func (s *streamReader) inflate(g *streamGrainBuf) {
	n, err := inflateGrain(&g.inf, g.inf.out, g.rec[:g.cmp])
	if err != nil {
		g.err = fmt.Errorf("vmdk stream: grain at %#x (LBA %d): %w", g.at, g.lba, err)
		return
	}
	g.n = n
}

// nextRecord reads markers up to the next grain record and returns it in
// slot i, or nil at the end of the stream.
func (s *streamReader) nextRecord(i int) (*streamGrainBuf, error) {
	for !s.done {
		at := s.pos
		var m [sectorSize]byte
		if err := s.read(m[:12]); err != nil {
			if err == io.EOF {
				// qemu's layout ends after the last grain, without markers.
				s.done = true
				break
			}
			return nil, fmt.Errorf("vmdk stream: marker at %#x: %w", at, err)
		}
		mk := decodeMarker(m[:])
		if mk.Size == 0 {
			if err := s.read(m[12:]); err != nil {
				return nil, fmt.Errorf("vmdk stream: marker at %#x: %w", at, unexpected(err))
			}
			mk = decodeMarker(m[:])
			switch mk.Type {
			case markerEOS:
				s.done = true
				continue
			case markerGT, markerGD, markerFooter:
			default:
				return nil, fmt.Errorf("vmdk stream: marker at %#x: unknown type %d", at, mk.Type)
			}
			if mk.Val > maxCapacitySectors {
				return nil, fmt.Errorf("vmdk stream: %s marker at %#x: %d sectors out of range", markerName(mk.Type), at, mk.Val)
			}
			if err := s.skip(int64(mk.Val) * sectorSize); err != nil {
				return nil, fmt.Errorf("vmdk stream: %s at %#x: %w", markerName(mk.Type), at+sectorSize, err)
			}
			continue
		}
		lba := mk.Val
		if lba%s.hdr.GrainSize != 0 || lba >= s.hdr.Capacity {
			return nil, fmt.Errorf("vmdk stream: grain marker at %#x: LBA %d is not a grain start inside the capacity (%d sectors)", at, lba, s.hdr.Capacity)
		}
		if lba < s.nextLBA {
			return nil, fmt.Errorf("vmdk stream: grain marker at %#x: LBA %d out of order (after %d)", at, lba, s.nextLBA-s.hdr.GrainSize)
		}
		size := int64(mk.Size)
		if size > 2*s.grainBytes {
			return nil, fmt.Errorf("vmdk stream: grain marker at %#x: compressed size %d, want at most %d", at, size, 2*s.grainBytes)
		}
		g := s.slots[i]
		if g == nil {
			g = &streamGrainBuf{rec: make([]byte, 0, 2*s.grainBytes+sectorSize)}
			g.inf.out = make([]byte, s.grainBytes)
			s.slots[i] = g
		}
		total := (12 + size + sectorSize - 1) / sectorSize * sectorSize
		g.rec = g.rec[:total-12]
		if err := s.read(g.rec); err != nil {
			return nil, fmt.Errorf("vmdk stream: grain at %#x (LBA %d): %w", at, lba, unexpected(err))
		}
		g.lba, g.at, g.cmp, g.n, g.err = lba, at, int(size), 0, nil
		s.nextLBA = lba + s.hdr.GrainSize
		return g, nil
	}
	return nil, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
