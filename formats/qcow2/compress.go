package qcow2

import (
	"bytes"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"

	"github.com/vmconv/vmconv/disk"
)

// zlibWindow is the deflate window qemu's reader accepts: it inflates with
// windowBits -12, so a stream using distances beyond 4 KiB is corrupt to it.
const zlibWindow = 4096

// decompressor inflates compressed clusters with pooled buffers and
// decoders. Output is bounded by the cluster size: a cluster that would
// inflate further is simply cut there, as qemu does.
type decompressor struct {
	typ  uint8
	cs   int64
	pool sync.Pool // *cbuf
}

type cbuf struct {
	in, out []byte
	br      bytes.Reader
	flate   io.ReadCloser
	zstd    *zstd.Decoder
}

func newDecompressor(typ uint8, clusterSize int64) *decompressor {
	return &decompressor{typ: typ, cs: clusterSize}
}

func (d *decompressor) get() *cbuf {
	if b, ok := d.pool.Get().(*cbuf); ok {
		return b
	}
	// A compressed cluster spans at most 2^(cluster_bits-8) sectors: twice
	// the cluster size.
	return &cbuf{in: make([]byte, 2*d.cs), out: make([]byte, d.cs)}
}

func (d *decompressor) put(b *cbuf) { d.pool.Put(b) }

// decompress fills b.out with the whole cluster from src. qemu demands the
// full cluster: a stream that ends early is an error.
func (d *decompressor) decompress(b *cbuf, src []byte) error {
	b.br.Reset(src)
	var r io.Reader
	switch d.typ {
	case compressionZlib:
		if b.flate == nil {
			b.flate = flate.NewReader(&b.br)
		} else if err := b.flate.(flate.Resetter).Reset(&b.br, nil); err != nil {
			return err
		}
		r = b.flate
	case compressionZstd:
		if b.zstd == nil {
			dec, err := zstd.NewReader(&b.br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
				zstd.WithDecoderMaxWindow(uint64(max(d.cs, 1<<20))), zstd.WithDecoderMaxMemory(uint64(4*d.cs)))
			if err != nil {
				return err
			}
			b.zstd = dec
		} else if err := b.zstd.Reset(&b.br); err != nil {
			return fmt.Errorf("zstd: %w", err)
		}
		r = b.zstd
	default:
		return fmt.Errorf("compression type %d", d.typ)
	}
	if n, err := io.ReadFull(r, b.out); err != nil {
		return fmt.Errorf("decompressed %d of %d bytes: %w", n, d.cs, err)
	}
	return nil
}

// compressor deflates or zstd-compresses whole clusters on the copy
// engine's workers.
type compressor struct {
	typ   uint8
	flate sync.Pool // *flate.Writer
	zstd  *zstd.Encoder
}

func newCompressor(typ uint8, level int) (*compressor, error) {
	c := &compressor{typ: typ}
	if typ == compressionZstd {
		lvl := zstd.SpeedFastest
		if level > 1 {
			lvl = zstd.EncoderLevelFromZstd(level)
		}
		// EncodeAll takes one of the encoder's Concurrency states: one per
		// core lets every copy worker compress at once.
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(lvl), zstd.WithEncoderConcurrency(disk.Cores()),
			zstd.WithEncoderCRC(false))
		if err != nil {
			return nil, err
		}
		c.zstd = enc
	}
	return c, nil
}

// compress appends the compressed form of src to dst.
func (c *compressor) compress(dst *appendBuf, src []byte) error {
	if c.typ == compressionZstd {
		dst.b = c.zstd.EncodeAll(src, dst.b)
		return nil
	}
	w, _ := c.flate.Get().(*flate.Writer)
	if w == nil {
		var err error
		if w, err = flate.NewWriterWindow(dst, zlibWindow); err != nil {
			return err
		}
	} else {
		w.Reset(dst)
	}
	defer c.flate.Put(w)
	if _, err := w.Write(src); err != nil {
		return err
	}
	return w.Close()
}

type appendBuf struct{ b []byte }

func (a *appendBuf) Write(p []byte) (int, error) { a.b = append(a.b, p...); return len(p), nil }
