package vmdk

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/vmconv/vmconv/disk"
)

// CheckResult lists the structural problems Check found.
type CheckResult struct {
	Problems []disk.Problem `json:"problems"`
	// Grains counts allocated grains over all sparse extents.
	Grains int64 `json:"allocated-grains"`
}

type checker struct {
	res *CheckResult
}

func (c *checker) add(file string, off int64, format string, args ...any) {
	c.res.Problems = append(c.res.Problems, disk.Problemf(file, off, format, args...))
}

// Check verifies a VMDK's structure: grain tables and grains inside the file
// and outside its metadata, no grain used twice or overlapping another, the
// redundant grain directory agreeing with the primary, the footer agreeing
// with the header, markers well formed, every extent present with the size
// the descriptor gives, and the parent present with the expected CID. The
// error is only for I/O failures and files too malformed to parse.
func Check(path string) (*CheckResult, error) {
	c := &checker{res: &CheckResult{}}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("vmdk: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("vmdk %s: %w", path, err)
	}
	var head [4]byte
	n, _ := f.ReadAt(head[:], 0)
	var desc *Descriptor
	if n == 4 && string(head[:]) == "KDMV" {
		h, err := c.sparse(path, f, fi.Size())
		if err != nil {
			return nil, err
		}
		if h.DescriptorOffset != 0 && h.DescriptorSize != 0 {
			text := make([]byte, h.DescriptorSize*sectorSize)
			if _, err := f.ReadAt(text, int64(h.DescriptorOffset)*sectorSize); err != nil {
				return nil, fmt.Errorf("vmdk %s: read embedded descriptor: %w", path, err)
			}
			if desc, err = ParseDescriptor(path, text); err != nil {
				return nil, err
			}
			if len(desc.Extents) != 1 || desc.Extents[0].Type != "SPARSE" {
				c.add(path, int64(h.DescriptorOffset)*sectorSize, "embedded descriptor has %d extent lines, want one SPARSE line", len(desc.Extents))
			} else if desc.Extents[0].Sectors != int64(h.Capacity) {
				c.add(path, int64(h.DescriptorOffset)*sectorSize, "embedded descriptor extent is %d sectors, header capacity %d", desc.Extents[0].Sectors, h.Capacity)
			}
		}
	} else {
		if fi.Size() > maxDescriptorFile {
			return nil, fmt.Errorf("vmdk %s: not a sparse extent and too large (%d bytes) for a descriptor", path, fi.Size())
		}
		text, err := io.ReadAll(f)
		if err != nil {
			return nil, fmt.Errorf("vmdk %s: %w", path, err)
		}
		if desc, err = ParseDescriptor(path, text); err != nil {
			return nil, err
		}
		c.extents(path, desc)
	}
	if desc != nil && desc.ParentFileNameHint != "" {
		c.parent(path, desc)
	}
	return c.res, nil
}

func (c *checker) extents(path string, d *Descriptor) {
	dir := filepath.Dir(path)
	for i, e := range d.Extents {
		if e.Type == "ZERO" {
			continue
		}
		p, err := resolvePath(dir, e.File)
		if err != nil {
			c.add(path, 0, "extent %d %q: %v", i+1, e.File, err)
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			c.add(p, 0, "extent %d: %v", i+1, err)
			continue
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			c.add(p, 0, "extent %d: %v", i+1, err)
			continue
		}
		switch e.Type {
		case "FLAT", "VMFS":
			need := (e.Offset + e.Sectors) * sectorSize
			if e.Type == "VMFS" {
				need = e.Sectors * sectorSize
			}
			if fi.Size() < need {
				c.add(p, fi.Size(), "extent %d: file is %d bytes, the descriptor needs %d", i+1, fi.Size(), need)
			}
		case "SESPARSE", "VMFSSPARSE":
			if e.Type == "SESPARSE" || isCOWD(f) {
				c.esx(i+1, e, p, f, fi.Size())
				break
			}
			fallthrough // a hosted sparse file under the ESXi name, as qemu takes it
		case "SPARSE":
			h, err := c.sparse(p, f, fi.Size())
			if err != nil {
				c.add(p, 0, "extent %d: %v", i+1, err)
			} else if int64(h.Capacity) < e.Sectors {
				c.add(p, 12, "extent %d: capacity %d sectors, the descriptor needs %d", i+1, h.Capacity, e.Sectors)
			}
		default:
			c.add(path, 0, "extent %d: type %s not supported", i+1, e.Type)
		}
		f.Close()
	}
}

func (c *checker) parent(path string, d *Descriptor) {
	pp, err := resolvePath(filepath.Dir(path), d.ParentFileNameHint)
	if err != nil {
		c.add(path, 0, "parent %q: %v", d.ParentFileNameHint, err)
		return
	}
	img, err := Open(pp)
	if err != nil {
		c.add(pp, 0, "parent: %v", err)
		return
	}
	defer img.Close()
	if d.ParentCID != noParentCID && img.desc.CID != d.ParentCID {
		c.add(path, 0, "parentCID=%08x but parent %s has CID=%08x", d.ParentCID, pp, img.desc.CID)
	}
}

// sparse checks one sparse extent and returns the header in force.
func (c *checker) sparse(name string, r io.ReaderAt, size int64) (SparseHeader, error) {
	h, ok, err := c.sparseHeader(name, r, size)
	if err != nil || !ok {
		return h, err
	}
	s := &sparseCheck{checker: c, name: name, r: r, size: size, h: h,
		metaEnd:    int64(h.OverHead) * sectorSize,
		grainBytes: int64(h.GrainSize) * sectorSize,
		capBytes:   int64(h.Capacity) * sectorSize,
	}
	if h.GDOffset > uint64(size)/sectorSize {
		c.add(name, 56, "grain directory sector %d lies past the end of the file", h.GDOffset)
		return h, nil
	}
	// A bad overHead is one problem, not one for every grain it would put
	// inside the metadata; the grains are still checked against the file.
	if h.OverHead > uint64(size)/sectorSize {
		c.add(name, 64, "overHead %d sectors lies past the end of the file (%d sectors)", h.OverHead, size/sectorSize)
		s.metaEnd = 0
	}
	gd := s.read(h.GDOffset*sectorSize, h.gdEntries()*4, "grain directory")
	if gd == nil {
		return h, nil
	}
	gts, uses := s.grainTables(gd)
	c.res.Grains += int64(len(uses))
	s.overlaps(uses)
	if h.markers() && h.GDOffset*sectorSize >= uint64(s.metaEnd) {
		gdSectors := (uint64(len(gd)) + sectorSize - 1) / sectorSize
		c.marker(name, r, int64(h.GDOffset-1)*sectorSize, markerGD, gdSectors, "grain directory")
	}
	if h.Flags&flagRedundantGD != 0 && h.RGDOffset != 0 {
		s.redundantGD(gd, gts)
	}
	return h, nil
}

// sparseHeader reads and validates a sparse extent's header, the footer's
// in its place when the grain directory is at the end (streamOptimized).
// ok is false when the check can go no further, the problem reported.
func (c *checker) sparseHeader(name string, r io.ReaderAt, size int64) (h SparseHeader, ok bool, err error) {
	var b [sectorSize]byte
	if size < sectorSize {
		return SparseHeader{}, false, fmt.Errorf("vmdk %s: truncated header (%d bytes)", name, size)
	}
	if _, err := r.ReadAt(b[:], 0); err != nil {
		return SparseHeader{}, false, fmt.Errorf("vmdk %s: %w", name, err)
	}
	h = decodeHeader(b[:])
	if err := h.validate("header"); err != nil {
		return h, false, fmt.Errorf("vmdk %s: %w", name, err)
	}
	if h.GDOffset == gdAtEnd {
		sp := &sparseExtent{name: name, r: r, fileSize: size}
		if err := sp.readFooter(); err != nil {
			c.add(name, size-3*sectorSize, "%v", err)
			return h, false, nil
		}
		c.footerAgrees(name, size-2*sectorSize, &h, &sp.hdr)
		h = sp.hdr
	}
	if h.DescriptorOffset != 0 && (h.DescriptorOffset+h.DescriptorSize)*sectorSize > uint64(size) {
		c.add(name, 28, "embedded descriptor (sectors %d+%d) runs past the end of the file", h.DescriptorOffset, h.DescriptorSize)
	}
	return h, true, nil
}

// sparseCheck is the check of one sparse extent past its header.
type sparseCheck struct {
	*checker
	name       string
	r          io.ReaderAt
	size       int64
	h          SparseHeader
	metaEnd    int64 // grains must lie past the metadata (overHead)
	grainBytes int64
	capBytes   int64
}

// grainUse is where one grain lies in the file and which entry points at it.
type grainUse struct {
	off, end int64
	gt, gte  int
}

// read reads n bytes at off, or reports why it cannot and returns nil. n is
// bounded by the file's size before anything is allocated.
func (s *sparseCheck) read(off, n uint64, what string) []byte {
	if off > uint64(s.size) || off+n > uint64(s.size) {
		s.add(s.name, int64(min(off, uint64(s.size))), "%s (%d bytes at %#x) runs past the end of the file (%#x)", what, n, off, s.size)
		return nil
	}
	buf := make([]byte, n)
	if _, err := s.r.ReadAt(buf, int64(off)); err != nil {
		s.add(s.name, int64(off), "%s: %v", what, err)
		return nil
	}
	return buf
}

// grainTables reads the grain tables the directory gd points at, each once,
// and returns them by directory entry with the grains they use.
func (s *sparseCheck) grainTables(gd []byte) (map[uint32][]byte, []grainUse) {
	var uses []grainUse
	gts := make(map[uint32][]byte)
	gtSeen := make(map[uint32]int)
	for i := 0; i < len(gd)/4; i++ {
		e := binary.LittleEndian.Uint32(gd[i*4:])
		if e == 0 {
			continue
		}
		if j, ok := gtSeen[e]; ok {
			s.add(s.name, int64(s.h.GDOffset)*sectorSize+int64(i)*4, "grain directory entries %d and %d both point at the grain table at sector %d", j, i, e)
			continue
		}
		gtSeen[e] = i
		gtOff := int64(e) * sectorSize
		gt := s.read(uint64(gtOff), gtesPerGT*4, fmt.Sprintf("grain table %d", i))
		if gt == nil {
			continue
		}
		gts[uint32(i)] = gt
		if s.h.markers() && gtOff >= s.metaEnd {
			s.marker(s.name, s.r, gtOff-sectorSize, markerGT, 4, fmt.Sprintf("grain table %d", i))
		}
		uses = s.grainTable(uses, i, gtOff, gt)
	}
	return gts, uses
}

// grainTable checks the entries of grain table i (at gtOff) and appends the
// grains they use.
func (s *sparseCheck) grainTable(uses []grainUse, i int, gtOff int64, gt []byte) []grainUse {
	for j := 0; j < gtesPerGT; j++ {
		v := binary.LittleEndian.Uint32(gt[j*4:])
		g := int64(i)*gtesPerGT + int64(j)
		if v == 0 || g*s.grainBytes >= s.capBytes {
			continue
		}
		where := gtOff + int64(j)*4
		if v == gteZeroed {
			if s.h.Flags&flagZeroedGrain == 0 {
				s.add(s.name, where, "grain table %d entry %d is 1 (zeroed grain) but the header lacks the zeroed-grain flag", i, j)
			}
			continue
		}
		off := int64(v) * sectorSize
		if off < s.metaEnd {
			s.add(s.name, where, "grain table %d entry %d points at sector %d, inside the metadata (overHead %d)", i, j, v, s.h.OverHead)
			continue
		}
		n := min(s.grainBytes, s.capBytes-g*s.grainBytes)
		if s.h.compressed() {
			n = s.compressedGrain(s.name, s.r, s.size, &s.h, off, g, s.grainBytes)
			if n < 0 {
				continue
			}
		}
		if off+n > s.size {
			s.add(s.name, where, "grain table %d entry %d: grain at %#x (%d bytes) runs past the end of the file (%#x)", i, j, off, n, s.size)
			continue
		}
		uses = append(uses, grainUse{off, off + n, i, j})
	}
	return uses
}

// overlaps reports grains that share bytes of the file.
func (s *sparseCheck) overlaps(uses []grainUse) {
	sort.Slice(uses, func(a, b int) bool { return uses[a].off < uses[b].off })
	for k := 1; k < len(uses); k++ {
		p, u := uses[k-1], uses[k]
		if u.off < p.end {
			kind := "overlaps"
			if u.off == p.off {
				kind = "is the same grain as"
			}
			s.add(s.name, u.off, "grain of table %d entry %d %s the grain of table %d entry %d", u.gt, u.gte, kind, p.gt, p.gte)
		}
	}
}

// redundantGD compares the redundant grain directory and its tables with
// the primary ones (gd, gts).
func (s *sparseCheck) redundantGD(gd []byte, gts map[uint32][]byte) {
	if s.h.RGDOffset > uint64(s.size)/sectorSize { // before ×512 can wrap
		s.add(s.name, 48, "redundant grain directory sector %d lies past the end of the file", s.h.RGDOffset)
		return
	}
	rgdOff := s.h.RGDOffset * sectorSize
	rgd := s.read(rgdOff, uint64(len(gd)), "redundant grain directory")
	for i := 0; rgd != nil && i < len(gd)/4; i++ {
		e := binary.LittleEndian.Uint32(rgd[i*4:])
		p := binary.LittleEndian.Uint32(gd[i*4:])
		if (e == 0) != (p == 0) {
			s.add(s.name, int64(rgdOff)+int64(i)*4, "redundant grain directory entry %d is %d, the primary %d", i, e, p)
			continue
		}
		if e == 0 || gts[uint32(i)] == nil {
			continue
		}
		rgt := s.read(uint64(e)*sectorSize, gtesPerGT*4, fmt.Sprintf("redundant grain table %d", i))
		if rgt == nil {
			continue
		}
		pgt := gts[uint32(i)]
		for j := 0; j < gtesPerGT; j++ {
			a, b := binary.LittleEndian.Uint32(rgt[j*4:]), binary.LittleEndian.Uint32(pgt[j*4:])
			if a != b {
				s.add(s.name, int64(e)*sectorSize+int64(j)*4, "redundant grain table %d entry %d is %d, the primary %d", i, j, a, b)
			}
		}
	}
}

// compressedGrain checks a compressed grain's record and returns the bytes it
// occupies, or -1 after reporting a problem.
func (c *checker) compressedGrain(name string, r io.ReaderAt, size int64, h *SparseHeader, off, g, grainBytes int64) int64 {
	hl := int64(4)
	if h.markers() {
		hl = 12
	}
	if off+hl > size {
		c.add(name, off, "grain %d: record header past the end of the file", g)
		return -1
	}
	var b [12]byte
	if _, err := r.ReadAt(b[:hl], off); err != nil {
		c.add(name, off, "grain %d: %v", g, err)
		return -1
	}
	var n int64
	if h.markers() {
		m := decodeMarker(b[:])
		if want := uint64(g) * h.GrainSize; m.Val != want {
			c.add(name, off, "grain %d: marker LBA %d, want %d", g, m.Val, want)
		}
		n = int64(m.Size)
	} else {
		n = int64(binary.LittleEndian.Uint32(b[:]))
	}
	if n == 0 || n > 2*grainBytes {
		c.add(name, off, "grain %d: compressed size %d, want 1 to %d", g, n, 2*grainBytes)
		return -1
	}
	return (hl + n + sectorSize - 1) / sectorSize * sectorSize
}

// marker checks the metadata marker expected at off.
func (c *checker) marker(name string, r io.ReaderAt, off int64, typ uint32, sectors uint64, what string) {
	var b [sectorSize]byte
	if off < 0 {
		return
	}
	if _, err := r.ReadAt(b[:], off); err != nil {
		c.add(name, off, "%s marker: %v", what, err)
		return
	}
	m := decodeMarker(b[:])
	if m.Size != 0 || m.Type != typ || m.Val != sectors {
		c.add(name, off, "%s marker: numSectors %d size %d type %d, want %d 0 %d", what, m.Val, m.Size, m.Type, sectors, typ)
	}
}

func (c *checker) footerAgrees(name string, off int64, h, f *SparseHeader) {
	type field struct {
		name string
		a, b uint64
	}
	for _, x := range []field{
		{"version", uint64(h.Version), uint64(f.Version)},
		{"flags", uint64(h.Flags), uint64(f.Flags)},
		{"capacity", h.Capacity, f.Capacity},
		{"grainSize", h.GrainSize, f.GrainSize},
		{"descriptorOffset", h.DescriptorOffset, f.DescriptorOffset},
		{"descriptorSize", h.DescriptorSize, f.DescriptorSize},
		{"numGTEsPerGT", uint64(h.NumGTEsPerGT), uint64(f.NumGTEsPerGT)},
		{"overHead", h.OverHead, f.OverHead},
		{"compressAlgorithm", uint64(h.CompressAlgorithm), uint64(f.CompressAlgorithm)},
	} {
		if x.a != x.b {
			c.add(name, off, "footer %s %d differs from header %d", x.name, x.b, x.a)
		}
	}
}

// OK reports whether Check found nothing wrong.
func (r *CheckResult) OK() bool { return len(r.Problems) == 0 }

// esx checks an ESXi delta extent: its headers and directory, and every
// grain table it points at.
func (c *checker) esx(n int, e ExtentLine, name string, r io.ReaderAt, size int64) {
	x, err := openESX(e.Type, name, r, size)
	if err != nil {
		c.add(name, 0, "extent %d: %v", n, err)
		return
	}
	if x.capBytes < e.Sectors*sectorSize {
		c.add(name, 0, "extent %d: capacity %d bytes, the descriptor needs %d sectors", n, x.capBytes, e.Sectors)
	}
	for t, at := range x.gd {
		if at == 0 {
			continue
		}
		tab, err := x.loadTable(int64(t))
		if err != nil {
			c.add(name, at, "extent %d: %v", n, err)
			continue
		}
		for _, d := range tab {
			if d > 0 {
				c.res.Grains++
			}
		}
	}
}
