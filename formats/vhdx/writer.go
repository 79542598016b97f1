package vhdx

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"unicode/utf16"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/createopt"
)

// Options control the writer, spelled like qemu-img's vhdx options.
type Options struct {
	Subformat string // "dynamic" (default) or "fixed"
	// BlockSize in bytes, a power of two from 1 MiB to 256 MiB; 0 chooses
	// as qemu-img does (8 MiB up to 1 GiB, 16 MiB up to 100 GiB, 32 MiB up
	// to 32 TiB, 64 MiB above).
	BlockSize int64
}

// OptionHelp lists the -o settings ParseOptions takes.
var OptionHelp = []createopt.Help{
	{Name: "block_size", Value: "<size>", Text: "block size, a power of two from 1M to 256M (default: by disk size, as qemu-img)"},
	{Name: "block_state_zero", Value: "<bool (on/off)>", Text: "accepted for qemu-img's sake; unwritten blocks read as zeros either way"},
	{Name: "log_size", Value: "<size>", Text: "log size: only 1M is written"},
	{Name: "subformat", Value: "<str>", Text: "dynamic (default) or fixed"},
}

// ParseOptions parses -o subformat=dynamic|fixed,block_size=N.
func ParseOptions(kv map[string]string) (Options, error) {
	var o Options
	for _, k := range createopt.Keys(kv) {
		v := kv[k]
		switch k {
		case "subformat":
			switch strings.ToLower(v) {
			case "dynamic", "fixed":
				o.Subformat = strings.ToLower(v)
			default:
				return o, fmt.Errorf("vhdx option subformat=%q: want dynamic or fixed", v)
			}
		case "block_size":
			n, err := createopt.Size(v)
			if err != nil || n < minBlockSize || n > maxBlockSize || n&(n-1) != 0 {
				return o, fmt.Errorf("vhdx option block_size=%q: want a power of two from 1M to 256M", v)
			}
			o.BlockSize = n
		case "log_size":
			if n, err := createopt.Size(v); err != nil || n != mib {
				return o, fmt.Errorf("vhdx option log_size=%q: only 1M is written", v)
			}
		case "block_state_zero":
		default:
			return o, fmt.Errorf("vhdx: unknown option %q (known: %s)", k, createopt.Known(OptionHelp))
		}
	}
	return o, nil
}

// defaultBlockSize is qemu-img's choice for a disk of the given size.
func defaultBlockSize(size int64) int64 {
	switch {
	case size > 32<<40:
		return 64 * mib
	case size > 100<<30:
		return 32 * mib
	case size > 1<<30:
		return 16 * mib
	}
	return 8 * mib
}

// File layout, as qemu-img writes it.
const (
	logOff  = 1 * mib
	logLen  = 1 * mib
	metaOff = 2 * mib
	metaLen = 1 * mib
	batOff  = 3 * mib
)

// writer writes payload blocks at 1 MiB-aligned offsets after the BAT, in
// write order (dynamic) or all in place (fixed), with WriteAt so zero chunks
// stay holes. Close writes the BAT, the metadata, the region tables, the
// headers and the file identifier. Memory holds the BAT: 8 bytes per block.
type writer struct {
	f     *os.File
	name  string
	geo   geometry
	fixed bool
	bat   []uint64
	next  int64 // file offset of the next payload block
	batLn int64
	order disk.ChunkOrder
	err   error
}

// Create starts a VHDX of size bytes (rounded up to whole sectors) at path,
// written through out.
func Create(out *disk.Output, path string, size int64, opt Options) (disk.Writer, error) {
	if path == disk.Stdout {
		return nil, fmt.Errorf("vhdx: cannot be written to standard output")
	}
	w, err := newWriter(path, size, opt)
	if err != nil {
		return nil, err
	}
	w.bat = make([]uint64, w.geo.batEntries)
	if w.fixed {
		for b := int64(0); b < w.geo.dataBlocks; b++ {
			w.bat[w.geo.batIndex(b)] = payloadFull | uint64((batOff+w.batLn+b*w.geo.blockSize)/mib)<<20
		}
	}
	if w.f, err = out.Create(path); err != nil {
		return nil, err
	}
	return w, nil
}

// newWriter lays out a VHDX of size bytes (rounded up to whole sectors):
// the BAT's size, and for a fixed disk every block after it (the BAT itself
// is Create's, Measure needs none).
func newWriter(path string, size int64, opt Options) (*writer, error) {
	size = (size + 511) &^ 511
	if size > maxVirtualSize {
		return nil, fmt.Errorf("vhdx %s: size %d is larger than VHDX's 64 TiB", path, size)
	}
	bs := opt.BlockSize
	if bs == 0 {
		bs = defaultBlockSize(size)
	}
	w := &writer{name: path, geo: newGeometry(size, bs, 512), fixed: opt.Subformat == "fixed"}
	w.batLn = (w.geo.batEntries*8 + mib - 1) / mib * mib
	w.next = batOff + w.batLn
	if w.fixed {
		w.next += w.geo.dataBlocks * bs
	}
	return w, nil
}

func (w *writer) fail(format string, args ...any) error {
	if w.err == nil {
		w.err = fmt.Errorf("vhdx %s: "+format, append([]any{w.name}, args...)...)
	}
	return w.err
}

func (w *writer) WriteChunk(c *disk.Chunk) error {
	if w.err != nil {
		return w.err
	}
	if err := w.order.Take(c, w.geo.virtualSize); err != nil {
		return w.fail("%v", err)
	}
	if c.Zero || c.Data == nil {
		return nil
	}
	bs := w.geo.blockSize
	p, off := c.Data, c.Offset
	for len(p) > 0 {
		b, in := off/bs, off%bs
		n := min(int64(len(p)), bs-in)
		i := w.geo.batIndex(b)
		if w.bat[i]&7 != payloadFull {
			w.bat[i] = payloadFull | uint64(w.next/mib)<<20
			w.next += bs
		}
		at := int64(w.bat[i]>>20)*mib + in
		if _, err := w.f.WriteAt(p[:n], at); err != nil {
			return w.fail("write block %d at %#x: %v", b, at, err)
		}
		p, off = p[n:], off+n
	}
	return nil
}

// Close writes the metadata and then the tables that make the file valid,
// the headers last. It does not close the file, which the Output owns.
func (w *writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if err := w.f.Truncate(w.next); err != nil {
		return w.fail("%v", err)
	}
	bat := make([]byte, w.geo.batEntries*8)
	for i, e := range w.bat {
		binary.LittleEndian.PutUint64(bat[i*8:], e)
	}
	parts := []struct {
		b   []byte
		off int64
	}{
		{bat, batOff},
		{w.metadata(), metaOff},
		{w.regionTable(), regionOff1},
		{w.regionTable(), regionOff2},
		{w.header(1), headerOff1},
		{w.header(2), headerOff2},
		{fileIdentifier(), 0},
	}
	for _, p := range parts {
		if _, err := w.f.WriteAt(p.b, p.off); err != nil {
			return w.fail("write metadata at %#x: %v", p.off, err)
		}
	}
	w.err = fmt.Errorf("vhdx %s: writer closed", w.name)
	return nil
}

func fileIdentifier() []byte {
	b := make([]byte, 8+512)
	copy(b, "vhdxfile")
	for i, c := range utf16.Encode([]rune("vmconv")) {
		binary.LittleEndian.PutUint16(b[8+2*i:], c)
	}
	return b
}

func randomGUID() GUID {
	var g GUID
	rand.Read(g[:])
	return g
}

func (w *writer) header(seq uint64) []byte {
	h := Header{SequenceNumber: seq, FileWriteGUID: randomGUID(), DataWriteGUID: randomGUID(),
		Version: 1, LogLength: logLen, LogOffset: logOff}
	copy(h.Signature[:], "head")
	b := make([]byte, headerLen)
	binary.Encode(b, binary.LittleEndian, &h)
	seal(b)
	return b
}

func (w *writer) regionTable() []byte {
	b := make([]byte, regionLen)
	h := RegionTableHeader{EntryCount: 2}
	copy(h.Signature[:], "regi")
	binary.Encode(b, binary.LittleEndian, &h)
	binary.Encode(b[16:], binary.LittleEndian, &RegionEntry{GUID: regionBAT, FileOffset: batOff, Length: uint32(w.batLn), Required: 1})
	binary.Encode(b[48:], binary.LittleEndian, &RegionEntry{GUID: regionMetadata, FileOffset: metaOff, Length: metaLen, Required: 1})
	seal(b)
	return b
}

// metadata builds the metadata region's table and items: the items start
// 64 KiB into the region, as the specification asks.
func (w *writer) metadata() []byte {
	b := make([]byte, 64*kib+4*kib)
	th := MetadataTableHeader{EntryCount: 5}
	copy(th.Signature[:], "metadata")
	binary.Encode(b, binary.LittleEndian, &th)
	id := randomGUID()
	items := []struct {
		id    GUID
		flags uint32
		v     []byte
	}{
		{itemFileParams, metaIsRequired, binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, uint32(w.geo.blockSize)), 0)},
		{itemDiskSize, metaIsRequired | metaIsVirtualDisk, binary.LittleEndian.AppendUint64(nil, uint64(w.geo.virtualSize))},
		{itemDiskID, metaIsRequired | metaIsVirtualDisk, id[:]},
		{itemLogicalSect, metaIsRequired | metaIsVirtualDisk, binary.LittleEndian.AppendUint32(nil, 512)},
		{itemPhysicalSect, metaIsRequired | metaIsVirtualDisk, binary.LittleEndian.AppendUint32(nil, 4096)},
	}
	off := 64 * kib
	for i, it := range items {
		binary.Encode(b[32+i*32:], binary.LittleEndian, &MetadataEntry{ItemID: it.id, Offset: uint32(off), Length: uint32(len(it.v)), Flags: it.flags})
		copy(b[off:], it.v)
		off += len(it.v)
	}
	return b
}
