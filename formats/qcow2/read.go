package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/vmconv/vmconv/disk"
)

// kind is what one run of guest clusters maps to.
type kind uint8

const (
	kUnalloc    kind = iota // read from the backing file, or zeros
	kZero                   // reads as zeros, never from the backing file
	kData                   // stored uncompressed at host
	kCompressed             // one compressed cluster
)

// run is the mapping of a guest range that lies in one cluster (or in one
// unallocated L2 table) and maps one way.
type run struct {
	kind  kind
	host  int64  // kData: host offset of the run's first byte
	entry uint64 // kCompressed: the L2 entry
	n     int64  // length in bytes
}

// l2Cache keeps recently used L2 tables, bounded in bytes whatever the size
// of the image: tables are read on demand, never all at open.
type l2Cache struct {
	mu     sync.Mutex
	max    int
	tables map[uint64][]byte
	ring   []uint64 // insertion order, for eviction
	next   int
}

const l2CacheBytes = 32 << 20

func newL2Cache(clusterSize int64) *l2Cache {
	n := max(8, int(l2CacheBytes/clusterSize))
	return &l2Cache{max: n, tables: map[uint64][]byte{}}
}

func (c *l2Cache) get(off uint64) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tables[off]
}

func (c *l2Cache) put(off uint64, t []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.tables[off]; ok {
		return
	}
	if len(c.ring) < c.max {
		c.ring = append(c.ring, off)
	} else {
		delete(c.tables, c.ring[c.next])
		c.ring[c.next] = off
		c.next = (c.next + 1) % c.max
	}
	c.tables[off] = t
}

// l2Table returns the L2 table of L1 entry i, or nil when it is unallocated.
func (img *Image) l2Table(i int64) ([]byte, error) {
	off := img.l1[i] & offsetMask
	if off == 0 {
		return nil, nil
	}
	if t := img.cache.get(off); t != nil {
		return t, nil
	}
	t := make([]byte, img.clusterSize)
	if n, err := img.r.ReadAt(t, int64(off)); err != nil && !(errors.Is(err, io.EOF) && n == len(t)) {
		return nil, fmt.Errorf("qcow2 %s: read L2 table %d at %#x: %w", img.path, i, off, err)
	}
	img.cache.put(off, t)
	return t, nil
}

// mapAt maps the guest range starting at off (inside the image) up to the
// end of its cluster, or of its L2 table when the table is unallocated.
func (img *Image) mapAt(off int64) (run, error) {
	cs := img.clusterSize
	l2Span := cs << img.l2Bits
	l1i := off / l2Span
	t, err := img.l2Table(l1i)
	if err != nil {
		return run{}, err
	}
	if t == nil {
		return run{kind: kUnalloc, n: l2Span - off%l2Span}, nil
	}
	idx := (off / cs) & (int64(1)<<img.l2Bits - 1)
	entAt := img.l1[l1i]&offsetMask + uint64(idx*img.entryBytes)
	e := binary.BigEndian.Uint64(t[idx*img.entryBytes:])
	in := off % cs
	if e&oflagCompressed != 0 {
		if err := img.checkCompressed(e); err != nil {
			return run{}, fmt.Errorf("qcow2 %s: L2 table %d entry %d at %#x: %w", img.path, l1i, idx, entAt, err)
		}
		if img.dataFile != nil {
			return run{}, fmt.Errorf("qcow2 %s: L2 table %d entry %d at %#x: a compressed cluster in an image with an external data file", img.path, l1i, idx, entAt)
		}
		return run{kind: kCompressed, entry: e, n: cs - in}, nil
	}
	host := e & offsetMask
	if e&(0x3F<<56|0x1FE) != 0 && !img.extL2 {
		// Reserved bits set: qemu reports the image corrupt.
		return run{}, fmt.Errorf("qcow2 %s: L2 table %d entry %d at %#x: reserved bits set in %#x", img.path, l1i, idx, entAt, e)
	}
	if host != 0 && (host%uint64(cs) != 0 || host >= uint64(img.dataSize)) {
		return run{}, fmt.Errorf("qcow2 %s: L2 table %d entry %d at %#x: data cluster at %#x is unaligned or past the end of the %s (%#x)",
			img.path, l1i, idx, entAt, host, img.dataName(), img.dataSize)
	}
	// Offset 0 is a cluster only in a data file, where the copied flag
	// marks it allocated.
	allocated := host != 0 || img.dataFile != nil && e&oflagCopied != 0
	if !img.extL2 {
		switch {
		case e&oflagZero != 0 && img.hdr.Version >= 3:
			return run{kind: kZero, n: cs - in}, nil
		case !allocated:
			return run{kind: kUnalloc, n: cs - in}, nil
		}
		return run{kind: kData, host: int64(host) + in, n: cs - in}, nil
	}
	bm := binary.BigEndian.Uint64(t[idx*16+8:])
	alloc, zero := uint32(bm), uint32(bm>>32)
	if alloc&zero != 0 {
		return run{}, fmt.Errorf("qcow2 %s: L2 table %d entry %d at %#x: subclusters %#x are both allocated and zero", img.path, l1i, idx, entAt, alloc&zero)
	}
	if !allocated && alloc != 0 {
		return run{}, fmt.Errorf("qcow2 %s: L2 table %d entry %d at %#x: subclusters %#x allocated in a cluster without an offset", img.path, l1i, idx, entAt, alloc)
	}
	sub := func(i int64) kind {
		switch {
		case alloc&(1<<i) != 0:
			return kData
		case zero&(1<<i) != 0:
			return kZero
		}
		return kUnalloc
	}
	first := in / img.subSize
	k := sub(first)
	last := first + 1
	for last < subclusters && sub(last) == k {
		last++
	}
	r := run{kind: k, n: last*img.subSize - in}
	if k == kData {
		r.host = int64(host) + in
	}
	return r, nil
}

// compressedRange decodes a compressed cluster descriptor: the host offset
// of the data and the bytes that may hold it.
func (img *Image) compressedRange(e uint64) (off, size int64) {
	shift := 62 - (img.clusterBits - 8)
	mask := uint64(1)<<(img.clusterBits-8) - 1
	off = int64(e & (uint64(1)<<shift - 1))
	sectors := int64((e>>shift)&mask) + 1
	return off, sectors*512 - off&511
}

func (img *Image) checkCompressed(e uint64) error {
	if img.extL2 && e&oflagCopied != 0 {
		return fmt.Errorf("compressed cluster with the copied flag set")
	}
	off, _ := img.compressedRange(e)
	if off >= img.fileSize {
		return fmt.Errorf("compressed cluster at %#x lies past the end of the file (%#x)", off, img.fileSize)
	}
	return nil
}

// ReadAt reads the guest-visible bytes at off.
func (img *Image) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("qcow2 %s: read at %d: %w", img.path, off, disk.ErrOutOfRange)
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

// read fills p (inside the image). Runs of data clusters that lie back to
// back in the file are read with one call.
func (img *Image) read(p []byte, off int64) error {
	var pend []byte // pending data read
	var pendHost int64
	flush := func() error {
		if len(pend) == 0 {
			return nil
		}
		err := img.readFile(pend, pendHost)
		pend = nil
		return err
	}
	for len(p) > 0 {
		r, err := img.mapAt(off)
		if err != nil {
			return err
		}
		n := min(r.n, int64(len(p)))
		q := p[:n]
		if r.kind == kData && len(pend) > 0 && pendHost+int64(len(pend)) == r.host {
			pend = pend[:len(pend)+int(n)] // q follows pend in p
		} else {
			if err := flush(); err != nil {
				return err
			}
			switch r.kind {
			case kData:
				pend, pendHost = q, r.host
			case kZero:
				clear(q)
			case kUnalloc:
				if err := img.readBacking(q, off); err != nil {
					return err
				}
			case kCompressed:
				if err := img.readCompressed(q, off, r.entry); err != nil {
					return err
				}
			}
		}
		p, off = p[n:], off+n
	}
	return flush()
}

// readFile reads host bytes; a cluster cut short by the end of the file
// reads as zeros past it, as qemu reads it.
func (img *Image) readFile(p []byte, host int64) error {
	n, err := img.data.ReadAt(p, host)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("qcow2 %s: read data at %#x of the %s: %w", img.path, host, img.dataName(), err)
	}
	clear(p[n:])
	return nil
}

// dataName names where data clusters live, for errors.
func (img *Image) dataName() string {
	if img.dataFile != nil {
		return fmt.Sprintf("data file %s", img.info.DataFile)
	}
	return "file"
}

func (img *Image) readBacking(p []byte, off int64) error {
	b := img.backing
	if b == nil || off >= b.Size() {
		clear(p)
		return nil
	}
	n := int(min(int64(len(p)), b.Size()-off))
	if m, err := b.ReadAt(p[:n], off); err != nil && !(errors.Is(err, io.EOF) && m == n) {
		return fmt.Errorf("qcow2 %s: backing file at %#x: %w", img.path, off, err)
	}
	clear(p[n:])
	return nil
}

func (img *Image) readCompressed(p []byte, off int64, e uint64) error {
	coff, csize := img.compressedRange(e)
	csize = min(csize, img.fileSize-coff)
	buf := img.dec.get()
	defer img.dec.put(buf)
	src := buf.in[:csize]
	if _, err := img.r.ReadAt(src, coff); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("qcow2 %s: read compressed cluster at %#x: %w", img.path, coff, err)
	}
	if err := img.dec.decompress(buf, src); err != nil {
		return fmt.Errorf("qcow2 %s: compressed cluster for guest offset %#x at %#x (%d bytes): %w", img.path, off&^(img.clusterSize-1), coff, csize, err)
	}
	in := off % img.clusterSize
	copy(p, buf.out[in:])
	return nil
}

// Extents describes the allocation of [off, off+length) cluster by cluster
// (subcluster with extended L2 entries), adjacent runs of one kind merged.
// Unallocated ranges take the backing file's kinds.
func (img *Image) Extents(off, length int64) ([]disk.Extent, error) {
	if off < 0 || length < 0 {
		return nil, fmt.Errorf("qcow2 %s: extents at %d+%d: %w", img.path, off, length, disk.ErrOutOfRange)
	}
	end := img.size
	if length < img.size-off {
		end = off + length
	}
	var out []disk.Extent
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
	for off < end {
		r, err := img.mapAt(off)
		if err != nil {
			return nil, err
		}
		n := min(r.n, end-off)
		switch r.kind {
		case kData, kCompressed:
			add(off, n, disk.Data)
		case kZero:
			add(off, n, disk.Zero)
		case kUnalloc:
			// Gather the whole unallocated run for one backing query.
			for off+n < end && img.backing != nil {
				r2, err := img.mapAt(off + n)
				if err != nil {
					return nil, err
				}
				if r2.kind != kUnalloc {
					break
				}
				n = min(n+r2.n, end-off)
			}
			if err := img.backingExtents(off, n, add); err != nil {
				return nil, err
			}
		}
		off += n
	}
	return out, nil
}

func (img *Image) backingExtents(off, n int64, add func(o, l int64, k disk.Kind)) error {
	b := img.backing
	if b == nil || off >= b.Size() {
		add(off, n, disk.Unallocated)
		return nil
	}
	be, err := b.Extents(off, n)
	if err != nil {
		return err
	}
	covered := off
	for _, e := range be {
		add(e.Offset, e.Length, e.Kind)
		covered = e.End()
	}
	add(covered, off+n-covered, disk.Unallocated)
	return nil
}
