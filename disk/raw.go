package disk

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Raw is a raw disk image: a file or block device whose bytes are the disk.
// Its allocation map comes from the filesystem (SEEK_DATA/SEEK_HOLE).
type Raw struct {
	f    *os.File
	size int64
	name string
}

// OpenRaw opens a raw image read-only.
func OpenRaw(path string) (*Raw, error) {
	f, err := OpenFile(path)
	if err != nil {
		return nil, err
	}
	size, err := f.Seek(0, io.SeekEnd) // works for block devices too
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("raw %s: size: %w", path, err)
	}
	return &Raw{f: f, size: size, name: path}, nil
}

func (r *Raw) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("raw %s: read at %d: %w", r.name, off, ErrOutOfRange)
	}
	if off >= r.size {
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > r.size-off {
		p = p[:r.size-off]
	}
	n, err := r.f.ReadAt(p, off)
	if err == nil && n < want {
		err = io.EOF
	}
	return n, err
}

func (r *Raw) Size() int64  { return r.size }
func (r *Raw) Close() error { return r.f.Close() }

// Extents asks the filesystem which ranges hold data. Filesystems without
// SEEK_DATA report everything as data.
func (r *Raw) Extents(off, length int64) ([]Extent, error) {
	off, end, ok := clipRange(off, length, r.size)
	if !ok {
		return nil, nil
	}
	var out []Extent
	fd := int(r.f.Fd())
	pos := off
	for pos < end {
		data, err := unix.Seek(fd, pos, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			data = end // no data after pos
		} else if err != nil {
			return []Extent{{Offset: off, Length: end - off, Kind: Data}}, nil
		}
		data = min(data, end)
		if data > pos {
			out = append(out, Extent{Offset: pos, Length: data - pos, Kind: Unallocated})
			pos = data
		}
		if pos >= end {
			break
		}
		hole, err := unix.Seek(fd, pos, unix.SEEK_HOLE)
		if err != nil {
			hole = end
		}
		hole = min(max(hole, pos+1), end)
		out = append(out, Extent{Offset: pos, Length: hole - pos, Kind: Data})
		pos = hole
	}
	return out, nil
}

// clipRange clips [off, off+length) to [0, size).
func clipRange(off, length, size int64) (int64, int64, bool) {
	if off < 0 {
		length += off
		off = 0
	}
	if length <= 0 || off >= size {
		return 0, 0, false
	}
	end := size
	if length < size-off {
		end = off + length
	}
	return off, end, true
}

// readerAtImage is an Image over any io.ReaderAt, every byte data.
type readerAtImage struct {
	r    io.ReaderAt
	size int64
}

// FromReaderAt wraps r as an image of the given size whose every byte is data.
// Close closes r if it is an io.Closer.
func FromReaderAt(r io.ReaderAt, size int64) Image { return &readerAtImage{r: r, size: size} }

func (m *readerAtImage) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, ErrOutOfRange
	}
	if off >= m.size {
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > m.size-off {
		p = p[:m.size-off]
	}
	n, err := m.r.ReadAt(p, off)
	if err == io.EOF && n == len(p) {
		err = nil
	}
	if err == nil && n < want {
		err = io.EOF
	}
	return n, err
}

func (m *readerAtImage) Size() int64 { return m.size }

func (m *readerAtImage) Extents(off, length int64) ([]Extent, error) {
	off, end, ok := clipRange(off, length, m.size)
	if !ok {
		return nil, nil
	}
	return []Extent{{Offset: off, Length: end - off, Kind: Data}}, nil
}

func (m *readerAtImage) Close() error {
	if c, ok := m.r.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// RawWriter writes a raw image. To a file it writes only the non-zero 4 KiB
// blocks of its chunks and leaves holes; to a pipe it writes every byte in
// order; on a block device, whose old contents would show through holes, it
// zeroes the zero chunks (discarding them where the device guarantees
// zeros).
type RawWriter struct {
	w        *os.File
	size     int64
	stream   bool  // the file cannot seek: zeros are written out
	device   bool  // a block device: zero chunks are zeroed
	pos      int64 // stream: bytes written so far
	prealloc Preallocation
	err      error
}

// Preallocation says how a raw file stores its zeros, as qemu-img's
// preallocation=off|falloc|full: as holes (the default), in blocks reserved
// with fallocate (reading as zeros), or written out.
type Preallocation int

const (
	PreallocOff Preallocation = iota
	PreallocFalloc
	PreallocFull
)

// Preallocate makes a file's zeros take space as p says; call it before the
// first chunk. Streams and devices have no holes and are left as they are.
func (w *RawWriter) Preallocate(p Preallocation) error {
	if w.err != nil || w.stream || w.device {
		return w.err
	}
	w.prealloc = p
	if p == PreallocFalloc && w.size > 0 {
		if err := unix.Fallocate(int(w.w.Fd()), 0, 0, w.size); err != nil {
			w.err = fmt.Errorf("raw %s: preallocation=falloc: %w", w.w.Name(), err)
		}
	}
	return w.err
}

// fillHoles writes zeros into every hole of the file (preallocation=full).
func (w *RawWriter) fillHoles() error {
	fd := int(w.w.Fd())
	for off := int64(0); off < w.size; {
		hole, err := unix.Seek(fd, off, unix.SEEK_HOLE)
		if err != nil || hole >= w.size {
			return err
		}
		data, err := unix.Seek(fd, hole, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			data, err = w.size, nil
		}
		if err != nil {
			return err
		}
		for at := hole; at < min(data, w.size); at += int64(len(zeros)) {
			n := min(int64(len(zeros)), min(data, w.size)-at)
			if _, err := w.w.WriteAt(zeros[:n], at); err != nil {
				return err
			}
		}
		off = data
	}
	return nil
}

// NewRawWriter writes an image of the given size to f. Close sets the final
// size (or pads the stream); it does not close f, whose owner (an Output)
// does. A block device smaller than the image is an error of the first
// write.
func NewRawWriter(f *os.File, size int64) *RawWriter {
	w := &RawWriter{w: f, size: size}
	fi, err := f.Stat()
	switch {
	case err != nil: // decided by whether it seeks, below
	case fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0:
		w.device = true
		end, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			w.err = fmt.Errorf("raw: %s: size: %w", f.Name(), err)
		} else if end < size {
			w.err = fmt.Errorf("raw: %s holds %d bytes, less than the image's %d", f.Name(), end, size)
		}
		return w
	case !fi.Mode().IsRegular() && fi.Mode()&os.ModeDevice == 0:
		w.stream = true // a pipe or socket
		return w
	}
	if _, err := f.Seek(0, io.SeekCurrent); err != nil {
		w.stream = true
	}
	return w
}

// WantsZeroChunks is set for a block device: its zero chunks must be
// written.
func (w *RawWriter) WantsZeroChunks() bool { return w.device }

func (w *RawWriter) WriteChunk(c *Chunk) error {
	if w.err != nil {
		return w.err
	}
	if c.Zero {
		if w.device {
			w.err = punchHole(w.w, c.Offset, int64(c.Length))
		}
		return w.err
	}
	if c.Offset < 0 || c.Offset+int64(len(c.Data)) > w.size {
		w.err = fmt.Errorf("raw: chunk at %#x past the size %d", c.Offset, w.size)
		return w.err
	}
	if w.stream {
		if c.Offset < w.pos {
			w.err = fmt.Errorf("raw: chunk at %#x out of order", c.Offset)
			return w.err
		}
		if w.err = w.writeZeros(c.Offset - w.pos); w.err != nil {
			return w.err
		}
		if _, w.err = w.w.Write(c.Data); w.err != nil {
			return w.err
		}
		w.pos = c.Offset + int64(len(c.Data))
		return nil
	}
	if w.device {
		_, w.err = w.w.WriteAt(c.Data, c.Offset)
		return w.err
	}
	w.err = WriteNonZero(w.w, c.Data, c.Offset)
	return w.err
}

// holeBlock is the granularity of holes in a raw file: zero blocks inside a
// chunk are left unwritten, as qemu-img's default (-S 4k) leaves them.
const holeBlock = 4096

// WriteNonZero writes p at off, skipping its zero holeBlocks (p starts on a
// block boundary of the file): each run of non-zero blocks is one write. In
// a new file, or over its holes, the blocks skipped read as the zeros they
// stand for.
func WriteNonZero(f *os.File, p []byte, off int64) error {
	return nonZeroRuns(p, func(start, end int) error {
		_, err := f.WriteAt(p[start:end], off+int64(start))
		return err
	})
}

// nonZeroRuns calls fn with each run [start, end) of p's holeBlock blocks
// (counted from p's start) that are not all zeros; an error of fn ends it.
func nonZeroRuns(p []byte, fn func(start, end int) error) error {
	run := -1 // start of the non-zero run being gathered
	for i := 0; i < len(p); i += holeBlock {
		if !IsZero(p[i:min(i+holeBlock, len(p))]) {
			if run < 0 {
				run = i
			}
			continue
		}
		if run >= 0 {
			if err := fn(run, i); err != nil {
				return err
			}
			run = -1
		}
	}
	if run >= 0 {
		return fn(run, len(p))
	}
	return nil
}

func (w *RawWriter) writeZeros(n int64) error {
	for n > 0 {
		k := min(n, int64(len(zeros)))
		if _, err := w.w.Write(zeros[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// Close finishes the image at its full size.
func (w *RawWriter) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.stream {
		w.err = w.writeZeros(w.size - w.pos)
		w.pos = w.size
	} else if fi, err := w.w.Stat(); err == nil && fi.Mode().IsRegular() {
		w.err = w.w.Truncate(w.size)
		if w.err == nil && w.prealloc == PreallocFull {
			if err := w.fillHoles(); err != nil {
				w.err = fmt.Errorf("raw %s: preallocation=full: %w", w.w.Name(), err)
			}
		}
	}
	if w.err == nil {
		w.err = errClosed
		return nil
	}
	return w.err
}

var errClosed = errors.New("writer closed")
