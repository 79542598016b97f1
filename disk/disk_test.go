package disk

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pattern describes test content: a size and the byte runs that are non-zero.
type pattern struct {
	name string
	size int64
	runs []Extent // filled with random bytes
}

var patterns = []pattern{
	{"empty", 3 * ChunkSize, nil},
	{"dense", 2*ChunkSize + 12345, []Extent{{0, 2*ChunkSize + 12345, Data}}},
	{"holes", 8 * ChunkSize, []Extent{{0, 4096, Data}, {3 * ChunkSize, ChunkSize + 7, Data}, {8*ChunkSize - 100, 100, Data}}},
	{"lone byte", 5*ChunkSize + 511, []Extent{{2*ChunkSize + 65536 + 17, 1, Data}}},
	{"tiny", 1000, []Extent{{10, 20, Data}}},
}

func (p pattern) bytes(seed uint64) []byte {
	b := make([]byte, p.size)
	r := rand.New(rand.NewPCG(seed, 1))
	for _, e := range p.runs {
		for i := e.Offset; i < e.End(); i++ {
			b[i] = byte(r.IntN(255) + 1)
		}
	}
	return b
}

// writeSparse writes content to a file leaving holes where it is zero.
func writeSparse(t *testing.T, path string, content []byte) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	for off := 0; off < len(content); off += 4096 {
		end := min(off+4096, len(content))
		if !IsZero(content[off:end]) {
			_, err := f.WriteAt(content[off:end], int64(off))
			require.NoError(t, err)
		}
	}
	require.NoError(t, f.Truncate(int64(len(content))))
}

// referenceDigest computes the digest straight from its definition.
func referenceDigest(content []byte) string {
	outer := sha256.New()
	for off := 0; off < len(content); off += ChunkSize {
		h := sha256.Sum256(content[off:min(off+ChunkSize, len(content))])
		outer.Write(h[:])
	}
	return hex.EncodeToString(outer.Sum(nil))
}

func TestRawExtentsAndCopy(t *testing.T) {
	for _, p := range patterns {
		t.Run(p.name, func(t *testing.T) {
			dir := t.TempDir()
			content := p.bytes(7)
			src := filepath.Join(dir, "src.raw")
			writeSparse(t, src, content)

			img, err := OpenRaw(src)
			require.NoError(t, err)
			defer img.Close()
			require.Equal(t, p.size, img.Size())

			exts, err := img.Extents(0, img.Size())
			require.NoError(t, err)
			assertCovers(t, exts, 0, img.Size())
			for _, e := range exts {
				if e.Kind != Data {
					assert.True(t, IsZero(content[e.Offset:e.End()]), "extent %+v reported empty holds data", e)
				}
			}

			dst := filepath.Join(dir, "dst.raw")
			out := NewOutput(false)
			f, err := out.Create(dst)
			require.NoError(t, err)
			require.NoError(t, Copy(context.Background(), img, NewRawWriter(f, img.Size()), CopyOptions{Workers: 2, Window: 3}))
			require.NoError(t, out.Commit())
			got, err := os.ReadFile(dst)
			require.NoError(t, err)
			require.True(t, bytes.Equal(content, got), "copy differs")

			var st syscall.Stat_t
			require.NoError(t, syscall.Stat(dst, &st))
			nonzero := 0
			for off := 0; off < len(content); off += ChunkSize {
				if !IsZero(content[off:min(off+ChunkSize, len(content))]) {
					nonzero++
				}
			}
			assert.LessOrEqual(t, st.Blocks*512, int64(nonzero)*ChunkSize+64<<10, "zero chunks must stay holes")

			dg, err := Digest(context.Background(), img, CopyOptions{})
			require.NoError(t, err)
			assert.Equal(t, referenceDigest(content), dg)
			dense, err := Digest(context.Background(), FromReaderAt(bytes.NewReader(content), p.size), CopyOptions{Workers: 1})
			require.NoError(t, err)
			assert.Equal(t, dg, dense, "digest must not depend on allocation")
		})
	}
}

func assertCovers(t *testing.T, exts []Extent, off, end int64) {
	t.Helper()
	pos := off
	for _, e := range exts {
		require.Equal(t, pos, e.Offset, "extents must be contiguous: %+v", exts)
		require.Positive(t, e.Length)
		pos = e.End()
	}
	require.Equal(t, end, pos, "extents must cover the range")
}

// recordingWriter checks the writer contract from the writer's side.
type recordingWriter struct {
	mu       sync.Mutex
	wantZero bool
	offsets  []int64
	zero     []bool
	prepared int
	buffers  map[*byte]bool
	closed   bool
	content  []byte
}

func (w *recordingWriter) WantsZeroChunks() bool { return w.wantZero }
func (w *recordingWriter) Prepare(c *Chunk) error {
	w.mu.Lock()
	w.prepared++
	w.mu.Unlock()
	c.Prepared = c.Offset
	return nil
}
func (w *recordingWriter) WriteChunk(c *Chunk) error {
	if c.Prepared.(int64) != c.Offset {
		panic("prepared value from another chunk")
	}
	w.offsets = append(w.offsets, c.Offset)
	w.zero = append(w.zero, c.Zero)
	if c.Data != nil {
		w.buffers[&c.Data[0]] = true
		copy(w.content[c.Offset:], c.Data)
	}
	return nil
}
func (w *recordingWriter) Close() error { w.closed = true; return nil }

func TestCopyContract(t *testing.T) {
	p := patterns[2] // holes
	content := p.bytes(3)
	for _, wantZero := range []bool{false, true} {
		w := &recordingWriter{wantZero: wantZero, buffers: map[*byte]bool{}, content: make([]byte, p.size)}
		img := &sparseMem{data: content, runs: p.runs}
		var progress []int64
		err := Copy(context.Background(), img, w, CopyOptions{Workers: 3, Window: 2, Progress: func(done, total int64) {
			progress = append(progress, done)
			assert.Equal(t, p.size, total)
		}})
		require.NoError(t, err)
		assert.True(t, w.closed)
		assert.True(t, bytes.Equal(content, w.content))
		for i := 1; i < len(w.offsets); i++ {
			assert.Less(t, w.offsets[i-1], w.offsets[i], "offsets must increase")
		}
		if wantZero {
			assert.Len(t, w.offsets, 8, "every chunk delivered")
		} else {
			assert.NotContains(t, w.zero, true, "zero chunks skipped")
			assert.Len(t, w.offsets, 4) // chunks 0, 3, 4 and 7 hold data
		}
		assert.LessOrEqual(t, len(w.buffers), 2+3, "buffers bounded by the window")
		assert.Equal(t, p.size, progress[len(progress)-1])
	}
}

// sparseMem is an in-memory image whose allocation is given by runs.
type sparseMem struct {
	data []byte
	runs []Extent
}

func (m *sparseMem) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.data)) {
		return 0, io.EOF
	}
	n := copy(p, m.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
func (m *sparseMem) Size() int64  { return int64(len(m.data)) }
func (m *sparseMem) Close() error { return nil }
func (m *sparseMem) Extents(off, length int64) ([]Extent, error) {
	off, end, ok := clipRange(off, length, m.Size())
	if !ok {
		return nil, nil
	}
	var out []Extent
	pos := off
	for _, r := range m.runs {
		s, e := max(r.Offset, off), min(r.End(), end)
		if s >= e {
			continue
		}
		if s > pos {
			out = append(out, Extent{pos, s - pos, Unallocated})
		}
		out = append(out, Extent{s, e - s, Data})
		pos = e
	}
	if pos < end {
		out = append(out, Extent{pos, end - pos, Unallocated})
	}
	return out, nil
}

// sliceStream yields content as runs of the given length, skipping zeros.
type sliceStream struct {
	data []byte
	run  int
	pos  int
}

func (s *sliceStream) Size() int64 { return int64(len(s.data)) }
func (s *sliceStream) Next() (int64, []byte, error) {
	for s.pos < len(s.data) {
		off := s.pos
		end := min(off+s.run, len(s.data))
		s.pos = end
		if !IsZero(s.data[off:end]) {
			return int64(off), s.data[off:end], nil
		}
	}
	return 0, nil, io.EOF
}

func TestCopyStream(t *testing.T) {
	for _, p := range patterns {
		for _, run := range []int{512, 65536, 3 * ChunkSize} {
			content := p.bytes(11)
			w := &recordingWriter{wantZero: true, buffers: map[*byte]bool{}, content: make([]byte, p.size)}
			err := CopyStream(context.Background(), &sliceStream{data: content, run: run}, w, CopyOptions{Workers: 2})
			require.NoError(t, err, p.name)
			assert.True(t, bytes.Equal(content, w.content), "%s run %d", p.name, run)
			assert.Len(t, w.offsets, int((p.size+ChunkSize-1)/ChunkSize), "%s: every chunk when zeros are wanted", p.name)
		}
	}
}

func TestCopyStreamRejectsOutOfOrder(t *testing.T) {
	s := &badStream{runs: []int64{ChunkSize * 2, 0}}
	err := CopyStream(context.Background(), s, &recordingWriter{buffers: map[*byte]bool{}, content: make([]byte, 4*ChunkSize)}, CopyOptions{})
	require.ErrorContains(t, err, "out of order")
}

type badStream struct{ runs []int64 }

func (s *badStream) Size() int64 { return 4 * ChunkSize }
func (s *badStream) Next() (int64, []byte, error) {
	if len(s.runs) == 0 {
		return 0, nil, io.EOF
	}
	off := s.runs[0]
	s.runs = s.runs[1:]
	return off, []byte{1, 2, 3}, nil
}

type failingWriter struct{ n int }

func (w *failingWriter) WriteChunk(c *Chunk) error {
	w.n++
	if w.n == 2 {
		return io.ErrShortWrite
	}
	return nil
}
func (w *failingWriter) Close() error { panic("Close after a failed copy") }

func TestCopyStopsOnWriterError(t *testing.T) {
	content := patterns[1].bytes(5)
	err := Copy(context.Background(), FromReaderAt(bytes.NewReader(content), int64(len(content))), &failingWriter{}, CopyOptions{})
	require.ErrorIs(t, err, io.ErrShortWrite)
}

func TestOverlay(t *testing.T) {
	p := patterns[2]
	content := p.bytes(9)
	base := &sparseMem{data: append([]byte(nil), content...), runs: p.runs}
	ov, err := NewOverlay(base)
	require.NoError(t, err)
	defer ov.Close()

	want := append([]byte(nil), content...)
	writes := []struct {
		off int64
		n   int
	}{{100, 10}, {overlayBlock - 3, 6}, {5 * ChunkSize, 3 * overlayBlock}, {p.size - 1, 1}}
	for i, w := range writes {
		buf := bytes.Repeat([]byte{byte(0xa0 + i)}, w.n)
		n, err := ov.WriteAt(buf, w.off)
		require.NoError(t, err)
		require.Equal(t, w.n, n)
		copy(want[w.off:], buf)
	}
	got := make([]byte, p.size)
	_, err = ov.ReadAt(got, 0)
	require.NoError(t, err)
	require.True(t, bytes.Equal(want, got), "overlay content")
	require.True(t, bytes.Equal(content, base.data), "base must never change")

	_, err = ov.WriteAt([]byte{1}, p.size)
	require.ErrorIs(t, err, ErrOutOfRange)

	exts, err := ov.Extents(0, p.size)
	require.NoError(t, err)
	assertCovers(t, exts, 0, p.size)
	for _, e := range exts {
		if e.Kind != Data {
			assert.True(t, IsZero(want[e.Offset:e.End()]), "extent %+v", e)
		}
	}
	dg, err := Digest(context.Background(), ov, CopyOptions{})
	require.NoError(t, err)
	assert.Equal(t, referenceDigest(want), dg)
}

func TestCompare(t *testing.T) {
	a := patterns[3].bytes(1)
	b := append([]byte(nil), a...)
	imgA := FromReaderAt(bytes.NewReader(a), int64(len(a)))
	_, eq, err := Compare(context.Background(), imgA, FromReaderAt(bytes.NewReader(b), int64(len(b))), CopyOptions{})
	require.NoError(t, err)
	assert.True(t, eq)

	b[4*ChunkSize+3] = 9
	b[4*ChunkSize+70] = 9
	off, eq, err := Compare(context.Background(), imgA, FromReaderAt(bytes.NewReader(b), int64(len(b))), CopyOptions{Window: 2})
	require.NoError(t, err)
	assert.False(t, eq)
	assert.Equal(t, int64(4*ChunkSize+3), off)

	// A longer image equal up to the shorter one's end and zero after it.
	longer := append(append([]byte(nil), a...), make([]byte, 3*ChunkSize)...)
	_, eq, err = Compare(context.Background(), imgA, FromReaderAt(bytes.NewReader(longer), int64(len(longer))), CopyOptions{})
	require.NoError(t, err)
	assert.True(t, eq)
	longer[len(longer)-1] = 1
	off, eq, err = Compare(context.Background(), imgA, FromReaderAt(bytes.NewReader(longer), int64(len(longer))), CopyOptions{})
	require.NoError(t, err)
	assert.False(t, eq)
	assert.Equal(t, int64(len(longer)-1), off)
}

func TestOutput(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "out.img")

	o := NewOutput(false)
	f, err := o.Create(target)
	require.NoError(t, err)
	_, err = f.WriteString("half")
	require.NoError(t, err)
	_, err = os.Stat(target)
	require.True(t, os.IsNotExist(err), "nothing at the target before Commit")
	o.Abort()
	entries, _ := os.ReadDir(dir)
	require.Empty(t, entries, "Abort leaves nothing")

	o = NewOutput(false)
	f, err = o.Create(target)
	require.NoError(t, err)
	f.WriteString("one")
	require.NoError(t, o.Commit())
	o.Abort() // no effect after Commit
	got, _ := os.ReadFile(target)
	require.Equal(t, "one", string(got))

	_, err = NewOutput(false).Create(target)
	require.ErrorContains(t, err, "already exists")

	o = NewOutput(true)
	f, err = o.Create(target)
	require.NoError(t, err)
	f.WriteString("two")
	require.NoError(t, o.Commit())
	got, _ = os.ReadFile(target)
	require.Equal(t, "two", string(got))

	o = NewOutput(false)
	tmp, err := o.Mkdir(filepath.Join(dir, "vm.vmb"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(tmp, "vm.json"), []byte("{}"), 0o644))
	require.NoError(t, o.Commit())
	_, err = os.Stat(filepath.Join(dir, "vm.vmb", "vm.json"))
	require.NoError(t, err)
}

func TestOutputMissingDirectory(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "vm")
	for _, commit := range []bool{false, true} {
		o := NewOutput(false)
		require.NoError(t, o.MkdirAll(sub))
		require.NoError(t, o.MkdirAll(sub), "twice is fine")
		f, err := o.Create(filepath.Join(sub, "vm.vmx"))
		require.NoError(t, err)
		f.WriteString("x")
		_, err = os.Stat(sub)
		require.True(t, os.IsNotExist(err), "the directory appears only on Commit")
		if !commit {
			o.Abort()
			entries, _ := os.ReadDir(dir)
			require.Empty(t, entries, "Abort leaves nothing, not even the directory")
			continue
		}
		require.NoError(t, o.Commit())
		got, err := os.ReadFile(filepath.Join(sub, "vm.vmx"))
		require.NoError(t, err)
		require.Equal(t, "x", string(got))
	}
}

func TestOutputModes(t *testing.T) {
	dir := t.TempDir()
	o := NewOutput(false)
	_, err := o.Create(filepath.Join(dir, "f.img"))
	require.NoError(t, err)
	_, err = o.Mkdir(filepath.Join(dir, "d.vmb"))
	require.NoError(t, err)
	require.NoError(t, o.Commit())
	fi, err := os.Stat(filepath.Join(dir, "f.img"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o666)&^umask(), fi.Mode().Perm(), "outputs are not private temporary files")
	fi, err = os.Stat(filepath.Join(dir, "d.vmb"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o777)&^umask(), fi.Mode().Perm())
}

func TestOverlayZeroAt(t *testing.T) {
	content := bytes.Repeat([]byte{0xee}, 3*ChunkSize+1000)
	base := FromReaderAt(bytes.NewReader(content), int64(len(content)))
	ov, err := NewOverlay(base)
	require.NoError(t, err)
	defer ov.Close()
	want := append([]byte(nil), content...)
	for _, r := range []struct{ off, n int64 }{{10, 5}, {100, 2*overlayBlock + 7}, {ChunkSize, ChunkSize}, {int64(len(content)) - 1500, 1500}} {
		require.NoError(t, ov.ZeroAt(r.off, r.n))
		clear(want[r.off : r.off+r.n])
	}
	got := make([]byte, len(content))
	_, err = ov.ReadAt(got, 0)
	require.NoError(t, err)
	require.True(t, bytes.Equal(want, got))
	require.ErrorIs(t, ov.ZeroAt(int64(len(content)), 1), ErrOutOfRange)
}

// A raw file gets holes wherever a 4 KiB block is zero, inside data chunks
// too (qemu-img's -S 4k): the file's data extents are exactly its non-zero
// blocks, and it reads back the same.
func TestRawWriterBlockHoles(t *testing.T) {
	block := func(fill byte, n int) []byte { return bytes.Repeat([]byte{fill}, n) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	alternating := make([]byte, 0, ChunkSize)
	for i := 0; i < ChunkSize/holeBlock; i++ {
		alternating = append(alternating, block(byte(i%2), holeBlock)...)
	}
	tests := []struct {
		name    string
		content []byte
		want    []Extent // data extents
	}{
		{"data, zero block, data, zero rest", cat(block(1, 4096), block(0, 4096), block(2, 4096), block(0, ChunkSize-3*4096)),
			[]Extent{{0, 4096, Data}, {8192, 4096, Data}}},
		{"zero block, then a partial last block", cat(block(0, 4096), block(3, 4096), block(4, 1808)),
			[]Extent{{4096, 10000 - 4096, Data}}},
		{"one byte in a zero chunk", cat(block(0, 5*4096+17), []byte{9}, block(0, ChunkSize-5*4096-18)),
			[]Extent{{5 * 4096, 4096, Data}}},
		{"all data", block(5, ChunkSize), []Extent{{0, ChunkSize, Data}}},
		{"every other block", alternating, func() []Extent {
			var e []Extent
			for off := int64(holeBlock); off < ChunkSize; off += 2 * holeBlock {
				e = append(e, Extent{off, holeBlock, Data})
			}
			return e
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			size := int64(len(tc.content))
			dst := filepath.Join(t.TempDir(), "dst.raw")
			out := NewOutput(false)
			f, err := out.Create(dst)
			require.NoError(t, err)
			require.NoError(t, Copy(context.Background(), FromReaderAt(bytes.NewReader(tc.content), size), NewRawWriter(f, size), CopyOptions{}))
			require.NoError(t, out.Commit())

			got, err := os.ReadFile(dst)
			require.NoError(t, err)
			require.True(t, bytes.Equal(tc.content, got), "copy differs")
			img, err := OpenRaw(dst)
			require.NoError(t, err)
			defer img.Close()
			exts, err := img.Extents(0, size)
			require.NoError(t, err)
			var data []Extent
			for _, e := range exts {
				if e.Kind == Data {
					data = append(data, e)
				}
			}
			assert.Equal(t, tc.want, data)
		})
	}
}

// OpenFile takes regular files and refuses, without blocking, what is no
// disk: a named pipe with no writer would otherwise hang the open.
func TestOpenFileRefusesNonFiles(t *testing.T) {
	dir := t.TempDir()
	reg := filepath.Join(dir, "disk.img")
	require.NoError(t, os.WriteFile(reg, []byte("data"), 0o644))
	f, err := OpenFile(reg)
	require.NoError(t, err)
	b := make([]byte, 4)
	_, err = f.ReadAt(b, 0)
	require.NoError(t, err)
	assert.Equal(t, "data", string(b))
	require.NoError(t, f.Close())

	fifo := filepath.Join(dir, "pipe")
	require.NoError(t, unix.Mkfifo(fifo, 0o644))
	for _, tc := range []struct{ path, want string }{
		{fifo, "a named pipe, not a regular file or block device"},
		{dir, "a directory"},
		{"/dev/null", "a character device"},
		{filepath.Join(dir, "absent"), "no such file"},
	} {
		done := make(chan error, 1)
		go func() {
			_, err := OpenFile(tc.path)
			done <- err
		}()
		select {
		case err := <-done:
			require.ErrorContains(t, err, tc.want)
			require.ErrorContains(t, err, tc.path)
		case <-time.After(10 * time.Second):
			t.Fatalf("OpenFile(%s) blocked", tc.path)
		}
	}
}

// A file the process holds open — an input of the conversion — is never an
// output's target, --force or not; once closed it may be replaced.
func TestOutputRefusesOpenInput(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "base.raw")
	require.NoError(t, os.WriteFile(in, []byte("input"), 0o644))
	f, err := OpenFile(in)
	require.NoError(t, err)
	out := NewOutput(true)
	_, err = out.Create(in)
	require.ErrorContains(t, err, "is read by this conversion")
	_, err = out.CreateDisk(in)
	require.ErrorContains(t, err, "is read by this conversion")
	out.Abort()
	b, err := os.ReadFile(in)
	require.NoError(t, err)
	assert.Equal(t, "input", string(b))

	require.NoError(t, f.Close())
	out = NewOutput(true)
	w, err := out.Create(in)
	require.NoError(t, err)
	_, err = w.WriteString("output")
	require.NoError(t, err)
	require.NoError(t, out.Commit())
	b, err = os.ReadFile(in)
	require.NoError(t, err)
	assert.Equal(t, "output", string(b))
}

// An output in a directory that is not there fails naming the output and
// its directory, not the temporary file it would have used.
func TestOutputCreateErrorNamesTarget(t *testing.T) {
	gone := filepath.Join(t.TempDir(), "gone")
	for _, target := range []string{"d.raw", "vm.vmb"} {
		t.Run(target, func(t *testing.T) {
			o := NewOutput(false)
			defer o.Abort()
			var err error
			if filepath.Ext(target) == ".vmb" {
				_, err = o.Mkdir(filepath.Join(gone, target))
			} else {
				_, err = o.Create(filepath.Join(gone, target))
			}
			require.Error(t, err)
			assert.Equal(t, "create "+filepath.Join(gone, target)+": directory "+gone+" does not exist: no such file or directory", err.Error())
			assert.ErrorIs(t, err, os.ErrNotExist)
			assert.NotContains(t, err.Error(), ".tmp-")
		})
	}
}
