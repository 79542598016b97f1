package vdi

import (
	"encoding/binary"
	"fmt"
	"os"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/createopt"
)

// Options control the writer, spelled like qemu-img's vdi options.
type Options struct {
	// Static allocates every block (VirtualBox's "fixed"); the zeros stay
	// holes in the file, as qemu-img leaves them.
	Static bool
}

// OptionHelp lists the -o settings ParseOptions takes.
var OptionHelp = []createopt.Help{
	{Name: "static", Value: "<bool (on/off)>", Text: "VDI static (pre-allocated) image"},
}

// ParseOptions parses -o static=on|off.
func ParseOptions(kv map[string]string) (Options, error) {
	var o Options
	for _, k := range createopt.Keys(kv) {
		v := kv[k]
		switch k {
		case "static":
			b, err := createopt.Bool(v)
			if err != nil {
				return o, fmt.Errorf("vdi option static=%q: %w", v, err)
			}
			o.Static = b
		default:
			return o, fmt.Errorf("vdi: unknown option %q (known: %s)", k, createopt.Known(OptionHelp))
		}
	}
	return o, nil
}

// writer writes a dynamic or static VDI with 1 MiB blocks. Data goes
// straight to its place with WriteAt, zeros left as holes; a dynamic
// image's blocks are laid out in the order they are first written, as
// qemu and VirtualBox append them, and blocks never written stay
// unallocated. Close writes the header and the block map. Memory holds the
// map: 4 bytes per MiB of disk.
type writer struct {
	f      *os.File
	name   string
	l      layout
	static bool
	hdr    Header
	bmap   []uint32
	next   uint32 // data block index of the next new block (dynamic)
	order  disk.ChunkOrder
	err    error
}

// Create starts a VDI of size bytes (rounded up to a sector, as qemu-img
// rounds it) at path, written through out.
func Create(out *disk.Output, path string, size int64, opt Options) (disk.Writer, error) {
	if path == disk.Stdout {
		return nil, fmt.Errorf("vdi: cannot be written to standard output")
	}
	w, err := newWriter(path, size, opt)
	if err != nil {
		return nil, err
	}
	if w.f, err = out.Create(path); err != nil {
		return nil, err
	}
	return w, nil
}

func newWriter(path string, size int64, opt Options) (*writer, error) {
	l, err := layoutFor(size)
	if err != nil {
		return nil, fmt.Errorf("vdi %s: %w", path, err)
	}
	w := &writer{name: path, l: l, static: opt.Static, bmap: make([]uint32, l.blocks)}
	for i := range w.bmap {
		w.bmap[i] = unallocated
		if w.static {
			w.bmap[i] = uint32(i)
		}
	}
	h := &w.hdr
	copy(h.Text[:], textVirtualBox)
	h.Signature, h.Version = signature, version11
	h.HeaderSize = headerSize1Plus
	h.ImageType = typeDynamic
	if opt.Static {
		h.ImageType = typeStatic
	}
	h.OffsetBmap, h.OffsetData = bmapOffset, uint32(l.dataOff)
	h.Legacy.SectorSize = sectorSize
	h.DiskSize = uint64(l.size)
	h.BlockSize = defaultBlockSize
	h.BlocksInImage = uint32(l.blocks)
	h.UUIDImage, h.UUIDLastSnap = newUUID(), newUUID()
	// A zero LCHS geometry is VirtualBox's "not calculated yet".
	h.LCHS.SectorSize = sectorSize
	return w, nil
}

func (w *writer) fail(format string, args ...any) error {
	if w.err == nil {
		w.err = fmt.Errorf("vdi %s: "+format, append([]any{w.name}, args...)...)
	}
	return w.err
}

func (w *writer) WriteChunk(c *disk.Chunk) error {
	if w.err != nil {
		return w.err
	}
	if err := w.order.Take(c, w.l.size); err != nil {
		return w.fail("%v", err)
	}
	if c.Zero || c.Data == nil {
		return nil
	}
	for p, off := c.Data, c.Offset; len(p) > 0; {
		b, in := off/defaultBlockSize, off%defaultBlockSize
		n := min(int64(len(p)), defaultBlockSize-in)
		if w.bmap[b] == unallocated {
			w.bmap[b] = w.next
			w.next++
		}
		at := w.l.dataOff + int64(w.bmap[b])*defaultBlockSize + in
		if err := disk.WriteNonZero(w.f, p[:n], at); err != nil { // zero 4 KiB blocks stay holes of the new file
			return w.fail("write block %d at %#x: %v", b, at, err)
		}
		p, off = p[n:], off+n
	}
	return nil
}

// Close sizes the file to hold every allocated block whole and writes the
// header and the block map. It does not close the file, which the Output
// owns.
func (w *writer) Close() error {
	if w.err != nil {
		return w.err
	}
	allocated := w.next
	if w.static {
		allocated = uint32(w.l.blocks)
	}
	w.hdr.BlocksAllocated = allocated
	if err := w.f.Truncate(w.l.dataOff + int64(allocated)*defaultBlockSize); err != nil {
		return w.fail("%v", err)
	}
	// The map's last sector is padded with zeros, as qemu pads it; the
	// rest of the gap before the data stays a hole.
	bmap := make([]byte, (4*w.l.blocks+sectorSize-1)/sectorSize*sectorSize)
	for i, e := range w.bmap {
		binary.LittleEndian.PutUint32(bmap[4*i:], e)
	}
	if _, err := w.f.WriteAt(w.hdr.encode(), 0); err != nil {
		return w.fail("write header: %v", err)
	}
	if _, err := w.f.WriteAt(bmap, bmapOffset); err != nil {
		return w.fail("write block map at %#x: %v", bmapOffset, err)
	}
	w.err = fmt.Errorf("vdi %s: writer closed", w.name)
	return nil
}
