package xva

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
)

// Concurrent random reads of an indexed image (xapi layout: short last
// chunk, keep-alive entry) return the source's bytes; run with -race.
func TestImageConcurrentReadAt(t *testing.T) {
	dir := t.TempDir()
	desc, raws := xapiDesc(t, dir, "gnu")
	vm, err := Open(writeXapi(t, dir, desc))
	require.NoError(t, err)
	defer vm.Close()
	src, err := os.ReadFile(raws[0])
	require.NoError(t, err)
	img := vm.Disks[0].Image
	require.EqualValues(t, len(src), img.Size())

	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewSource(int64(g)))
			for range 200 {
				off := r.Int63n(img.Size())
				n := 1 + r.Intn(3*ChunkSize)
				p := make([]byte, n)
				k, err := img.ReadAt(p, off)
				want := min(int64(n), img.Size()-off)
				if int64(n) > img.Size()-off {
					assert.Error(t, err) // io.EOF past the end
				} else if !assert.NoError(t, err) {
					return
				}
				assert.EqualValues(t, want, k)
				assert.True(t, bytes.Equal(src[off:off+want], p[:want]), "bytes at %d+%d", off, want)
			}
		}()
	}
	wg.Wait()

	// Extents: absent chunks are Unallocated, present ones Data; together
	// they cover the disk, and every non-zero byte lies in a Data extent.
	ext, err := img.Extents(0, img.Size())
	require.NoError(t, err)
	pos := int64(0)
	for _, e := range ext {
		require.Equal(t, pos, e.Offset)
		pos = e.End()
		if e.Kind == disk.Unallocated {
			assert.True(t, disk.IsZero(src[e.Offset:e.End()]), "unallocated %d+%d holds data", e.Offset, e.Length)
		}
	}
	assert.Equal(t, img.Size(), pos)
	sub, err := img.Extents(1_500_000, 10)
	require.NoError(t, err)
	require.Len(t, sub, 1)
	assert.Equal(t, disk.Extent{Offset: 1_500_000, Length: 10, Kind: disk.Data}, sub[0])
}

// A chunk corrupted on disk after indexing fails the read that touches it,
// naming the VDI and chunk; other chunks still read.
func TestImageChecksumOnRead(t *testing.T) {
	dir := t.TempDir()
	desc, _ := xapiDesc(t, dir, "ustar")
	p := writeXapi(t, dir, desc)
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	// Chunk 0 of Ref:9 starts with "boot sector".
	i := bytes.Index(data, []byte("boot sector"))
	require.Positive(t, i)
	data[i] = 'B'
	require.NoError(t, os.WriteFile(p, data, 0o644))

	vm, err := Open(p)
	require.NoError(t, err)
	defer vm.Close()
	img := vm.Disks[0].Image
	buf := make([]byte, 16)
	_, err = img.ReadAt(buf, 100)
	require.ErrorIs(t, err, ErrChecksum)
	assert.Contains(t, err.Error(), `VDI Ref:9 ("root") chunk 0`)
	_, err = img.ReadAt(buf, 1_500_000)
	assert.NoError(t, err)
}

func TestDetect(t *testing.T) {
	good := buildTar(t, []tentry{{name: "ova.xml", data: []byte("<value/>")}})
	other := buildTar(t, []tentry{{name: "ova.xmlx", data: []byte("x")}})
	corrupt := append([]byte(nil), good...)
	corrupt[150]++ // header checksum field
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(good)
	zw.Close()
	var gzOther bytes.Buffer
	zw = gzip.NewWriter(&gzOther)
	zw.Write(bytes.Repeat([]byte("not a tar "), 100))
	zw.Close()

	assert.True(t, Detect(good))
	assert.False(t, Detect(other))
	assert.False(t, Detect(corrupt))
	assert.False(t, Detect(good[:100]))
	assert.False(t, Detect(gz.Bytes()))
	assert.True(t, DetectCompressed(gz.Bytes()))
	assert.False(t, DetectCompressed(gzOther.Bytes()))
	assert.True(t, DetectCompressed(gz.Bytes()[:10]), "too short to tell: the magic decides")
	assert.False(t, DetectCompressed(good))

	p := filepath.Join(t.TempDir(), "x.xva.gz")
	require.NoError(t, os.WriteFile(p, gz.Bytes(), 0o644))
	_, err := Open(p)
	assert.ErrorIs(t, err, ErrCompressed)
}

func TestParseOptions(t *testing.T) {
	for _, tc := range []struct {
		in           map[string]string
		want, packed string
		err          string
	}{
		{in: nil, want: ChecksumSHA1},
		{in: map[string]string{"checksum": "sha1"}, want: ChecksumSHA1},
		{in: map[string]string{"checksum": "xxhash"}, want: ChecksumXXHash},
		{in: map[string]string{"checksum": "md5"}, err: "want sha1 or xxhash"},
		{in: map[string]string{"subformat": "x"}, err: "unknown option"},
		{in: map[string]string{"compress": "on"}, want: ChecksumSHA1, packed: CompressGzip},
		{in: map[string]string{"compress": "GZIP"}, want: ChecksumSHA1, packed: CompressGzip},
		{in: map[string]string{"compress": "zstd", "checksum": "xxhash"}, want: ChecksumXXHash, packed: CompressZstd},
		{in: map[string]string{"compress": "off"}, want: ChecksumSHA1},
		{in: map[string]string{"compress": "none"}, want: ChecksumSHA1},
		{in: map[string]string{"compress": "xz"}, err: "compress=xz: want off, gzip (or on) or zstd"},
	} {
		o, err := ParseOptions(tc.in)
		if tc.err != "" {
			assert.ErrorContains(t, err, tc.err)
			continue
		}
		require.NoError(t, err)
		assert.Equal(t, tc.want, o.Checksum)
		assert.Equal(t, tc.packed, o.Compress)
	}
}

func TestDiskID(t *testing.T) {
	for unit, id := range map[int]string{0: "xvda", 1: "xvdb", 3: "xvdd", 25: "xvdz", 26: "xvdaa", 27: "xvdab", 701: "xvdzz", 702: "xvdaaa"} {
		assert.Equal(t, id, diskID(unit))
		assert.Equal(t, unit, unitFromID(id))
	}
	assert.Equal(t, -1, unitFromID("sda"))
	assert.Equal(t, -1, unitFromID("xvd1"))
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	desc, _ := xapiDesc(t, dir, "gnu")
	p := writeXapi(t, dir, desc)
	probs, err := Check(p)
	require.NoError(t, err)
	assert.Empty(t, probs)

	data, err := os.ReadFile(p)
	require.NoError(t, err)
	i := bytes.Index(data, []byte("boot sector"))
	require.Positive(t, i)
	data[i] = 'b' + 1
	require.NoError(t, os.WriteFile(p, data, 0o644))
	probs, err = Check(p)
	require.NoError(t, err)
	require.Len(t, probs, 1)
	assert.Contains(t, probs[0].What, `VDI Ref:9 ("root") chunk 0`)
	assert.Equal(t, p, probs[0].File)
	assert.Contains(t, probs[0].What, "checksum mismatch")

	_, err = Check(filepath.Join(dir, "missing.xva"))
	assert.Error(t, err)
}

// Every disk of the VM gets a stream, a 0-byte one included, in VDI order.
func TestStreamEmptyDisk(t *testing.T) {
	dir := t.TempDir()
	a := makeRaw(t, dir, rawSpec{name: "a", size: 3 << 20, writes: map[int64]string{5: "x"}})
	z := makeRaw(t, dir, rawSpec{name: "z", size: 0})
	vm := newRawVM(t, []string{z, a, z})
	var b bytes.Buffer
	require.NoError(t, Write(context.Background(), &b, vm, Options{}, disk.CopyOptions{}))
	sr, err := NewStreamReader(bytes.NewReader(b.Bytes()))
	require.NoError(t, err)
	got := map[string]int64{}
	for {
		id, s, err := sr.NextDisk()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		got[id] = s.Size()
		_, _, err = s.Next()
		if s.Size() == 0 {
			assert.Equal(t, io.EOF, err)
		}
	}
	assert.Equal(t, map[string]int64{"scsi0:0": 0, "scsi0:1": 3 << 20, "scsi0:2": 0}, got)
}
