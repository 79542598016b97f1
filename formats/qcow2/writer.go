package qcow2

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/vmconv/vmconv/disk"
	"golang.org/x/sys/unix"
)

// writer writes a version 3 (or 2) image front to back: the header cluster, the
// refcount table and the L1 table are reserved first (their size is known
// from the virtual size) and filled in by Close; then data clusters, each L2
// table as soon as the chunks have moved past it, and each refcount block as
// soon as the file has grown past the clusters it counts. Everything after
// the reserved area is appended, so memory holds one L2 table, one refcount
// block, the L1 table and the refcount table whatever the disk size.
type writer struct {
	f    *os.File
	bw   *bufio.Writer
	name string
	size int64
	hdr  Header

	cs         int64
	l2Entries  int64
	entryBytes int64 // 8, or 16 with extended L2 entries
	l1         []uint64
	l1Off      int64
	rtOff      int64
	rtEntries  int64 // capacity of the reserved refcount table

	curL2 int64 // L1 index of the L2 table being filled, -1 for none
	l2    []byte

	hostEnd  int64 // bytes appended to the file so far
	perBlock int64 // refcounts per refcount block
	curBlock int64
	rcb      refcountBlock // the block being counted, as it is written
	rt       []uint64

	openVC   int64 // guest cluster being written uncompressed, -1 for none
	openFill int64 // bytes of it written

	prealloc string // Options.Preallocation
	hole     int64  // bytes skipped at the end of the file, not yet sought past

	comp     *compressor
	order    disk.ChunkOrder
	err      error
	prepPool sync.Pool // *prepared
}

// Create starts a new qcow2 image of size bytes (rounded up to whole
// sectors, as qemu sees every image) at path, written through out so it
// appears only when out is committed.
func Create(out *disk.Output, path string, size int64, opt Options) (disk.Writer, error) {
	opt.fill()
	if err := opt.checkCompat(); err != nil {
		return nil, err
	}
	if path == disk.Stdout {
		return nil, fmt.Errorf("qcow2: cannot be written to standard output (its tables are written last, at the front)")
	}
	if opt.Compress && opt.Preallocation != "off" {
		return nil, fmt.Errorf("qcow2 %s: compression and preallocation=%s exclude each other, as in qemu-img", path, opt.Preallocation)
	}
	if opt.Compress && opt.ClusterSize > disk.ChunkSize {
		return nil, fmt.Errorf("qcow2 %s: compression needs clusters of at most %d bytes, not %d", path, disk.ChunkSize, opt.ClusterSize)
	}
	w, err := newWriter(path, size, opt)
	if err != nil {
		return nil, err
	}
	if opt.Compress {
		var typ uint8
		if opt.CompressionType == "zstd" {
			typ = compressionZstd
		}
		c, err := newCompressor(typ, opt.CompressionLevel)
		if err != nil {
			return nil, err
		}
		w.comp = c
	}
	f, err := out.Create(path)
	if err != nil {
		return nil, err
	}
	w.f = f
	w.bw = bufio.NewWriterSize(f, 1<<20)
	w.reserve()
	return w, w.err
}

// newWriter lays out an image of size bytes (rounded up to whole sectors);
// until it is given a file it only counts what it would write (Measure).
func newWriter(path string, size int64, opt Options) (*writer, error) {
	cs := opt.ClusterSize
	if cs < 512 || cs > 2<<20 || cs&(cs-1) != 0 {
		return nil, fmt.Errorf("qcow2 %s: cluster size %d: want a power of two from 512 to 2 MiB", path, cs)
	}
	if size < 0 {
		return nil, fmt.Errorf("qcow2 %s: size %d: want a size of at least 0", path, size)
	}
	rb := opt.RefcountBits
	if rb < 1 || rb > 64 || rb&(rb-1) != 0 {
		return nil, fmt.Errorf("qcow2 %s: refcount width %d: want a power of two from 1 to 64", path, rb)
	}
	entry := int64(8)
	if opt.ExtendedL2 {
		if cs < 16<<10 {
			return nil, fmt.Errorf("qcow2 %s: extended L2 entries need clusters of at least 16 KiB, not %d", path, cs)
		}
		entry = 16
	}
	size = (size + 511) &^ 511
	w := &writer{name: path, size: size, cs: cs, l2Entries: cs / entry, entryBytes: entry, curL2: -1, openVC: -1, perBlock: cs * 8 / int64(rb),
		prealloc: opt.Preallocation}
	if err := w.layout(opt); err != nil {
		return nil, err
	}
	w.l2 = make([]byte, cs)
	w.rcb = newRefcountBlock(cs, rb)
	return w, nil
}

// reserve appends the header, refcount table and L1 table clusters, which
// Close fills in: holes until then, so that only the tables' bytes take
// space (2 MiB clusters would otherwise cost 6 MiB of zeros).
func (w *writer) reserve() {
	reserved := 1 + w.rtEntries*8/w.cs + (int64(len(w.l1))*8+w.cs-1)/w.cs
	for range reserved {
		w.allocCluster()
		w.leaveHole(w.cs)
	}
}

// layout sizes the L1 and refcount tables and places them after the header.
func (w *writer) layout(opt Options) error {
	cs := w.cs
	l2Span := cs * w.l2Entries
	l1Size := (w.size + l2Span - 1) / l2Span
	if l1Size*8 > maxL1Bytes {
		return fmt.Errorf("qcow2 %s: size %d needs an L1 table of %d bytes, more than qemu's %d: use a larger cluster_size", w.name, w.size, l1Size*8, maxL1Bytes)
	}
	l1Clusters := (l1Size*8 + cs - 1) / cs
	// The file can hold at most: header, tables, every data cluster, every
	// L2 table, and the refcount blocks counting all of these.
	base := 1 + l1Clusters + (w.size+cs-1)/cs + l1Size + 1
	rtClusters := int64(1)
	for {
		blocks := (base+rtClusters)/w.perBlock + 2
		need := (blocks*8 + cs - 1) / cs
		if need <= rtClusters {
			break
		}
		rtClusters = need
	}
	if rtClusters*cs > maxRefTable {
		return fmt.Errorf("qcow2 %s: size %d needs a refcount table of %d bytes, more than qemu's %d: use a larger cluster_size", w.name, w.size, rtClusters*cs, maxRefTable)
	}
	w.rtOff = cs
	w.rtEntries = rtClusters * cs / 8
	w.l1Off = cs + rtClusters*cs
	w.l1 = make([]uint64, l1Size)
	w.hdr = Header{
		Magic: magic, Version: 3, ClusterBits: uint32(log2(uint64(cs))), Size: uint64(w.size),
		L1Size: uint32(l1Size), L1TableOffset: uint64(w.l1Off),
		RefcountTableOffset: uint64(w.rtOff), RefcountTableClusters: uint32(rtClusters),
		RefcountOrder: uint32(log2(uint64(opt.RefcountBits))), HeaderLength: ourHeaderLength,
	}
	if opt.Compat == "0.10" {
		w.hdr.Version = 2 // encode leaves out the version 3 fields
	}
	if opt.Compress && opt.CompressionType == "zstd" {
		w.hdr.IncompatibleFeatures |= incCompression
		w.hdr.CompressionType = compressionZstd
	}
	if opt.LazyRefcounts {
		w.hdr.CompatibleFeatures |= compatLazyRefcounts
	}
	if opt.ExtendedL2 {
		w.hdr.IncompatibleFeatures |= incExtendedL2
	}
	return nil
}

func (w *writer) fail(format string, args ...any) error {
	if w.err == nil {
		w.err = fmt.Errorf("qcow2 %s: "+format, append([]any{w.name}, args...)...)
	}
	return w.err
}

// emit appends p to the file (only counts it when measuring).
func (w *writer) emit(p []byte) {
	if w.err != nil {
		return
	}
	if w.bw == nil {
		w.hostEnd += int64(len(p))
		return
	}
	if w.hole > 0 && !w.seekHole() {
		return
	}
	if _, err := w.bw.Write(p); err != nil {
		w.fail("write at %#x: %v", w.hostEnd, err)
		return
	}
	w.hostEnd += int64(len(p))
}

// skip appends n zero bytes: a hole of the file, but written zeros with
// preallocation=full.
func (w *writer) skip(n int64) {
	for w.prealloc == "full" && n > 0 {
		k := min(n, int64(len(zeroCluster)))
		w.emit(zeroCluster[:k])
		n -= k
	}
	if n > 0 {
		w.leaveHole(n)
	}
}

// leaveHole appends n bytes left unwritten: sought past before the next
// write (only counted when measuring).
func (w *writer) leaveHole(n int64) {
	if w.err != nil {
		return
	}
	w.hostEnd += n
	if w.bw != nil {
		w.hole += n
	}
}

// seekHole moves the file's offset past the pending hole.
func (w *writer) seekHole() bool {
	if err := w.bw.Flush(); err != nil {
		w.fail("write at %#x: %v", w.hostEnd-w.hole, err)
		return false
	}
	if _, err := w.f.Seek(w.hole, io.SeekCurrent); err != nil {
		w.fail("seek to %#x: %v", w.hostEnd, err)
		return false
	}
	w.hole = 0
	return true
}

// pad fills the rest of an open data cluster with zeros: written, or a hole
// when every cluster is preallocated (most of them hold only zeros then).
func (w *writer) pad(n int64) {
	if w.prealloc != "off" {
		w.skip(n)
		return
	}
	w.emit(zeroCluster[:n])
}

// WantsZeroChunks asks the copy for the zero chunks too when every cluster
// is preallocated.
func (w *writer) WantsZeroChunks() bool { return w.prealloc != "off" }

// allocZero preallocates guest cluster vc when it is not yet: opened as a
// data cluster of zeros (its bytes a hole unless preallocation=full), with
// every subcluster allocated, as qemu-img preallocates.
func (w *writer) allocZero(vc int64) {
	if vc == w.openVC {
		return
	}
	w.openCluster(vc)
	if w.entryBytes == 16 {
		binary.BigEndian.PutUint64(w.l2[(vc%w.l2Entries)*16+8:], 1<<subclusters-1)
	}
}

// openCluster allocates a host cluster for guest cluster vc and keeps it
// open for writing, closing the one open before.
func (w *writer) openCluster(vc int64) {
	w.closeOpen()
	w.useL2(vc)
	pos := w.allocCluster()
	w.setL2(vc, uint64(pos)|oflagCopied)
	w.openVC, w.openFill = vc, 0
}

var zeroCluster [2 << 20]byte

// alignPad pads the file to a cluster boundary (after compressed data).
func (w *writer) alignPad() {
	if r := w.hostEnd % w.cs; r != 0 {
		w.emit(zeroCluster[:w.cs-r])
	}
}

// allocCluster counts the next whole cluster of the file and returns its
// offset; the caller appends its cs bytes next.
func (w *writer) allocCluster() int64 {
	w.alignPad()
	for w.hostEnd/w.cs/w.perBlock > w.curBlock && w.err == nil {
		w.flushBlock()
	}
	w.rcb.inc(w.hostEnd / w.cs % w.perBlock)
	return w.hostEnd
}

// allocBytes counts n bytes of compressed data appended at the end of the
// file, byte-packed as qemu packs them; every cluster the data's sectors
// touch gains one reference. Data that would take the cluster it shares
// with the data before past the largest refcount starts a new cluster.
func (w *writer) allocBytes(n int64) int64 {
	for w.err == nil {
		pos := w.hostEnd
		first, last := (pos&^511)/w.cs, ((pos+n+511)&^511-1)/w.cs
		if last/w.perBlock > w.curBlock {
			w.alignPad()
			w.flushBlock()
			continue
		}
		if w.rcb.full(first % w.perBlock) {
			w.alignPad()
			continue
		}
		for c := first; c <= last; c++ {
			w.rcb.inc(c % w.perBlock)
		}
		return pos
	}
	return 0
}

// flushBlock appends the current refcount block, whose counts are final
// (the file has grown past its clusters or is being closed), and counts the
// block's own cluster in whichever block holds it.
func (w *writer) flushBlock() {
	w.alignPad()
	pos := w.hostEnd
	self := pos / w.cs
	if self/w.perBlock == w.curBlock {
		w.rcb.inc(self % w.perBlock)
	}
	w.emit(w.rcb.b)
	if int64(len(w.rt)) >= w.rtEntries {
		w.fail("refcount table overflow (%d blocks)", len(w.rt))
		return
	}
	w.rt = append(w.rt, uint64(pos))
	w.curBlock++
	clear(w.rcb.b)
	if self/w.perBlock == w.curBlock {
		w.rcb.inc(self % w.perBlock)
	}
}

// useL2 makes the L2 table of guest cluster vc the current one, writing out
// the previous one.
func (w *writer) useL2(vc int64) {
	i := vc / w.l2Entries
	if i == w.curL2 {
		return
	}
	w.flushL2()
	w.curL2 = i
}

func (w *writer) flushL2() {
	if w.curL2 < 0 {
		return
	}
	pos := w.allocCluster()
	w.emit(w.l2)
	w.l1[w.curL2] = uint64(pos) | oflagCopied
	clear(w.l2)
	w.curL2 = -1
}

func (w *writer) setL2(vc int64, e uint64) {
	binary.BigEndian.PutUint64(w.l2[(vc%w.l2Entries)*w.entryBytes:], e)
}

// markAllocated marks allocated, with extended L2 entries, the subclusters
// of guest cluster vc in which p (at byte in of it) holds data; the others
// read as unallocated, zeros on a disk without a backing file, as qemu-img
// leaves them.
func (w *writer) markAllocated(vc, in int64, p []byte) {
	if w.entryBytes != 16 {
		return
	}
	sub := w.cs / subclusters
	at := (vc%w.l2Entries)*16 + 8
	bm := binary.BigEndian.Uint64(w.l2[at:])
	for len(p) > 0 {
		n := min(int64(len(p)), sub-in%sub)
		if !disk.IsZero(p[:n]) {
			bm |= 1 << (in / sub)
		}
		p, in = p[n:], in+n
	}
	binary.BigEndian.PutUint64(w.l2[at:], bm)
}

// writeData writes p at byte in of guest cluster vc, uncompressed. A
// cluster stays open until another cluster or table is written, so clusters
// larger than a chunk fill from several chunks; gaps read as zeros.
func (w *writer) writeData(vc, in int64, p []byte) {
	switch {
	case vc == w.openVC:
	case w.prealloc != "off":
		w.allocZero(vc)
	default:
		w.openCluster(vc)
	}
	if in > w.openFill {
		w.pad(in - w.openFill)
	}
	w.emit(p)
	w.markAllocated(vc, in, p)
	w.openFill = in + int64(len(p))
}

func (w *writer) closeOpen() {
	if w.openVC >= 0 {
		w.pad(w.cs - w.openFill)
		w.openVC = -1
	}
}

// writeCompressed appends one compressed cluster.
func (w *writer) writeCompressed(vc int64, data []byte) {
	w.closeOpen()
	w.useL2(vc)
	n := int64(len(data))
	pos := w.allocBytes(n)
	sectors := (pos%512 + n + 511) / 512
	shift := 62 - (w.hdr.ClusterBits - 8)
	w.setL2(vc, oflagCompressed|uint64(sectors-1)<<shift|uint64(pos))
	w.emit(data)
}

// Close writes the last L2 table and refcount blocks, then the refcount
// table, the L1 table and the header into the reserved clusters. It does
// not close the file, which the Output owns.
func (w *writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.finish(); w.err != nil {
		return w.err
	}
	if err := w.bw.Flush(); err != nil {
		return w.fail("write: %v", err)
	}
	if w.prealloc == "falloc" {
		if err := unix.Fallocate(int(w.f.Fd()), 0, 0, w.hostEnd); err != nil {
			return w.fail("preallocation=falloc: %v", err)
		}
	}
	rt := make([]byte, w.rtEntries*8)
	for i, v := range w.rt {
		binary.BigEndian.PutUint64(rt[i*8:], v)
	}
	l1 := make([]byte, len(w.l1)*8)
	for i, v := range w.l1 {
		binary.BigEndian.PutUint64(l1[i*8:], v)
	}
	for _, p := range []struct {
		b   []byte
		off int64
	}{{rt, w.rtOff}, {l1, w.l1Off}, {w.hdr.encode(), 0}} {
		if _, err := w.f.WriteAt(p.b, p.off); err != nil {
			return w.fail("write tables at %#x: %v", p.off, err)
		}
	}
	w.err = fmt.Errorf("qcow2 %s: writer closed", w.name)
	return nil
}

// finish appends the last L2 table and the refcount blocks.
func (w *writer) finish() {
	w.closeOpen()
	w.flushL2()
	w.flushBlock()
	for w.err == nil && !disk.IsZero(w.rcb.b) {
		w.flushBlock() // the last block's own cluster began a new block
	}
}

// refcountBlock is a refcount block in its on-disk encoding: refcounts of
// bits (a power of two up to 64) each, big-endian from 8 bits up, packed
// from the low bit of each byte below 8 (refcountAt reads them).
type refcountBlock struct {
	b     []byte
	bits  int
	order uint32 // log2(bits), as the header and refcountAt name the width
}

func newRefcountBlock(size int64, bits int) refcountBlock {
	return refcountBlock{b: make([]byte, size), bits: bits, order: uint32(log2(uint64(bits)))}
}

func (r refcountBlock) max() uint64 { return 1<<r.bits - 1 } // 1<<64 - 1 wraps to all ones

func (r refcountBlock) full(i int64) bool { return refcountAt(r.b, i, r.order) == r.max() }

// inc adds one reference to refcount i; callers never take it past max.
func (r refcountBlock) inc(i int64) {
	v := refcountAt(r.b, i, r.order) + 1
	if r.bits < 8 {
		at, shift := i*int64(r.bits)/8, uint(i*int64(r.bits)%8)
		r.b[at] = r.b[at]&^byte(r.max()<<shift) | byte(v<<shift)
		return
	}
	n := int64(r.bits / 8)
	for k := n - 1; k >= 0; k-- {
		r.b[i*n+k] = byte(v)
		v >>= 8
	}
}

var _ io.Closer = (*writer)(nil)
