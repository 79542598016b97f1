package vmdk

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/klauspost/compress/zlib"

	"github.com/vmconv/vmconv/disk"
)

// streamWriter writes a streamOptimized VMDK in VMware's layout, front to
// back without seeking, so it works on a pipe: header (gdOffset at end),
// embedded descriptor, compressed grains each behind its LBA marker, each
// grain table behind a GT marker as soon as its grains are done, the grain
// directory behind a GD marker, then footer marker, footer and end-of-stream
// marker. Memory holds the grain directory only (4 bytes per 32 MiB).
type streamWriter struct {
	w        *bufio.Writer
	name     string
	size     int64
	hdr      SparseHeader
	level    int
	sector   int64 // sectors written so far
	gd       []uint32
	cur      int64 // GT being filled, -1 for none
	gt       [gtesPerGT]uint32
	order    disk.ChunkOrder
	err      error
	prepPool sync.Pool // *preparedChunk
	zPool    sync.Pool // *zlib.Writer
}

// preparedChunk is a chunk's grains compressed into grain records.
type preparedChunk struct {
	buf    appendBuf
	grains []preparedGrain
}

type preparedGrain struct {
	g        int64
	off, len int // record within buf, sector padded
}

type appendBuf struct{ b []byte }

func (a *appendBuf) Write(p []byte) (int, error) { a.b = append(a.b, p...); return len(p), nil }

func newStreamWriter(f *os.File, path string, size int64, opt Options) (*streamWriter, error) {
	sectors := (size + sectorSize - 1) / sectorSize
	name := filepath.Base(path)
	if path == disk.Stdout {
		name = "disk.vmdk"
	}
	d := newDescriptor(opt, sectors, []ExtentLine{{Access: "RW", Sectors: sectors, Type: "SPARSE", File: name}})
	desc := d.format()
	if len(desc) > (descriptorSectors-2)*sectorSize {
		return nil, fmt.Errorf("vmdk %s: descriptor of %d bytes does not fit the embedded area", path, len(desc))
	}
	s := &streamWriter{w: bufio.NewWriterSize(f, 256<<10), name: path, size: size, level: opt.CompressionLevel, cur: -1}
	s.hdr = SparseHeader{
		Magic: sparseMagic, Version: 3, Flags: flagNewlineTest | flagCompressed | flagMarkers,
		Capacity: uint64(sectors), GrainSize: writeGrainSectors, NumGTEsPerGT: gtesPerGT,
		DescriptorOffset: 1, DescriptorSize: descriptorSectors,
		GDOffset: gdAtEnd, OverHead: writeGrainSectors, CompressAlgorithm: compressDeflate,
		SingleEndLineChar: '\n', NonEndLineChar: ' ', DoubleEndLineChar1: '\r', DoubleEndLineChar2: '\n',
	}
	s.gd = make([]uint32, s.hdr.gdEntries())
	head := make([]byte, s.hdr.OverHead*sectorSize)
	s.hdr.encode(head)
	copy(head[sectorSize:], desc)
	if err := s.emit(head); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *streamWriter) emit(p []byte) error {
	if _, err := s.w.Write(p); err != nil {
		s.err = fmt.Errorf("vmdk %s: write: %w", s.name, err)
		return s.err
	}
	s.sector += int64(len(p)) / sectorSize
	return nil
}

// Prepare compresses the chunk's non-zero grains; it runs on the copy
// engine's workers.
func (s *streamWriter) Prepare(c *disk.Chunk) error {
	if c.Zero || c.Data == nil {
		return nil
	}
	pc, _ := s.prepPool.Get().(*preparedChunk)
	if pc == nil {
		pc = &preparedChunk{buf: appendBuf{b: make([]byte, 0, disk.ChunkSize/2)}}
	}
	pc.buf.b, pc.grains = pc.buf.b[:0], pc.grains[:0]
	zw, _ := s.zPool.Get().(*zlib.Writer)
	defer func() {
		if zw != nil {
			s.zPool.Put(zw)
		}
	}()
	for i := 0; i < len(c.Data); i += writeGrainBytes {
		p := c.Data[i:min(len(c.Data), i+writeGrainBytes)]
		if isZero(p) {
			continue
		}
		g := (c.Offset + int64(i)) / writeGrainBytes
		start := len(pc.buf.b)
		var m [12]byte
		binary.LittleEndian.PutUint64(m[:], uint64(g)*writeGrainSectors)
		pc.buf.b = append(pc.buf.b, m[:]...)
		if zw == nil {
			var err error
			if zw, err = zlib.NewWriterLevel(&pc.buf, s.level); err != nil {
				return err
			}
		} else {
			zw.Reset(&pc.buf)
		}
		if _, err := zw.Write(p); err != nil {
			return err
		}
		// The last grain is compressed up to the end of its last sector:
		// qemu refuses a grain shorter than the capacity it covers.
		if pad := (sectorSize - len(p)%sectorSize) % sectorSize; len(p) < writeGrainBytes && pad > 0 {
			if _, err := zw.Write(zeroBlock[:pad]); err != nil {
				return err
			}
		}
		if err := zw.Close(); err != nil {
			return err
		}
		cmp := len(pc.buf.b) - start - 12
		binary.LittleEndian.PutUint32(pc.buf.b[start+8:], uint32(cmp))
		if pad := (sectorSize - len(pc.buf.b)%sectorSize) % sectorSize; pad > 0 {
			pc.buf.b = append(pc.buf.b, zeroBlock[:pad]...)
		}
		pc.grains = append(pc.grains, preparedGrain{g: g, off: start, len: len(pc.buf.b) - start})
	}
	c.Prepared = pc
	return nil
}

func (s *streamWriter) WriteChunk(c *disk.Chunk) error {
	if s.err != nil {
		return s.err
	}
	if err := s.order.Take(c, s.size); err != nil {
		s.err = fmt.Errorf("vmdk %s: %w", s.name, err)
		return s.err
	}
	if c.Zero || c.Data == nil {
		return nil
	}
	if c.Prepared == nil {
		if s.err = s.Prepare(c); s.err != nil {
			return s.err
		}
	}
	pc, ok := c.Prepared.(*preparedChunk)
	if !ok {
		s.err = fmt.Errorf("vmdk %s: chunk at %#x prepared by another writer", s.name, c.Offset)
		return s.err
	}
	c.Prepared = nil
	for _, pg := range pc.grains {
		if t := pg.g / gtesPerGT; t != s.cur {
			if err := s.flushGT(); err != nil {
				return err
			}
			s.cur = t
		}
		s.gt[pg.g%gtesPerGT] = uint32(s.sector)
		if s.sector > maxSparseFileSectors {
			s.err = fmt.Errorf("vmdk %s: stream would exceed 2 TiB", s.name)
			return s.err
		}
		if err := s.emit(pc.buf.b[pg.off : pg.off+pg.len]); err != nil {
			return err
		}
	}
	s.prepPool.Put(pc)
	return nil
}

// metaMarker writes a metadata marker announcing n sectors of type t.
func (s *streamWriter) metaMarker(n int64, t uint32) error {
	var m [sectorSize]byte
	binary.LittleEndian.PutUint64(m[0:], uint64(n))
	binary.LittleEndian.PutUint32(m[12:], t)
	return s.emit(m[:])
}

func (s *streamWriter) flushGT() error {
	if s.cur < 0 {
		return nil
	}
	if err := s.metaMarker(4, markerGT); err != nil {
		return err
	}
	s.gd[s.cur] = uint32(s.sector)
	var b [gtesPerGT * 4]byte
	for i, v := range s.gt {
		binary.LittleEndian.PutUint32(b[i*4:], v)
	}
	s.gt = [gtesPerGT]uint32{}
	s.cur = -1
	return s.emit(b[:])
}

// Close writes the last grain table, the grain directory, the footer and the
// end-of-stream marker. It does not close the file, which the Output owns.
func (s *streamWriter) Close() error {
	if s.err != nil {
		return s.err
	}
	if err := s.flushGT(); err != nil {
		return err
	}
	gdSectors := (int64(len(s.gd))*4 + sectorSize - 1) / sectorSize
	if err := s.metaMarker(gdSectors, markerGD); err != nil {
		return err
	}
	gdOff := s.sector
	gd := make([]byte, gdSectors*sectorSize)
	for i, v := range s.gd {
		binary.LittleEndian.PutUint32(gd[i*4:], v)
	}
	if err := s.emit(gd); err != nil {
		return err
	}
	if err := s.metaMarker(1, markerFooter); err != nil {
		return err
	}
	f := s.hdr
	f.GDOffset = uint64(gdOff)
	var fb [sectorSize]byte
	f.encode(fb[:])
	if err := s.emit(fb[:]); err != nil {
		return err
	}
	if err := s.metaMarker(0, markerEOS); err != nil {
		return err
	}
	if err := s.w.Flush(); err != nil {
		s.err = fmt.Errorf("vmdk %s: write: %w", s.name, err)
		return s.err
	}
	s.err = fmt.Errorf("vmdk %s: writer closed", s.name)
	return nil
}
