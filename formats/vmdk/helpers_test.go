package vmdk

import (
	"bytes"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/internal/testutil"
)

// pattern builds test contents of the given size: holes, random data, a lone
// non-zero byte inside a zero grain, a text run and a tail that is not a
// multiple of the grain or of 1 MiB.
func pattern(size int64, seed int64) []byte {
	b := make([]byte, size)
	rng := rand.New(rand.NewSource(seed))
	put := func(off int64, p []byte) {
		if off < size {
			copy(b[off:], p)
		}
	}
	rnd := func(n int) []byte { p := make([]byte, n); rng.Read(p); return p }
	put(0, rnd(4096))                                        // boot sector-ish
	put(1<<20+12345, []byte{0x5a})                           // lone byte in a zero grain
	put(3<<20, rnd(200<<10))                                 // random run across grains
	put(5<<20-100, bytes.Repeat([]byte("vmconv text "), 30)) // across a chunk edge
	put(7<<20+65536, rnd(65536))                             // one whole grain
	put(size-777, rnd(777))                                  // unaligned tail
	return b
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	// Leave holes where the data is zero so raw inputs are sparse too.
	const blk = 64 << 10
	for off := 0; off < len(b); off += blk {
		end := min(off+blk, len(b))
		if !isZero(b[off:end]) {
			_, err := f.WriteAt(b[off:end], int64(off))
			require.NoError(t, err)
		}
	}
	require.NoError(t, f.Truncate(int64(len(b))))
	require.NoError(t, f.Close())
}

func qemuImg(t *testing.T, args ...string) string {
	t.Helper()
	testutil.RequireTool(t, "qemu-img")
	return testutil.Run(t, "qemu-img", args...)
}

// readAllParallel reads img in 1 MiB pieces from several goroutines.
func readAllParallel(t *testing.T, img disk.Image) []byte {
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
				if _, err := img.ReadAt(out[off:end], off); err != nil {
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
func requireExtentsCover(t *testing.T, img disk.Image, want []byte) {
	t.Helper()
	ext, err := img.Extents(0, img.Size())
	require.NoError(t, err)
	var pos int64
	for _, e := range ext {
		require.Equal(t, pos, e.Offset, "extents must be contiguous")
		require.Positive(t, e.Length)
		if e.Kind != disk.Data {
			require.True(t, isZero(want[e.Offset:e.End()]), "non-zero bytes in %v extent at %#x+%#x", e.Kind, e.Offset, e.Length)
		}
		pos = e.End()
	}
	require.Equal(t, img.Size(), pos)
}

// rawOf converts any image qemu-img reads to raw bytes.
func rawOf(t *testing.T, path string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out.raw")
	qemuImg(t, "convert", "-O", "raw", path, out)
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	return b
}

func hasTool(name string) bool { _, err := exec.LookPath(name); return err == nil }
