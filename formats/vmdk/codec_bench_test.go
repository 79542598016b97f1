package vmdk

import (
	"bytes"
	stdzlib "compress/zlib"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
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
	grains := benchRawGrains(b)
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

// The AllCores benchmarks run the codec on every core at once (-cpu N: N
// goroutines take the grains in turn): its throughput when the cores work
// together, which shared caches and SMT siblings can make much less than N
// times one core's. bench/limit.sh reports the floor both ways.

func BenchmarkInflateGrainsAllCores(b *testing.B) {
	grains, gb := benchGrains(b)
	for _, dc := range decoders {
		b.Run(dc.name, func(b *testing.B) {
			b.SetBytes(int64(len(grains)) * gb)
			for b.Loop() {
				onAllCores(b, len(grains), func() func(int) error {
					dec, out := dc.new(), make([]byte, gb)
					return func(i int) error { _, err := dec.inflate(out, grains[i]); return err }
				})
			}
		})
	}
}

func BenchmarkDeflateGrainsAllCores(b *testing.B) {
	grains := benchRawGrains(b)
	b.SetBytes(int64(len(grains)) * writeGrainBytes)
	for b.Loop() {
		onAllCores(b, len(grains), func() func(int) error {
			var out appendBuf
			zw, err := zlib.NewWriterLevel(&out, DefaultCompressionLevel)
			if err != nil {
				return func(int) error { return err }
			}
			return func(i int) error {
				out.b = out.b[:0]
				zw.Reset(&out)
				if _, err := zw.Write(grains[i]); err != nil {
					return err
				}
				return zw.Close()
			}
		})
	}
}

// onAllCores runs items 0..n-1 on GOMAXPROCS goroutines, each with the
// worker newWorker made for it.
func onAllCores(b *testing.B, n int, newWorker func() func(int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work := newWorker()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if err := work(i); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// benchRawGrains returns the raw image's non-zero grains.
func benchRawGrains(b *testing.B) [][]byte {
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
	return grains
}
