package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/vmconv/vmconv/disk"
)

// MaxChainDepth bounds backing chains: each link holds open files and a
// table cache, and a longer chain is far more likely a crafted file than a
// real one.
const MaxChainDepth = 64

// OpenOptions tune Open.
type OpenOptions struct {
	// OpenBacking opens a backing file that is not a qcow2 image, in the
	// format the image names ("" when it names none). When nil, such backing
	// files are opened as raw images. qcow2 backing files are always opened
	// by this package, so that loops and depth are checked along the chain.
	OpenBacking func(path, format string) (disk.Image, error)
	// Snapshot reads the image as one of its internal snapshots, named as
	// qemu-img convert -l names it: "snapshot.id=ID", "snapshot.name=NAME"
	// or a bare ID or name. Backing files are read as they are.
	Snapshot string
}

// Info describes an open image. JSON names follow qemu-img info's qcow2
// "format-specific" data where they overlap.
type Info struct {
	Filename        string   `json:"filename"`
	Version         uint32   `json:"version"`
	Compat          string   `json:"compat"`
	VirtualSize     int64    `json:"virtual-size"`
	ActualSize      int64    `json:"actual-size"`
	ClusterSize     int64    `json:"cluster-size"`
	CompressionType string   `json:"compression-type"`
	ExtendedL2      bool     `json:"extended-l2"`
	RefcountBits    int      `json:"refcount-bits"`
	LazyRefcounts   bool     `json:"lazy-refcounts"`
	Corrupt         bool     `json:"corrupt"`
	Dirty           bool     `json:"dirty,omitempty"`
	Snapshots       uint32   `json:"snapshots,omitempty"`
	BackingFile     string   `json:"backing-filename,omitempty"`
	BackingFormat   string   `json:"backing-filename-format,omitempty"`
	FullBackingFile string   `json:"full-backing-filename,omitempty"`
	Chain           []string `json:"backing-chain,omitempty"`
	DataFile        string   `json:"data-file,omitempty"`
	// DataFileRaw: the data file alone reads as the disk (data_file_raw).
	DataFileRaw bool `json:"data-file-raw,omitempty"`
}

// Image is an open qcow2 image and its backing chain. It implements
// disk.Image; ReadAt and Extents are safe for concurrent use.
type Image struct {
	path     string
	f        *os.File
	r        io.ReaderAt
	fileSize int64
	hdr      Header
	size     int64

	clusterBits uint32
	clusterSize int64
	l2Bits      uint32
	extL2       bool
	entryBytes  int64
	subSize     int64 // subcluster size (the cluster size without extended L2)

	l1        []uint64
	snapshots []Snapshot
	cache     *l2Cache
	dec       *decompressor
	backing   disk.Image
	info      Info

	// data holds the data clusters: the image file itself, or the
	// external data file the header names (opened by openDataFile).
	data     io.ReaderAt
	dataFile *os.File
	dataSize int64
}

var _ disk.Image = (*Image)(nil)

// Detect reports whether head (a file's first bytes) is a qcow2 image.
func Detect(head []byte) bool {
	return len(head) >= 8 && string(head[:4]) == "QFI\xfb" && (head[7] == 2 || head[7] == 3) && head[4]|head[5]|head[6] == 0
}

// Open opens a qcow2 image and its backing chain, opening non-qcow2 backing
// files as raw images.
func Open(path string) (*Image, error) { return OpenWith(path, OpenOptions{}) }

// OpenWith opens a qcow2 image and its backing chain.
func OpenWith(path string, o OpenOptions) (*Image, error) {
	return openChain(path, o, nil)
}

func openChain(path string, o OpenOptions, seen []string) (*Image, error) {
	if len(seen) >= MaxChainDepth {
		return nil, fmt.Errorf("qcow2 %s: backing chain deeper than %d images", path, MaxChainDepth)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("qcow2: %w", err)
	}
	for _, s := range seen {
		if si, err := os.Stat(s); err == nil && os.SameFile(si, fi) {
			return nil, fmt.Errorf("qcow2 %s: backing chain loop: %s is already in the chain %s", path, path, strings.Join(seen, " -> "))
		}
	}
	f, err := disk.OpenFile(path)
	if err != nil {
		return nil, fmt.Errorf("qcow2: %w", err)
	}
	img, err := newImage(path, f, fi.Size())
	if err != nil {
		f.Close()
		return nil, err
	}
	img.f = f
	img.fillActualSize()
	if o.Snapshot != "" && len(seen) == 0 {
		if err := img.useSnapshot(o.Snapshot); err != nil {
			img.Close()
			return nil, err
		}
	}
	if err := img.openDataFile(); err != nil {
		img.Close()
		return nil, err
	}
	if img.info.BackingFile == "" {
		return img, nil
	}
	if err := img.openBacking(o, append(seen, path)); err != nil {
		img.Close()
		return nil, err
	}
	return img, nil
}

// newImage parses the header, extensions and L1 table of r; it opens
// nothing. Every size is checked against the file size before use.
func newImage(path string, r io.ReaderAt, fileSize int64) (*Image, error) {
	if fileSize < v2HeaderLength {
		return nil, fmt.Errorf("qcow2 %s: truncated header: file is %d bytes, want at least %d", path, fileSize, v2HeaderLength)
	}
	var hb [headerSize]byte
	n, err := r.ReadAt(hb[:], 0)
	if n < v2HeaderLength {
		return nil, fmt.Errorf("qcow2 %s: read header: %v", path, err)
	}
	h := decodeHeader(hb[:n])
	if err := h.validate(fileSize); err != nil {
		return nil, fmt.Errorf("qcow2 %s: %w", path, err)
	}
	img := &Image{path: path, r: r, fileSize: fileSize, data: r, dataSize: fileSize, hdr: h, size: int64(h.Size),
		clusterBits: h.ClusterBits, clusterSize: 1 << h.ClusterBits, l2Bits: h.l2Bits(),
		extL2: h.IncompatibleFeatures&incExtendedL2 != 0}
	img.entryBytes, img.subSize = 8, img.clusterSize
	if img.extL2 {
		img.entryBytes, img.subSize = 16, img.clusterSize/subclusters
	}
	if err := img.readHeaderArea(); err != nil {
		return nil, err
	}
	if err := img.readL1(); err != nil {
		return nil, err
	}
	if err := img.readSnapshots(); err != nil {
		return nil, err
	}
	img.cache = newL2Cache(img.clusterSize)
	img.dec = newDecompressor(h.CompressionType, img.clusterSize)
	img.fillInfo()
	return img, nil
}

// readHeaderArea reads the extensions and the backing file name, all inside
// the first cluster.
func (img *Image) readHeaderArea() error {
	h := &img.hdr
	areaEnd := min(img.clusterSize, img.fileSize)
	if h.BackingFileOffset != 0 && int64(h.BackingFileOffset) < areaEnd && int64(h.BackingFileOffset) >= int64(h.HeaderLength) {
		areaEnd = int64(h.BackingFileOffset)
	}
	area := make([]byte, min(img.clusterSize, img.fileSize))
	if _, err := img.r.ReadAt(area, 0); err != nil && err != io.EOF {
		return fmt.Errorf("qcow2 %s: read header area: %w", img.path, err)
	}
	if int64(h.HeaderLength) < areaEnd {
		exts, err := readExtensions(area[:areaEnd], int(h.HeaderLength))
		if err != nil {
			return fmt.Errorf("qcow2 %s: %w", img.path, err)
		}
		for _, e := range exts {
			switch e.Type {
			case extBackingFormat:
				img.info.BackingFormat = string(e.data)
			case extDataFile:
				img.info.DataFile = string(e.data)
			case extCrypto:
				return fmt.Errorf("qcow2 %s: header extension at %#x: encrypted images are not supported", img.path, e.off)
			}
		}
	}
	if h.IncompatibleFeatures&incDataFile != 0 && img.info.DataFile == "" {
		return fmt.Errorf("qcow2 %s: header: the image keeps its data in an external data file but names none (qemu-img needs -o data_file= then)", img.path)
	}
	if h.BackingFileOffset != 0 {
		end := h.BackingFileOffset + uint64(h.BackingFileSize)
		if end > uint64(len(area)) {
			return fmt.Errorf("qcow2 %s: backing file name at %#x (%d bytes) runs past the end of the file", img.path, h.BackingFileOffset, h.BackingFileSize)
		}
		img.info.BackingFile = string(area[h.BackingFileOffset:end])
	}
	return nil
}

func (img *Image) readL1() error {
	l1, err := img.readL1At(img.hdr.L1TableOffset, img.hdr.L1Size)
	img.l1 = l1
	return err
}

// readL1At reads an L1 table of n entries at off (the active one, or a
// snapshot's), each pointing at an L2 table inside the file. The caller
// has checked that the table lies inside the file.
func (img *Image) readL1At(off uint64, n uint32) ([]uint64, error) {
	b := make([]byte, int64(n)*8)
	if _, err := img.r.ReadAt(b, int64(off)); err != nil && !(err == io.EOF && len(b) == 0) {
		return nil, fmt.Errorf("qcow2 %s: read L1 table at %#x: %w", img.path, off, err)
	}
	l1 := make([]uint64, n)
	for i := range l1 {
		e := binary.BigEndian.Uint64(b[i*8:])
		l1[i] = e
		if t := e & offsetMask; t != 0 && (t%uint64(img.clusterSize) != 0 || t > uint64(img.fileSize)-uint64(min(img.clusterSize, img.fileSize))) {
			return nil, fmt.Errorf("qcow2 %s: L1 entry %d at %#x: L2 table at %#x is unaligned or past the end of the file (%#x)",
				img.path, i, off+uint64(i)*8, t, img.fileSize)
		}
	}
	return l1, nil
}

func (img *Image) fillInfo() {
	h := &img.hdr
	ct := "zlib"
	if h.CompressionType == compressionZstd {
		ct = "zstd"
	}
	in := &img.info
	in.Filename = img.path
	in.Version = h.Version
	in.Compat = h.compat()
	in.VirtualSize = img.size
	in.ClusterSize = img.clusterSize
	in.CompressionType = ct
	in.ExtendedL2 = img.extL2
	in.RefcountBits = 1 << h.RefcountOrder
	in.LazyRefcounts = h.CompatibleFeatures&1 != 0
	in.Corrupt = h.IncompatibleFeatures&incCorrupt != 0
	in.Dirty = h.IncompatibleFeatures&incDirty != 0
	in.Snapshots = h.NbSnapshots
	in.DataFileRaw = h.IncompatibleFeatures&incDataFile != 0 && h.AutoclearFeatures&autoclearDataFileRaw != 0
}

func (img *Image) fillActualSize() {
	if fi, err := img.f.Stat(); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			img.info.ActualSize = st.Blocks * 512
		} else {
			img.info.ActualSize = fi.Size()
		}
	}
}

// openBacking opens the backing file named in the header, relative to the
// image's directory, through this package for qcow2 and o.OpenBacking for
// anything else.
func (img *Image) openBacking(o OpenOptions, seen []string) error {
	name := img.info.BackingFile
	if strings.Contains(name, ":") && (strings.HasPrefix(name, "json:") || strings.Contains(name, "://")) {
		return fmt.Errorf("qcow2 %s: backing file %q is a protocol or JSON specification, not a file", img.path, name)
	}
	p := name
	if !filepath.IsAbs(p) {
		p = filepath.Join(filepath.Dir(img.path), p)
	}
	img.info.FullBackingFile = p
	format := img.info.BackingFormat
	isQcow2 := format == "qcow2"
	if format == "" {
		if head, err := readHead(p); err == nil {
			isQcow2 = Detect(head)
		}
	}
	var err error
	switch {
	case isQcow2:
		var b *Image
		if b, err = openChain(p, o, seen); err == nil {
			img.backing = b
			img.info.Chain = append([]string{p}, b.info.Chain...)
		}
	case format != "" && format != "raw" && o.OpenBacking == nil:
		err = fmt.Errorf("backing format %q is not supported here", format)
	case o.OpenBacking != nil:
		img.backing, err = o.OpenBacking(p, format)
		img.info.Chain = []string{p}
	default:
		var raw *disk.Raw // not straight into img.backing: a nil *Raw there is a non-nil Image
		if raw, err = disk.OpenRaw(p); err == nil {
			img.backing = raw
		}
		img.info.Chain = []string{p}
	}
	if err != nil {
		img.backing = nil
		return fmt.Errorf("qcow2 %s: backing file %q: %w", img.path, name, err)
	}
	return nil
}

func readHead(path string) ([]byte, error) {
	f, err := disk.OpenFile(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, 8)
	n, err := io.ReadFull(f, b)
	return b[:n], err
}

// openDataFile opens the external data file the header names; data
// clusters are read from it. A relative name is looked up next to the image,
// where qemu-img create puts it, then in the working directory, where QEMU
// 7 looks.
func (img *Image) openDataFile() error {
	name := img.info.DataFile
	if img.hdr.IncompatibleFeatures&incDataFile == 0 || name == "" {
		return nil
	}
	if strings.HasPrefix(name, "json:") || strings.Contains(name, "://") {
		return fmt.Errorf("qcow2 %s: data file %q is a protocol or JSON specification, not a file", img.path, name)
	}
	p := name
	if !filepath.IsAbs(p) {
		p = filepath.Join(filepath.Dir(img.path), p)
	}
	f, err := disk.OpenFile(p)
	if errors.Is(err, fs.ErrNotExist) && p != name {
		if g, err2 := disk.OpenFile(name); err2 == nil {
			f, err = g, nil
		}
	}
	if err != nil {
		return fmt.Errorf("qcow2 %s: data file %q: %w", img.path, name, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("qcow2 %s: data file %q: %w", img.path, name, err)
	}
	img.dataFile, img.data, img.dataSize = f, f, fi.Size()
	return nil
}

// Info describes the image.
func (img *Image) Info() Info { return img.info }

// Size is the virtual size in bytes.
func (img *Image) Size() int64 { return img.size }

// Close closes the image's file and its backing chain.
func (img *Image) Close() error {
	var first error
	if img.f != nil {
		first = img.f.Close()
		img.f = nil
	}
	if img.dataFile != nil {
		if err := img.dataFile.Close(); err != nil && first == nil {
			first = err
		}
		img.dataFile = nil
	}
	if img.backing != nil {
		if err := img.backing.Close(); err != nil && first == nil {
			first = err
		}
		img.backing = nil
	}
	return first
}

// Capacity is the virtual size the qcow2 image at path states in its header,
// without opening its backing file or data file: it describes an overlay
// whose backing file did not come along.
func Capacity(path string) (int64, error) {
	f, err := disk.OpenFile(path)
	if err != nil {
		return 0, fmt.Errorf("qcow2: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("qcow2 %s: %w", path, err)
	}
	img, err := newImage(path, f, fi.Size()) // the checked reader; opens neither backing nor data file
	if err != nil {
		return 0, err
	}
	return img.size, nil
}
