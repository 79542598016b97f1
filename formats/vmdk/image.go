package vmdk

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/vmconv/vmconv/disk"
)

// maxChainDepth bounds snapshot chains (VMware allows far fewer snapshots).
const maxChainDepth = 255

// Info describes an opened VMDK. JSON names follow qemu-img info's vmdk
// "format-specific" data where they overlap.
type Info struct {
	Filename     string       `json:"filename"`
	CreateType   string       `json:"create-type"`
	VirtualSize  int64        `json:"virtual-size"`
	ActualSize   int64        `json:"actual-size"`
	CID          uint32       `json:"cid"`
	ParentCID    uint32       `json:"parent-cid"`
	AdapterType  string       `json:"adapter-type,omitempty"`
	HWVersion    string       `json:"hwversion,omitempty"`
	ToolsVersion string       `json:"toolsversion,omitempty"`
	UUID         string       `json:"uuid,omitempty"`
	Cylinders    int64        `json:"cylinders,omitempty"`
	Heads        int64        `json:"heads,omitempty"`
	Sectors      int64        `json:"sectors,omitempty"`
	Extents      []ExtentInfo `json:"extents"`
	// BackingFile is the parent as the descriptor names it; FullBackingFile
	// the path it resolved to; Chain every parent from nearest to base.
	BackingFile     string   `json:"backing-filename,omitempty"`
	FullBackingFile string   `json:"full-backing-filename,omitempty"`
	Chain           []string `json:"backing-chain,omitempty"`
	Parent          *Info    `json:"backing-image,omitempty"`
	Warnings        []string `json:"warnings,omitempty"`
}

// ExtentInfo describes one extent.
type ExtentInfo struct {
	File       string `json:"filename"`
	Type       string `json:"format"` // FLAT, SPARSE, ZERO, VMFS
	Access     string `json:"access"`
	Sectors    int64  `json:"sectors"`
	Size       int64  `json:"virtual-size"`
	Offset     int64  `json:"offset,omitempty"` // sectors into the file (FLAT)
	Compressed bool   `json:"compressed,omitempty"`
	GrainSize  int64  `json:"cluster-size,omitempty"` // bytes
}

type extKind uint8

const (
	extFlat extKind = iota
	extSparse
	extZero
	extESX // an ESXi delta: vmfsSparse or seSparse
)

// vext is one extent placed in the virtual disk.
type vext struct {
	start, end int64 // virtual byte range
	kind       extKind
	access     string
	path       string
	f          *os.File
	fileOff    int64 // flat: byte offset in the file
	sp         *sparseExtent
	esx        *esxExtent
}

// Image is an opened VMDK disk, possibly a snapshot chain. It implements
// disk.Image; ReadAt is safe for concurrent use.
type Image struct {
	path   string
	desc   *Descriptor
	exts   []*vext
	size   int64
	parent *Image
	files  []*os.File
	info   Info
}

var _ disk.Image = (*Image)(nil)

// Detect reports whether head (the first bytes of a file) looks like a VMDK: a
// hosted sparse extent, a text descriptor, or an ESXi delta (which Open
// refuses by itself, naming what to open instead).
func Detect(head []byte) bool {
	if len(head) >= 4 && (string(head[:4]) == "KDMV" || string(head[:4]) == cowdMagic) {
		return true
	}
	if len(head) >= 8 && binary.LittleEndian.Uint64(head) == seSparseConstMagic {
		return true
	}
	h := head[:min(len(head), 1024)]
	return bytes.Contains(h, []byte("# Disk DescriptorFile")) || bytes.Contains(h, []byte("# Disk Descriptor File")) ||
		(bytes.Contains(h, []byte("createType")) && bytes.Contains(h, []byte("version=")))
}

// Open opens a VMDK (descriptor or sparse file) and, through
// parentFileNameHint, its parents.
func Open(path string) (*Image, error) {
	return openChain(path, nil)
}

func openChain(path string, seen []os.FileInfo) (*Image, error) {
	if len(seen) > maxChainDepth {
		return nil, fmt.Errorf("vmdk %s: snapshot chain deeper than %d", path, maxChainDepth)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("vmdk: %w", err)
	}
	for _, s := range seen {
		if os.SameFile(s, fi) {
			return nil, fmt.Errorf("vmdk %s: parent loop: the file is already part of the chain", path)
		}
	}
	img, err := openOne(path)
	if err != nil {
		return nil, err
	}
	d := img.desc
	if d.ParentFileNameHint == "" {
		if d.ParentCID != noParentCID {
			img.Close()
			return nil, fmt.Errorf("vmdk %s: parentCID=%08x but no parentFileNameHint names the parent", path, d.ParentCID)
		}
		return img, nil
	}
	ppath, err := resolvePath(filepath.Dir(path), d.ParentFileNameHint)
	if err != nil {
		img.Close()
		return nil, fmt.Errorf("vmdk %s: parent %q (parentFileNameHint): %w", path, d.ParentFileNameHint, err)
	}
	parent, err := openChain(ppath, append(seen, fi))
	if err != nil {
		img.Close()
		return nil, err
	}
	if d.ParentCID != noParentCID && d.ParentCID != parent.desc.CID {
		img.Close()
		parent.Close()
		return nil, fmt.Errorf("vmdk %s: parentCID=%08x does not match CID=%08x of parent %s: the parent changed after the snapshot was taken",
			path, d.ParentCID, parent.desc.CID, ppath)
	}
	img.parent = parent
	pi := parent.Info()
	img.info.BackingFile = d.ParentFileNameHint
	img.info.FullBackingFile = ppath
	img.info.Parent = &pi
	img.info.Chain = append([]string{ppath}, pi.Chain...)
	return img, nil
}

// resolvePath finds a file named in a descriptor: absolute if it exists, else
// relative to dir, else its base name in dir (for paths from another host).
func resolvePath(dir, name string) (string, error) {
	var cands []string
	if filepath.IsAbs(name) {
		cands = append(cands, name)
	} else {
		cands = append(cands, filepath.Join(dir, name))
	}
	base := name
	if i := strings.LastIndexAny(base, `/\`); i >= 0 {
		base = base[i+1:]
	}
	if c := filepath.Join(dir, base); base != "" && c != cands[0] {
		cands = append(cands, c)
	}
	for _, c := range cands {
		if _, err := os.Stat(c); err == nil {
			return c, nil
		}
	}
	return "", &disk.MissingFileError{Looked: cands}
}

func openOne(path string) (_ *Image, err error) {
	img := &Image{path: path}
	defer func() {
		if err != nil {
			img.Close()
		}
	}()
	f, err := disk.OpenFile(path)
	if err != nil {
		return nil, fmt.Errorf("vmdk: %w", err)
	}
	img.files = append(img.files, f)
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("vmdk %s: %w", path, err)
	}
	size := fi.Size()
	var head [4]byte
	n, _ := f.ReadAt(head[:], 0)
	switch {
	case n == 4 && string(head[:]) == "KDMV":
		sp, err := openSparse(path, f, size)
		if err != nil {
			return nil, err
		}
		if err := img.fromSparse(sp, f); err != nil {
			return nil, err
		}
	case n == 4 && string(head[:]) == cowdMagic:
		return nil, fmt.Errorf("vmdk %s: an ESXi vmfsSparse snapshot delta: open the descriptor that names it (NAME-00000N.vmdk), which names its parent", path)
	case n == 4 && binary.LittleEndian.Uint32(head[:]) == seSparseConstMagic:
		return nil, fmt.Errorf("vmdk %s: an ESXi seSparse snapshot delta: open the descriptor that names it (NAME-00000N.vmdk), which names its parent", path)
	default:
		d, err := readDescriptorFile(path, f, size)
		if err != nil {
			return nil, err
		}
		img.desc = d
		if err := img.openExtents(); err != nil {
			return nil, err
		}
	}
	for _, kv := range img.desc.DDB {
		if k := strings.ToLower(kv.Key); strings.HasPrefix(k, "ddb.encryption") || k == "ddb.keysafe" {
			return nil, fmt.Errorf("vmdk %s: the disk is encrypted (%s): encrypted VMDKs are not supported", path, kv.Key)
		}
	}
	img.fillInfo()
	return img, nil
}

// readDescriptorFile reads and parses the text descriptor f of size bytes.
func readDescriptorFile(path string, f io.ReaderAt, size int64) (*Descriptor, error) {
	if size > maxDescriptorFile {
		return nil, fmt.Errorf("vmdk %s: not a sparse extent (no KDMV magic) and too large (%d bytes) for a descriptor file", path, size)
	}
	text := make([]byte, size)
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, size), text); err != nil {
		return nil, fmt.Errorf("vmdk %s: read descriptor: %w", path, err)
	}
	if !Detect(text) {
		return nil, fmt.Errorf("vmdk %s: neither a sparse extent (KDMV magic) nor a descriptor file", path)
	}
	return ParseDescriptor(path, text)
}

// Capacity is the virtual size of the VMDK at path as its own file states
// it, without opening its extents or its parent: the sum of a descriptor's
// extents, or a sparse file's header capacity. It describes a disk whose
// extent or parent did not come along with the descriptor.
func Capacity(path string) (int64, error) {
	f, err := disk.OpenFile(path)
	if err != nil {
		return 0, fmt.Errorf("vmdk: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("vmdk %s: %w", path, err)
	}
	var b [sectorSize]byte
	if n, _ := f.ReadAt(b[:], 0); n == sectorSize && binary.LittleEndian.Uint32(b[:]) == sparseMagic {
		h := decodeHeader(b[:])
		if err := h.validate("header"); err != nil {
			return 0, fmt.Errorf("vmdk %s: %w", path, err)
		}
		return int64(h.Capacity) * sectorSize, nil
	}
	d, err := readDescriptorFile(path, f, fi.Size())
	if err != nil {
		return 0, err
	}
	var sectors int64
	for _, e := range d.Extents {
		if sectors += e.Sectors; sectors > maxCapacitySectors {
			return 0, fmt.Errorf("vmdk %s: extents add up to more than %d sectors", path, int64(maxCapacitySectors))
		}
	}
	return sectors * sectorSize, nil
}

// fromSparse sets up a monolithic sparse or streamOptimized file. The embedded
// descriptor's extent line names the file as it was first called; the file
// itself is the extent whatever its name now.
func (img *Image) fromSparse(sp *sparseExtent, f io.ReaderAt) error {
	h := &sp.hdr
	if h.DescriptorOffset != 0 && h.DescriptorSize != 0 {
		text := make([]byte, h.DescriptorSize*sectorSize)
		if _, err := f.ReadAt(text, int64(h.DescriptorOffset)*sectorSize); err != nil {
			return fmt.Errorf("vmdk %s: read embedded descriptor at sector %d: %w", img.path, h.DescriptorOffset, err)
		}
		d, err := ParseDescriptor(img.path, text)
		if err != nil {
			return err
		}
		img.desc = d
	} else {
		// A bare extent (twoGbMaxExtentSparse's -s001.vmdk opened directly).
		ct := "monolithicSparse"
		if h.compressed() {
			ct = "streamOptimized"
		}
		img.desc = &Descriptor{Version: 1, CreateType: ct, ParentCID: noParentCID,
			Extents: []ExtentLine{{Access: "RW", Sectors: int64(h.Capacity), Type: "SPARSE", File: filepath.Base(img.path)}}}
	}
	access := "RW"
	if len(img.desc.Extents) > 0 {
		access = img.desc.Extents[0].Access
	}
	img.exts = []*vext{{start: 0, end: sp.capBytes, kind: extSparse, access: access, path: img.path, sp: sp}}
	img.size = sp.capBytes
	return nil
}

func (img *Image) openExtents() error {
	var pos int64
	opened := map[string]*os.File{}
	for i, e := range img.desc.Extents {
		where := fmt.Sprintf("vmdk %s: extent %d (%s %s %q)", img.path, i+1, e.Access, e.Type, e.File)
		length := e.Sectors * sectorSize
		if pos+length > maxCapacitySectors*sectorSize {
			return fmt.Errorf("%s: disk larger than %d sectors", where, int64(maxCapacitySectors))
		}
		switch e.Access {
		case "RW", "RDONLY", "NOACCESS":
		default:
			return fmt.Errorf("%s: access %q, want RW, RDONLY or NOACCESS", where, e.Access)
		}
		v := &vext{start: pos, end: pos + length, access: e.Access}
		switch e.Type {
		case "ZERO":
			v.kind = extZero
		case "FLAT", "VMFS", "SPARSE", "VMFSSPARSE", "SESPARSE":
			if err := img.openFileExtent(v, i, e, where, opened); err != nil {
				return err
			}
		case "VMFSRDM", "VMFSRAW":
			return fmt.Errorf("%s: a raw device mapping: the disk's data is on a LUN of the ESXi host's storage, not in a file; copy the LUN into an image (dd of the device) and convert that", where)
		default:
			return fmt.Errorf("%s: extent type %s is not supported", where, e.Type)
		}
		img.exts = append(img.exts, v)
		pos += length
	}
	img.size = pos
	return nil
}

// openFileExtent opens the file of extent line i (once per file: opened
// holds those already open) and sets v up for its type: flat, hosted sparse,
// or an ESXi delta.
func (img *Image) openFileExtent(v *vext, i int, e ExtentLine, where string, opened map[string]*os.File) error {
	p, err := resolvePath(filepath.Dir(img.path), e.File)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	v.path = p
	f := opened[p]
	if f == nil {
		if f, err = disk.OpenFile(p); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		opened[p] = f
		img.files = append(img.files, f)
	}
	v.f = f
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	length := v.end - v.start
	switch {
	case e.Type == "SESPARSE" || e.Type == "VMFSSPARSE" && isCOWD(f):
		if v.esx, err = openESX(e.Type, p, f, fi.Size()); err != nil {
			return fmt.Errorf("vmdk %s: extent %d: %w", img.path, i+1, err)
		}
		if v.esx.capBytes < length {
			return fmt.Errorf("%s: capacity %d bytes is smaller than the %d sectors of the extent line", where, v.esx.capBytes, e.Sectors)
		}
		v.kind = extESX
	case e.Type == "SPARSE" || e.Type == "VMFSSPARSE": // qemu takes a hosted sparse file under either name
		sp, err := openSparse(p, f, fi.Size())
		if err != nil {
			return fmt.Errorf("vmdk %s: extent %d: %w", img.path, i+1, err)
		}
		if sp.capBytes < length {
			return fmt.Errorf("%s: sparse capacity %d sectors is smaller than the %d sectors of the extent line", where, sp.hdr.Capacity, e.Sectors)
		}
		v.kind, v.sp = extSparse, sp
	default:
		v.kind = extFlat
		if e.Type == "FLAT" {
			v.fileOff = e.Offset * sectorSize
		}
		if need := v.fileOff + length; fi.Size() < need {
			return fmt.Errorf("%s: file is %d bytes, the extent needs %d", where, fi.Size(), need)
		}
	}
	return nil
}

func (img *Image) fillInfo() {
	d := img.desc
	in := Info{
		Filename:     img.path,
		CreateType:   d.CreateType,
		VirtualSize:  img.size,
		CID:          d.CID,
		ParentCID:    d.ParentCID,
		AdapterType:  d.DDBValue("ddb.adapterType"),
		HWVersion:    d.DDBValue("ddb.virtualHWVersion"),
		ToolsVersion: d.DDBValue("ddb.toolsVersion"),
		UUID:         d.DDBValue("ddb.uuid"),
	}
	fmt.Sscan(d.DDBValue("ddb.geometry.cylinders"), &in.Cylinders)
	fmt.Sscan(d.DDBValue("ddb.geometry.heads"), &in.Heads)
	fmt.Sscan(d.DDBValue("ddb.geometry.sectors"), &in.Sectors)
	for _, f := range img.files {
		if fi, err := f.Stat(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				in.ActualSize += st.Blocks * 512
			} else {
				in.ActualSize += fi.Size()
			}
		}
	}
	for _, v := range img.exts {
		ei := ExtentInfo{File: v.path, Access: v.access, Sectors: (v.end - v.start) / sectorSize, Size: v.end - v.start}
		switch v.kind {
		case extZero:
			ei.Type = "ZERO"
		case extFlat:
			ei.Type, ei.Offset = "FLAT", v.fileOff/sectorSize
		case extESX:
			ei.Type, ei.GrainSize = v.esx.typ, v.esx.grainBytes
			if v.esx.unclean {
				in.Warnings = append(in.Warnings, fmt.Sprintf("%s: uncleanShutdown is set (the writer did not close it)", v.path))
			}
		case extSparse:
			ei.Type = "SPARSE"
			ei.Compressed = v.sp.hdr.compressed()
			ei.GrainSize = v.sp.grainBytes
			if v.sp.hdr.UncleanShutdown != 0 {
				in.Warnings = append(in.Warnings, fmt.Sprintf("%s: uncleanShutdown is set (the writer did not close it)", v.path))
			}
		}
		in.Extents = append(in.Extents, ei)
	}
	img.info = in
}

// Info describes the image and its parents.
func (img *Image) Info() Info { return img.info }

// Descriptor returns the parsed descriptor (embedded or separate).
func (img *Image) Descriptor() *Descriptor { return img.desc }

// Size is the virtual size in bytes.
func (img *Image) Size() int64 { return img.size }

// Close closes every file of the image and its parents.
func (img *Image) Close() error {
	var first error
	for _, f := range img.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	img.files = nil
	if img.parent != nil {
		if err := img.parent.Close(); err != nil && first == nil {
			first = err
		}
		img.parent = nil
	}
	return first
}

// extentAt returns the index of the extent holding virtual offset off.
func (img *Image) extentAt(off int64) int {
	return sort.Search(len(img.exts), func(i int) bool { return img.exts[i].end > off })
}

// ReadAt reads the guest-visible bytes at off.
func (img *Image) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("vmdk %s: read at %d: %w", img.path, off, disk.ErrOutOfRange)
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
		n = int(img.size - off)
		eof = io.EOF
	}
	if err := img.read(p[:n], off); err != nil {
		return 0, err
	}
	return n, eof
}

// read fills p (within the image) from the extents.
func (img *Image) read(p []byte, off int64) error {
	for i := img.extentAt(off); len(p) > 0; i++ {
		v := img.exts[i]
		n := int(min(int64(len(p)), v.end-off))
		q := p[:n]
		switch v.kind {
		case extZero:
			clear(q)
		case extFlat:
			if v.access == "NOACCESS" {
				return fmt.Errorf("vmdk %s: read at %#x: extent %s is NOACCESS", img.path, off, v.path)
			}
			m, err := v.f.ReadAt(q, v.fileOff+off-v.start)
			if err != nil && !(err == io.EOF && m == len(q)) {
				return fmt.Errorf("vmdk %s: read %s at %#x: %w", img.path, v.path, v.fileOff+off-v.start, err)
			}
		case extSparse, extESX:
			if v.access == "NOACCESS" {
				return fmt.Errorf("vmdk %s: read at %#x: extent %s is NOACCESS", img.path, off, v.path)
			}
			read := img.readSparse
			if v.kind == extESX {
				read = img.readESX
			}
			if err := read(v, q, off); err != nil {
				return err
			}
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

func (img *Image) readSparse(v *vext, p []byte, off int64) error {
	sp := v.sp
	rel := off - v.start
	for len(p) > 0 {
		g := rel / sp.grainBytes
		in := rel % sp.grainBytes
		n := int(min(int64(len(p)), sp.grainBytes-in))
		q := p[:n]
		st, sec := sp.lookup(g)
		switch st {
		case grainZero:
			clear(q)
		case grainUnallocated:
			if err := img.readParent(q, v.start+rel); err != nil {
				return err
			}
		case grainData:
			if !sp.hdr.compressed() {
				// Grains stored back to back are read with one call.
				for k := int64(1); n < len(p); k++ {
					st2, sec2 := sp.lookup(g + k)
					if st2 != grainData || int64(sec2) != int64(sec)+k*int64(sp.hdr.GrainSize) {
						break
					}
					n += int(min(int64(len(p)-n), sp.grainBytes))
				}
				q = p[:n]
			}
			if err := sp.readGrain(q, g, sec, in); err != nil {
				return err
			}
		}
		p, rel = p[n:], rel+int64(n)
	}
	return nil
}

// readESX reads an ESXi delta extent a run of grains at a time; unallocated
// runs come from the parent.
func (img *Image) readESX(v *vext, p []byte, off int64) error {
	e := v.esx
	rel := off - v.start
	for len(p) > 0 {
		g, in := rel/e.grainBytes, rel%e.grainBytes
		st, at, k, err := e.run(g, (in+int64(len(p))+e.grainBytes-1)/e.grainBytes)
		if err != nil {
			return err
		}
		n := int(min(int64(len(p)), k*e.grainBytes-in))
		q := p[:n]
		switch st {
		case grainZero:
			clear(q)
		case grainUnallocated:
			if err := img.readParent(q, v.start+rel); err != nil {
				return err
			}
		case grainData:
			m, err := e.r.ReadAt(q, at+in)
			if err != nil && !(err == io.EOF && m == len(q)) {
				return fmt.Errorf("vmdk %s: read grain %d at %#x: %w", e.name, g, at, err)
			}
		}
		p, rel = p[n:], rel+int64(n)
	}
	return nil
}

// esxExtents adds the allocation of [off, stop) of an ESXi delta extent, one
// parent query per run of unallocated grains however many tables it spans.
func (img *Image) esxExtents(v *vext, off, stop int64, add func(o, l int64, k disk.Kind), addParent func(o, l int64) error) error {
	e := v.esx
	var parentFrom int64 = -1 // start of the pending unallocated run
	for o := off; o < stop; {
		g := (o - v.start) / e.grainBytes
		st, _, k, err := e.run(g, (stop-v.start+e.grainBytes-1)/e.grainBytes-g)
		if err != nil {
			return err
		}
		end := min(stop, v.start+(g+k)*e.grainBytes)
		if st == grainUnallocated {
			if parentFrom < 0 {
				parentFrom = o
			}
			o = end
			continue
		}
		if parentFrom >= 0 {
			if err := addParent(parentFrom, o-parentFrom); err != nil {
				return err
			}
			parentFrom = -1
		}
		kind := disk.Data
		if st == grainZero {
			kind = disk.Zero
		}
		add(o, end-o, kind)
		o = end
	}
	if parentFrom >= 0 {
		return addParent(parentFrom, stop-parentFrom)
	}
	return nil
}

// readParent reads an unallocated range from the parent (zeros past its end,
// or without one).
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

// Extents describes the allocation of [off, off+length) at grain granularity,
// adjacent runs of one kind merged. Unallocated grains of a child take the
// parent's kinds.
func (img *Image) Extents(off, length int64) ([]disk.Extent, error) {
	if off < 0 || length < 0 {
		return nil, fmt.Errorf("vmdk %s: extents at %d+%d: %w", img.path, off, length, disk.ErrOutOfRange)
	}
	end := img.size
	if length < img.size-off {
		end = off + length
	}
	var out []disk.Extent
	if off >= end {
		return out, nil
	}
	add := func(o, l int64, k disk.Kind) {
		if l <= 0 {
			return
		}
		if n := len(out); n > 0 && out[n-1].Kind == k && out[n-1].End() == o {
			out[n-1].Length += l
			return
		}
		out = append(out, disk.Extent{Offset: o, Length: l, Kind: k})
	}
	addParent := func(o, l int64) error {
		if img.parent == nil {
			add(o, l, disk.Unallocated)
			return nil
		}
		pe, err := img.parent.Extents(o, l)
		if err != nil {
			return err
		}
		var covered int64 = o
		for _, e := range pe {
			add(e.Offset, e.Length, e.Kind)
			covered = e.End()
		}
		add(covered, o+l-covered, disk.Unallocated)
		return nil
	}
	for i := img.extentAt(off); off < end; i++ {
		v := img.exts[i]
		stop := min(end, v.end)
		switch v.kind {
		case extZero:
			add(off, stop-off, disk.Zero)
		case extFlat:
			add(off, stop-off, disk.Data)
		case extESX:
			if err := img.esxExtents(v, off, stop, add, addParent); err != nil {
				return nil, err
			}
		case extSparse:
			sp := v.sp
			for o := off; o < stop; {
				rel := o - v.start
				g := rel / sp.grainBytes
				ge := min(stop, v.start+(g+1)*sp.grainBytes)
				// Skip whole unallocated grain tables quickly.
				if sp.gts[g/gtesPerGT] == nil {
					ge = min(stop, v.start+(g/gtesPerGT+1)*gtesPerGT*sp.grainBytes)
					if err := addParent(o, ge-o); err != nil {
						return nil, err
					}
					o = ge
					continue
				}
				st, _ := sp.lookup(g)
				switch st {
				case grainZero:
					add(o, ge-o, disk.Zero)
				case grainData:
					add(o, ge-o, disk.Data)
				default:
					// One parent query for the whole run of unallocated grains.
					for ge < stop {
						if st2, _ := sp.lookup((ge - v.start) / sp.grainBytes); st2 != grainUnallocated {
							break
						}
						ge = min(stop, ge+sp.grainBytes)
					}
					if err := addParent(o, ge-o); err != nil {
						return nil, err
					}
				}
				o = ge
			}
		}
		off = stop
	}
	return out, nil
}
