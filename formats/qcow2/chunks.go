package qcow2

import (
	"github.com/vmconv/vmconv/disk"
)

// prepared is what Prepare computed for one chunk on a worker: which of its
// clusters hold data and, when compressing, their compressed forms.
type prepared struct {
	nonZero []bool // per cluster piece of the chunk
	buf     appendBuf
	packed  []piece // compressed clusters, in order
	scratch []byte  // a zero-padded last cluster
}

type piece struct {
	idx      int // cluster piece index in the chunk
	off, len int // compressed bytes in buf; len 0: stored uncompressed
}

// pieces calls fn for each cluster piece of a chunk: the guest cluster, the
// offset inside it and the bytes of the chunk that fall in it.
func (w *writer) pieces(c *disk.Chunk, fn func(i int, vc, in int64, p []byte)) {
	data := c.Data
	off := c.Offset
	for i := 0; len(data) > 0; i++ {
		vc, in := off/w.cs, off%w.cs
		n := min(int64(len(data)), w.cs-in)
		fn(i, vc, in, data[:n])
		data, off = data[n:], off+n
	}
}

// Prepare finds the chunk's zero clusters and compresses the others; it
// runs on the copy engine's workers.
func (w *writer) Prepare(c *disk.Chunk) error {
	if c.Zero || c.Data == nil {
		return nil
	}
	pc, _ := w.prepPool.Get().(*prepared)
	if pc == nil {
		pc = &prepared{}
	}
	pc.nonZero, pc.packed, pc.buf.b = pc.nonZero[:0], pc.packed[:0], pc.buf.b[:0]
	var err error
	w.pieces(c, func(i int, vc, in int64, p []byte) {
		nz := !disk.IsZero(p)
		pc.nonZero = append(pc.nonZero, nz)
		if !nz || w.comp == nil || err != nil {
			return
		}
		src := p
		if int64(len(p)) < w.cs {
			// The image's last cluster: qemu inflates whole clusters.
			if pc.scratch == nil {
				pc.scratch = make([]byte, w.cs)
			}
			clear(pc.scratch)
			copy(pc.scratch[in:], p)
			src = pc.scratch
		}
		start := len(pc.buf.b)
		if err = w.comp.compress(&pc.buf, src); err != nil {
			return
		}
		n := len(pc.buf.b) - start
		if int64(n) >= w.cs {
			// Incompressible: stored as is, as qemu does.
			pc.buf.b = pc.buf.b[:start]
			n = 0
		}
		pc.packed = append(pc.packed, piece{idx: i, off: start, len: n})
	})
	if err != nil {
		return err
	}
	c.Prepared = pc
	return nil
}

func (w *writer) WriteChunk(c *disk.Chunk) error {
	if w.err != nil {
		return w.err
	}
	if err := w.order.Take(c, w.size); err != nil {
		return w.fail("%v", err)
	}
	if c.Zero || c.Data == nil {
		if w.prealloc != "off" {
			for off := c.Offset; off < c.Offset+int64(c.Length) && w.err == nil; off = (off/w.cs + 1) * w.cs {
				w.allocZero(off / w.cs)
			}
		}
		return w.err
	}
	if c.Prepared == nil {
		if err := w.Prepare(c); err != nil {
			return w.fail("chunk at %#x: %v", c.Offset, err)
		}
	}
	pc, ok := c.Prepared.(*prepared)
	if !ok {
		return w.fail("chunk at %#x prepared by another writer", c.Offset)
	}
	c.Prepared = nil
	k := 0
	w.pieces(c, func(i int, vc, in int64, p []byte) {
		if !pc.nonZero[i] {
			if w.prealloc != "off" {
				w.allocZero(vc)
			}
			return
		}
		if w.comp != nil {
			pk := pc.packed[k]
			k++
			if pk.len > 0 {
				w.writeCompressed(vc, pc.buf.b[pk.off:pk.off+pk.len])
				return
			}
		}
		w.writeData(vc, in, p)
	})
	w.prepPool.Put(pc)
	return w.err
}
