// Package initramfs reads a Linux initramfs as the kernel unpacks it:
// concatenated cpio "newc" archives (magic 070701, or 070702 with
// checksums), each ended by TRAILER!!!, an uncompressed early-microcode
// archive in front, then archives compressed with gzip, xz, zstd, lz4
// (legacy frame, as the kernel and `lz4 -l` write it), bzip2 or lzma, with
// zero padding allowed between them.
//
// It lists the entries and keeps the contents of small files, within
// bounds on the total decompressed bytes and the number of entries, so a
// crafted image (a decompression bomb, a header claiming 4 GiB) costs no
// more than the bounds.
package initramfs

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// Limits bound what one image may cost. Zero fields take the defaults.
type Limits struct {
	MaxBytes   int64 // total decompressed bytes read, over all archives
	MaxEntries int   // entries over all archives
	MaxKeep    int64 // files up to this size have their contents kept
	MaxKept    int64 // total bytes of kept contents
}

// DefaultLimits fit a distribution's initramfs (tens of MiB unpacked, a few
// thousand entries) with room to spare.
var DefaultLimits = Limits{MaxBytes: 1 << 30, MaxEntries: 200000, MaxKeep: 1 << 20, MaxKept: 64 << 20}

// Entry is one member of an archive.
type Entry struct {
	Name    string // without a leading "/" or "./"
	Mode    uint32 // type and permission bits as cpio stores them
	Size    int64
	Archive int    // which archive (0 first) it came from
	Format  string // "cpio", "gzip", "xz", "zstd", "lz4", "bzip2", "lzma": how that archive was stored
}

// IsRegular reports whether the entry is a regular file.
func (e Entry) IsRegular() bool { return e.Mode&0o170000 == 0o100000 }

// IsDir reports whether the entry is a directory.
func (e Entry) IsDir() bool { return e.Mode&0o170000 == 0o040000 }

// Image is a read initramfs.
type Image struct {
	Entries  []Entry
	Archives []string // the format of each archive, in order
	// Notes say what was left unread: data after a compressed stream that
	// its decompressor could not read on (padding, another archive).
	Notes []string
	kept  map[string][]byte
	big   map[string]bool // regular files too large to keep
}

// ErrNotKept is returned by ReadFile for a file larger than the MaxKeep bound.
var ErrNotKept = errors.New("initramfs: file too large to have been kept")

// ReadFile returns the contents of a regular file (name with or without a
// leading "/"), when it was no larger than max and the MaxKeep bound.
func (im *Image) ReadFile(name string, max int64) ([]byte, error) {
	name = clean(name)
	if im.big[name] {
		return nil, fmt.Errorf("%s: %w", name, ErrNotKept)
	}
	b, ok := im.kept[name]
	if !ok {
		return nil, fmt.Errorf("initramfs: %s: no such file", name)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("initramfs: %s: %d bytes, more than %d", name, len(b), max)
	}
	return b, nil
}

func clean(name string) string {
	name = strings.TrimPrefix(path.Clean("/"+name), "/")
	return name
}

// Read parses a whole initramfs image.
func Read(data []byte, lim Limits) (*Image, error) {
	lim = lim.withDefaults()
	p := &parser{lim: lim, im: &Image{kept: map[string][]byte{}, big: map[string]bool{}}}
	r := bytes.NewReader(data)
	for {
		if err := skipZeros(r); err != nil {
			break // only padding left
		}
		off := int64(len(data)) - int64(r.Len())
		var head [6]byte
		n, _ := r.ReadAt(head[:], off)
		format, err := sniff(head[:n])
		if err != nil {
			return nil, fmt.Errorf("initramfs: archive %d at offset %#x: %w", len(p.im.Archives), off, err)
		}
		p.im.Archives = append(p.im.Archives, format)
		more, err := p.archive(r, format, off)
		if err != nil {
			return nil, fmt.Errorf("initramfs: archive %d (%s) at offset %#x: %w", len(p.im.Archives)-1, format, off, err)
		}
		if !more {
			break
		}
	}
	if len(p.im.Archives) == 0 {
		return nil, errors.New("initramfs: empty image")
	}
	return p.im, nil
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.MaxBytes > 0 {
		d.MaxBytes = l.MaxBytes
	}
	if l.MaxEntries > 0 {
		d.MaxEntries = l.MaxEntries
	}
	if l.MaxKeep > 0 {
		d.MaxKeep = l.MaxKeep
	}
	if l.MaxKept > 0 {
		d.MaxKept = l.MaxKept
	}
	return d
}

// skipZeros moves r past zero padding; io.EOF when nothing else is left.
func skipZeros(r *bytes.Reader) error {
	for {
		b, err := r.ReadByte()
		if err != nil {
			return err
		}
		if b != 0 {
			return r.UnreadByte()
		}
	}
}

// sniff names the format an archive starts with.
func sniff(h []byte) (string, error) {
	switch {
	case bytes.HasPrefix(h, []byte("07070")):
		return "cpio", nil
	case bytes.HasPrefix(h, []byte{0x1f, 0x8b}):
		return "gzip", nil
	case bytes.HasPrefix(h, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return "xz", nil
	case bytes.HasPrefix(h, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return "zstd", nil
	case bytes.HasPrefix(h, []byte{0x02, 0x21, 0x4c, 0x18}):
		return "lz4", nil
	case bytes.HasPrefix(h, []byte("BZh")):
		return "bzip2", nil
	case bytes.HasPrefix(h, []byte{0x5d, 0, 0}):
		return "lzma", nil
	}
	return "", fmt.Errorf("unknown format (starts % x)", h)
}

// archive reads one archive of the given format from r. It reports whether
// r is positioned after it (so more archives may follow): true for plain
// cpio and gzip, whose ends are exact; the other decompressors read ahead,
// so what they leave is not parsed (the kernel's own images keep the
// compressed archive last).
func (p *parser) archive(r *bytes.Reader, format string, off int64) (bool, error) {
	if format == "cpio" {
		// Uncompressed archives follow each other with zero padding; parse
		// exactly one, leaving r at its end. The kernel aligns their members
		// to the image's start, so off does too.
		return true, p.cpio(&counted{r: r, left: p.lim.MaxBytes - p.total, p: p, off: off})
	}
	var dec io.Reader
	var err error
	switch format {
	case "gzip":
		var z *gzip.Reader
		if z, err = gzip.NewReader(r); err == nil {
			z.Multistream(false)
			dec = z
		}
	case "xz":
		if err = checkXZDict(r, p.dictCap()); err == nil {
			dec, err = xz.NewReader(r)
		}
	case "zstd":
		var z *zstd.Decoder
		if z, err = zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(p.lim.MaxBytes)), zstd.WithDecoderMaxWindow(uint64(p.dictCap()))); err == nil {
			defer z.Close()
			dec = z
		}
	case "lz4":
		dec = lz4.NewReader(r)
	case "bzip2":
		dec = bzip2.NewReader(r)
	case "lzma":
		dec, err = lzma.ReaderConfig{DictCap: p.dictCap()}.NewReader(r)
	}
	if err != nil {
		return false, err
	}
	c := &counted{r: bufio.NewReaderSize(dec, 64<<10), left: p.lim.MaxBytes - p.total, p: p}
	for complete := 0; ; complete++ {
		// A compressed stream may hold several archives, padded with zeros.
		err := c.skipZeros()
		if err == io.EOF {
			break
		}
		if err != nil && complete > 0 && !errors.Is(err, errBound) {
			// Whole archives came out, then the decompressor stopped at
			// what follows its stream (zero padding xz, zstd or bzip2 do
			// not take, or another archive): what the kernel unpacked is
			// read; the rest is noted, not an error.
			p.im.Notes = append(p.im.Notes, fmt.Sprintf("archive %d (%s): data after it not read: %v", len(p.im.Archives)-1, format, err))
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if err := p.cpio(c); err != nil {
			return false, err
		}
	}
	return format == "gzip", nil
}

// maxDict is the largest LZMA dictionary (or zstd window) accepted: what
// xz -9 and zstd --ultra -22 use is 64 MiB and 128 MiB. The decoders
// allocate the dictionary the header names before reading any data.
const maxDict = 128 << 20

// dictCap bounds the dictionary: never above maxDict, nor above the bytes
// the image may unpack to (a dictionary larger than the output is unused).
func (p *parser) dictCap() int {
	return int(max(min(maxDict, p.lim.MaxBytes), lzma.MinDictCap))
}

// checkXZDict refuses an xz stream whose first block's LZMA2 dictionary is
// above limit, read from the block header before the decoder allocates it.
// Later blocks are not checked: xz writes one dictionary size for them all.
func checkXZDict(r *bytes.Reader, limit int) error {
	const streamHeader = 12
	off, _ := r.Seek(0, io.SeekCurrent)
	var h [streamHeader + 1024]byte
	n, _ := r.ReadAt(h[:], off)
	b := h[:n]
	if len(b) < streamHeader+2 || b[streamHeader] == 0 {
		return nil // no block (or truncated): the decoder says what is wrong
	}
	hdr := b[streamHeader:]
	size := (int(hdr[0]) + 1) * 4
	if size > len(hdr) {
		return nil
	}
	hdr, flags := hdr[2:size], hdr[1]
	uvarint := func() uint64 {
		v, k := binary.Uvarint(hdr)
		if k <= 0 {
			hdr = nil
			return 0
		}
		hdr = hdr[k:]
		return v
	}
	if flags&0x40 != 0 {
		uvarint()
	}
	if flags&0x80 != 0 {
		uvarint()
	}
	for i := 0; i <= int(flags&3) && hdr != nil; i++ {
		id, psize := uvarint(), uvarint()
		if hdr == nil || psize > uint64(len(hdr)) {
			return nil
		}
		props := hdr[:psize]
		hdr = hdr[psize:]
		if id == 0x21 && len(props) == 1 && props[0] <= 40 {
			bits := uint(props[0]/2 + 12)
			dict := uint64(2|props[0]&1) << (bits - 1)
			if props[0] == 40 {
				dict = 1<<32 - 1
			}
			if dict > uint64(limit) {
				return fmt.Errorf("LZMA2 dictionary of %d bytes, more than the bound of %d", dict, limit)
			}
		}
	}
	return nil
}
