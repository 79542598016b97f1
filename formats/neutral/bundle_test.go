package neutral

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/internal/testutil"
)

// testContent builds a disk image of the given size mixing random chunks,
// compressible text, chunks repeated elsewhere in the disk, zero-filled
// chunks and holes, and returns its bytes.
func testContent(seed uint64, size int64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, size)
	for off := int64(0); off < size; off += ChunkSize {
		end := min(size, off+ChunkSize)
		c := b[off:end]
		switch r.IntN(6) {
		case 0: // random
			for i := range c {
				c[i] = byte(r.Uint32())
			}
		case 1: // text
			line := []byte("the quick brown fox jumps over the lazy dog 0123456789\n")
			for i := range c {
				c[i] = line[(i+int(off/ChunkSize))%len(line)]
			}
		case 2: // a few bytes in a sea of zeros
			c[r.IntN(len(c))] = byte(1 + r.IntN(255))
		case 3: // copy of the first chunk, when it fits
			if off > 0 && end-off == ChunkSize {
				copy(c, b[:ChunkSize])
			}
		default: // zeros
		}
	}
	return b
}

// writeSparseFile writes content to a file, leaving holes where whole
// chunks are zero, so the raw image reports them as unallocated.
func writeSparseFile(t *testing.T, path string, content []byte) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	for off := 0; off < len(content); off += ChunkSize {
		c := content[off:min(len(content), off+ChunkSize)]
		if !disk.IsZero(c) {
			_, err := f.WriteAt(c, int64(off))
			require.NoError(t, err)
		}
	}
	require.NoError(t, f.Truncate(int64(len(content))))
	require.NoError(t, f.Close())
}

func testVM(disks ...Disk) *VM {
	return &VM{
		Schema: Schema, Name: "web-01", UUID: "564d1f2a-0b3c-4d5e-8f90-123456789abc",
		Firmware: "bios", CPUs: 4, CoresPerSocket: 2, MemoryMiB: 4096, GuestOS: "debian12-64",
		Disks: disks,
		NICs:  []NIC{{MAC: "00:50:56:ab:cd:ef", Network: "VM Network", Model: "vmxnet3"}},
		Extensions: Extensions{
			VMware: map[string]string{"tools.syncTime": "TRUE"},
			Xen:    map[string]any{"HVM_boot_policy": "BIOS order", "platform": map[string]any{"acpi": "1"}},
		},
	}
}

// writeTestBundle writes vm as a bundle at path and commits it.
func writeTestBundle(t *testing.T, path string, vm *VM, opt BundleOptions) {
	t.Helper()
	out := disk.NewOutput(false)
	err := WriteBundle(context.Background(), out, path, vm, opt)
	if err != nil {
		out.Abort()
	}
	require.NoError(t, err)
	require.NoError(t, out.Commit())
}

func TestBundleRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	sizes := []int64{37*ChunkSize + 12345, 8 * ChunkSize, 0, 3*ChunkSize + 1}
	var disks []Disk
	var contents [][]byte
	for i, size := range sizes {
		content := testContent(uint64(i+1), size)
		raw := filepath.Join(dir, "disk"+string(rune('0'+i))+".raw")
		writeSparseFile(t, raw, content)
		img, err := disk.OpenRaw(raw)
		require.NoError(t, err)
		defer img.Close()
		disks = append(disks, Disk{ID: "disk" + string(rune('0'+i)), Device: "disk", Bus: "scsi", Unit: i, Image: img, Bootable: i == 0})
		contents = append(contents, content)
	}
	disks = append(disks, Disk{ID: "ide1:0", Device: "cdrom", Bus: "ide", Unit: 0, ReadOnly: true})
	vm := testVM(disks...)
	path := filepath.Join(dir, "web-01.vmb")
	writeTestBundle(t, path, vm, BundleOptions{})
	assert.True(t, Detect(path))

	got, err := OpenBundle(path)
	require.NoError(t, err)
	defer got.Close()
	require.Len(t, got.Disks, len(sizes)+1)
	assert.Nil(t, got.Disks[len(sizes)].Image, "empty CD-ROM drive has no image")

	for i, content := range contents {
		d := got.Disks[i]
		t.Run(d.ID, func(t *testing.T) {
			require.NotNil(t, d.Image)
			assert.Equal(t, int64(len(content)), d.Image.Size())
			assert.Equal(t, int64(len(content)), d.CapacityBytes)
			// The digest recorded while writing is the one disk.Digest
			// computes by reading the source and the bundle.
			want, err := disk.Digest(ctx, disk.FromReaderAt(bytes.NewReader(content), int64(len(content))), disk.CopyOptions{})
			require.NoError(t, err)
			assert.Equal(t, want, d.Digest)
			assert.Equal(t, want, vm.Disks[i].Digest)
			back, err := disk.Digest(ctx, d.Image, disk.CopyOptions{})
			require.NoError(t, err)
			assert.Equal(t, want, back)

			// Whole content, byte for byte.
			all := make([]byte, len(content))
			n, err := d.Image.ReadAt(all, 0)
			require.NoError(t, err)
			require.Equal(t, len(content), n)
			require.True(t, bytes.Equal(content, all), "content differs")

			// Unaligned reads at random, concurrently.
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := rand.New(rand.NewPCG(uint64(w), 7))
					for range 200 {
						if len(content) == 0 {
							break
						}
						off := r.Int64N(int64(len(content)))
						buf := make([]byte, 1+r.IntN(3*ChunkSize))
						n, err := d.Image.ReadAt(buf, off)
						if off+int64(len(buf)) > int64(len(content)) {
							assert.ErrorIs(t, err, io.EOF)
						} else {
							assert.NoError(t, err)
						}
						assert.True(t, bytes.Equal(content[off:off+int64(n)], buf[:n]), "read at %d+%d", off, len(buf))
					}
				}()
			}
			wg.Wait()

			// Extents: Data exactly where the source has non-zero chunks.
			exts, err := d.Image.Extents(0, d.Image.Size())
			require.NoError(t, err)
			pos := int64(0)
			for _, e := range exts {
				require.Equal(t, pos, e.Offset)
				for off := e.Offset; off < e.End(); off += ChunkSize {
					c := content[off:min(int64(len(content)), off+ChunkSize)]
					assert.Equal(t, !disk.IsZero(c), e.Kind == disk.Data, "chunk at %d", off)
				}
				pos = e.End()
			}
			assert.Equal(t, d.Image.Size(), pos)

			// Sub-ranges: contiguous, clipped, same kinds.
			r := rand.New(rand.NewPCG(11, uint64(i)))
			for range 100 {
				size := int64(len(content))
				off := r.Int64N(size + 1)
				length := r.Int64N(5 * ChunkSize)
				exts, err := d.Image.Extents(off, length)
				require.NoError(t, err)
				pos := off
				for _, e := range exts {
					require.Equal(t, pos, e.Offset)
					require.Positive(t, e.Length)
					c := content[e.Offset/ChunkSize*ChunkSize : min(size, e.Offset/ChunkSize*ChunkSize+ChunkSize)]
					assert.Equal(t, !disk.IsZero(c), e.Kind == disk.Data, "extent %+v", e)
					pos = e.End()
				}
				assert.Equal(t, min(size, off+length), max(pos, off), "extents of %d+%d", off, length)
			}
		})
	}

	// vm.json carries everything else unchanged.
	vm.Disks = nil
	gotVM := *got
	gotVM.Disks = nil
	assert.Equal(t, vm, &gotVM)

	// Zero chunks are absent from the store; every other chunk is there
	// once, named by the SHA-256 of its bytes.
	want := map[string]bool{}
	for _, content := range contents {
		for off := 0; off < len(content); off += ChunkSize {
			c := content[off:min(len(content), off+ChunkSize)]
			if !disk.IsZero(c) {
				s := sha256.Sum256(c)
				want[hex.EncodeToString(s[:])] = true
			}
		}
	}
	assert.Equal(t, want, storeFiles(t, filepath.Join(path, "chunks")))
}

// storeFiles lists the chunk names in a store and checks their layout.
func storeFiles(t *testing.T, store string) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	err := filepath.WalkDir(store, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		if d.IsDir() {
			return nil
		}
		require.False(t, strings.HasPrefix(d.Name(), "."), "temporary file left: %s", p)
		require.Equal(t, d.Name()[:2], filepath.Base(filepath.Dir(p)))
		names[d.Name()] = true
		return nil
	})
	require.NoError(t, err)
	return names
}

func TestBundleCorruptChunk(t *testing.T) {
	dir := t.TempDir()
	content := testContent(42, 10*ChunkSize)
	// Make chunk 5 incompressible and distinct from all others.
	r := rand.New(rand.NewPCG(5, 5))
	for i := 5 * ChunkSize; i < 6*ChunkSize; i++ {
		content[i] = byte(r.Uint32())
	}
	vm := testVM(Disk{ID: "sda", Device: "disk", Bus: "sata", Image: disk.FromReaderAt(bytes.NewReader(content), int64(len(content)))})
	path := filepath.Join(dir, "vm.vmb")
	writeTestBundle(t, path, vm, BundleOptions{})

	sum := sha256.Sum256(content[5*ChunkSize : 6*ChunkSize])
	chunk := chunkPath(filepath.Join(path, "chunks"), &sum)
	orig, err := os.ReadFile(chunk)
	require.NoError(t, err)

	cases := []struct {
		name   string
		mutate func([]byte) []byte
		msg    string
	}{
		// Stored raw (incompressible), so flipping a byte of the payload
		// still decodes: only the hash check catches it.
		{"flipped byte", func(b []byte) []byte { b[len(b)/2] ^= 0x40; return b }, "SHA-256"},
		{"truncated", func(b []byte) []byte { return b[:len(b)-100] }, "zstd"},
		{"empty", func(b []byte) []byte { return nil }, "decodes to 0 bytes"},
		{"garbage", func(b []byte) []byte { return bytes.Repeat([]byte{0xAA}, 5000) }, "zstd"},
		{"other chunk", func(b []byte) []byte { return compressTest(t, content[:ChunkSize]) }, "SHA-256"},
		{"too short", func(b []byte) []byte { return compressTest(t, content[5*ChunkSize:6*ChunkSize-1]) }, "expected 1048576"},
		{"oversized", func(b []byte) []byte { return make([]byte, maxChunkFile+1) }, "larger than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, os.WriteFile(chunk, tc.mutate(bytes.Clone(orig)), 0o644))
			defer os.WriteFile(chunk, orig, 0o644)
			got, err := OpenBundle(path)
			require.NoError(t, err, "opening reads no chunk")
			defer got.Close()
			img := got.Disks[0].Image
			// Whole-chunk read (direct path) and a small read (cached path).
			for _, buf := range [][]byte{make([]byte, ChunkSize), make([]byte, 512)} {
				_, err = img.ReadAt(buf, 5*ChunkSize)
				require.Error(t, err)
				for _, want := range []string{path, "disk sda", "chunk 5", chunk, tc.msg} {
					assert.Contains(t, err.Error(), want)
				}
			}
			// Other chunks still read.
			buf := make([]byte, ChunkSize)
			_, err = img.ReadAt(buf, 4*ChunkSize)
			assert.NoError(t, err)
			_, err = disk.Digest(context.Background(), img, disk.CopyOptions{})
			assert.ErrorContains(t, err, "chunk 5")
		})
	}

	t.Run("missing", func(t *testing.T) {
		require.NoError(t, os.Remove(chunk))
		defer os.WriteFile(chunk, orig, 0o644)
		got, err := OpenBundle(path)
		require.NoError(t, err)
		defer got.Close()
		_, err = got.Disks[0].Image.ReadAt(make([]byte, 100), 5*ChunkSize+7)
		assert.ErrorContains(t, err, "chunk 5 ("+chunk+"): chunk file is missing")
	})
}

func compressTest(t *testing.T, p []byte) []byte {
	c, err := newCompressor(0)
	require.NoError(t, err)
	bp, err := c.compress(p)
	require.NoError(t, err)
	return bytes.Clone(*bp)
}

// Two VMs cloned from one template, each with a few MiB changed, written to
// one shared store: the second adds only its changed chunks.
func TestSharedStoreDedupe(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	const size = 64 * ChunkSize
	template := make([]byte, size)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range template[:48*ChunkSize] { // 16 MiB left empty
		template[i] = byte(r.Uint32())
	}
	clone := func(changed ...int) []byte {
		b := bytes.Clone(template)
		for _, c := range changed {
			for i := c * ChunkSize; i < c*ChunkSize+4096; i++ {
				b[i] = byte(r.Uint32())
			}
		}
		return b
	}
	vm1 := clone(3, 10, 11)
	vm2 := clone(3, 20, 50, 51, 52)

	write := func(name string, content []byte) {
		vm := testVM(Disk{ID: "xvda", Device: "disk", Bus: "xen", Image: disk.FromReaderAt(bytes.NewReader(content), size)})
		vm.Name = name
		writeTestBundle(t, filepath.Join(dir, name+".vmb"), vm, BundleOptions{Store: store})
	}
	write("vm1", vm1)
	after1 := storeFiles(t, store)
	assert.Len(t, after1, 48, "48 data chunks, none zero")
	write("vm2", vm2)
	after2 := storeFiles(t, store)

	// New: vm2's changed chunks, and the template's 10 and 11 that vm1
	// had changed.
	var added []string
	for n := range after2 {
		if !after1[n] {
			added = append(added, n)
		}
	}
	var want []string
	for _, c := range []int{3, 10, 11, 20, 50, 51, 52} {
		s := sha256.Sum256(vm2[c*ChunkSize : (c+1)*ChunkSize])
		want = append(want, hex.EncodeToString(s[:]))
	}
	assert.ElementsMatch(t, want, added)
	assert.Less(t, dirBytes(t, store), int64(48*ChunkSize*6/5), "store ≈ one VM")

	// The store is recorded relative to the bundles and outside them.
	for name, content := range map[string][]byte{"vm1": vm1, "vm2": vm2} {
		path := filepath.Join(dir, name+".vmb")
		_, err := os.Stat(filepath.Join(path, "chunks"))
		assert.ErrorIs(t, err, os.ErrNotExist)
		l := readList(t, filepath.Join(path, "disks", "xvda.json"))
		assert.Equal(t, "../store", l.Store)
		// Moving the whole directory keeps the bundles readable.
		checkContent(t, path, content)
	}
	moved := filepath.Join(t.TempDir(), "moved")
	require.NoError(t, os.Rename(dir, moved))
	checkContent(t, filepath.Join(moved, "vm2.vmb"), vm2)
}

func checkContent(t *testing.T, path string, content []byte) {
	t.Helper()
	vm, err := OpenBundle(path)
	require.NoError(t, err)
	defer vm.Close()
	_, eq, err := disk.Compare(context.Background(), vm.Disks[0].Image, disk.FromReaderAt(bytes.NewReader(content), int64(len(content))), disk.CopyOptions{})
	require.NoError(t, err)
	assert.True(t, eq, "%s: content differs", path)
}

func readList(t *testing.T, path string) *chunkList {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	l, err := parseChunkList(f)
	require.NoError(t, err)
	return l
}

func dirBytes(t *testing.T, dir string) int64 {
	var n int64
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			fi, err := d.Info()
			if err == nil {
				n += fi.Size()
			}
		}
		return err
	}))
	return n
}

func TestStoreLocation(t *testing.T) {
	_, ref, err := storeLocation("/a/b/vm.vmb", "/a/b/store")
	require.NoError(t, err)
	assert.Equal(t, "../store", ref)
	_, ref, err = storeLocation("/a/b/vm.vmb", "/a/b/x/y")
	require.NoError(t, err)
	assert.Equal(t, "../x/y", ref)
	_, ref, err = storeLocation("/a/b/vm.vmb", "/srv/store")
	require.NoError(t, err)
	assert.Equal(t, "/srv/store", ref)
}

// The chunk files are plain zstd frames: Debian's zstd decodes them to bytes
// whose sha256sum is the file's name.
func TestChunksDecodeWithZstdTool(t *testing.T) {
	zstdBin := testutil.RequireTool(t, "zstd")
	sumBin := testutil.RequireTool(t, "sha256sum")
	dir := t.TempDir()
	content := testContent(9, 12*ChunkSize+777)
	vm := testVM(Disk{ID: "d0", Device: "disk", Bus: "nvme", Image: disk.FromReaderAt(bytes.NewReader(content), int64(len(content)))})
	path := filepath.Join(dir, "vm.vmb")
	writeTestBundle(t, path, vm, BundleOptions{})
	names := storeFiles(t, filepath.Join(path, "chunks"))
	require.NotEmpty(t, names)
	for name := range names {
		file := filepath.Join(path, "chunks", name[:2], name)
		out := filepath.Join(dir, "out")
		testutil.Run(t, zstdBin, "-q", "-d", "-f", "-o", out, file)
		sum := testutil.Run(t, sumBin, out)
		assert.Equal(t, name, strings.Fields(sum)[0], file)
	}
	// And zstd's own output decodes with ours.
	src := filepath.Join(dir, "chunk")
	require.NoError(t, os.WriteFile(src, content[:ChunkSize], 0o644))
	testutil.Run(t, zstdBin, "-q", "-19", "-f", "-o", src+".zst", src)
	frame, err := os.ReadFile(src + ".zst")
	require.NoError(t, err)
	s := sha256.Sum256(content[:ChunkSize])
	require.NoError(t, os.WriteFile(src+".zst", frame, 0o644))
	dst := make([]byte, ChunkSize)
	frame, err = os.ReadFile(src + ".zst")
	require.NoError(t, err)
	require.NoError(t, decodeChunk(frame, &s, dst))
	assert.True(t, bytes.Equal(content[:ChunkSize], dst))
}

// Chunks already in a shared store are left alone (same inode, same mtime);
// leftovers of an interrupted writer are ignored; two writers filling one
// store at the same time both succeed.
func TestSharedStoreConcurrentAndNoRewrite(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	content := testContent(77, 20*ChunkSize+5)
	img := func() disk.Image { return disk.FromReaderAt(bytes.NewReader(content), int64(len(content))) }

	// A stale temporary file, as an interrupted writer leaves it.
	first := sha256.Sum256(content[:ChunkSize])
	stale := chunkPath(store, &first)
	require.NoError(t, os.MkdirAll(filepath.Dir(stale), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(filepath.Dir(stale), "."+filepath.Base(stale)+".tmp-123"), []byte("partial"), 0o644))

	var wg sync.WaitGroup
	for _, name := range []string{"a", "b", "c"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vm := testVM(Disk{ID: "d", Device: "disk", Bus: "virtio", Image: img()})
			out := disk.NewOutput(false)
			err := WriteBundle(context.Background(), out, filepath.Join(dir, name+".vmb"), vm, BundleOptions{Store: store, Copy: disk.CopyOptions{Workers: 2}})
			if assert.NoError(t, err) {
				assert.NoError(t, out.Commit())
			} else {
				out.Abort()
			}
		}()
	}
	wg.Wait()
	for _, name := range []string{"a", "b", "c"} {
		checkContent(t, filepath.Join(dir, name+".vmb"), content)
	}

	before := map[string]os.FileInfo{}
	filepath.WalkDir(store, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasPrefix(d.Name(), ".") {
			fi, _ := d.Info()
			before[p] = fi
		}
		return err
	})
	require.NotEmpty(t, before)
	vm := testVM(Disk{ID: "d", Device: "disk", Bus: "virtio", Image: img()})
	writeTestBundle(t, filepath.Join(dir, "d.vmb"), vm, BundleOptions{Store: store})
	for p, fi := range before {
		now, err := os.Stat(p)
		require.NoError(t, err)
		assert.True(t, os.SameFile(fi, now), "%s was rewritten", p)
		assert.Equal(t, fi.ModTime(), now.ModTime())
	}
}

// sparseImage is a large image holding data only in a few chunks.
type sparseImage struct {
	size int64
	data map[int64][]byte // chunk index → content
}

func (s *sparseImage) Size() int64  { return s.size }
func (s *sparseImage) Close() error { return nil }
func (s *sparseImage) ReadAt(p []byte, off int64) (int, error) {
	for i := range p {
		pos := off + int64(i)
		if c, ok := s.data[pos/ChunkSize]; ok {
			p[i] = c[pos%ChunkSize]
		} else {
			p[i] = 0
		}
	}
	return len(p), nil
}
func (s *sparseImage) Extents(off, length int64) ([]disk.Extent, error) {
	end := min(s.size, off+length)
	var out []disk.Extent
	for pos := off; pos < end; {
		idx := pos / ChunkSize
		next := min(end, (idx+1)*ChunkSize)
		kind := disk.Unallocated
		if _, ok := s.data[idx]; ok {
			kind = disk.Data
		} else {
			// Jump to the next data chunk.
			nextData := end
			for i := range s.data {
				if i*ChunkSize > pos && i*ChunkSize < nextData {
					nextData = i * ChunkSize
				}
			}
			next = nextData
		}
		out = append(out, disk.Extent{Offset: pos, Length: next - pos, Kind: kind})
		pos = next
	}
	return out, nil
}

// A 1 TiB disk with three chunks of data: the chunk list stays a few
// hundred bytes, the digest matches disk's definition, reads are right.
func TestBundleHugeSparseDisk(t *testing.T) {
	const size = 1 << 40
	img := &sparseImage{size: size, data: map[int64][]byte{}}
	r := rand.New(rand.NewPCG(3, 3))
	for _, idx := range []int64{0, 500000, size/ChunkSize - 1} {
		c := make([]byte, ChunkSize)
		for i := range c {
			c[i] = byte(r.Uint32())
		}
		img.data[idx] = c
	}
	want := disk.NewDigestHasher(size)
	for _, idx := range []int64{0, 500000, size/ChunkSize - 1} {
		want.Add(idx*ChunkSize, sha256.Sum256(img.data[idx]))
	}
	path := filepath.Join(t.TempDir(), "big.vmb")
	vm := testVM(Disk{ID: "big", Device: "disk", Bus: "virtio", Image: img})
	writeTestBundle(t, path, vm, BundleOptions{})
	assert.Equal(t, want.Sum(), vm.Disks[0].Digest)
	fi, err := os.Stat(filepath.Join(path, "disks", "big.json"))
	require.NoError(t, err)
	assert.Less(t, fi.Size(), int64(1024))

	got, err := OpenBundle(path)
	require.NoError(t, err)
	defer got.Close()
	im := got.Disks[0].Image
	assert.Equal(t, int64(size), im.Size())
	exts, err := im.Extents(0, size)
	require.NoError(t, err)
	assert.Equal(t, []disk.Extent{
		{Offset: 0, Length: ChunkSize, Kind: disk.Data},
		{Offset: ChunkSize, Length: 499999 * ChunkSize, Kind: disk.Unallocated},
		{Offset: 500000 * ChunkSize, Length: ChunkSize, Kind: disk.Data},
		{Offset: 500001 * ChunkSize, Length: size - 500002*ChunkSize, Kind: disk.Unallocated},
		{Offset: size - ChunkSize, Length: ChunkSize, Kind: disk.Data},
	}, exts)
	buf := make([]byte, 3*ChunkSize)
	_, err = im.ReadAt(buf, 500000*ChunkSize-ChunkSize)
	require.NoError(t, err)
	assert.True(t, disk.IsZero(buf[:ChunkSize]))
	assert.Equal(t, img.data[500000], buf[ChunkSize:2*ChunkSize])
	n, err := im.ReadAt(buf, size-ChunkSize)
	assert.Equal(t, ChunkSize, n)
	assert.ErrorIs(t, err, io.EOF)
	assert.Equal(t, img.data[size/ChunkSize-1], buf[:ChunkSize])
	_, err = im.ReadAt(buf, size)
	assert.ErrorIs(t, err, io.EOF)
	_, err = im.ReadAt(buf, -1)
	assert.ErrorIs(t, err, disk.ErrOutOfRange)

	require.NoError(t, got.Close())
	_, err = im.ReadAt(buf, 0)
	assert.ErrorContains(t, err, "read after close")
}

// A cancelled write returns the context's error and, once aborted, leaves
// no bundle behind.
func TestWriteBundleCancelled(t *testing.T) {
	dir := t.TempDir()
	content := testContent(8, 40*ChunkSize)
	ctx, cancel := context.WithCancel(context.Background())
	vm := testVM(Disk{ID: "d", Device: "disk", Bus: "scsi", Image: disk.FromReaderAt(bytes.NewReader(content), int64(len(content)))})
	out := disk.NewOutput(false)
	opt := BundleOptions{Copy: disk.CopyOptions{Progress: func(done, total int64) {
		if done > 5*ChunkSize {
			cancel()
		}
	}}}
	for _, name := range []string{"x.vmb", "x.vmb.tar"} {
		err := WriteBundle(ctx, out, filepath.Join(dir, name), vm, opt)
		assert.ErrorIs(t, err, context.Canceled, name)
	}
	out.Abort()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries)
}

func TestDetect(t *testing.T) {
	dir := t.TempDir()
	withJSON := filepath.Join(dir, "some-dir")
	require.NoError(t, os.Mkdir(withJSON, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(withJSON, "vm.json"), []byte("{}"), 0o644))
	plain := filepath.Join(dir, "plain")
	require.NoError(t, os.Mkdir(plain, 0o755))
	file := filepath.Join(dir, "disk.raw")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	for path, want := range map[string]bool{
		withJSON:                           true,
		plain:                              false,
		file:                               false,
		dir + "/new.vmb":                   true,
		dir + "/new.vmb/":                  true,
		dir + "/new.vmb.tar":               true,
		dir + "/missing":                   false,
		dir + "/x.tar":                     false,
		filepath.Join(plain, "") + ".vmbx": false,
	} {
		assert.Equal(t, want, Detect(path), path)
	}
}
