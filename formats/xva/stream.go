package xva

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/neutral"
)

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// Detect reports whether head (the first bytes of a file, at least 512) is
// an uncompressed XVA: a tar header whose name is ova.xml.
func Detect(head []byte) bool {
	if len(head) < 512 {
		return false
	}
	h := head[:512]
	name := h[:100]
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	if string(name) != "ova.xml" {
		return false
	}
	// Header checksum: sum of all bytes with the checksum field as spaces.
	var sum int64
	for i, b := range h {
		if i >= 148 && i < 156 {
			b = ' '
		}
		sum += int64(b)
	}
	field := bytes.Trim(h[148:156], " \x00")
	var want int64
	for _, c := range field {
		if c < '0' || c > '7' {
			return false
		}
		want = want*8 + int64(c-'0')
	}
	return len(field) > 0 && want == sum
}

// DetectCompressed reports whether head starts a gzip- or zstd-compressed
// file that may be an XVA. The magic alone is not proof, so use it together
// with the .xva extension; when head decompresses to a full tar header, that
// header must name ova.xml.
func DetectCompressed(head []byte) bool {
	var r io.Reader
	switch {
	case bytes.HasPrefix(head, zstdMagic):
		d, err := zstd.NewReader(bytes.NewReader(head), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(64<<20))
		if err != nil {
			return false
		}
		defer d.Close()
		r = d
	case bytes.HasPrefix(head, gzipMagic):
		z, err := gzip.NewReader(bytes.NewReader(head))
		if err != nil {
			return false
		}
		r = z
	default:
		return false
	}
	buf := make([]byte, 512)
	n, _ := io.ReadFull(r, buf)
	if n < 512 {
		return true // not enough of the file to tell
	}
	return Detect(buf)
}

// decompress sniffs r's first bytes and wraps it in the right decoder, as
// xapi's importer does: plain tar, else zstd by magic, else gzip.
func decompress(r io.Reader) (io.Reader, func(), string, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(head, zstdMagic):
		d, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(1<<27))
		if err != nil {
			return nil, nil, "", fmt.Errorf("zstd: %w", err)
		}
		return d, d.Close, "zstd", nil
	case bytes.HasPrefix(head, gzipMagic):
		z, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, "", fmt.Errorf("gzip: %w", err)
		}
		return z, func() { z.Close() }, "gzip", nil
	}
	return br, func() {}, "", nil
}

// readOvaXML reads the first tar entry, which must be ova.xml.
func readOvaXML(tr *tar.Reader) (*Document, *layout, error) {
	hdr, err := tr.Next()
	if err == io.EOF {
		return nil, nil, errors.New("empty archive: no ova.xml")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("not a tar archive: %w", err)
	}
	if hdr.Name != "ova.xml" {
		return nil, nil, fmt.Errorf("first entry is %q, want ova.xml", clip(hdr.Name))
	}
	if hdr.Typeflag != tar.TypeReg {
		return nil, nil, fmt.Errorf("ova.xml: tar type %q, want a regular file", hdr.Typeflag)
	}
	if hdr.Size > MaxOvaXMLSize {
		return nil, nil, fmt.Errorf("ova.xml: %d bytes, more than the %d allowed", hdr.Size, MaxOvaXMLSize)
	}
	data := make([]byte, hdr.Size)
	if _, err := io.ReadFull(tr, data); err != nil {
		return nil, nil, fmt.Errorf("ova.xml: %w: %w", ErrTruncated, err)
	}
	doc, err := ParseOvaXML(data)
	if err != nil {
		return nil, nil, err
	}
	L, err := buildLayout(doc)
	if err != nil {
		return nil, nil, err
	}
	return doc, L, nil
}

// nextEntry returns the next disk-stream entry, skipping directories and
// refusing anything else that is not a regular file.
func nextEntry(tr *tar.Reader) (*tar.Header, entryName, error) {
	for {
		hdr, err := tr.Next()
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = fmt.Errorf("%w: %w", ErrTruncated, err)
			}
			return nil, entryName{}, err
		}
		if err := checkName(hdr.Name); err != nil {
			return nil, entryName{}, err
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			continue
		case tar.TypeReg:
		default:
			return nil, entryName{}, fmt.Errorf("entry %q: tar type %q, want a regular file", clip(hdr.Name), hdr.Typeflag)
		}
		e, err := parseEntryName(hdr.Name)
		if err != nil {
			return nil, entryName{}, err
		}
		return hdr, e, nil
	}
}

// StreamReader reads an XVA in one pass, from a pipe or a file: ova.xml
// first, then each disk's chunks in archive order.
type StreamReader struct {
	tr        *tar.Reader
	close     func()
	doc       *Document
	L         *layout
	vm        *neutral.VM
	w         *walker
	buf       []byte
	sum       []byte
	ahead     *tar.Header // a chunk header read but not yet consumed
	aheadName entryName
	cur       *diskStream
	held      *chunkPlan // first chunk of the next disk, read while returning an empty one
	returned  []bool     // per streamed VDI: handed out by NextDisk
	err       error      // sticky
	eof       bool
}

// NewStreamReader reads ova.xml from r (plain, gzip or zstd) and returns a
// reader positioned at the first disk.
func NewStreamReader(r io.Reader) (*StreamReader, error) {
	dr, closeFn, _, err := decompress(r)
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(dr)
	doc, L, err := readOvaXML(tr)
	if err != nil {
		closeFn()
		return nil, err
	}
	vm, err := toNeutral(doc, L)
	if err != nil {
		closeFn()
		return nil, err
	}
	return &StreamReader{tr: tr, close: closeFn, doc: doc, L: L, vm: vm, w: newWalker(L)}, nil
}

// VM returns the VM described by ova.xml; its disks have no Image.
func (s *StreamReader) VM() *neutral.VM { return s.vm }

// Document returns the parsed ova.xml.
func (s *StreamReader) Document() *Document { return s.doc }

// Close releases the decompressor.
func (s *StreamReader) Close() error {
	if s.close != nil {
		s.close()
		s.close = nil
	}
	return nil
}

// NextDisk returns the next disk of the VM in archive order (VDI id string
// order, not necessarily the VM's disk order) with its contents as a stream.
// Any unread rest of the previous disk is read and verified first. After the
// last disk it returns io.EOF, once the archive has been checked complete.
func (s *StreamReader) NextDisk() (string, disk.Stream, error) {
	if s.err != nil {
		return "", nil, s.err
	}
	if s.cur != nil {
		for {
			if _, _, err := s.cur.Next(); err == io.EOF {
				break
			} else if err != nil {
				return "", nil, err
			}
		}
		s.cur = nil
	}
	if s.returned == nil {
		s.returned = make([]bool, len(s.L.streamed))
	}
	for {
		p := s.held
		s.held = nil
		if p == nil {
			var err error
			p, err = s.readChunk()
			if err == io.EOF {
				// Disks of 0 bytes have no chunks; they still get a stream.
				if id, ds := s.emptyDisk(len(s.L.streamed)); ds != nil {
					return id, ds, nil
				}
				return "", nil, io.EOF
			}
			if err != nil {
				return "", nil, err
			}
		}
		if id, ds := s.emptyDisk(p.vdi); ds != nil {
			s.held = p // its bytes stay in s.buf until the next call
			return id, ds, nil
		}
		sv := &s.L.streamed[p.vdi]
		if sv.disk < 0 {
			continue // a VDI of no drive of this VM: verified and dropped
		}
		s.returned[p.vdi] = true
		d := s.L.disks[sv.disk]
		s.cur = &diskStream{s: s, vdi: p.vdi, size: sv.size, first: p}
		return d.id, s.cur, nil
	}
}

// emptyDisk returns a stream for the first 0-byte disk of the VM ordered
// before streamed VDI upto that has not been returned yet.
func (s *StreamReader) emptyDisk(upto int) (string, disk.Stream) {
	for k := 0; k < upto; k++ {
		sv := &s.L.streamed[k]
		if sv.disk >= 0 && sv.size == 0 && !s.returned[k] {
			s.returned[k] = true
			s.cur = &diskStream{s: s, vdi: k, done: true}
			return s.L.disks[sv.disk].id, s.cur
		}
	}
	return "", nil
}

func (s *StreamReader) fail(err error) error {
	if s.err == nil {
		s.err = err
	}
	return s.err
}

// readChunk reads the next chunk entry and its checksum file, verifies it
// and leaves its bytes in s.buf. It returns io.EOF at the end of the archive.
func (s *StreamReader) readChunk() (*chunkPlan, error) {
	for {
		if s.eof {
			return nil, io.EOF
		}
		var hdr *tar.Header
		var e entryName
		if s.ahead != nil {
			hdr, e, s.ahead = s.ahead, s.aheadName, nil
		} else {
			var err error
			hdr, e, err = nextEntry(s.tr)
			if err == io.EOF {
				s.eof = true
				if err := s.w.finish(); err != nil {
					return nil, s.fail(err)
				}
				return nil, io.EOF
			}
			if err != nil {
				return nil, s.fail(err)
			}
		}
		if e.ext != "" {
			return nil, s.fail(fmt.Errorf("entry %q: checksum file without its chunk just before it", clip(hdr.Name)))
		}
		p, err := s.w.chunk(hdr.Name, e, hdr.Size)
		if err != nil {
			return nil, s.fail(err)
		}
		if int64(cap(s.buf)) < p.entryLen {
			s.buf = make([]byte, p.entryLen) // at most ChunkSize, checked by chunk
		}
		data := s.buf[:p.entryLen]
		if _, err := io.ReadFull(s.tr, data); err != nil {
			return nil, s.fail(fmt.Errorf("%s chunk %d: %w: %w", s.w.vdiName(p.vdi), p.n, ErrTruncated, err))
		}
		chdr, ce, err := nextEntry(s.tr)
		if err == io.EOF {
			err = fmt.Errorf("%w: no checksum file follows", ErrTruncated)
		}
		if err != nil {
			return nil, s.fail(fmt.Errorf("%s chunk %d: %w", s.w.vdiName(p.vdi), p.n, err))
		}
		if ce.ext == "" {
			return nil, s.fail(fmt.Errorf("%s chunk %d (%s): no checksum file follows it (next entry %q)", s.w.vdiName(p.vdi), p.n, p.name, clip(chdr.Name)))
		}
		if _, err := s.w.checksum(chdr.Name, ce, chdr.Size); err != nil {
			return nil, s.fail(err)
		}
		if cap(s.sum) < int(chdr.Size) {
			s.sum = make([]byte, chdr.Size)
		}
		sum := s.sum[:chdr.Size]
		if _, err := io.ReadFull(s.tr, sum); err != nil {
			return nil, s.fail(fmt.Errorf("%s chunk %d checksum: %w: %w", s.w.vdiName(p.vdi), p.n, ErrTruncated, err))
		}
		if err := s.w.verify(p, ce.ext, sum, data); err != nil {
			return nil, s.fail(err)
		}
		return p, nil
	}
}

// diskStream is one disk of a StreamReader as a disk.Stream.
type diskStream struct {
	s     *StreamReader
	vdi   int
	size  int64
	first *chunkPlan // already read into s.buf
	done  bool
}

func (d *diskStream) Size() int64 { return d.size }

func (d *diskStream) Next() (int64, []byte, error) {
	for {
		if d.done {
			return 0, nil, io.EOF
		}
		var p *chunkPlan
		if d.first != nil {
			p, d.first = d.first, nil
		} else {
			hdr, e, err := d.peek()
			if err == io.EOF {
				d.done = true
				if d.s.w.cur == d.vdi {
					if err := d.s.w.endVDI(); err != nil {
						return 0, nil, d.s.fail(err)
					}
				}
				return 0, nil, io.EOF
			}
			if err != nil {
				return 0, nil, err
			}
			if e.ext == "" && e.dir != d.s.L.streamed[d.vdi].ref {
				d.s.ahead, d.s.aheadName = hdr, e
				d.done = true
				return 0, nil, io.EOF
			}
			d.s.ahead, d.s.aheadName = hdr, e
			p, err = d.s.readChunk()
			if err != nil {
				return 0, nil, err
			}
		}
		if p.length == 0 {
			continue // keep-alive entry
		}
		return p.off, d.s.buf[:p.length], nil
	}
}

// peek reads the next entry header without consuming it.
func (d *diskStream) peek() (*tar.Header, entryName, error) {
	s := d.s
	if s.err != nil {
		return nil, entryName{}, s.err
	}
	if s.ahead != nil {
		return s.ahead, s.aheadName, nil
	}
	if s.eof {
		return nil, entryName{}, io.EOF
	}
	hdr, e, err := nextEntry(s.tr)
	if err == io.EOF {
		s.eof = true
		if err := s.w.finish(); err != nil {
			return nil, entryName{}, s.fail(err)
		}
		return nil, entryName{}, io.EOF
	}
	if err != nil {
		return nil, entryName{}, s.fail(err)
	}
	return hdr, e, nil
}
