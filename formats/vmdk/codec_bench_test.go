package vmdk

import (
	"bytes"
	stdzlib "compress/zlib"
	"io"
	"os"
	"testing"

	"github.com/klauspost/compress/zlib"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
)

// The codec benchmarks measure one core's deflate/inflate throughput on a
// real image's grains: bench/limit.sh divides it by the cores to get the CPU
// floor of the streamOptimized cases. Inputs come from the environment
// (VMCONV_BENCH_STREAM: a streamOptimized VMDK; VMCONV_BENCH_RAW: a raw
// image); without them the benchmarks skip. Run with -cpu 1; with
// -tags libdeflate, InflateGrains/libdeflate runs too.

// benchGrains returns the compressed grains of the stream file.
func benchGrains(b *testing.B) (grains [][]byte, grainBytes int64) {
	path := os.Getenv("VMCONV_BENCH_STREAM")
	if path == "" {
		b.Skip("VMCONV_BENCH_STREAM not set")
	}
	f, err := os.Open(path)
	require.NoError(b, err)
	defer f.Close()
	st, err := OpenStream(f)
	require.NoError(b, err)
	s := st.(*streamReader)
	for {
		g, err := s.nextRecord(0)
		require.NoError(b, err)
		if g == nil {
			return grains, s.grainBytes
		}
		grains = append(grains, bytes.Clone(g.rec[:g.cmp]))
	}
}

func BenchmarkInflateGrains(b *testing.B) {
	grains, gb := benchGrains(b)
	for _, dc := range decoders {
		b.Run(dc.name, func(b *testing.B) {
			dec := dc.new()
			out := make([]byte, gb)
			b.SetBytes(int64(len(grains)) * gb)
			for b.Loop() {
				for _, g := range grains {
					if _, err := dec.inflate(out, g); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
	b.Run("stdlib", func(b *testing.B) {
		out := make([]byte, gb)
		var br bytes.Reader
		var zr io.ReadCloser
		b.SetBytes(int64(len(grains)) * gb)
		for b.Loop() {
			for _, g := range grains {
				br.Reset(g)
				if zr == nil {
					var err error
					zr, err = stdzlib.NewReader(&br)
					require.NoError(b, err)
				} else {
					require.NoError(b, zr.(stdzlib.Resetter).Reset(&br, nil))
				}
				if _, err := io.ReadFull(zr, out); err != nil && err != io.ErrUnexpectedEOF {
					b.Fatal(err)
				}
			}
		}
	})
}

// BenchmarkDeflateGrains compresses the raw image's non-zero grains as the
// streamOptimized writer does (its default level, one grain per stream).
func BenchmarkDeflateGrains(b *testing.B) {
	path := os.Getenv("VMCONV_BENCH_RAW")
	if path == "" {
		b.Skip("VMCONV_BENCH_RAW not set")
	}
	img, err := disk.OpenRaw(path)
	require.NoError(b, err)
	defer img.Close()
	exts, err := img.Extents(0, img.Size())
	require.NoError(b, err)
	var grains [][]byte
	for _, e := range exts {
		if e.Kind != disk.Data {
			continue
		}
		for off := e.Offset &^ (writeGrainBytes - 1); off < e.End(); off += writeGrainBytes {
			p := make([]byte, writeGrainBytes)
			_, err := img.ReadAt(p, off)
			if err != nil && err != io.EOF {
				b.Fatal(err)
			}
			if !isZero(p) {
				grains = append(grains, p)
			}
		}
	}
	var out appendBuf
	zw, err := zlib.NewWriterLevel(&out, DefaultCompressionLevel)
	require.NoError(b, err)
	b.SetBytes(int64(len(grains)) * writeGrainBytes)
	for b.Loop() {
		for _, g := range grains {
			out.b = out.b[:0]
			zw.Reset(&out)
			if _, err := zw.Write(g); err != nil {
				b.Fatal(err)
			}
			require.NoError(b, zw.Close())
		}
	}
}
