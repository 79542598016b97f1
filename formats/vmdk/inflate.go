package vmdk

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zlib"
)

// inflater is one goroutine's state for compressed grains: the buffers and
// the decompressor, reused from grain to grain (a sparse extent keeps them in
// a sync.Pool, the stream reader one per slot), never shared.
type inflater struct {
	cmp []byte // a compressed grain record read from the file
	out []byte // a whole grain, for reads of part of one
	dec grainDecoder
}

var errInflateOverrun = errors.New("compressed grain inflates past the grain size")

// inflateGrain decompresses one zlib stream into out and returns how many
// bytes it inflated to; output beyond len(out) is an error. Bytes after the
// end of the stream are ignored. The decoder is the build's: pure Go unless
// built with -tags libdeflate (inflate_libdeflate.go).
func inflateGrain(inf *inflater, out, data []byte) (int, error) {
	return inf.dec.inflate(out, data)
}

// goDecoder inflates with klauspost/compress, in pure Go. Its state is
// kept between grains and Reset for each.
type goDecoder struct {
	br bytes.Reader
	zr io.ReadCloser
}

func (d *goDecoder) inflate(out, data []byte) (int, error) {
	d.br.Reset(data)
	if d.zr == nil {
		zr, err := zlib.NewReader(&d.br)
		if err != nil {
			return 0, fmt.Errorf("zlib: %w", err)
		}
		d.zr = zr
	} else if err := d.zr.(zlib.Resetter).Reset(&d.br, nil); err != nil {
		return 0, fmt.Errorf("zlib: %w", err)
	}
	n := 0
	for n < len(out) {
		m, err := d.zr.Read(out[n:])
		n += m
		if err == io.EOF {
			return n, nil // a short grain: the last of the disk
		}
		if err != nil {
			return 0, fmt.Errorf("zlib: %w", err)
		}
	}
	return n, d.atEnd(len(out))
}

// atEnd checks that the stream ends where the output buffer does.
func (d *goDecoder) atEnd(size int) error {
	var one [1]byte
	for {
		m, err := d.zr.Read(one[:])
		if m > 0 {
			return fmt.Errorf("%w (%d bytes)", errInflateOverrun, size)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("zlib: %w", err)
		}
	}
}
