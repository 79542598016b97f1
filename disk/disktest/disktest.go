// Package disktest has what the format packages' tests share: contents that
// exercise an image format's edges, sparse raw files holding them, whole
// reads of an image, the check that an image's extents tile it, and
// qemu-img as the reference reader.
package disktest

import (
	"bytes"
	"context"
	"io"
	"iter"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/internal/testutil"
)

// Pattern builds contents of the given size: random data at the start, a
// lone non-zero byte inside a zero cluster, a random run across clusters,
// text across a 4 MiB chunk's edge, one whole 64 KiB cluster and a tail that
// is no multiple of a cluster or of 1 MiB; zeros elsewhere. Runs past size
// are left out.
func Pattern(size int64, seed int64) []byte {
	b := make([]byte, size)
	rng := rand.New(rand.NewSource(seed))
	put := func(off int64, p []byte) {
		if off >= 0 && off < size {
			copy(b[off:], p)
		}
	}
	rnd := func(n int) []byte { p := make([]byte, n); rng.Read(p); return p }
	put(0, rnd(4096))
	put(1<<20+12345, []byte{0x5a})
	put(3<<20, rnd(200<<10))
	put(5<<20-100, bytes.Repeat([]byte("vmconv text "), 30))
	put(7<<20+65536, rnd(65536))
	put(size-777, rnd(777))
	return b
}

// WriteSparse writes b to path, leaving holes where a 64 KiB block is zero,
// so that raw inputs are sparse as real ones are.
func WriteSparse(t testing.TB, path string, b []byte) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	const blk = 64 << 10
	for off := 0; off < len(b); off += blk {
		end := min(off+blk, len(b))
		if !disk.IsZero(b[off:end]) {
			_, err := f.WriteAt(b[off:end], int64(off))
			require.NoError(t, err)
		}
	}
	require.NoError(t, f.Truncate(int64(len(b))))
	require.NoError(t, f.Close())
}

// ReadAll reads the whole image in 1 MiB pieces from four goroutines at
// once, as the copy's workers do.
func ReadAll(t testing.TB, img disk.Image) []byte {
	t.Helper()
	out := make([]byte, img.Size())
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	const piece = 1 << 20
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for off := int64(w) * piece; off < img.Size(); off += 4 * piece {
				end := min(off+piece, img.Size())
				if n, err := img.ReadAt(out[off:end], off); err != nil && !(err == io.EOF && int64(n) == end-off) {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	return out
}

// RequireExtentsCover checks that the image's extents tile it and that
// every non-zero byte of want lies in a Data extent.
func RequireExtentsCover(t testing.TB, img disk.Image, want []byte) {
	t.Helper()
	ext, err := img.Extents(0, img.Size())
	require.NoError(t, err)
	var pos int64
	for _, e := range ext {
		require.Equal(t, pos, e.Offset, "extents must be contiguous")
		require.Positive(t, e.Length)
		if e.Kind != disk.Data {
			require.True(t, disk.IsZero(want[e.Offset:e.End()]), "non-zero bytes in %v extent at %#x+%#x", e.Kind, e.Offset, e.Length)
		}
		pos = e.End()
	}
	require.Equal(t, img.Size(), pos)
}

// QemuImg runs qemu-img with args and returns its output; without qemu-img
// the test is skipped (a failure under VMCONV_REQUIRE_TOOLS).
func QemuImg(t testing.TB, args ...string) string {
	t.Helper()
	testutil.RequireTool(t, "qemu-img")
	return testutil.Run(t, "qemu-img", args...)
}

// RawOf is the image at path as qemu-img reads it; format names its format
// for qemu-img ("" to let qemu-img probe).
func RawOf(t testing.TB, path, format string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out.raw")
	args := []string{"convert"}
	if format != "" {
		args = append(args, "-f", format)
	}
	QemuImg(t, append(args, "-O", "raw", path, out)...)
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	return b
}

// Runs builds contents of size bytes, random inside the runs ({offset,
// length}, clipped to size) and zero elsewhere. No block inside a run reads
// as zeros, so a writer allocates exactly the blocks the runs touch.
func Runs(size, seed int64, runs ...[2]int64) []byte {
	b := make([]byte, size)
	rng := rand.New(rand.NewSource(seed))
	for _, r := range runs {
		if r[0] < size {
			rng.Read(b[r[0]:min(r[0]+r[1], size)])
		}
	}
	return b
}

// OpenRawOf writes b to a sparse raw file in a temporary directory and
// opens it; holes stand for its zero 64 KiB blocks.
func OpenRawOf(t testing.TB, b []byte) disk.Image {
	t.Helper()
	path := filepath.Join(t.TempDir(), "src.raw")
	WriteSparse(t, path, b)
	img, err := disk.OpenRaw(path)
	require.NoError(t, err)
	t.Cleanup(func() { img.Close() })
	return img
}

// FileSizes is the total size of the files, as a measurement counts them.
func FileSizes(t testing.TB, paths ...string) int64 {
	t.Helper()
	var n int64
	for _, p := range paths {
		st, err := os.Stat(p)
		require.NoError(t, err)
		n += st.Size()
	}
	return n
}

// Write copies img into a new image that create makes at path, and commits
// it.
func Write(t testing.TB, img disk.Image, path string, create func(out *disk.Output, path string, size int64) (disk.Writer, error)) {
	t.Helper()
	out := disk.NewOutput(false)
	defer out.Abort()
	w, err := create(out, path, img.Size())
	require.NoError(t, err)
	require.NoError(t, disk.Copy(context.Background(), img, w, disk.CopyOptions{}))
	require.NoError(t, out.Commit())
}

// MeasureRuns are data runs for measurement tests: blocks at the start,
// across 1 MiB, 2 MiB and 8 MiB edges, and past 32 MiB.
var MeasureRuns = [][2]int64{{0, 64 << 10}, {1 << 20, 64 << 10}, {3 << 20, 256 << 10}, {8<<20 - 64<<10, 128 << 10}, {40 << 20, 1 << 20}}

// RequireMeasure checks a format's measurement against what its writer
// writes for a disk of size bytes holding MeasureRuns, and for one full of
// data: the total size of the files (files names them, given the image's
// path) must be Required and FullyAllocated. It returns the measurement.
func RequireMeasure(t *testing.T, size int64,
	measure func(size int64, data iter.Seq[disk.Extent]) (disk.Measurement, error),
	create func(out *disk.Output, path string, size int64) (disk.Writer, error),
	files func(path string) []string) disk.Measurement {
	t.Helper()
	src := OpenRawOf(t, Runs(size, 1, MeasureRuns...))
	var extErr error
	m, err := measure(src.Size(), disk.DataExtents(src, &extErr))
	require.NoError(t, err)
	require.NoError(t, extErr)
	path := filepath.Join(t.TempDir(), "out")
	Write(t, src, path, create)
	assert.Equal(t, FileSizes(t, files(path)...), m.Required, "required")

	full := OpenRawOf(t, Runs(size, 2, [2]int64{0, size}))
	path = filepath.Join(t.TempDir(), "out") // the same name: descriptors hold it
	Write(t, full, path, create)
	assert.Equal(t, FileSizes(t, files(path)...), m.FullyAllocated, "fully allocated")
	return m
}
