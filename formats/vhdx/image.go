package vhdx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/vmconv/vmconv/disk"
)

// ErrDirtyLog is returned for an image whose log holds entries: it was not
// closed cleanly and reading it without replaying the log could give stale
// data.
var ErrDirtyLog = errors.New("the log is not empty (the image was not closed cleanly) and log replay is not supported: open it once with Hyper-V or run qemu-img check -r all on it")

// Info describes an open VHDX.
type Info struct {
	Filename          string   `json:"filename"`
	VirtualSize       int64    `json:"virtual-size"`
	ActualSize        int64    `json:"actual-size"`
	BlockSize         int64    `json:"block-size"`
	LogicalSectorSize int64    `json:"logical-sector-size"`
	PhysicalSector    int64    `json:"physical-sector-size"`
	DiskID            string   `json:"disk-id"`
	Sequence          uint64   `json:"header-sequence"`
	Allocated         int64    `json:"allocated-blocks"`
	Warnings          []string `json:"warnings,omitempty"`
}

// Image is an open VHDX. ReadAt and Extents are safe for concurrent use.
type Image struct {
	path     string
	f        *os.File
	r        io.ReaderAt
	fileSize int64
	hdr      Header
	regions  []RegionEntry
	geo      geometry
	bat      []uint64
	batOff   int64
	meta     RegionEntry
	info     Info
}

var _ disk.Image = (*Image)(nil)

// Detect reports whether head is the start of a VHDX.
func Detect(head []byte) bool { return len(head) >= 8 && string(head[:8]) == "vhdxfile" }

// Open opens a VHDX for reading.
func Open(path string) (*Image, error) {
	f, err := disk.OpenFile(path)
	if err != nil {
		return nil, fmt.Errorf("vhdx: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	img, err := newImage(path, f, fi.Size())
	if err != nil {
		f.Close()
		return nil, err
	}
	img.f = f
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		img.info.ActualSize = st.Blocks * 512
	}
	return img, nil
}

func newImage(path string, r io.ReaderAt, size int64) (*Image, error) {
	img := &Image{path: path, r: r, fileSize: size}
	if size < regionOff2+regionLen {
		return nil, fmt.Errorf("vhdx %s: file of %d bytes is too short for the headers and region tables", path, size)
	}
	var id [8]byte
	if _, err := r.ReadAt(id[:], 0); err != nil || !Detect(id[:]) {
		return nil, fmt.Errorf("vhdx %s: file identifier at 0: signature %q, want \"vhdxfile\"", path, id[:])
	}
	steps := []func() error{img.readHeaders, img.readRegions, img.readMetadata, img.readBAT}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	img.info.Filename = path
	img.info.VirtualSize = img.geo.virtualSize
	img.info.BlockSize = img.geo.blockSize
	img.info.LogicalSectorSize = img.geo.sectorSize
	img.info.Sequence = img.hdr.SequenceNumber
	return img, nil
}

// readHeaders takes the valid header with the highest sequence number.
func (img *Image) readHeaders() error {
	var errs []error
	found := false
	for _, off := range []int64{headerOff1, headerOff2} {
		b := make([]byte, headerLen)
		if _, err := img.r.ReadAt(b, off); err != nil {
			errs = append(errs, fmt.Errorf("header at %#x: %w", off, err))
			continue
		}
		var h Header
		binary.Decode(b, binary.LittleEndian, &h)
		if string(h.Signature[:]) != "head" {
			errs = append(errs, fmt.Errorf("header at %#x: signature %q, want \"head\"", off, h.Signature[:]))
			continue
		}
		if s, c := checksumOK(b); s != c {
			errs = append(errs, fmt.Errorf("header at %#x: checksum %#08x, computed %#08x", off, s, c))
			continue
		}
		if !found || h.SequenceNumber > img.hdr.SequenceNumber {
			img.hdr, found = h, true
		}
	}
	if !found {
		return fmt.Errorf("vhdx %s: no valid header: %w", img.path, errors.Join(errs...))
	}
	for _, e := range errs {
		img.info.Warnings = append(img.info.Warnings, e.Error())
	}
	h := &img.hdr
	if h.Version != 1 {
		return fmt.Errorf("vhdx %s: header sequence %d: version %d, want 1", img.path, h.SequenceNumber, h.Version)
	}
	if h.LogGUID != (GUID{}) {
		return fmt.Errorf("vhdx %s: header sequence %d: log GUID %s: %w", img.path, h.SequenceNumber, h.LogGUID, ErrDirtyLog)
	}
	return nil
}

// readRegions takes the first valid region table and finds the BAT and the
// metadata region, refusing required regions it does not know.
func (img *Image) readRegions() error {
	var errs []error
	for _, off := range []int64{regionOff1, regionOff2} {
		regs, err := img.regionTable(off)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		img.regions = regs
		for _, e := range errs {
			img.info.Warnings = append(img.info.Warnings, e.Error())
		}
		return nil
	}
	return fmt.Errorf("vhdx %s: no valid region table: %w", img.path, errors.Join(errs...))
}

func (img *Image) regionTable(off int64) ([]RegionEntry, error) {
	b := make([]byte, regionLen)
	if _, err := img.r.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("region table at %#x: %w", off, err)
	}
	var h RegionTableHeader
	binary.Decode(b, binary.LittleEndian, &h)
	if string(h.Signature[:]) != "regi" {
		return nil, fmt.Errorf("region table at %#x: signature %q, want \"regi\"", off, h.Signature[:])
	}
	if s, c := checksumOK(b); s != c {
		return nil, fmt.Errorf("region table at %#x: checksum %#08x, computed %#08x", off, s, c)
	}
	if h.EntryCount > maxEntries {
		return nil, fmt.Errorf("region table at %#x: %d entries, at most %d", off, h.EntryCount, maxEntries)
	}
	regs := make([]RegionEntry, h.EntryCount)
	var haveBAT, haveMeta bool
	for i := range regs {
		e := &regs[i]
		binary.Decode(b[16+i*32:], binary.LittleEndian, e)
		where := fmt.Sprintf("region table at %#x: entry %d (%s)", off, i, e.GUID)
		if e.FileOffset%mib != 0 || e.Length%mib != 0 || e.FileOffset < mib || e.FileOffset > uint64(img.fileSize) || int64(e.Length) > img.fileSize-int64(e.FileOffset) {
			return nil, fmt.Errorf("%s: %d bytes at %#x are not MiB-aligned or lie past the end of the file (%#x)", where, e.Length, e.FileOffset, img.fileSize)
		}
		switch e.GUID {
		case regionBAT:
			haveBAT = true
		case regionMetadata:
			haveMeta = true
			img.meta = *e
		default:
			if e.Required&1 != 0 {
				return nil, fmt.Errorf("%s: unknown required region", where)
			}
		}
	}
	if !haveBAT || !haveMeta {
		return nil, fmt.Errorf("region table at %#x: BAT found %v, metadata found %v, want both", off, haveBAT, haveMeta)
	}
	return regs, nil
}

// readMetadata reads the items that size the disk.
func (img *Image) readMetadata() error {
	m := img.meta
	tb := make([]byte, min(int64(m.Length), 64*kib))
	if _, err := img.r.ReadAt(tb, int64(m.FileOffset)); err != nil {
		return fmt.Errorf("vhdx %s: read metadata table at %#x: %w", img.path, m.FileOffset, err)
	}
	var th MetadataTableHeader
	binary.Decode(tb, binary.LittleEndian, &th)
	if string(th.Signature[:]) != "metadata" {
		return fmt.Errorf("vhdx %s: metadata table at %#x: signature %q, want \"metadata\"", img.path, m.FileOffset, th.Signature[:])
	}
	if th.EntryCount > maxEntries || 32+int(th.EntryCount)*32 > len(tb) {
		return fmt.Errorf("vhdx %s: metadata table at %#x: %d entries, at most %d", img.path, m.FileOffset, th.EntryCount, maxEntries)
	}
	items := map[GUID][]byte{}
	for i := 0; i < int(th.EntryCount); i++ {
		var e MetadataEntry
		binary.Decode(tb[32+i*32:], binary.LittleEndian, &e)
		where := fmt.Sprintf("vhdx %s: metadata entry %d (%s) at %#x", img.path, i, e.ItemID, int64(m.FileOffset)+32+int64(i)*32)
		if e.Length > 1*mib || uint64(e.Offset)+uint64(e.Length) > uint64(m.Length) || (e.Length > 0 && e.Offset < 64*kib) {
			return fmt.Errorf("%s: %d bytes at %#x lie outside the metadata region", where, e.Length, e.Offset)
		}
		if err := img.readItem(items, e, where); err != nil {
			return err
		}
	}
	return img.parseItems(items)
}

// itemSizes are the sizes of the metadata items read: only that much of
// each is read, whatever length its entry claims.
var itemSizes = map[GUID]uint32{itemFileParams: 8, itemDiskSize: 8, itemDiskID: 16, itemLogicalSect: 4, itemPhysicalSect: 4}

// readItem reads one known metadata item into items; an item listed twice
// is refused, as qemu refuses it.
func (img *Image) readItem(items map[GUID][]byte, e MetadataEntry, where string) error {
	size, known := itemSizes[e.ItemID]
	switch {
	case e.ItemID == itemParentLoc:
		return fmt.Errorf("%s: a differencing VHDX (parent locator), which is not supported", where)
	case !known && e.Flags&metaIsRequired != 0:
		return fmt.Errorf("%s: unknown required metadata item", where)
	case !known:
		return nil
	case items[e.ItemID] != nil:
		return fmt.Errorf("%s: the item is listed twice", where)
	}
	v := make([]byte, min(size, e.Length))
	if _, err := img.r.ReadAt(v, int64(img.meta.FileOffset)+int64(e.Offset)); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	items[e.ItemID] = v
	return nil
}

func (img *Image) parseItems(items map[GUID][]byte) error {
	need := func(id GUID, name string, n int) ([]byte, error) {
		v, ok := items[id]
		if !ok || len(v) < n {
			return nil, fmt.Errorf("vhdx %s: metadata: %s item missing or shorter than %d bytes", img.path, name, n)
		}
		return v, nil
	}
	fp, err := need(itemFileParams, "file parameters", 8)
	if err != nil {
		return err
	}
	vs, err := need(itemDiskSize, "virtual disk size", 8)
	if err != nil {
		return err
	}
	ls, err := need(itemLogicalSect, "logical sector size", 4)
	if err != nil {
		return err
	}
	bs := int64(binary.LittleEndian.Uint32(fp))
	flags := binary.LittleEndian.Uint32(fp[4:])
	size := int64(binary.LittleEndian.Uint64(vs))
	sect := int64(binary.LittleEndian.Uint32(ls))
	switch {
	case bs < minBlockSize || bs > maxBlockSize || bs&(bs-1) != 0:
		return fmt.Errorf("vhdx %s: metadata: block size %d, want a power of two from 1 MiB to 256 MiB", img.path, bs)
	case flags&2 != 0:
		return fmt.Errorf("vhdx %s: metadata: the disk has a parent (differencing VHDX), which is not supported", img.path)
	case sect != 512 && sect != 4096:
		return fmt.Errorf("vhdx %s: metadata: logical sector size %d, want 512 or 4096", img.path, sect)
	case size < 0 || size > maxVirtualSize || size%sect != 0:
		return fmt.Errorf("vhdx %s: metadata: virtual disk size %d, want a multiple of %d up to 64 TiB", img.path, size, sect)
	}
	img.geo = newGeometry(size, bs, sect)
	if v, ok := items[itemPhysicalSect]; ok && len(v) >= 4 {
		img.info.PhysicalSector = int64(binary.LittleEndian.Uint32(v))
	}
	if v, ok := items[itemDiskID]; ok && len(v) >= 16 {
		img.info.DiskID = GUID(v[:16]).String()
	}
	return nil
}

// readBAT reads the BAT (its size follows the virtual size; the region
// holding it was checked against the file size) and checks every payload
// entry.
func (img *Image) readBAT() error {
	var r RegionEntry
	for _, e := range img.regions {
		if e.GUID == regionBAT {
			r = e
		}
	}
	g := img.geo
	if g.batEntries*8 > int64(r.Length) {
		return fmt.Errorf("vhdx %s: BAT region at %#x holds %d entries, the disk needs %d", img.path, r.FileOffset, r.Length/8, g.batEntries)
	}
	b := make([]byte, g.batEntries*8)
	if _, err := img.r.ReadAt(b, int64(r.FileOffset)); err != nil {
		return fmt.Errorf("vhdx %s: read BAT at %#x: %w", img.path, r.FileOffset, err)
	}
	img.batOff = int64(r.FileOffset)
	img.bat = make([]uint64, g.batEntries)
	for i := range img.bat {
		img.bat[i] = binary.LittleEndian.Uint64(b[i*8:])
	}
	for blk := int64(0); blk < g.dataBlocks; blk++ {
		i := g.batIndex(blk)
		e := img.bat[i]
		where := fmt.Sprintf("vhdx %s: BAT entry %d at %#x (block %d)", img.path, i, img.batOff+i*8, blk)
		switch e & 7 {
		case payloadNotPresent, payloadUndefined, payloadZero, payloadUnmapped:
		case payloadFull:
			off := int64(e>>20) * mib
			if off < 3*mib || off >= img.fileSize {
				return fmt.Errorf("%s: block at %#x lies outside the file (%#x)", where, off, img.fileSize)
			}
			img.info.Allocated++
		case payloadPartial:
			return fmt.Errorf("%s: partially present block in a disk without a parent", where)
		default:
			return fmt.Errorf("%s: state %d is not a payload block state", where, e&7)
		}
	}
	return nil
}

// Info describes the image.
func (img *Image) Info() Info { return img.info }

// Size is the virtual size in bytes.
func (img *Image) Size() int64 { return img.geo.virtualSize }

// Close closes the file.
func (img *Image) Close() error {
	if img.f == nil {
		return nil
	}
	err := img.f.Close()
	img.f = nil
	return err
}

// block returns the state and file offset of payload block b.
func (img *Image) block(b int64) (uint64, int64) {
	e := img.bat[img.geo.batIndex(b)]
	return e & 7, int64(e>>20) * mib
}

// ReadAt reads the guest-visible bytes at off; blocks that lie back to
// back in the file are read with one call.
func (img *Image) ReadAt(p []byte, off int64) (int, error) {
	size := img.geo.virtualSize
	if off < 0 {
		return 0, fmt.Errorf("vhdx %s: read at %d: %w", img.path, off, disk.ErrOutOfRange)
	}
	if off >= size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	want := len(p)
	var eof error
	if int64(want) > size-off {
		want, eof = int(size-off), io.EOF
	}
	q, o := p[:want], off
	bs := img.geo.blockSize
	for len(q) > 0 {
		b, in := o/bs, o%bs
		n := min(int64(len(q)), bs-in)
		st, at := img.block(b)
		if st != payloadFull {
			clear(q[:n])
		} else {
			m, err := img.r.ReadAt(q[:n], at+in)
			if err != nil && !errors.Is(err, io.EOF) {
				return 0, fmt.Errorf("vhdx %s: read block %d at %#x: %w", img.path, b, at+in, err)
			}
			clear(q[m:n]) // a last block cut short by the end of the file
		}
		q, o = q[n:], o+n
	}
	return want, eof
}

// Extents maps [off, off+length) block by block.
func (img *Image) Extents(off, length int64) ([]disk.Extent, error) {
	size := img.geo.virtualSize
	if off < 0 || length < 0 {
		return nil, fmt.Errorf("vhdx %s: extents at %d+%d: %w", img.path, off, length, disk.ErrOutOfRange)
	}
	end := size
	if length < size-off {
		end = off + length
	}
	var out []disk.Extent
	bs := img.geo.blockSize
	for off < end {
		b := off / bs
		n := min(end, (b+1)*bs) - off
		k := disk.Unallocated
		switch st, _ := img.block(b); st {
		case payloadFull:
			k = disk.Data
		case payloadZero:
			k = disk.Zero
		}
		if l := len(out); l > 0 && out[l-1].Kind == k {
			out[l-1].Length += n
		} else {
			out = append(out, disk.Extent{Offset: off, Length: n, Kind: k})
		}
		off += n
	}
	return out, nil
}
