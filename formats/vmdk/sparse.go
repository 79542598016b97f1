package vmdk

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync"
)

// sparseExtent is one hosted sparse ("KDMV") extent opened for reading. Its
// grain tables are loaded once at open; only tables with an allocated entry are
// kept, so memory follows the allocated data, not the capacity.
type sparseExtent struct {
	name     string // file path, for errors
	r        io.ReaderAt
	fileSize int64
	hdr      SparseHeader // the footer when the header defers to it
	primary  SparseHeader // the header at sector 0
	footer   bool         // the GD location came from the footer

	grainBytes int64
	capBytes   int64
	gd         []uint32   // sector of each GT, 0 = none
	gts        [][]uint32 // nil when every entry of that GT is 0

	pool sync.Pool // *inflater
}

type grainState uint8

const (
	grainUnallocated grainState = iota
	grainZero
	grainData
)

// openSparse reads and checks a sparse extent's header, footer and grain
// tables. Every offset is checked against size before anything is read or
// allocated from it.
func openSparse(name string, r io.ReaderAt, size int64) (*sparseExtent, error) {
	if size < sectorSize {
		return nil, fmt.Errorf("vmdk %s: truncated header: file is %d bytes, want at least %d", name, size, sectorSize)
	}
	var b [sectorSize]byte
	if _, err := r.ReadAt(b[:], 0); err != nil {
		return nil, fmt.Errorf("vmdk %s: read header: %w", name, err)
	}
	s := &sparseExtent{name: name, r: r, fileSize: size}
	s.primary = decodeHeader(b[:])
	if err := s.primary.validate("header"); err != nil {
		return nil, fmt.Errorf("vmdk %s: %w", name, err)
	}
	s.hdr = s.primary
	if s.primary.GDOffset == gdAtEnd {
		if err := s.readFooter(); err != nil {
			return nil, err
		}
	}
	h := &s.hdr
	s.grainBytes = int64(h.GrainSize) * sectorSize
	s.capBytes = int64(h.Capacity) * sectorSize
	if h.DescriptorOffset != 0 {
		if end := (h.DescriptorOffset + h.DescriptorSize) * sectorSize; end > uint64(size) {
			return nil, fmt.Errorf("vmdk %s: header: embedded descriptor at sector %d (%d sectors) ends at %#x, past the end of the file (%#x)",
				name, h.DescriptorOffset, h.DescriptorSize, end, size)
		}
	}
	if err := s.loadTables(); err != nil {
		return nil, err
	}
	return s, nil
}

// readFooter locates the footer of a streamOptimized file whose header says
// the grain directory is at the end: footer marker, footer, end-of-stream
// marker, in the last three sectors.
func (s *sparseExtent) readFooter() error {
	if s.fileSize < 4*sectorSize {
		return fmt.Errorf("vmdk %s: header has gdOffset at end, but the file (%d bytes) is too short for a footer", s.name, s.fileSize)
	}
	var b [3 * sectorSize]byte
	base := s.fileSize - 3*sectorSize
	if _, err := s.r.ReadAt(b[:], base); err != nil {
		return fmt.Errorf("vmdk %s: read footer at %#x: %w", s.name, base, err)
	}
	if m := decodeMarker(b[:]); m.Size != 0 || m.Type != markerFooter {
		return fmt.Errorf("vmdk %s: footer marker at %#x: size %d type %d, want size 0 type %d (footer)", s.name, base, m.Size, m.Type, markerFooter)
	}
	f := decodeHeader(b[sectorSize:])
	if err := f.validate("footer"); err != nil {
		return fmt.Errorf("vmdk %s: footer at %#x: %w", s.name, base+sectorSize, err)
	}
	if f.GDOffset == gdAtEnd {
		return fmt.Errorf("vmdk %s: footer at %#x: gdOffset is also \"at end\"", s.name, base+sectorSize)
	}
	if m := decodeMarker(b[2*sectorSize:]); m.Val != 0 || m.Size != 0 || m.Type != markerEOS {
		return fmt.Errorf("vmdk %s: end-of-stream marker at %#x: val %d size %d type %d, want all zero", s.name, base+2*sectorSize, m.Val, m.Size, m.Type)
	}
	s.hdr = f
	s.footer = true
	return nil
}

func (s *sparseExtent) loadTables() error {
	h := &s.hdr
	n := h.gdEntries()
	gdOff := h.GDOffset * sectorSize
	if h.GDOffset > uint64(s.fileSize) || gdOff+n*4 > uint64(s.fileSize) {
		return fmt.Errorf("vmdk %s: grain directory at sector %d (%d entries) lies past the end of the file (%#x)", s.name, h.GDOffset, n, s.fileSize)
	}
	buf := make([]byte, n*4)
	if _, err := s.r.ReadAt(buf, int64(gdOff)); err != nil {
		return fmt.Errorf("vmdk %s: read grain directory at %#x: %w", s.name, gdOff, err)
	}
	s.gd = make([]uint32, n)
	s.gts = make([][]uint32, n)
	seen := map[uint32]int{} // GT sector → GD entry
	var gtb [gtesPerGT * 4]byte
	for i := range s.gd {
		e := binary.LittleEndian.Uint32(buf[i*4:])
		s.gd[i] = e
		if e == 0 {
			continue
		}
		if j, ok := seen[e]; ok {
			return fmt.Errorf("vmdk %s: grain directory entries %d and %d at %#x both point at the grain table at sector %d",
				s.name, j, i, gdOff, e)
		}
		seen[e] = i
		off := int64(e) * sectorSize
		if off+int64(len(gtb)) > s.fileSize {
			return fmt.Errorf("vmdk %s: grain directory entry %d at %#x: grain table at sector %d lies past the end of the file (%#x)",
				s.name, i, gdOff+uint64(i)*4, e, s.fileSize)
		}
		if _, err := s.r.ReadAt(gtb[:], off); err != nil {
			return fmt.Errorf("vmdk %s: read grain table %d at %#x: %w", s.name, i, off, err)
		}
		var gt []uint32
		for j := 0; j < gtesPerGT; j++ {
			v := binary.LittleEndian.Uint32(gtb[j*4:])
			if v == 0 {
				continue
			}
			grain := int64(i)*gtesPerGT + int64(j)
			start := grain * s.grainBytes
			if start >= s.capBytes {
				break // padding past the capacity in the last table
			}
			if v != gteZeroed {
				need := int64(12)
				if !s.hdr.compressed() {
					need = min(s.grainBytes, s.capBytes-start)
				}
				if int64(v)*sectorSize+need > s.fileSize {
					return fmt.Errorf("vmdk %s: grain table %d at %#x: entry %d points at sector %d, past the end of the file (%#x)",
						s.name, i, off, j, v, s.fileSize)
				}
			}
			if gt == nil {
				gt = make([]uint32, gtesPerGT)
			}
			gt[j] = v
		}
		s.gts[i] = gt
	}
	return nil
}

// lookup returns the state of grain g and, for data, its sector in the file.
func (s *sparseExtent) lookup(g int64) (grainState, uint32) {
	gt := s.gts[g/gtesPerGT]
	if gt == nil {
		return grainUnallocated, 0
	}
	switch v := gt[g%gtesPerGT]; v {
	case 0:
		return grainUnallocated, 0
	case gteZeroed:
		return grainZero, 0
	default:
		return grainData, v
	}
}

// readGrain copies the bytes of grain g at sector sec, from offset inOff in the
// grain, into p.
func (s *sparseExtent) readGrain(p []byte, g int64, sec uint32, inOff int64) error {
	off := int64(sec) * sectorSize
	if !s.hdr.compressed() {
		n, err := s.r.ReadAt(p, off+inOff)
		if err == io.EOF && n == len(p) {
			err = nil
		}
		if err != nil {
			return fmt.Errorf("vmdk %s: read grain %d at %#x: %w", s.name, g, off, err)
		}
		return nil
	}
	inf := s.inflater()
	defer s.pool.Put(inf)
	// A whole grain inflates straight into p; a part goes through inf.out.
	dst := inf.out
	if inOff == 0 && int64(len(p)) == s.grainBytes {
		dst = p
	}
	n, err := s.inflateAt(inf, dst, g, off, s.recordHint(g, sec))
	if err != nil {
		return err
	}
	// A short grain (the last one of the disk) is zero-filled.
	clear(dst[n:])
	if &dst[0] != &p[0] {
		copy(p, dst[inOff:])
	}
	return nil
}

// inflater returns a pooled inflater; the caller puts it back.
func (s *sparseExtent) inflater() *inflater {
	if inf, ok := s.pool.Get().(*inflater); ok {
		return inf
	}
	return &inflater{out: make([]byte, s.grainBytes), cmp: make([]byte, 0, s.grainBytes/2)}
}

// recordHint guesses the length of grain g's compressed record from where the
// next grain of its table starts: writers append grains in order, so one read
// usually fetches the whole record.
func (s *sparseExtent) recordHint(g int64, sec uint32) int64 {
	if (g+1)%gtesPerGT != 0 {
		if next := s.gts[g/gtesPerGT][(g+1)%gtesPerGT]; next > sec {
			if n := int64(next-sec) * sectorSize; n <= 2*s.grainBytes+sectorSize {
				return n
			}
		}
	}
	return 16 << 10
}

// recordHeader is the size of the LBA+size prefix of a compressed grain.
func (s *sparseExtent) recordHeader() int64 {
	if s.hdr.markers() {
		return 12
	}
	return 4
}

// recordSize checks the header of grain g's compressed record at file offset
// off (rec: at least its recordHeader bytes) and returns the compressed size.
func (s *sparseExtent) recordSize(rec []byte, g, off int64) (int64, error) {
	var size int64
	if s.hdr.markers() {
		m := decodeMarker(rec)
		if want := uint64(g) * s.hdr.GrainSize; m.Val != want {
			return 0, fmt.Errorf("vmdk %s: grain %d at %#x: marker LBA %d, want %d", s.name, g, off, m.Val, want)
		}
		size = int64(m.Size)
	} else {
		size = int64(binary.LittleEndian.Uint32(rec))
	}
	if size == 0 || size > 2*s.grainBytes {
		return 0, fmt.Errorf("vmdk %s: grain %d at %#x: compressed size %d, want 1 to %d", s.name, g, off, size, 2*s.grainBytes)
	}
	if off+s.recordHeader()+size > s.fileSize {
		return 0, fmt.Errorf("vmdk %s: grain %d at %#x: compressed data (%d bytes) runs past the end of the file (%#x)", s.name, g, off, size, s.fileSize)
	}
	return size, nil
}

// inflateAt decompresses the grain record at file offset off into inf.out and
// returns the number of bytes it inflated to.
func (s *sparseExtent) inflateAt(inf *inflater, dst []byte, g, off, hint int64) (int, error) {
	hl := s.recordHeader()
	first := min(hint, s.fileSize-off)
	if first < hl {
		return 0, fmt.Errorf("vmdk %s: grain %d at %#x: record header past the end of the file", s.name, g, off)
	}
	if int64(cap(inf.cmp)) < first {
		inf.cmp = make([]byte, 0, max(first, 2*s.grainBytes+hl))
	}
	inf.cmp = inf.cmp[:first]
	if _, err := s.r.ReadAt(inf.cmp, off); err != nil && err != io.EOF {
		return 0, fmt.Errorf("vmdk %s: read grain %d at %#x: %w", s.name, g, off, err)
	}
	size, err := s.recordSize(inf.cmp, g, off)
	if err != nil {
		return 0, err
	}
	if total := hl + size; total > first {
		if int64(cap(inf.cmp)) < total {
			nb := make([]byte, total, 2*s.grainBytes+hl)
			copy(nb, inf.cmp)
			inf.cmp = nb
		}
		inf.cmp = inf.cmp[:total]
		if _, err := s.r.ReadAt(inf.cmp[first:], off+first); err != nil && err != io.EOF {
			return 0, fmt.Errorf("vmdk %s: read grain %d at %#x: %w", s.name, g, off, err)
		}
	}
	n, err := inflateGrain(inf, dst, inf.cmp[hl:hl+size])
	if err != nil {
		return 0, fmt.Errorf("vmdk %s: grain %d at %#x: %w", s.name, g, off, err)
	}
	return n, nil
}
