package vmdk

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"sort"
	"sync"
)

// ESXi keeps snapshots of a disk in delta extents of its own layouts, named by
// the snapshot's descriptor (createType vmfsSparse or seSparse, extent type
// VMFSSPARSE or SESPARSE) with the parent in parentFileNameHint:
//
//   - vmfsSparse ("COWD", NAME-00000N-delta.vmdk): VMFS 3 and 5. A 2048-byte
//     header, a grain directory of u32 sectors, grain tables of 4096 u32
//     sectors, grains of usually one sector. 0 means "read the parent".
//   - seSparse (NAME-00000N-sesparse.vmdk): VMFS 6, and every snapshot of a
//     disk over 2 TiB. A constant and a volatile header, then regions given
//     by the constant header; u64 directory and table entries whose top
//     nibble says what they are; 4 KiB grains.
//
// Neither is documented by VMware; the layouts are those qemu's block/vmdk.c
// reads (see shared notes), and what qemu-img reads is what we read.
//
// The tables of a delta grow with the data written to it (1/128 of it for a
// COWD delta with one-sector grains), so they are not all loaded at open as a
// hosted sparse extent's are: the directory is, and tables are read when a
// read reaches them and kept in a small cache.

const (
	cowdMagic      = "COWD"
	cowdHeaderSize = 2048
	cowdGTEntries  = 4096

	seSparseConstMagic    = 0xCAFEBABE
	seSparseVolatileMagic = 0xCAFECAFE
	seSparseVersion       = 0x0000000200000001
	seSparseGrainSectors  = 8  // 4 KiB grains, the only size ESXi writes
	seSparseGTSectors     = 64 // 4096 entries of 8 bytes
	seSparseGTEntries     = seSparseGTSectors * sectorSize / 8
	seSparseHeaderSize    = 512
	seSparseMaxCapacity   = 1 << 37 // sectors: 64 TiB, past ESXi's limit for a seSparse disk

	// esxTableCache is how many decoded grain tables an extent keeps: 64 ×
	// 4096 entries × 8 bytes = 2 MiB.
	esxTableCache = 64
)

// Grain table entries decoded: a byte offset in the file for data, or one of
// these.
const (
	esxUnallocated int64 = 0
	esxZero        int64 = -1
)

// CowdHeader is the 2048-byte header of a vmfsSparse extent.
type CowdHeader struct {
	Magic           [4]byte
	Version         uint32
	Flags           uint32
	Capacity        uint32 // sectors
	GrainSize       uint32 // sectors
	GDOffset        uint32 // sectors
	NumGDEntries    uint32
	FreeSector      uint32
	_               [1616]byte // geometry or parent name and generation, name, description, saved generation, reserved
	UncleanShutdown uint32
	_               [396]byte
}

// SESparseConstHeader is the first sector of a seSparse extent. Offsets and
// sizes are in sectors.
type SESparseConstHeader struct {
	Magic, Version, Capacity, GrainSize, GrainTableSize, Flags uint64
	Reserved                                                   [4]uint64
	VolatileHeaderOffset, VolatileHeaderSize                   uint64
	JournalHeaderOffset, JournalHeaderSize                     uint64
	JournalOffset, JournalSize                                 uint64
	GrainDirOffset, GrainDirSize                               uint64
	GrainTablesOffset, GrainTablesSize                         uint64
	FreeBitmapOffset, FreeBitmapSize                           uint64
	BackmapOffset, BackmapSize                                 uint64
	GrainsOffset, GrainsSize                                   uint64
	Pad                                                        [304]byte
}

// SESparseVolatileHeader is the sector at VolatileHeaderOffset.
type SESparseVolatileHeader struct {
	Magic, FreeGTNumber, NextTxnSeqNumber, ReplayJournal uint64
	Pad                                                  [480]byte
}

// esxExtent is an opened vmfsSparse or seSparse extent. It is safe for
// concurrent use.
type esxExtent struct {
	name       string // file path, for errors
	typ        string // VMFSSPARSE or SESPARSE
	r          io.ReaderAt
	fileSize   int64
	grainBytes int64
	capBytes   int64
	perTable   int64   // grains per table
	gd         []int64 // byte offset of each table, 0 = none
	entryBytes int64   // 4 (COWD) or 8 (seSparse)
	minData    int64   // grains and tables lie at or past this offset
	grainsBase int64   // seSparse: byte offset of cluster 0
	unclean    bool

	mu     sync.Mutex
	tables map[int64][]int64 // decoded tables by directory index
	order  []int64           // tables in the order they were cached, oldest first
}

// openCOWD opens a vmfsSparse extent: header and grain directory; every
// offset is checked against the file's size before it is used.
func openCOWD(name string, r io.ReaderAt, size int64) (*esxExtent, error) {
	if size < cowdHeaderSize {
		return nil, fmt.Errorf("vmdk %s: vmfsSparse header: file is %d bytes, want at least %d", name, size, cowdHeaderSize)
	}
	var b [cowdHeaderSize]byte
	if _, err := r.ReadAt(b[:], 0); err != nil {
		return nil, fmt.Errorf("vmdk %s: read vmfsSparse header: %w", name, err)
	}
	var h CowdHeader
	if err := binary.Read(bytes.NewReader(b[:]), binary.LittleEndian, &h); err != nil {
		return nil, fmt.Errorf("vmdk %s: vmfsSparse header: %w", name, err)
	}
	if string(h.Magic[:]) != cowdMagic {
		return nil, fmt.Errorf("vmdk %s: vmfsSparse header at 0x0: magic %q, want %q", name, h.Magic[:], cowdMagic)
	}
	if h.Capacity == 0 {
		return nil, fmt.Errorf("vmdk %s: vmfsSparse header at 0xc: capacity is 0", name)
	}
	if h.GrainSize == 0 || h.GrainSize > maxGrainSectors {
		return nil, fmt.Errorf("vmdk %s: vmfsSparse header at 0x10: grain size %d sectors, want 1 to %d", name, h.GrainSize, maxGrainSectors)
	}
	e := &esxExtent{name: name, typ: "VMFSSPARSE", r: r, fileSize: size,
		grainBytes: int64(h.GrainSize) * sectorSize, capBytes: int64(h.Capacity) * sectorSize,
		perTable: cowdGTEntries, entryBytes: 4, minData: cowdHeaderSize, unclean: h.UncleanShutdown != 0}
	need := e.tableCount()
	if int64(h.NumGDEntries) < need {
		return nil, fmt.Errorf("vmdk %s: vmfsSparse header at 0x18: %d grain directory entries, a capacity of %d sectors needs %d",
			name, h.NumGDEntries, h.Capacity, need)
	}
	if err := e.readDirectory(int64(h.GDOffset)*sectorSize, need, func(v uint64, _ int64) (int64, error) {
		return int64(v) * sectorSize, nil
	}); err != nil {
		return nil, err
	}
	return e, nil
}

// openSESparse opens a seSparse extent: both headers and the grain
// directory. Like qemu, it takes only the one known version and refuses a
// delta whose journal has not been replayed (ESXi replays it when it opens
// the disk).
func openSESparse(name string, r io.ReaderAt, size int64) (*esxExtent, error) {
	var b [seSparseHeaderSize]byte
	if size < seSparseHeaderSize {
		return nil, fmt.Errorf("vmdk %s: seSparse header: file is %d bytes, want at least %d", name, size, seSparseHeaderSize)
	}
	if _, err := r.ReadAt(b[:], 0); err != nil {
		return nil, fmt.Errorf("vmdk %s: read seSparse header: %w", name, err)
	}
	var h SESparseConstHeader
	if err := binary.Read(bytes.NewReader(b[:]), binary.LittleEndian, &h); err != nil {
		return nil, fmt.Errorf("vmdk %s: seSparse header: %w", name, err)
	}
	if err := h.validate(); err != nil {
		return nil, fmt.Errorf("vmdk %s: seSparse header %w", name, err)
	}
	if err := readVolatileHeader(name, r, size, h.VolatileHeaderOffset); err != nil {
		return nil, err
	}
	e := &esxExtent{name: name, typ: "SESPARSE", r: r, fileSize: size,
		grainBytes: seSparseGrainSectors * sectorSize, capBytes: int64(h.Capacity) * sectorSize,
		perTable: seSparseGTEntries, entryBytes: 8, minData: 2 * seSparseHeaderSize,
		grainsBase: int64(h.GrainsOffset) * sectorSize}
	need := e.tableCount()
	if have := h.GrainDirSize * sectorSize / 8; have < uint64(need) {
		return nil, fmt.Errorf("vmdk %s: seSparse header at 0x88: grain directory of %d sectors holds %d entries, a capacity of %d sectors needs %d",
			name, h.GrainDirSize, have, h.Capacity, need)
	}
	tablesBase, tablesCount := int64(h.GrainTablesOffset)*sectorSize, h.GrainTablesSize/seSparseGTSectors
	err := e.readDirectory(int64(h.GrainDirOffset)*sectorSize, need, func(v uint64, at int64) (int64, error) {
		// The top 32 bits mark an allocated table; the low 32 index the
		// grain tables region.
		if v>>32 != 0x10000000 {
			return 0, fmt.Errorf("entry %#016x at %#x: want 0 or 0x10000000 in the top 32 bits", v, at)
		}
		idx := v & 0xFFFFFFFF
		if idx >= tablesCount {
			return 0, fmt.Errorf("entry %#016x at %#x: table %d, the grain tables region holds %d", v, at, idx, tablesCount)
		}
		return tablesBase + int64(idx)*seSparseGTSectors*sectorSize, nil
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

func (h *SESparseConstHeader) validate() error {
	switch {
	case h.Magic != seSparseConstMagic:
		return fmt.Errorf("at 0x0: magic %#x, want %#x", h.Magic, seSparseConstMagic)
	case h.Version != seSparseVersion:
		return fmt.Errorf("at 0x8: version %#x, want %#x (the only one known)", h.Version, uint64(seSparseVersion))
	case h.Capacity == 0 || h.Capacity > seSparseMaxCapacity:
		return fmt.Errorf("at 0x10: capacity %d sectors, want 1 to %d", h.Capacity, int64(seSparseMaxCapacity))
	case h.GrainSize != seSparseGrainSectors:
		return fmt.Errorf("at 0x18: grain size %d sectors, want %d", h.GrainSize, seSparseGrainSectors)
	case h.GrainTableSize != seSparseGTSectors:
		return fmt.Errorf("at 0x20: grain table size %d sectors, want %d", h.GrainTableSize, seSparseGTSectors)
	case h.Flags != 0:
		return fmt.Errorf("at 0x28: flags %#x, want 0", h.Flags)
	case h.Reserved != [4]uint64{}:
		return fmt.Errorf("at 0x30: reserved fields %#x, want 0", h.Reserved)
	case h.Pad != [304]byte{}:
		return fmt.Errorf("at 0xd0: padding is not zero")
	}
	// Regions are used as byte offsets: keep them where that cannot overflow.
	for _, r := range [][2]uint64{{h.GrainDirOffset, h.GrainDirSize}, {h.GrainTablesOffset, h.GrainTablesSize}, {h.GrainsOffset, h.GrainsSize}} {
		if r[0] > maxCapacitySectors || r[1] > maxCapacitySectors {
			return fmt.Errorf("at 0x80: region at sector %d (%d sectors) lies past any file", r[0], r[1])
		}
	}
	return nil
}

func readVolatileHeader(name string, r io.ReaderAt, size int64, sector uint64) error {
	off := int64(sector) * sectorSize
	if sector > uint64(size)/sectorSize || off+seSparseHeaderSize > size {
		return fmt.Errorf("vmdk %s: seSparse volatile header at sector %d lies past the end of the file (%#x)", name, sector, size)
	}
	var b [seSparseHeaderSize]byte
	if _, err := r.ReadAt(b[:], off); err != nil {
		return fmt.Errorf("vmdk %s: read seSparse volatile header at %#x: %w", name, off, err)
	}
	var v SESparseVolatileHeader
	if err := binary.Read(bytes.NewReader(b[:]), binary.LittleEndian, &v); err != nil {
		return fmt.Errorf("vmdk %s: seSparse volatile header: %w", name, err)
	}
	switch {
	case v.Magic != seSparseVolatileMagic:
		return fmt.Errorf("vmdk %s: seSparse volatile header at %#x: magic %#x, want %#x", name, off, v.Magic, seSparseVolatileMagic)
	case v.ReplayJournal != 0:
		return fmt.Errorf("vmdk %s: seSparse volatile header at %#x: the journal must be replayed first (open the disk on ESXi, or consolidate the snapshot there)", name, off+24)
	case v.Pad != [480]byte{}:
		return fmt.Errorf("vmdk %s: seSparse volatile header at %#x: padding is not zero", name, off+32)
	}
	return nil
}

// tableCount is how many grain tables cover the capacity.
func (e *esxExtent) tableCount() int64 {
	span := e.perTable * e.grainBytes
	return (e.capBytes + span - 1) / span
}

// readDirectory reads the n directory entries at byte offset off; locate
// turns a nonzero entry into its table's byte offset.
func (e *esxExtent) readDirectory(off, n int64, locate func(v uint64, at int64) (int64, error)) error {
	size := n * e.entryBytes
	if off < e.minData || off > e.fileSize || size > e.fileSize-off {
		return fmt.Errorf("vmdk %s: grain directory at %#x (%d entries) lies outside the file's data (%#x to %#x)", e.name, off, n, e.minData, e.fileSize)
	}
	buf := make([]byte, size)
	if _, err := e.r.ReadAt(buf, off); err != nil {
		return fmt.Errorf("vmdk %s: read grain directory at %#x: %w", e.name, off, err)
	}
	e.gd = make([]int64, n)
	tableBytes := e.perTable * e.entryBytes
	for i := range e.gd {
		at := off + int64(i)*e.entryBytes
		v := e.entry(buf[int64(i)*e.entryBytes:])
		if v == 0 {
			continue
		}
		t, err := locate(v, at)
		if err != nil {
			return fmt.Errorf("vmdk %s: grain directory %w", e.name, err)
		}
		if t < e.minData || t > e.fileSize-tableBytes {
			return fmt.Errorf("vmdk %s: grain directory entry %d at %#x: grain table at %#x lies outside the file's data (%#x to %#x)",
				e.name, i, at, t, e.minData, e.fileSize)
		}
		e.gd[i] = t
	}
	e.tables = make(map[int64][]int64)
	return e.tablesApart(off)
}

// tablesApart refuses grain tables that share bytes: real deltas never do,
// and it keeps the work of reading every table within the file's size.
func (e *esxExtent) tablesApart(gdOff int64) error {
	var idx []int
	for i, t := range e.gd {
		if t != 0 {
			idx = append(idx, i)
		}
	}
	sort.Slice(idx, func(a, b int) bool { return e.gd[idx[a]] < e.gd[idx[b]] })
	tableBytes := e.perTable * e.entryBytes
	for k := 1; k < len(idx); k++ {
		i, j := idx[k-1], idx[k]
		if e.gd[j]-e.gd[i] < tableBytes {
			return fmt.Errorf("vmdk %s: grain directory at %#x: the grain tables of entries %d (at %#x) and %d (at %#x) overlap",
				e.name, gdOff, i, e.gd[i], j, e.gd[j])
		}
	}
	return nil
}

func (e *esxExtent) entry(b []byte) uint64 {
	if e.entryBytes == 4 {
		return uint64(binary.LittleEndian.Uint32(b))
	}
	return binary.LittleEndian.Uint64(b)
}

// table returns grain table t decoded, reading it on first use.
func (e *esxExtent) table(t int64) ([]int64, error) {
	e.mu.Lock()
	tab := e.tables[t]
	e.mu.Unlock()
	if tab != nil {
		return tab, nil
	}
	tab, err := e.loadTable(t)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.tables[t]; !ok {
		if len(e.order) == esxTableCache {
			delete(e.tables, e.order[0])
			e.order = append(e.order[:0], e.order[1:]...)
		}
		e.tables[t] = tab
		e.order = append(e.order, t)
	}
	return tab, nil
}

// loadTable reads and decodes grain table t, checking that every grain it
// points at lies inside the file.
func (e *esxExtent) loadTable(t int64) ([]int64, error) {
	off := e.gd[t]
	buf := make([]byte, e.perTable*e.entryBytes)
	if _, err := e.r.ReadAt(buf, off); err != nil {
		return nil, fmt.Errorf("vmdk %s: read grain table %d at %#x: %w", e.name, t, off, err)
	}
	tab := make([]int64, e.perTable)
	for j := range tab {
		g := t*e.perTable + int64(j)
		start := g * e.grainBytes
		if start >= e.capBytes {
			break // the last table's entries past the capacity
		}
		v := e.entry(buf[int64(j)*e.entryBytes:])
		d, err := e.decode(v)
		if err != nil {
			return nil, fmt.Errorf("vmdk %s: grain table %d at %#x: entry %d: %w", e.name, t, off, j, err)
		}
		if d > 0 {
			if n := min(e.grainBytes, e.capBytes-start); d < e.minData || d > e.fileSize-n {
				return nil, fmt.Errorf("vmdk %s: grain table %d at %#x: entry %d: grain at %#x lies outside the file's data (%#x to %#x)",
					e.name, t, off, j, d, e.minData, e.fileSize)
			}
		}
		tab[j] = d
	}
	return tab, nil
}

// decode turns a table entry into a byte offset, esxZero or esxUnallocated.
func (e *esxExtent) decode(v uint64) (int64, error) {
	if e.typ == "VMFSSPARSE" {
		if v > uint64(e.fileSize)/sectorSize {
			return 0, fmt.Errorf("grain at sector %d lies past the end of the file (%#x)", v, e.fileSize)
		}
		return int64(v) * sectorSize, nil // 0 stays unallocated
	}
	switch v >> 60 {
	case 0x0:
		if v != 0 {
			return 0, fmt.Errorf("%#016x: an unallocated entry must be all zero", v)
		}
		return esxUnallocated, nil
	case 0x1, 0x2: // unmapped (discarded by the guest), zeroed
		return esxZero, nil
	case 0x3:
		cluster := (v&0x0FFF000000000000)>>48 | (v&0x0000FFFFFFFFFFFF)<<12
		if cluster > uint64(e.fileSize)/uint64(e.grainBytes) {
			return 0, fmt.Errorf("%#016x: cluster %d lies past the end of the file (%#x)", v, cluster, e.fileSize)
		}
		return e.grainsBase + int64(cluster)*e.grainBytes, nil
	default:
		return 0, fmt.Errorf("%#016x: unknown kind %#x in the top 4 bits", v, v>>60)
	}
}

// run maps grains g to g+n-1 (within the capacity): the state of grain g and,
// for data, its byte offset in the file, and how many grains from g share the
// state (and, for data, follow it in the file).
func (e *esxExtent) run(g, n int64) (grainState, int64, int64, error) {
	t, first := g/e.perTable, g%e.perTable
	limit := min(n, e.perTable-first)
	if e.gd[t] == 0 {
		return grainUnallocated, 0, limit, nil
	}
	tab, err := e.table(t)
	if err != nil {
		return 0, 0, 0, err
	}
	v := tab[first]
	k := int64(1)
	for ; k < limit; k++ {
		w := tab[first+k]
		if v > 0 && w != v+k*e.grainBytes || v <= 0 && w != v {
			break
		}
	}
	switch {
	case v == esxUnallocated:
		return grainUnallocated, 0, k, nil
	case v == esxZero:
		return grainZero, 0, k, nil
	default:
		return grainData, v, k, nil
	}
}

// isCOWD reports whether the file starts with the vmfsSparse magic.
func isCOWD(r io.ReaderAt) bool {
	var b [4]byte
	n, _ := r.ReadAt(b[:], 0)
	return n == 4 && string(b[:]) == cowdMagic
}

// openESX opens an extent of descriptor type VMFSSPARSE or SESPARSE.
func openESX(typ, name string, r io.ReaderAt, size int64) (*esxExtent, error) {
	if typ == "SESPARSE" {
		return openSESparse(name, r, size)
	}
	return openCOWD(name, r, size)
}
