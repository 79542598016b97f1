package vhd

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/createopt"
)

// Options control the writer, spelled like qemu-img's vpc options.
type Options struct {
	Subformat string // "dynamic" (default) or "fixed"
	// ForceSize keeps the exact size instead of rounding it up to a CHS
	// geometry (and marks the image "qem2" so readers use the size).
	ForceSize bool
}

// OptionHelp lists the -o settings ParseOptions takes.
var OptionHelp = []createopt.Help{
	{Name: "force_size", Value: "<bool (on/off)>", Text: "keep the exact size instead of rounding it up to a CHS geometry"},
	{Name: "subformat", Value: "<str>", Text: "type of virtual hard disk: dynamic (default) or fixed"},
}

// ParseOptions parses -o subformat=fixed|dynamic,force_size=on|off.
func ParseOptions(kv map[string]string) (Options, error) {
	var o Options
	for _, k := range createopt.Keys(kv) {
		v := kv[k]
		switch k {
		case "subformat":
			switch strings.ToLower(v) {
			case "fixed", "dynamic":
				o.Subformat = strings.ToLower(v)
			default:
				return o, fmt.Errorf("vpc option subformat=%q: want fixed or dynamic", v)
			}
		case "force_size":
			b, err := createopt.Bool(v)
			if err != nil {
				return o, fmt.Errorf("vpc option force_size=%q: %w", v, err)
			}
			o.ForceSize = b
		default:
			return o, fmt.Errorf("vpc: unknown option %q (known: %s)", k, createopt.Known(OptionHelp))
		}
	}
	return o, nil
}

// writer writes a fixed or dynamic VHD. Data goes straight to its place in
// the file with WriteAt, zeros left as holes; a dynamic disk's blocks are
// laid out in write order after the BAT, each behind its all-ones sector
// bitmap, as qemu lays them out. Close writes the BAT, the headers and the
// footers. Memory holds the BAT: 4 bytes per 2 MiB of disk.
type writer struct {
	f      *os.File
	name   string
	size   int64 // virtual size after geometry rounding
	footer Footer
	hdr    DynamicHeader
	dyn    bool

	bat        []uint32
	batOff     int64
	next       int64 // file offset of the next block (dynamic)
	bitmapSize int64
	blockSize  int64
	order      disk.ChunkOrder
	err        error
}

// Create starts a VHD able to hold size bytes at path: qemu-img's size
// (rounded up to a CHS geometry unless ForceSize), written through out.
func Create(out *disk.Output, path string, size int64, opt Options) (disk.Writer, error) {
	if path == disk.Stdout {
		return nil, fmt.Errorf("vpc: cannot be written to standard output")
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

// newWriter lays out a VHD able to hold size bytes: its footer, and for a
// dynamic disk its header and BAT.
func newWriter(path string, size int64, opt Options) (*writer, error) {
	if opt.Subformat == "" {
		opt.Subformat = "dynamic"
	}
	total, cyls, heads, spt, err := sizeFor(size, opt.ForceSize)
	if err != nil {
		return nil, fmt.Errorf("vpc %s: %w", path, err)
	}
	w := &writer{name: path, size: total, dyn: opt.Subformat == "dynamic"}
	ft := &w.footer
	copy(ft.Cookie[:], "conectix")
	ft.Features = 2
	ft.FileFormatVersion = 0x00010000
	ft.DataOffset = noOffset
	ft.Timestamp = uint32(time.Now().Unix() - vhdEpoch)
	copy(ft.CreatorApplication[:], "qemu")
	if opt.ForceSize {
		copy(ft.CreatorApplication[:], "qem2")
	}
	ft.CreatorVersion = 0x00050003
	copy(ft.CreatorHostOS[:], "Wi2k")
	ft.OriginalSize, ft.CurrentSize = uint64(total), uint64(total)
	ft.Cylinders, ft.Heads, ft.SectorsPerTrack = uint16(cyls), uint8(heads), uint8(spt)
	ft.DiskType = typeFixed
	rand.Read(ft.UniqueID[:])
	if w.dyn {
		ft.DiskType = typeDynamic
		ft.DataOffset = footerSize
		w.blockSize = defaultBlockSize
		w.bitmapSize = sectorSize
		n := (total + w.blockSize - 1) / w.blockSize
		w.bat = make([]uint32, n)
		for i := range w.bat {
			w.bat[i] = batUnused
		}
		w.batOff = footerSize + headerSize
		w.next = w.batOff + (n*4+sectorSize-1)/sectorSize*sectorSize
		h := &w.hdr
		copy(h.Cookie[:], "cxsparse")
		h.DataOffset = noOffset
		h.TableOffset = uint64(w.batOff)
		h.HeaderVersion = 0x00010000
		h.MaxTableEntries = uint32(n)
		h.BlockSize = uint32(w.blockSize)
	}
	return w, nil
}

func (w *writer) fail(format string, args ...any) error {
	if w.err == nil {
		w.err = fmt.Errorf("vpc %s: "+format, append([]any{w.name}, args...)...)
	}
	return w.err
}

func (w *writer) WriteChunk(c *disk.Chunk) error {
	if w.err != nil {
		return w.err
	}
	if err := w.order.Take(c, w.size); err != nil {
		return w.fail("%v", err)
	}
	if c.Zero || c.Data == nil {
		return nil
	}
	if !w.dyn {
		if _, err := w.f.WriteAt(c.Data, c.Offset); err != nil {
			return w.fail("write at %#x: %v", c.Offset, err)
		}
		return nil
	}
	p, off := c.Data, c.Offset
	for len(p) > 0 {
		b, in := off/w.blockSize, off%w.blockSize
		n := min(int64(len(p)), w.blockSize-in)
		if w.bat[b] == batUnused {
			if err := w.allocBlock(b); err != nil {
				return err
			}
		}
		at := int64(w.bat[b])*sectorSize + w.bitmapSize + in
		if _, err := w.f.WriteAt(p[:n], at); err != nil {
			return w.fail("write block %d at %#x: %v", b, at, err)
		}
		p, off = p[n:], off+n
	}
	return nil
}

var onesBitmap = func() []byte {
	b := make([]byte, sectorSize)
	for i := range b {
		b[i] = 0xFF
	}
	return b
}()

// allocBlock places block b at the end of the blocks, with every sector
// marked present.
func (w *writer) allocBlock(b int64) error {
	if w.next/sectorSize > 0xFFFFFFFE {
		return w.fail("file would exceed the BAT's reach")
	}
	w.bat[b] = uint32(w.next / sectorSize)
	if _, err := w.f.WriteAt(onesBitmap, w.next); err != nil {
		return w.fail("write block %d bitmap at %#x: %v", b, w.next, err)
	}
	w.next += w.bitmapSize + w.blockSize
	return nil
}

// Close writes the footer (and for dynamic disks the footer copy, the
// header and the BAT). It does not close the file, which the Output owns.
func (w *writer) Close() error {
	if w.err != nil {
		return w.err
	}
	foot := w.footer.encode()
	if !w.dyn {
		if err := w.f.Truncate(w.size); err != nil {
			return w.fail("%v", err)
		}
		if _, err := w.f.WriteAt(foot, w.size); err != nil {
			return w.fail("write footer: %v", err)
		}
		w.err = fmt.Errorf("vpc %s: writer closed", w.name)
		return nil
	}
	bat := make([]byte, (int64(len(w.bat))*4+sectorSize-1)/sectorSize*sectorSize)
	for i := range bat {
		bat[i] = 0xFF
	}
	for i, e := range w.bat {
		binary.BigEndian.PutUint32(bat[i*4:], e)
	}
	for _, p := range []struct {
		b   []byte
		off int64
	}{{foot, 0}, {w.hdr.encode(), footerSize}, {bat, w.batOff}, {foot, w.next}} {
		if _, err := w.f.WriteAt(p.b, p.off); err != nil {
			return w.fail("write metadata at %#x: %v", p.off, err)
		}
	}
	w.err = fmt.Errorf("vpc %s: writer closed", w.name)
	return nil
}
