package qcow2

import (
	"bytes"
	"context"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/internal/testutil"
)

func qemuImg(t testing.TB, args ...string) string {
	t.Helper()
	testutil.RequireTool(t, "qemu-img")
	return testutil.Run(t, "qemu-img", args...)
}

func qemuIO(t testing.TB, file string, cmds ...string) {
	t.Helper()
	testutil.RequireTool(t, "qemu-io")
	args := []string{"-f", "qcow2"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	testutil.Run(t, "qemu-io", append(args, file)...)
}

// pattern builds contents of the given size: random runs, a lone byte in a
// zero cluster, text across a chunk edge, an unaligned tail.
func pattern(size int64, seed int64) []byte {
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

// writeRaw writes b to path leaving holes where it is zero.
func writeRaw(t testing.TB, path string, b []byte) {
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

// rawOf converts any image qemu-img reads to raw bytes.
func rawOf(t testing.TB, path string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out.raw")
	qemuImg(t, "convert", "-O", "raw", path, out)
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	return b
}

// readAllParallel reads img in 1 MiB pieces from several goroutines.
func readAllParallel(t testing.TB, img disk.Image) []byte {
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

// requireExtentsCover checks that Extents tiles the image and that every
// non-zero byte lies in a Data extent.
func requireExtentsCover(t testing.TB, img disk.Image, want []byte) {
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

type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// convertTo writes src through our writer into path.
func convertTo(t testing.TB, src disk.Image, path string, opt Options) {
	t.Helper()
	out := disk.NewOutput(false)
	defer out.Abort()
	w, err := Create(out, path, src.Size(), opt)
	require.NoError(t, err)
	require.NoError(t, disk.Copy(context.Background(), src, w, disk.CopyOptions{}))
	require.NoError(t, out.Commit())
}
