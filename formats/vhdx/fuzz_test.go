package vhdx

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/internal/testutil"
)

// A VHDX is at least a few MiB, mostly zeros (its regions are MiB-aligned),
// so the fuzzer does not mutate the file itself but a sparse spelling of
// it: a little-endian uint32 file size in 4 KiB units, then pieces, each a
// uint32 file offset, a uint16 length and that many bytes; the file is
// zero wherever no piece lies. Inputs and the corpus stay a few KiB while
// every field of the file can still take any value.
const (
	sparseUnit    = 4096
	maxSparseFile = 32 << 20
)

// sparseFile is the file a fuzz input spells.
type sparseFile struct {
	size   int64
	pieces []sparsePiece
}

type sparsePiece struct {
	off  int64
	data []byte
}

func decodeSparse(in []byte) *sparseFile {
	f := &sparseFile{}
	if len(in) < 4 {
		return f
	}
	f.size = min(int64(binary.LittleEndian.Uint32(in))*sparseUnit, maxSparseFile)
	for in = in[4:]; len(in) >= 6; {
		off, n := int64(binary.LittleEndian.Uint32(in)), int(binary.LittleEndian.Uint16(in[4:]))
		in = in[6:]
		n = min(n, len(in))
		f.pieces = append(f.pieces, sparsePiece{off, in[:n]})
		in = in[n:]
	}
	return f
}

func (f *sparseFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= f.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), f.size-off))
	clear(p[:n])
	for _, pc := range f.pieces {
		if pc.off < off+int64(n) && pc.off+int64(len(pc.data)) > off {
			src, dst := max(0, off-pc.off), max(0, pc.off-off)
			copy(p[dst:n], pc.data[src:])
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// encodeSparse spells a whole file: each run of non-zero 512-byte sectors
// becomes pieces of at most 64 KiB.
func encodeSparse(b []byte) []byte {
	out := binary.LittleEndian.AppendUint32(nil, uint32((len(b)+sparseUnit-1)/sparseUnit))
	const sect = 512
	for off := 0; off < len(b); {
		if isZero(b[off:min(off+sect, len(b))]) {
			off += sect
			continue
		}
		end := off
		for end < len(b) && end-off < 0xFFFF-sect && !isZero(b[end:min(end+sect, len(b))]) {
			end = min(end+sect, len(b))
		}
		out = binary.LittleEndian.AppendUint32(out, uint32(off))
		out = binary.LittleEndian.AppendUint16(out, uint16(end-off))
		out = append(out, b[off:end]...)
		off = end
	}
	return out
}

func isZero(b []byte) bool { return disk.IsZero(b) }

// qemuFile reads a gzipped VHDX that qemu-img wrote (testdata/README.md).
func qemuFile(t testing.TB, name string) []byte {
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	require.NoError(t, err)
	b, err := io.ReadAll(zr)
	require.NoError(t, err)
	return b
}

// TestSparseSpelling checks that the fuzzer's seeds spell the files they
// come from, and that those open.
func TestSparseSpelling(t *testing.T) {
	for _, b := range [][]byte{qemuFile(t, "qemu-1m-blocks.vhdx.gz"), qemuFile(t, "qemu-fixed.vhdx.gz"), smallImage(t)} {
		f := decodeSparse(encodeSparse(b))
		require.Equal(t, int64(len(b)), f.size)
		got := make([]byte, len(b))
		n, err := f.ReadAt(got, 0)
		require.NoError(t, err)
		require.Equal(t, len(b), n)
		require.True(t, bytes.Equal(b, got))
		_, err = newImage("seed.vhdx", f, f.size)
		require.NoError(t, err)
	}
}

// FuzzOpen opens arbitrary files (spelled sparsely, above) as a VHDX:
// identifier, headers, region tables, metadata, BAT; maps and reads what it
// accepts, and checks it. Errors only: no panic, no hang, allocations
// bounded by the file's size. The seeds are qemu-img's dynamic and fixed
// images and our writer's.
func FuzzOpen(f *testing.F) {
	for _, n := range []string{"qemu-1m-blocks.vhdx.gz", "qemu-fixed.vhdx.gz"} {
		f.Add(encodeSparse(qemuFile(f, n)))
	}
	f.Add(encodeSparse(smallImage(f)))
	f.Fuzz(func(t *testing.T, in []byte) {
		file := decodeSparse(in)
		// The BAT is read whole (at most the file), metadata items are
		// small, the region tables 64 KiB each.
		testutil.Bounded(t, 64<<20+4*uint64(file.size)+16*uint64(len(in)), func() { fuzzOpen(t, file) })
	})
}

func fuzzOpen(t *testing.T, file *sparseFile) {
	img, err := newImage("fuzz.vhdx", file, file.size)
	if err != nil {
		return
	}
	if err := testutil.WalkWindow(t, img, 0, 64<<20); err != nil {
		t.Fatal(err)
	}
	img.ReadAt(make([]byte, 16<<10), img.Size()-100)
	check("fuzz.vhdx", file, file.size)
}
