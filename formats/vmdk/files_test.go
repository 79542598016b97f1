package vmdk

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zlib"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/disk/disktest"
)

// testdataFile returns the contents of a committed file, gunzipped.
func testdataFile(t testing.TB, name string) []byte {
	t.Helper()
	if b, err := os.ReadFile(filepath.Join("testdata", "qemu", name)); err == nil {
		return b
	}
	f, err := os.Open(filepath.Join("testdata", "qemu", name+".gz"))
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	b, err := io.ReadAll(zr)
	require.NoError(t, err)
	return b
}

// unpack writes committed files into dir.
func unpack(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		require.NoError(t, os.WriteFile(filepath.Join(dir, n), testdataFile(t, n), 0o644))
	}
}

// memWriter collects what a disk.Writer is given.
type memWriter struct {
	b      []byte
	closed bool
}

func (m *memWriter) WriteChunk(c *disk.Chunk) error {
	if !c.Zero {
		copy(m.b[c.Offset:], c.Data)
	}
	return nil
}
func (m *memWriter) Close() error { m.closed = true; return nil }

// ourStream returns src written by our streamOptimized writer (VMware's
// layout: footer, markers, GD at the end).
func ourStream(t testing.TB, src []byte) []byte {
	t.Helper()
	dir := t.TempDir()
	out := disk.NewOutput(false)
	path := filepath.Join(dir, "s.vmdk")
	w, err := Create(out, path, int64(len(src)), Options{Subformat: StreamOptimized})
	require.NoError(t, err)
	require.NoError(t, disk.Copy(context.Background(), disk.FromReaderAt(bytesReaderAt(src), int64(len(src))), w, disk.CopyOptions{}))
	require.NoError(t, out.Commit())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

func TestReadCommittedQemuFiles(t *testing.T) {
	dir := t.TempDir()
	unpack(t, dir, "monolithicSparse.vmdk", "streamOptimized.vmdk", "vmdkstream.vmdk", "child.vmdk", "flat.vmdk", "split.vmdk")
	src := testdataFile(t, "src.raw")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "flat-flat.vmdk"), make([]byte, 1<<20), 0o644))
	for _, n := range []string{"split-s001.vmdk", "split-s002.vmdk"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, n), nil, 0o644))
	}
	child := append([]byte(nil), src...)
	copy(child[64<<10:], bytes.Repeat([]byte{0xab}, 4096))
	for _, tc := range []struct {
		file string
		want []byte
	}{
		{"monolithicSparse.vmdk", src},
		{"streamOptimized.vmdk", src},
		{"vmdkstream.vmdk", src},
		{"child.vmdk", child},
		{"flat.vmdk", make([]byte, 1<<20)},
	} {
		t.Run(tc.file, func(t *testing.T) {
			img, err := Open(filepath.Join(dir, tc.file))
			require.NoError(t, err)
			defer img.Close()
			got := disktest.ReadAll(t, img)
			require.True(t, bytes.Equal(tc.want, got))
			disktest.RequireExtentsCover(t, img, tc.want)
		})
	}
	// The split descriptor's extents are empty files here: a clear error.
	_, err := Open(filepath.Join(dir, "split.vmdk"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "split-s001.vmdk")
	assert.Contains(t, err.Error(), "truncated header")
}

func TestOpenStream(t *testing.T) {
	src := testdataFile(t, "src.raw")
	for _, tc := range []struct {
		name string
		file []byte
	}{
		{"qemu layout", testdataFile(t, "streamOptimized.vmdk")},
		{"VMDKstream (VMware layout)", testdataFile(t, "vmdkstream.vmdk")},
		{"VMware layout", ourStream(t, src)},
		{"VMware layout, odd size", ourStream(t, src[:len(src)-1000])},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A pipe: no seeking possible.
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(writeAll(pw, tc.file)) }()
			st, err := OpenStream(pr)
			require.NoError(t, err)
			w := &memWriter{b: make([]byte, st.Size())}
			require.NoError(t, disk.CopyStream(context.Background(), st, w, disk.CopyOptions{}))
			assert.True(t, w.closed)
			want := src[:st.Size()]
			if int64(len(src)) > st.Size() {
				want = src[:st.Size()]
			}
			n := min(int(st.Size()), len(src))
			if strings.Contains(tc.name, "odd") {
				n = len(src) - 1000
				want = append(append([]byte(nil), src[:n]...), make([]byte, int(st.Size())-n)...)
			}
			require.True(t, bytes.Equal(want, w.b))
		})
	}
}

func writeAll(w io.Writer, b []byte) error { _, err := w.Write(b); return err }

// streamFile builds a streamOptimized file by hand: header with the GD at
// sector 1 and one GT at sector 2, then the given grain records from sector
// 8 on. Grain records are (lba, zlib data) in file order.
func streamFile(capacity uint64, grains []streamGrain, tail ...[]byte) []byte {
	h := SparseHeader{Magic: sparseMagic, Version: 3, Flags: flagNewlineTest | flagCompressed | flagMarkers,
		Capacity: capacity, GrainSize: 128, NumGTEsPerGT: 512, GDOffset: 1, OverHead: 8, CompressAlgorithm: 1,
		SingleEndLineChar: '\n', NonEndLineChar: ' ', DoubleEndLineChar1: '\r', DoubleEndLineChar2: '\n'}
	b := make([]byte, 8*sectorSize)
	h.encode(b)
	binary.LittleEndian.PutUint32(b[sectorSize:], 2)
	for _, g := range grains {
		sec := len(b) / sectorSize
		if g.lba/128 < 512 {
			binary.LittleEndian.PutUint32(b[2*sectorSize+int(g.lba/128)*4:], uint32(sec))
		}
		rec := make([]byte, 12, 12+len(g.data)+sectorSize)
		binary.LittleEndian.PutUint64(rec, g.lba)
		binary.LittleEndian.PutUint32(rec[8:], uint32(len(g.data)))
		rec = append(rec, g.data...)
		rec = append(rec, make([]byte, (sectorSize-len(rec)%sectorSize)%sectorSize)...)
		b = append(b, rec...)
	}
	for _, t := range tail {
		b = append(b, t...)
	}
	return b
}

type streamGrain struct {
	lba  uint64
	data []byte
}

func zlibOf(p []byte) []byte {
	var buf bytes.Buffer
	zw := zlib.NewWriter(&buf)
	zw.Write(p)
	zw.Close()
	return buf.Bytes()
}

func metaSector(n uint64, typ uint32) []byte {
	m := make([]byte, sectorSize)
	binary.LittleEndian.PutUint64(m, n)
	binary.LittleEndian.PutUint32(m[12:], typ)
	return m
}

func TestBadInput(t *testing.T) {
	sparse := testdataFile(t, "monolithicSparse.vmdk")
	stream := ourStream(t, testdataFile(t, "src.raw"))
	hdr := decodeHeader(sparse)
	put64 := func(b []byte, off int, v uint64) []byte {
		b = append([]byte(nil), b...)
		binary.LittleEndian.PutUint64(b[off:], v)
		return b
	}
	put32 := func(b []byte, off int, v uint32) []byte {
		b = append([]byte(nil), b...)
		binary.LittleEndian.PutUint32(b[off:], v)
		return b
	}
	gd := int(hdr.GDOffset) * sectorSize
	gt0 := int(binary.LittleEndian.Uint32(sparse[gd:])) * sectorSize
	grain := bytes.Repeat([]byte{1, 2, 3, 4}, 16384)
	for _, tc := range []struct {
		name    string
		file    []byte
		want    []string // substrings of the Open (or read) error
		atRead  bool     // the error comes from reading, not opening
		problem bool     // Check reports a problem rather than an error
	}{
		{name: "empty file", file: nil, want: []string{"neither a sparse extent"}},
		{name: "truncated header", file: sparse[:100], want: []string{"truncated header", "100 bytes"}},
		{name: "truncated header with magic", file: sparse[:200], want: []string{"truncated header", "at least 512"}},
		{name: "bad version", file: put32(sparse, 4, 9), want: []string{"version 9"}},
		{name: "capacity 2^63", file: put64(sparse, 12, 1<<63), want: []string{"capacity"}},
		{name: "grainSize 0", file: put64(sparse, 20, 0), want: []string{"grainSize 0"}},
		{name: "grainSize huge", file: put64(sparse, 20, 1<<40), want: []string{"grainSize"}},
		{name: "grainSize not a power of two", file: put64(sparse, 20, 100), want: []string{"grainSize 100"}},
		{name: "numGTEsPerGT huge", file: put32(sparse, 44, 1<<30), want: []string{"numGTEsPerGT"}},
		{name: "GD past EOF", file: put64(sparse, 56, 1<<30), want: []string{"grain directory", "past the end"}},
		{name: "GT past EOF", file: put32(sparse, gd, 1<<24), want: []string{"grain table at sector 16777216", "past the end"}},
		{name: "GTE past EOF", file: put32(sparse, gt0, 1<<24), want: []string{"grain table 0", "entry 0", "past the end"}},
		{name: "descriptor past EOF", file: put64(sparse, 36, 4000), want: []string{"embedded descriptor", "past the end"}},
		{name: "unknown incompatible flag", file: put32(sparse, 8, 1<<20|3), want: []string{"incompatible flags"}},
		{name: "text-mode transfer", file: put32(sparse, 72, 0x0a0a0a00), want: []string{"newline"}},
		{name: "footer marker wrong", file: put32(stream, len(stream)-3*sectorSize+12, 7), want: []string{"footer marker", "type 7"}},
		{name: "footer magic wrong", file: put32(stream, len(stream)-2*sectorSize, 0), want: []string{"footer", "magic"}},
		{name: "EOS marker wrong", file: put32(stream, len(stream)-sectorSize, 5), want: []string{"end-of-stream"}},
		{name: "malformed descriptor line", file: []byte("# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\nRW 12x FLAT \"a\" 0\n"), want: []string{"descriptor line 4", "extent size"}},
		{name: "descriptor without createType", file: []byte("# Disk DescriptorFile\nversion=1\nRW 12 FLAT \"a\" 0\n"), want: []string{"no createType"}},
		{name: "descriptor bad CID", file: []byte("# Disk DescriptorFile\nversion=1\nCID=xyz\ncreateType=\"monolithicFlat\"\nRW 12 FLAT \"a\" 0\n"), want: []string{"CID", "hex"}},
		{name: "descriptor junk line", file: []byte("# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\nhello world\nRW 1 ZERO\n"), want: []string{"descriptor line 4", "key=value"}},
		{name: "descriptor unknown extent type", file: []byte("# Disk DescriptorFile\ncreateType=\"x\"\nRW 1 FOO \"a\"\n"), want: []string{"unknown extent type"}},
		{name: "encrypted disk", file: []byte("# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\nRW 1 ZERO\nddb.keySafe = \"vmware:key/list/...\"\n"), want: []string{"encrypted", "ddb.keySafe"}},
		{name: "missing extent file", file: []byte("# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\nRW 8 FLAT \"nothere-flat.vmdk\" 0\n"), want: []string{"nothere-flat.vmdk", "not found"}},
		{name: "compressed grain inflates past the grain", atRead: true,
			file: streamFile(1024, []streamGrain{{0, zlibOf(make([]byte, 2*64<<10))}}), want: []string{"grain 0", "inflates past the grain size"}},
		{name: "compressed grain corrupt", atRead: true,
			file: streamFile(1024, []streamGrain{{0, append(zlibOf(grain)[:20], 1, 2, 3)}}), want: []string{"grain 0", "zlib"}},
		{name: "grain marker LBA wrong", atRead: true,
			file: streamFile(1024, []streamGrain{{128, zlibOf(grain)}})[:0:0], want: nil},
	} {
		if tc.want == nil {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "bad.vmdk")
			require.NoError(t, os.WriteFile(path, tc.file, 0o644))
			img, err := Open(path)
			if tc.atRead {
				require.NoError(t, err)
				defer img.Close()
				_, err = img.ReadAt(make([]byte, img.Size()), 0)
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), path)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			// Check never panics on it either.
			res, cerr := Check(path)
			if cerr == nil {
				_ = res
			}
		})
	}
}

func TestBadStream(t *testing.T) {
	g := zlibOf(bytes.Repeat([]byte{7}, 64<<10))
	for _, tc := range []struct {
		name string
		file []byte
		want string
	}{
		{"unknown marker type", streamFile(1024, []streamGrain{{0, g}}, metaSector(0, 9)), "unknown type 9"},
		{"grains out of order", streamFile(1024, []streamGrain{{128, g}, {0, g}}), "out of order"},
		{"grain LBA not a grain start", streamFile(1024, []streamGrain{{5, g}}), "not a grain start"},
		{"grain LBA past capacity", streamFile(1024, []streamGrain{{1024, g}}), "inside the capacity"},
		{"truncated grain", streamFile(1024, []streamGrain{{0, g}})[:8*sectorSize+20], "unexpected EOF"},
		{"compressed size huge", streamFile(1024, []streamGrain{{0, make([]byte, 200<<10)}}), "compressed size"},
		{"inflates past grain", streamFile(1024, []streamGrain{{0, zlibOf(make([]byte, 65<<10))}}), "inflates past"},
		{"metadata marker too large", streamFile(1024, nil, metaSector(1<<50, markerGT)), "out of range"},
		{"not compressed", testdataFile(t, "monolithicSparse.vmdk"), "not streamOptimized"},
		{"truncated header", []byte("KDMV"), "truncated header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := OpenStream(bytes.NewReader(tc.file))
			if err == nil {
				for err == nil {
					_, _, err = st.Next()
				}
			}
			require.Error(t, err)
			require.NotEqual(t, io.EOF, err)
			assert.Contains(t, err.Error(), "vmdk stream")
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestChainErrors(t *testing.T) {
	t.Run("missing parent", func(t *testing.T) {
		dir := t.TempDir()
		unpack(t, dir, "child.vmdk")
		_, err := Open(filepath.Join(dir, "child.vmdk"))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "child.vmdk")
		assert.Contains(t, err.Error(), `parent "monolithicSparse.vmdk"`)
		res, err := Check(filepath.Join(dir, "child.vmdk"))
		require.NoError(t, err)
		require.NotEmpty(t, res.Problems)
		assert.Contains(t, res.Problems[0].What, "not found")
	})
	t.Run("CID mismatch", func(t *testing.T) {
		dir := t.TempDir()
		unpack(t, dir, "child.vmdk", "monolithicSparse.vmdk")
		base := filepath.Join(dir, "monolithicSparse.vmdk")
		b, err := os.ReadFile(base)
		require.NoError(t, err)
		i := bytes.Index(b, []byte("CID="))
		require.Positive(t, i)
		oldCID := string(b[i+4 : i+12])
		copy(b[i+4:], "0badc1d0")
		require.NoError(t, os.WriteFile(base, b, 0o644))
		_, err = Open(filepath.Join(dir, "child.vmdk"))
		require.Error(t, err)
		for _, w := range []string{"child.vmdk", "parentCID=" + oldCID, "CID=0badc1d0", base} {
			assert.Contains(t, err.Error(), w)
		}
		res, err := Check(filepath.Join(dir, "child.vmdk"))
		require.NoError(t, err)
		require.Len(t, res.Problems, 1)
		assert.Contains(t, res.Problems[0].What, "0badc1d0")
	})
	t.Run("parent loop", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "f.raw"), make([]byte, 4096), 0o644))
		for _, p := range [][2]string{{"a.vmdk", "b.vmdk"}, {"b.vmdk", "a.vmdk"}} {
			d := "# Disk DescriptorFile\nversion=1\nCID=11111111\nparentCID=11111111\ncreateType=\"monolithicFlat\"\nparentFileNameHint=\"" + p[1] + "\"\nRW 8 FLAT \"f.raw\" 0\n"
			require.NoError(t, os.WriteFile(filepath.Join(dir, p[0]), []byte(d), 0o644))
		}
		_, err := Open(filepath.Join(dir, "a.vmdk"))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "parent loop")
		assert.Contains(t, err.Error(), "a.vmdk")
	})
	t.Run("chain too deep", func(t *testing.T) {
		dir := t.TempDir()
		for i := 0; i <= maxChainDepth+1; i++ {
			d := "# Disk DescriptorFile\nversion=1\nCID=11111111\nparentCID=11111111\ncreateType=\"monolithicFlat\"\n"
			if i > 0 {
				d += "parentFileNameHint=\"d" + strconv.Itoa(i-1) + ".vmdk\"\n"
			} else {
				d = strings.Replace(d, "parentCID=11111111", "parentCID=ffffffff", 1)
			}
			d += "RW 8 ZERO\n"
			require.NoError(t, os.WriteFile(filepath.Join(dir, "d"+strconv.Itoa(i)+".vmdk"), []byte(d), 0o644))
		}
		img, err := Open(filepath.Join(dir, "d"+strconv.Itoa(maxChainDepth)+".vmdk"))
		require.NoError(t, err)
		assert.Len(t, img.Info().Chain, maxChainDepth)
		img.Close()
		_, err = Open(filepath.Join(dir, "d"+strconv.Itoa(maxChainDepth+1)+".vmdk"))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "deeper than 255")
	})
	t.Run("parentCID without hint", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "f.raw"), make([]byte, 4096), 0o644))
		d := "# Disk DescriptorFile\nversion=1\nCID=11111111\nparentCID=22222222\ncreateType=\"monolithicFlat\"\nRW 8 FLAT \"f.raw\" 0\n"
		require.NoError(t, os.WriteFile(filepath.Join(dir, "c.vmdk"), []byte(d), 0o644))
		_, err := Open(filepath.Join(dir, "c.vmdk"))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "parentFileNameHint")
	})
}

// A descriptor mixing FLAT (absolute path, with offset), ZERO, SPARSE (a
// qemu file, relative path), VMFS and RDONLY extents.
func TestMixedDescriptor(t *testing.T) {
	dir := t.TempDir()
	unpack(t, dir, "monolithicSparse.vmdk")
	src := testdataFile(t, "src.raw")
	flat := make([]byte, 3<<20)
	for i := range flat {
		flat[i] = byte(i / 4096)
	}
	fpath := filepath.Join(dir, "data.bin")
	require.NoError(t, os.WriteFile(fpath, flat, 0o644))
	d := "# Disk DescriptorFile\nversion=1\nCID=abcdef01\nparentCID=ffffffff\ncreateType=\"custom\"\n\n" +
		"RW 2048 FLAT \"" + fpath + "\" 1024\n" + // 1 MiB from offset 512 KiB
		"RDONLY 100 ZERO\n" +
		"RW 2048 SPARSE \"monolithicSparse.vmdk\"\n" +
		"RDONLY 1000 VMFS \"C:\\\\vms\\\\data.bin\"\n" + // Windows path: base name in the same dir
		"\nddb.adapterType = \"buslogic\"\n"
	path := filepath.Join(dir, "mixed.vmdk")
	require.NoError(t, os.WriteFile(path, []byte(d), 0o644))
	img, err := Open(path)
	require.NoError(t, err)
	defer img.Close()
	var want []byte
	want = append(want, flat[512<<10:512<<10+1<<20]...)
	want = append(want, make([]byte, 100*512)...)
	want = append(want, src...)
	want = append(want, flat[:1000*512]...)
	require.Equal(t, int64(len(want)), img.Size())
	got := disktest.ReadAll(t, img)
	require.True(t, bytes.Equal(want, got))
	disktest.RequireExtentsCover(t, img, want)
	ext, err := img.Extents(1<<20, 100*512)
	require.NoError(t, err)
	require.Equal(t, []disk.Extent{{Offset: 1 << 20, Length: 100 * 512, Kind: disk.Zero}}, ext)
	in := img.Info()
	require.Len(t, in.Extents, 4)
	assert.Equal(t, "RDONLY", in.Extents[1].Access)
	assert.Equal(t, "buslogic", in.AdapterType)
	res, err := Check(path)
	require.NoError(t, err)
	assert.Empty(t, res.Problems)

	// NOACCESS extents refuse reads.
	na := strings.Replace(d, "RDONLY 1000 VMFS", "NOACCESS 1000 VMFS", 1)
	require.NoError(t, os.WriteFile(path, []byte(na), 0o644))
	img2, err := Open(path)
	require.NoError(t, err)
	defer img2.Close()
	_, err = img2.ReadAt(make([]byte, 512), img2.Size()-512)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "NOACCESS")
}

func TestCheckFindsCorruption(t *testing.T) {
	sparse := testdataFile(t, "monolithicSparse.vmdk")
	h := decodeHeader(sparse)
	gd := int(h.GDOffset) * sectorSize
	gt0 := int(binary.LittleEndian.Uint32(sparse[gd:])) * sectorSize
	rgd := int(h.RGDOffset) * sectorSize
	rgt0 := int(binary.LittleEndian.Uint32(sparse[rgd:])) * sectorSize
	stream := ourStream(t, testdataFile(t, "src.raw"))
	sh := decodeHeader(stream)
	_ = sh
	mod := func(b []byte, f func(b []byte)) []byte { b = append([]byte(nil), b...); f(b); return b }
	for _, tc := range []struct {
		name string
		file []byte
		want string
	}{
		{"clean", sparse, ""},
		{"clean stream", stream, ""},
		{"duplicate grain", mod(sparse, func(b []byte) { copy(b[gt0+4:gt0+8], b[gt0:gt0+4]) }), "same grain"},
		{"overlapping grain", mod(sparse, func(b []byte) {
			binary.LittleEndian.PutUint32(b[gt0+4:], binary.LittleEndian.Uint32(b[gt0:])+1)
		}), "overlaps"},
		{"grain in metadata", mod(sparse, func(b []byte) { binary.LittleEndian.PutUint32(b[gt0:], 3) }), "inside the metadata"},
		{"overHead past EOF", mod(sparse, func(b []byte) { binary.LittleEndian.PutUint64(b[64:], 0xffffffff00000080) }),
			"overHead 18446744069414584448 sectors lies past the end of the file"},
		{"grain past EOF", mod(sparse, func(b []byte) { binary.LittleEndian.PutUint32(b[gt0:], 1<<20) }), "past the end"},
		{"redundant GT differs", mod(sparse, func(b []byte) { b[rgt0] ^= 0x40 }), "redundant grain table 0 entry 0"},
		{"redundant GD past EOF", mod(sparse, func(b []byte) { binary.LittleEndian.PutUint64(b[48:], 1<<30) }),
			"redundant grain directory"},
		// rgdOffset×512 wraps to sector 1: still past the end, not the descriptor.
		{"redundant GD offset wraps", mod(sparse, func(b []byte) { binary.LittleEndian.PutUint64(b[48:], 1<<55+1) }),
			"redundant grain directory sector 36028797018963969 lies past the end"},
		{"GT past EOF", mod(sparse, func(b []byte) { binary.LittleEndian.PutUint32(b[gd:], 1<<22) }), "grain table 0"},
		{"zeroed GTE without flag", mod(sparse, func(b []byte) { binary.LittleEndian.PutUint32(b[gt0+4*9:], 1) }), "zeroed-grain flag"},
		{"footer differs from header", mod(stream, func(b []byte) {
			binary.LittleEndian.PutUint64(b[len(b)-2*sectorSize+12:], 4096)
		}), "footer capacity"},
		{"stream GT marker wrong", mod(stream, func(b []byte) {
			f := decodeHeader(b[len(b)-2*sectorSize:])
			g := binary.LittleEndian.Uint32(b[f.GDOffset*sectorSize:])
			b[int(g-1)*sectorSize] = 9
		}), "grain table 0 marker"},
		{"stream grain LBA wrong", mod(stream, func(b []byte) {
			f := decodeHeader(b[len(b)-2*sectorSize:])
			g := binary.LittleEndian.Uint32(b[f.GDOffset*sectorSize:])
			first := binary.LittleEndian.Uint32(b[g*sectorSize:])
			b[int(first)*sectorSize] = 0x80
		}), "marker LBA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.vmdk")
			require.NoError(t, os.WriteFile(path, tc.file, 0o644))
			res, err := Check(path)
			require.NoError(t, err)
			if tc.want == "" {
				assert.Empty(t, res.Problems)
				assert.Positive(t, res.Grains)
				return
			}
			require.NotEmpty(t, res.Problems)
			var all []string
			for _, p := range res.Problems {
				assert.Equal(t, path, p.File)
				all = append(all, p.String())
			}
			assert.Contains(t, strings.Join(all, "\n"), tc.want)
		})
	}
}

func TestDetect(t *testing.T) {
	assert.True(t, Detect(testdataFile(t, "monolithicSparse.vmdk")[:512]))
	assert.True(t, Detect(testdataFile(t, "flat.vmdk")))
	assert.False(t, Detect(make([]byte, 512)))
	assert.False(t, Detect([]byte("conectix")))
	assert.False(t, Detect([]byte(".encoding = \"UTF-8\"\nconfig.version = \"8\"\n")))
}

// A descriptor naming a named pipe as its extent is refused at once: the
// open must not wait for a writer that never comes.
func TestExtentNamedPipe(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, unix.Mkfifo(filepath.Join(dir, "pipe-flat.vmdk"), 0o644))
	path := filepath.Join(dir, "pipe.vmdk")
	require.NoError(t, os.WriteFile(path, []byte("# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\nRW 8 FLAT \"pipe-flat.vmdk\" 0\n"), 0o644))
	done := make(chan error, 1)
	go func() {
		img, err := Open(path)
		if err == nil {
			img.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		require.ErrorContains(t, err, "pipe-flat.vmdk")
		require.ErrorContains(t, err, "a named pipe")
	case <-time.After(10 * time.Second):
		t.Fatal("Open blocked on the named pipe")
	}
}
