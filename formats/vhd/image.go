package vhd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"unicode/utf16"

	"github.com/vmconv/vmconv/disk"
)

// MaxChainDepth bounds differencing chains.
const MaxChainDepth = 64

// Info describes an open VHD.
type Info struct {
	Filename        string   `json:"filename"`
	Subformat       string   `json:"subformat"` // fixed, dynamic, differencing
	VirtualSize     int64    `json:"virtual-size"`
	ActualSize      int64    `json:"actual-size"`
	CurrentSize     int64    `json:"current-size"`
	Creator         string   `json:"creator-application"`
	UUID            string   `json:"uuid"`
	Cylinders       int      `json:"cylinders"`
	Heads           int      `json:"heads"`
	SectorsPerTrack int      `json:"sectors-per-track"`
	BlockSize       int64    `json:"block-size,omitempty"`
	BackingFile     string   `json:"backing-filename,omitempty"`
	FullBackingFile string   `json:"full-backing-filename,omitempty"`
	Chain           []string `json:"backing-chain,omitempty"`
	Warnings        []string `json:"warnings,omitempty"`
}

// Image is an open VHD, with its parent for a differencing disk. ReadAt and
// Extents are safe for concurrent use.
type Image struct {
	path     string
	f        *os.File
	r        io.ReaderAt
	fileSize int64
	footer   Footer
	hdr      DynamicHeader
	size     int64

	fixed      *disk.Raw // fixed disks: the file's own allocation map
	bat        []uint32
	blockSize  int64
	bitmapSize int64
	parent     *Image
	info       Info
}

var _ disk.Image = (*Image)(nil)

// Detect reports whether head is the start of a dynamic or differencing
// VHD (the footer copy). Fixed VHDs have their footer only at the end.
func Detect(head []byte) bool {
	return len(head) >= 8 && string(head[:8]) == "conectix"
}

// DetectTail reports whether tail, the last bytes of a file of size bytes,
// ends with a VHD footer: its cookie, a right checksum, a known disk type
// and, for a fixed disk, a virtual size the file holds. A fixed VHD has no
// other signature; the checks keep a raw disk that merely holds the word
// "conectix" at its end a raw disk.
func DetectTail(tail []byte, size int64) bool {
	if len(tail) < footerSize {
		return false
	}
	f, err := decodeFooter(tail[len(tail)-footerSize:])
	if err != nil {
		return false
	}
	switch f.DiskType {
	case typeFixed:
		vs := f.virtualSize()
		return vs >= 0 && vs <= size-footerSize
	case typeDynamic, typeDifferencing:
		return true
	}
	return false
}

// Open opens a VHD and, for a differencing disk, its parents.
func Open(path string) (*Image, error) { return openChain(path, nil) }

func openChain(path string, seen []string) (*Image, error) {
	if len(seen) >= MaxChainDepth {
		return nil, fmt.Errorf("vhd %s: differencing chain deeper than %d images", path, MaxChainDepth)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("vhd: %w", err)
	}
	for _, s := range seen {
		if si, err := os.Stat(s); err == nil && os.SameFile(si, fi) {
			return nil, fmt.Errorf("vhd %s: parent loop: %s is already in the chain %s", path, path, strings.Join(seen, " -> "))
		}
	}
	f, err := disk.OpenFile(path)
	if err != nil {
		return nil, fmt.Errorf("vhd: %w", err)
	}
	img, err := newImage(path, f, fi.Size())
	if err == nil && img.footer.DiskType == typeFixed {
		img.fixed, err = disk.OpenRaw(path)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	img.f = f
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		img.info.ActualSize = st.Blocks * 512
	}
	if img.footer.DiskType == typeDifferencing {
		if err := img.openParent(append(seen, path)); err != nil {
			img.Close()
			return nil, err
		}
	}
	return img, nil
}

// Capacity is the virtual size the VHD at path states, without opening its
// parent: it describes a differencing disk whose parent did not come along.
func Capacity(path string) (int64, error) {
	f, err := disk.OpenFile(path)
	if err != nil {
		return 0, fmt.Errorf("vhd: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("vhd %s: %w", path, err)
	}
	img, err := newImage(path, f, fi.Size())
	if err != nil {
		return 0, err
	}
	return img.size, nil
}

// newImage reads the footer, the dynamic header and the BAT; every offset
// and count is checked against the file size before anything is allocated.
func newImage(path string, r io.ReaderAt, size int64) (*Image, error) {
	img := &Image{path: path, r: r, fileSize: size}
	if size < footerSize {
		return nil, fmt.Errorf("vhd %s: file of %d bytes is too short for a footer", path, size)
	}
	if err := img.readFooter(); err != nil {
		return nil, err
	}
	ft := &img.footer
	img.size = ft.virtualSize()
	if img.size < 0 {
		return nil, fmt.Errorf("vhd %s: footer at %#x: current size %#x is too large", path, size-footerSize, ft.CurrentSize)
	}
	switch ft.DiskType {
	case typeFixed:
		if img.size > size-footerSize {
			return nil, fmt.Errorf("vhd %s: fixed disk of %d bytes in a file of %d bytes", path, img.size, size)
		}
	case typeDynamic, typeDifferencing:
		if err := img.readDynamic(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("vhd %s: footer: disk type %d, want 2 (fixed), 3 (dynamic) or 4 (differencing)", path, ft.DiskType)
	}
	img.fillInfo()
	return img, nil
}

// readFooter takes the footer at the end, or the copy at offset 0 when the
// end is damaged (as after an interrupted append).
func (img *Image) readFooter() error {
	var b [footerSize]byte
	end := img.fileSize - footerSize
	if _, err := img.r.ReadAt(b[:], end); err != nil {
		return fmt.Errorf("vhd %s: read footer at %#x: %w", img.path, end, err)
	}
	f, errEnd := decodeFooter(b[:])
	if errEnd == nil {
		img.footer = f
		return nil
	}
	if _, err := img.r.ReadAt(b[:], 0); err == nil {
		if f, err := decodeFooter(b[:]); err == nil && f.DiskType != typeFixed {
			img.footer = f
			img.info.Warnings = append(img.info.Warnings, fmt.Sprintf("footer at %#x: %v; the copy at offset 0 was used", end, errEnd))
			return nil
		}
	}
	return fmt.Errorf("vhd %s: footer at %#x: %w", img.path, end, errEnd)
}

func (img *Image) readDynamic() error {
	ft := &img.footer
	if ft.DataOffset > uint64(img.fileSize) || int64(ft.DataOffset)+headerSize > img.fileSize {
		return fmt.Errorf("vhd %s: footer: dynamic header at %#x lies past the end of the file (%#x)", img.path, ft.DataOffset, img.fileSize)
	}
	var b [headerSize]byte
	if _, err := img.r.ReadAt(b[:], int64(ft.DataOffset)); err != nil {
		return fmt.Errorf("vhd %s: read dynamic header at %#x: %w", img.path, ft.DataOffset, err)
	}
	h, err := decodeHeader(b[:])
	if err != nil {
		return fmt.Errorf("vhd %s: dynamic header at %#x: %w", img.path, ft.DataOffset, err)
	}
	img.hdr = h
	bs := int64(h.BlockSize)
	if bs < sectorSize || bs > maxBlockSize || bs%sectorSize != 0 {
		return fmt.Errorf("vhd %s: dynamic header: block size %d, want a multiple of 512 up to %d", img.path, bs, maxBlockSize)
	}
	img.blockSize = bs
	img.bitmapSize = (bs/sectorSize/8 + sectorSize - 1) / sectorSize * sectorSize
	if need := (img.size + bs - 1) / bs; int64(h.MaxTableEntries) < need {
		return fmt.Errorf("vhd %s: dynamic header: %d BAT entries, the size %d needs %d", img.path, h.MaxTableEntries, img.size, need)
	}
	n := int64(h.MaxTableEntries) * 4
	if h.TableOffset > uint64(img.fileSize) || n > img.fileSize-int64(h.TableOffset) {
		return fmt.Errorf("vhd %s: dynamic header: BAT at %#x (%d entries) lies past the end of the file (%#x)", img.path, h.TableOffset, h.MaxTableEntries, img.fileSize)
	}
	raw := make([]byte, n)
	if _, err := img.r.ReadAt(raw, int64(h.TableOffset)); err != nil {
		return fmt.Errorf("vhd %s: read BAT at %#x: %w", img.path, h.TableOffset, err)
	}
	img.bat = make([]uint32, h.MaxTableEntries)
	for i := range img.bat {
		e := binary.BigEndian.Uint32(raw[i*4:])
		img.bat[i] = e
		if e == batUnused {
			continue
		}
		if end := int64(e)*sectorSize + img.bitmapSize + bs; end > img.fileSize {
			return fmt.Errorf("vhd %s: BAT entry %d at %#x: block at sector %d ends at %#x, past the end of the file (%#x)",
				img.path, i, int64(h.TableOffset)+int64(i)*4, e, end, img.fileSize)
		}
	}
	return nil
}

func (img *Image) fillInfo() {
	ft := &img.footer
	in := &img.info
	in.Filename = img.path
	in.Subformat = map[uint32]string{typeFixed: "fixed", typeDynamic: "dynamic", typeDifferencing: "differencing"}[ft.DiskType]
	in.VirtualSize = img.size
	in.CurrentSize = int64(ft.CurrentSize)
	in.Creator = strings.TrimRight(string(ft.CreatorApplication[:]), "\x00 ")
	u := ft.UniqueID
	in.UUID = fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	in.Cylinders, in.Heads, in.SectorsPerTrack = int(ft.Cylinders), int(ft.Heads), int(ft.SectorsPerTrack)
	in.BlockSize = img.blockSize
}

// parentNames lists the parent's path as each locator spells it, best
// first, then the name in the header.
func (img *Image) parentNames() []string {
	var out []string
	for _, code := range []uint32{platW2ru, platW2ku, platMacX} {
		for i, l := range img.hdr.ParentLocators {
			if l.PlatformCode != code || l.PlatformDataLength == 0 {
				continue
			}
			if l.PlatformDataLength > 64<<10 || l.PlatformDataOffset > uint64(img.fileSize) || int64(l.PlatformDataLength) > img.fileSize-int64(l.PlatformDataOffset) {
				img.info.Warnings = append(img.info.Warnings, fmt.Sprintf("parent locator %d: %d bytes at %#x lie past the end of the file", i, l.PlatformDataLength, l.PlatformDataOffset))
				continue
			}
			b := make([]byte, l.PlatformDataLength)
			if _, err := img.r.ReadAt(b, int64(l.PlatformDataOffset)); err != nil {
				continue
			}
			if code == platMacX {
				if u, err := url.Parse(string(b)); err == nil && u.Scheme == "file" {
					out = append(out, u.Path)
				}
				continue
			}
			out = append(out, utf16String(b, binary.LittleEndian))
		}
	}
	if n := utf16String(img.hdr.ParentUnicodeName[:], binary.BigEndian); n != "" {
		out = append(out, n)
	}
	return out
}

func utf16String(b []byte, order binary.ByteOrder) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := order.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

// openParent finds the parent through the locators (relative path, then
// absolute, then the base name beside the child) and checks its identity.
func (img *Image) openParent(seen []string) error {
	names := img.parentNames()
	if len(names) == 0 {
		return fmt.Errorf("vhd %s: differencing disk names no parent (no locator, no parent name)", img.path)
	}
	dir := filepath.Dir(img.path)
	var tried []string
	for _, n := range names {
		n = strings.ReplaceAll(n, `\`, "/")
		n = strings.TrimPrefix(n, "./")
		cands := []string{filepath.Join(dir, filepath.Base(n))}
		if filepath.IsAbs(n) {
			cands = append([]string{n}, cands...)
		} else {
			cands = append([]string{filepath.Join(dir, n)}, cands...)
		}
		for _, c := range cands {
			if slices.Contains(tried, c) {
				continue
			}
			tried = append(tried, c)
			if _, err := os.Stat(c); err != nil {
				continue
			}
			p, err := openChain(c, seen)
			if err != nil {
				return err
			}
			if p.footer.UniqueID != img.hdr.ParentUniqueID {
				p.Close()
				return fmt.Errorf("vhd %s: parent %s has unique id %x, the child expects %x: the parent is another disk", img.path, c, p.footer.UniqueID, img.hdr.ParentUniqueID)
			}
			img.parent = p
			img.info.BackingFile = names[0]
			img.info.FullBackingFile = c
			img.info.Chain = append([]string{c}, p.info.Chain...)
			return nil
		}
	}
	return fmt.Errorf("vhd %s: parent %q %w", img.path, names[0], &disk.MissingFileError{Looked: tried})
}

// Info describes the image.
func (img *Image) Info() Info { return img.info }

// Size is the virtual size in bytes.
func (img *Image) Size() int64 { return img.size }

// Close closes the image and its parents.
func (img *Image) Close() error {
	var first error
	if img.fixed != nil {
		img.fixed.Close()
	}
	if img.f != nil {
		first = img.f.Close()
		img.f = nil
	}
	if img.parent != nil {
		if err := img.parent.Close(); err != nil && first == nil {
			first = err
		}
		img.parent = nil
	}
	return first
}

// ReadAt reads the guest-visible bytes at off.
func (img *Image) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("vhd %s: read at %d: %w", img.path, off, disk.ErrOutOfRange)
	}
	if off >= img.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := len(p)
	var eof error
	if int64(n) > img.size-off {
		n, eof = int(img.size-off), io.EOF
	}
	if err := img.read(p[:n], off); err != nil {
		return 0, err
	}
	return n, eof
}

func (img *Image) read(p []byte, off int64) error {
	if img.bat == nil {
		return img.readFile(p, off)
	}
	for len(p) > 0 {
		b, in := off/img.blockSize, off%img.blockSize
		n := min(int64(len(p)), img.blockSize-in)
		q := p[:n]
		e := img.bat[b]
		switch {
		case e == batUnused:
			if err := img.readParent(q, off); err != nil {
				return err
			}
		case img.parent == nil:
			// Dynamic disks: the block's data counts whatever the
			// bitmap says, as qemu reads them.
			if err := img.readFile(q, int64(e)*sectorSize+img.bitmapSize+in); err != nil {
				return err
			}
		default:
			if err := img.readDiffBlock(q, off, e, in); err != nil {
				return err
			}
		}
		p, off = p[n:], off+n
	}
	return nil
}

// readDiffBlock reads from an allocated block of a differencing disk: the
// sectors its bitmap marks come from it, the others from the parent.
func (img *Image) readDiffBlock(p []byte, off int64, e uint32, in int64) error {
	bm := make([]byte, img.bitmapSize)
	if err := img.readFile(bm, int64(e)*sectorSize); err != nil {
		return err
	}
	for len(p) > 0 {
		s := in / sectorSize
		present := bm[s/8]&(0x80>>(s%8)) != 0
		n := min(int64(len(p)), sectorSize-in%sectorSize)
		for n < int64(len(p)) {
			s2 := (in + n) / sectorSize
			if (bm[s2/8]&(0x80>>(s2%8)) != 0) != present {
				break
			}
			n = min(int64(len(p)), n+sectorSize)
		}
		var err error
		if present {
			err = img.readFile(p[:n], int64(e)*sectorSize+img.bitmapSize+in)
		} else {
			err = img.readParent(p[:n], off)
		}
		if err != nil {
			return err
		}
		p, off, in = p[n:], off+n, in+n
	}
	return nil
}

func (img *Image) readFile(p []byte, at int64) error {
	n, err := img.r.ReadAt(p, at)
	if err != nil && !(errors.Is(err, io.EOF) && n == len(p)) {
		return fmt.Errorf("vhd %s: read at %#x: %w", img.path, at, err)
	}
	return nil
}

func (img *Image) readParent(p []byte, off int64) error {
	if img.parent == nil || off >= img.parent.size {
		clear(p)
		return nil
	}
	n := int(min(int64(len(p)), img.parent.size-off))
	if err := img.parent.read(p[:n], off); err != nil {
		return err
	}
	clear(p[n:])
	return nil
}

// Extents maps [off, off+length) block by block; a fixed disk reports the
// file's own holes. Unallocated blocks of a differencing disk take the
// parent's kinds; its allocated blocks are data as a whole.
func (img *Image) Extents(off, length int64) ([]disk.Extent, error) {
	if off < 0 || length < 0 {
		return nil, fmt.Errorf("vhd %s: extents at %d+%d: %w", img.path, off, length, disk.ErrOutOfRange)
	}
	end := img.size
	if length < img.size-off {
		end = off + length
	}
	if off >= end {
		return nil, nil
	}
	if img.fixed != nil {
		return img.fixed.Extents(off, end-off)
	}
	if img.bat == nil {
		return []disk.Extent{{Offset: off, Length: end - off, Kind: disk.Data}}, nil
	}
	var out []disk.Extent
	add := func(o, l int64, k disk.Kind) {
		if n := len(out); n > 0 && out[n-1].Kind == k && out[n-1].End() == o {
			out[n-1].Length += l
		} else if l > 0 {
			out = append(out, disk.Extent{Offset: o, Length: l, Kind: k})
		}
	}
	for off < end {
		b := off / img.blockSize
		n := min(end, (b+1)*img.blockSize) - off
		switch {
		case img.bat[b] != batUnused:
			add(off, n, disk.Data)
		case img.parent == nil || off >= img.parent.size:
			add(off, n, disk.Unallocated)
		default:
			pn := min(n, img.parent.size-off)
			pe, err := img.parent.Extents(off, pn)
			if err != nil {
				return nil, err
			}
			for _, e := range pe {
				add(e.Offset, e.Length, e.Kind)
			}
			add(off+pn, n-pn, disk.Unallocated)
		}
		off += n
	}
	return out, nil
}
