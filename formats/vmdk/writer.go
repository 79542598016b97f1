package vmdk

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vmconv/vmconv/disk"
)

const (
	writeGrainSectors = 128 // 64 KiB grains, as every producer writes
	writeGrainBytes   = writeGrainSectors * sectorSize
	descriptorSectors = 20
	// splitSectors is where twoGbMaxExtent* cut their extents (qemu's 2 GiB).
	splitSectors = 4 << 20
	// maxSparseFileSectors: grain table entries are u32 sector numbers.
	maxSparseFileSectors = 1<<32 - 1
)

// Create starts a new VMDK of size bytes at path, as opt.Subformat says.
// Every file goes through out, so the disk appears only when out is
// committed. path "-" (standard output) is allowed for streamOptimized only.
func Create(out *disk.Output, path string, size int64, opt Options) (disk.Writer, error) {
	opt.fill()
	if size <= 0 {
		return nil, fmt.Errorf("vmdk %s: size %d: want a positive size", path, size)
	}
	sectors := (size + sectorSize - 1) / sectorSize
	if sectors > maxCapacitySectors {
		return nil, fmt.Errorf("vmdk %s: size %d is larger than VMDK's %d sectors", path, size, int64(maxCapacitySectors))
	}
	if path == disk.Stdout && opt.Subformat != StreamOptimized {
		return nil, fmt.Errorf("vmdk: only streamOptimized can be written to standard output, not %s", opt.Subformat)
	}
	switch opt.Subformat {
	case StreamOptimized:
		f, err := out.Create(path)
		if err != nil {
			return nil, err
		}
		return newStreamWriter(f, path, size, opt)
	case MonolithicSparse:
		f, err := out.Create(path)
		if err != nil {
			return nil, err
		}
		name := filepath.Base(path)
		d := newDescriptor(opt, sectors, []ExtentLine{{Access: "RW", Sectors: sectors, Type: "SPARSE", File: name}})
		sf, err := newSparseFile(f, path, sectors, d.format(), opt.ZeroedGrain)
		if err != nil {
			return nil, err
		}
		return &multiWriter{size: size, parts: []extentWriter{sf}, partSectors: sectors}, nil
	case MonolithicFlat, TwoGbMaxExtentSparse, TwoGbMaxExtentFlat:
		return createSplit(out, path, size, sectors, opt)
	}
	return nil, fmt.Errorf("vmdk %s: unknown subformat %q", path, opt.Subformat)
}

// extentNames returns the file names of a descriptor-based disk's extents:
// NAME-flat.vmdk, NAME-s001.vmdk…, NAME-f001.vmdk….
func extentName(path, subformat string, i int) string {
	base := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	switch subformat {
	case MonolithicFlat:
		return base + "-flat.vmdk"
	case TwoGbMaxExtentSparse:
		return fmt.Sprintf("%s-s%03d.vmdk", base, i+1)
	}
	return fmt.Sprintf("%s-f%03d.vmdk", base, i+1)
}

// splitExtents is the extents of a descriptor-based disk: one flat file
// (monolithicFlat), or one file per 2 GiB; each but the last holds per
// sectors.
func splitExtents(path string, sectors int64, opt Options) (lines []ExtentLine, per int64) {
	per = int64(splitSectors)
	if opt.Subformat == MonolithicFlat {
		per = sectors
	}
	typ := "FLAT"
	if opt.Subformat == TwoGbMaxExtentSparse {
		typ = "SPARSE"
	}
	for i, s := int64(0), int64(0); s < sectors; i, s = i+1, s+per {
		lines = append(lines, ExtentLine{Access: "RW", Sectors: min(per, sectors-s), Type: typ, File: extentName(path, opt.Subformat, int(i))})
	}
	return lines, per
}

func createSplit(out *disk.Output, path string, size, sectors int64, opt Options) (disk.Writer, error) {
	lines, per := splitExtents(path, sectors, opt)
	dir := filepath.Dir(path)
	mw := &multiWriter{size: size, partSectors: per}
	for _, l := range lines {
		f, err := out.Create(filepath.Join(dir, l.File))
		if err != nil {
			return nil, err
		}
		if l.Type == "SPARSE" {
			sf, err := newSparseFile(f, filepath.Join(dir, l.File), l.Sectors, nil, opt.ZeroedGrain)
			if err != nil {
				return nil, err
			}
			mw.parts = append(mw.parts, sf)
		} else {
			mw.parts = append(mw.parts, &flatFile{f: f, name: l.File, size: l.Sectors * sectorSize})
		}
	}
	d := newDescriptor(opt, sectors, lines)
	df, err := out.Create(path)
	if err != nil {
		return nil, err
	}
	if _, err := df.Write(d.format()); err != nil {
		return nil, fmt.Errorf("vmdk %s: write descriptor: %w", path, err)
	}
	return mw, nil
}

// extentWriter writes one extent file; offsets are relative to the extent.
type extentWriter interface {
	write(off int64, p []byte) error
	finish() error
}

// multiWriter spreads chunks over extents of partSectors each. Chunks never
// straddle extents: both the chunk and the split size are powers of two.
type multiWriter struct {
	size        int64
	parts       []extentWriter
	partSectors int64
	order       disk.ChunkOrder
	err         error
}

func (w *multiWriter) WriteChunk(c *disk.Chunk) error {
	if w.err != nil {
		return w.err
	}
	if err := w.order.Take(c, w.size); err != nil {
		w.err = fmt.Errorf("vmdk: %w", err)
		return w.err
	}
	if c.Zero || c.Data == nil {
		return nil
	}
	partBytes := w.partSectors * sectorSize
	p, off := c.Data, c.Offset
	for len(p) > 0 {
		i := off / partBytes
		n := min(int64(len(p)), (i+1)*partBytes-off)
		if w.err = w.parts[i].write(off-i*partBytes, p[:n]); w.err != nil {
			return w.err
		}
		p, off = p[n:], off+n
	}
	return nil
}

func (w *multiWriter) Close() error {
	if w.err != nil {
		return w.err
	}
	for _, p := range w.parts {
		if w.err = p.finish(); w.err != nil {
			return w.err
		}
	}
	w.err = fmt.Errorf("vmdk: writer closed")
	return nil
}

// flatFile writes a raw extent, leaving holes for zeros.
type flatFile struct {
	f    *os.File
	name string
	size int64
}

func (f *flatFile) write(off int64, p []byte) error {
	for len(p) > 0 {
		n := min(len(p), writeGrainBytes)
		if !isZero(p[:n]) {
			if _, err := f.f.WriteAt(p[:n], off); err != nil {
				return fmt.Errorf("vmdk %s: write at %#x: %w", f.name, off, err)
			}
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

func (f *flatFile) finish() error {
	if err := f.f.Truncate(f.size); err != nil {
		return fmt.Errorf("vmdk %s: %w", f.name, err)
	}
	return nil
}

// sparseFile writes a hosted sparse extent laid out as qemu and Workstation
// do: header, embedded descriptor, redundant GD and GTs, GD and GTs, then
// grains in write order. All GTs are preallocated; each is written once, when
// the chunks have moved past it, so memory holds one GT whatever the size.
type sparseFile struct {
	f        *os.File
	name     string
	hdr      SparseHeader
	capBytes int64
	rgtStart int64 // sector of the first redundant GT
	gtStart  int64 // sector of the first GT
	next     int64 // sector of the next grain
	cur      int64 // GT being filled, -1 for none
	gt       [gtesPerGT]uint32
	gtb      [gtesPerGT * 4]byte
}

func newSparseFile(f *os.File, name string, sectors int64, desc []byte, zeroedGrain bool) (*sparseFile, error) {
	if desc != nil && len(desc) > (descriptorSectors-2)*sectorSize {
		return nil, fmt.Errorf("vmdk %s: descriptor of %d bytes does not fit the embedded area", name, len(desc))
	}
	h, rgt, gt := sparseLayout(sectors, desc != nil, zeroedGrain)
	s := &sparseFile{f: f, name: name, hdr: h, capBytes: sectors * sectorSize,
		rgtStart: int64(rgt), gtStart: int64(gt), next: int64(h.OverHead), cur: -1}

	// Metadata up to the GDs is written now; GTs as they fill.
	var hb [sectorSize]byte
	h.encode(hb[:])
	if _, err := f.WriteAt(hb[:], 0); err != nil {
		return nil, fmt.Errorf("vmdk %s: write header: %w", name, err)
	}
	if desc != nil {
		if _, err := f.WriteAt(desc, sectorSize); err != nil {
			return nil, fmt.Errorf("vmdk %s: write descriptor: %w", name, err)
		}
	}
	gdEntries := h.gdEntries()
	gd := make([]byte, (gdEntries*4+sectorSize-1)/sectorSize*sectorSize)
	for _, d := range []struct{ gd, gt uint64 }{{h.RGDOffset, rgt}, {h.GDOffset, gt}} {
		for i := uint64(0); i < gdEntries; i++ {
			binary.LittleEndian.PutUint32(gd[i*4:], uint32(d.gt+i*4))
		}
		if _, err := f.WriteAt(gd, int64(d.gd)*sectorSize); err != nil {
			return nil, fmt.Errorf("vmdk %s: write grain directory: %w", name, err)
		}
	}
	if err := f.Truncate(int64(h.OverHead) * sectorSize); err != nil {
		return nil, fmt.Errorf("vmdk %s: %w", name, err)
	}
	return s, nil
}

// sparseLayout is the header of a sparse extent of sectors, with the
// embedded descriptor area or not: header, descriptor, redundant GD and GTs,
// GD and GTs, grains from OverHead on. rgt and gt are where the two sets of
// grain tables start (sectors).
func sparseLayout(sectors int64, withDesc, zeroedGrain bool) (h SparseHeader, rgt, gt uint64) {
	h = SparseHeader{
		Magic: sparseMagic, Version: 1, Flags: flagNewlineTest | flagRedundantGD,
		Capacity: uint64(sectors), GrainSize: writeGrainSectors, NumGTEsPerGT: gtesPerGT,
		SingleEndLineChar: '\n', NonEndLineChar: ' ', DoubleEndLineChar1: '\r', DoubleEndLineChar2: '\n',
	}
	if zeroedGrain {
		h.Version, h.Flags = 2, h.Flags|flagZeroedGrain
	}
	next := uint64(1)
	if withDesc {
		h.DescriptorOffset, h.DescriptorSize = 1, descriptorSectors
		next += descriptorSectors
	}
	gdEntries := h.gdEntries()
	gdSectors := (gdEntries*4 + sectorSize - 1) / sectorSize
	gtSectors := gdEntries * gtesPerGT * 4 / sectorSize
	h.RGDOffset = next
	rgt = next + gdSectors
	h.GDOffset = rgt + gtSectors
	gt = h.GDOffset + gdSectors
	h.OverHead = (gt + gtSectors + writeGrainSectors - 1) / writeGrainSectors * writeGrainSectors
	return h, rgt, gt
}

// write stores the non-zero grains of p, which starts at extent offset off
// (grain aligned). Runs of consecutive non-zero grains land contiguously and
// are written with one call.
func (s *sparseFile) write(off int64, p []byte) error {
	if off%writeGrainBytes != 0 {
		return fmt.Errorf("vmdk %s: write at %#x not grain aligned", s.name, off)
	}
	runStart, runLen := int64(-1), 0
	flushRun := func(end int) error {
		if runLen == 0 {
			return nil
		}
		q := p[end-runLen : end]
		if _, err := s.f.WriteAt(q, runStart*sectorSize); err != nil {
			return fmt.Errorf("vmdk %s: write grains at %#x: %w", s.name, runStart*sectorSize, err)
		}
		runLen = 0
		return nil
	}
	for i := 0; i < len(p); i += writeGrainBytes {
		end := min(len(p), i+writeGrainBytes)
		g := (off + int64(i)) / writeGrainBytes
		if isZero(p[i:end]) {
			if err := flushRun(i); err != nil {
				return err
			}
			continue
		}
		if t := g / gtesPerGT; t != s.cur {
			if err := flushRun(i); err != nil {
				return err
			}
			if err := s.flushGT(); err != nil {
				return err
			}
			s.cur = t
		}
		if s.next+writeGrainSectors > maxSparseFileSectors {
			return fmt.Errorf("vmdk %s: sparse extent would exceed 2 TiB", s.name)
		}
		if runLen == 0 {
			runStart = s.next
		}
		s.gt[g%gtesPerGT] = uint32(s.next)
		s.next += writeGrainSectors
		runLen += end - i
	}
	return flushRun(len(p))
}

func (s *sparseFile) flushGT() error {
	if s.cur < 0 {
		return nil
	}
	for i, v := range s.gt {
		binary.LittleEndian.PutUint32(s.gtb[i*4:], v)
	}
	for _, start := range []int64{s.rgtStart, s.gtStart} {
		off := (start + s.cur*4) * sectorSize
		if _, err := s.f.WriteAt(s.gtb[:], off); err != nil {
			return fmt.Errorf("vmdk %s: write grain table %d at %#x: %w", s.name, s.cur, off, err)
		}
	}
	s.gt = [gtesPerGT]uint32{}
	s.cur = -1
	return nil
}

func (s *sparseFile) finish() error {
	if err := s.flushGT(); err != nil {
		return err
	}
	// A last partial grain is padded to its full size.
	if err := s.f.Truncate(s.next * sectorSize); err != nil {
		return fmt.Errorf("vmdk %s: %w", s.name, err)
	}
	return nil
}
