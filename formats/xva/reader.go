package xva

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/neutral"
)

// ErrCompressed is returned by Open for gzip- or zstd-compressed exports:
// random access needs the plain tar. Read those with NewStreamReader.
var ErrCompressed = errors.New("compressed XVA: random access needs an uncompressed .xva; read it as a stream (from stdin) or decompress it first")

// Open indexes an uncompressed XVA file for random access: one pass over the
// tar headers, seeking past the data. Each drive with contents gets an Image
// whose chunks are checksum-verified the first time they are read. Close the
// VM to close the file.
func Open(path string) (*neutral.VM, error) {
	f, err := disk.OpenFile(path)
	if err != nil {
		return nil, fmt.Errorf("xva %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("xva %s: %w", path, err)
	}
	var head [4]byte
	n, _ := f.ReadAt(head[:], 0)
	if bytes.HasPrefix(head[:n], gzipMagic) || bytes.HasPrefix(head[:n], zstdMagic) {
		f.Close()
		return nil, fmt.Errorf("xva %s: %w", path, ErrCompressed)
	}
	vm, _, err := openReaderAt(f, fi.Size(), &fileCloser{f: f}, path)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("xva %s: %w", path, err)
	}
	vm.Source = &neutral.Source{Format: "xva", File: path}
	return vm, nil
}

// fileCloser closes the shared file once every image is closed.
type fileCloser struct {
	f    *os.File
	refs atomic.Int32
}

func (c *fileCloser) release() error {
	if c.refs.Add(-1) == 0 {
		return c.f.Close()
	}
	return nil
}

// chunkRef is one chunk entry located in the file.
type chunkRef struct {
	off      int64 // disk offset
	length   int64 // bytes inside the disk
	fileOff  int64 // data offset in the archive
	entryLen int64 // bytes of the entry (all covered by the checksum)
	n        int64
	name     string
	kind     string
	sum      string
}

// openReaderAt indexes an XVA held in r; closer (may be nil) is released
// when the last image is closed.
func openReaderAt(r io.ReaderAt, size int64, closer *fileCloser, file string) (*neutral.VM, *Document, error) {
	sr := io.NewSectionReader(r, 0, size)
	tr := tar.NewReader(sr)
	doc, L, err := readOvaXML(tr)
	if err != nil {
		return nil, nil, err
	}
	vm, err := toNeutral(doc, L)
	if err != nil {
		return nil, nil, err
	}
	w := newWalker(L)
	chunks := make([][]chunkRef, len(L.streamed))
	for {
		hdr, e, err := nextEntry(tr)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		pos, _ := sr.Seek(0, io.SeekCurrent) // tar.Reader stops at the data
		if e.ext == "" {
			if _, err := w.chunk(hdr.Name, e, hdr.Size); err != nil {
				return nil, nil, err
			}
			if pos+hdr.Size > size {
				return nil, nil, fmt.Errorf("entry %q: %w: data ends past the end of the file", clip(hdr.Name), ErrTruncated)
			}
			p := w.pending
			chunks[p.vdi] = append(chunks[p.vdi], chunkRef{off: p.off, length: p.length, fileOff: pos, entryLen: p.entryLen, n: p.n, name: p.name})
			continue
		}
		p, err := w.checksum(hdr.Name, e, hdr.Size)
		if err != nil {
			return nil, nil, err
		}
		buf := make([]byte, hdr.Size)
		if _, err := io.ReadFull(tr, buf); err != nil {
			return nil, nil, fmt.Errorf("entry %q: %w: %w", clip(hdr.Name), ErrTruncated, err)
		}
		c := &chunks[p.vdi][len(chunks[p.vdi])-1]
		c.kind, c.sum = e.ext, string(bytes.TrimSpace(buf))
	}
	if err := w.finish(); err != nil {
		return nil, nil, err
	}
	for i, s := range L.streamed {
		if s.disk < 0 {
			continue
		}
		cs := chunks[i][:0]
		for _, c := range chunks[i] {
			if c.length > 0 { // drop keep-alive entries
				cs = append(cs, c)
			}
		}
		img := &Image{file: file, r: r, size: s.size, chunks: cs, verified: make([]atomic.Bool, len(cs)), w: w, vdi: i, closer: closer}
		if closer != nil {
			closer.refs.Add(1)
		}
		vm.Disks[s.disk].Image = img
	}
	if closer != nil && closer.refs.Load() == 0 {
		closer.refs.Add(1)
		_ = closer.release() // no image holds the file
	}
	return vm, doc, nil
}

// Image is one disk of an indexed XVA. Present chunks are Data, absent ones
// Unallocated. ReadAt is safe for concurrent use; each chunk's checksum is
// verified the first time any of its bytes is read.
type Image struct {
	file     string // for error messages
	r        io.ReaderAt
	size     int64
	chunks   []chunkRef // sorted by off, non-overlapping
	verified []atomic.Bool
	w        *walker // for error names
	vdi      int
	closer   *fileCloser
	once     sync.Once
}

func (m *Image) Size() int64 { return m.size }

func (m *Image) Close() error {
	var err error
	m.once.Do(func() {
		if m.closer != nil {
			err = m.closer.release()
		}
	})
	return err
}

// find returns the index of the first chunk ending after off.
func (m *Image) find(off int64) int {
	return sort.Search(len(m.chunks), func(i int) bool { return m.chunks[i].off+m.chunks[i].length > off })
}

func (m *Image) Extents(off, length int64) ([]disk.Extent, error) {
	if off < 0 || length < 0 {
		return nil, disk.ErrOutOfRange
	}
	end := min(off+length, m.size)
	var out []disk.Extent
	add := func(o, e int64, k disk.Kind) {
		if e <= o {
			return
		}
		if n := len(out); n > 0 && out[n-1].Kind == k && out[n-1].End() == o {
			out[n-1].Length += e - o
			return
		}
		out = append(out, disk.Extent{Offset: o, Length: e - o, Kind: k})
	}
	pos := off
	for i := m.find(off); i < len(m.chunks) && pos < end; i++ {
		c := &m.chunks[i]
		add(pos, min(c.off, end), disk.Unallocated)
		s := max(c.off, pos)
		e := min(c.off+c.length, end)
		add(s, e, disk.Data)
		pos = max(pos, e)
	}
	add(pos, end, disk.Unallocated)
	return out, nil
}

func (m *Image) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, disk.ErrOutOfRange
	}
	if off >= m.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	want := p
	if int64(len(p)) > m.size-off {
		want = p[:m.size-off]
	}
	clear(want)
	pos := off
	end := off + int64(len(want))
	for i := m.find(off); i < len(m.chunks) && pos < end; i++ {
		c := &m.chunks[i]
		if c.off >= end {
			break
		}
		s, e := max(c.off, pos), min(c.off+c.length, end)
		dst := want[s-off : e-off]
		var err error
		switch {
		case m.verified[i].Load():
			_, err = m.r.ReadAt(dst, c.fileOff+(s-c.off))
		case s == c.off && e-s == c.entryLen:
			// The read covers the whole entry: verify it in place.
			if _, err = m.r.ReadAt(dst, c.fileOff); err == nil {
				err = m.check(i, dst)
			}
		default:
			// Read the whole entry once, verify it, copy the part wanted.
			bp := chunkPool.Get().(*[]byte)
			buf := (*bp)[:c.entryLen]
			if _, err = m.r.ReadAt(buf, c.fileOff); err == nil {
				if err = m.check(i, buf); err == nil {
					copy(dst, buf[s-c.off:])
				}
			}
			chunkPool.Put(bp)
		}
		if errors.Is(err, ErrChecksum) {
			return int(s - off), fmt.Errorf("xva %s: %w", m.file, err)
		}
		if err != nil {
			return int(s - off), fmt.Errorf("xva %s: %s chunk %d: %w", m.file, m.w.vdiName(m.vdi), c.n, err)
		}
		pos = e
	}
	if len(want) < len(p) {
		return len(want), io.EOF
	}
	return len(p), nil
}

// check verifies a whole chunk entry's bytes against its checksum file.
// Two readers may check the same chunk at once; both get the same answer.
func (m *Image) check(i int, data []byte) error {
	c := &m.chunks[i]
	p := &chunkPlan{vdi: m.vdi, name: c.name, n: c.n}
	if err := m.w.verify(p, c.kind, []byte(c.sum), data); err != nil {
		return err
	}
	m.verified[i].Store(true)
	return nil
}

var chunkPool = sync.Pool{New: func() any { b := make([]byte, ChunkSize); return &b }}

// Check reads a whole XVA (plain or compressed) once and verifies its
// structure and every chunk's checksum. It returns the problem found (the
// reader stops at the first), or an error when the file cannot be read.
func Check(path string) ([]disk.Problem, error) {
	f, err := disk.OpenFile(path)
	if err != nil {
		return nil, fmt.Errorf("xva %s: %w", path, err)
	}
	defer f.Close()
	if err := readAllDisks(f); err != nil {
		return []disk.Problem{{File: path, Offset: -1, What: err.Error()}}, nil
	}
	return nil, nil
}

// readAllDisks reads every disk of the XVA in r to its end.
func readAllDisks(r io.Reader) error {
	sr, err := NewStreamReader(r)
	if err != nil {
		return err
	}
	defer sr.Close()
	for {
		_, s, err := sr.NextDisk()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		for {
			if _, _, err := s.Next(); err == io.EOF {
				break
			} else if err != nil {
				return err
			}
		}
	}
}
