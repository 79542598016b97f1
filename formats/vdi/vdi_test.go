package vdi

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/disk/disktest"
)

// TestHeaderLayout: the struct is qemu's VdiHeader plus VirtualBox's LCHS
// geometry, and the offsets errors name are the fields'.
func TestHeaderLayout(t *testing.T) {
	require.Equal(t, headerEnd, binary.Size(Header{}))
	h := Header{Signature: 1, Version: 2, HeaderSize: 3, ImageType: 4, OffsetBmap: 5, OffsetData: 6,
		Legacy: Geometry{SectorSize: 7}, DiskSize: 8, BlockSize: 9, BlockExtra: 10, BlocksInImage: 11, BlocksAllocated: 12,
		UUIDImage: [16]byte{13}, UUIDLastSnap: [16]byte{14}, UUIDLink: [16]byte{15}, UUIDParent: [16]byte{16}}
	b := h.encode()
	for off, want := range map[int]byte{offSignature: 1, offVersion: 2, offHeaderSize: 3, offImageType: 4, offOffsetBmap: 5, offOffsetData: 6,
		offSectorSize: 7, offDiskSize: 8, offBlockSize: 9, offBlockExtra: 10, offBlocksInImage: 11, offBlocksAlloc: 12,
		offUUIDImage: 13, offUUIDLastSnap: 14, offUUIDLink: 15, offUUIDParent: 16} {
		assert.Equal(t, want, b[off], "field at %#x", off)
	}
	assert.Equal(t, h, decodeHeader(b))
}

// TestReadQemuFiles reads VDIs qemu-img wrote, dynamic and static, and
// compares them with the source and with qemu-img's raw conversion.
func TestReadQemuFiles(t *testing.T) {
	dir := t.TempDir()
	for _, size := range []int64{10<<20 + 3*512, 7<<20 + 1000, 3 << 20} {
		src := filepath.Join(dir, "src.raw")
		want := disktest.Pattern(size, size)
		disktest.WriteSparse(t, src, want)
		for _, o := range []string{"static=off", "static=on"} {
			t.Run(strconv.FormatInt(size, 10)+" "+o, func(t *testing.T) {
				p := filepath.Join(t.TempDir(), "q.vdi")
				disktest.QemuImg(t, "convert", "-f", "raw", "-O", "vdi", "-o", o, src, p)
				qemu := disktest.RawOf(t, p, "vdi")
				img := openChecked(t, p)
				require.Equal(t, int64(len(qemu)), img.Size(), "qemu's size: the source's rounded up to a sector")
				got := disktest.ReadAll(t, img)
				require.True(t, bytes.Equal(qemu, got), "reads as qemu-img reads it")
				require.True(t, bytes.Equal(pad(want, img.Size()), got), "reads the source")
				disktest.RequireExtentsCover(t, img, got)
				sub := map[string]string{"static=off": "dynamic", "static=on": "static"}[o]
				assert.Equal(t, sub, img.Info().Subformat)
				assert.Equal(t, "QEMU VM Virtual Disk Image", img.Info().Creator)
			})
		}
	}
	for _, o := range []string{"static=off", "static=on"} {
		t.Run("empty "+o, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "e.vdi")
			disktest.QemuImg(t, "create", "-q", "-f", "vdi", "-o", o, p, "5M")
			img := openChecked(t, p)
			assert.Equal(t, int64(5<<20), img.Size())
			require.True(t, disk.IsZero(disktest.ReadAll(t, img)))
			// Nothing written: the map is empty, or the data area is a
			// hole but for what shares a filesystem block with the map.
			ext, err := img.Extents(0, img.Size())
			require.NoError(t, err)
			var data int64
			for _, e := range ext {
				if e.Kind == disk.Data {
					data += e.Length
				}
			}
			assert.LessOrEqual(t, data, int64(4096))
		})
	}
}

// openChecked opens a VDI that Check must find clean; the image is closed
// when the test ends.
func openChecked(t *testing.T, p string) *Image {
	t.Helper()
	img, err := Open(p)
	require.NoError(t, err)
	t.Cleanup(func() { img.Close() })
	probs, err := Check(p)
	require.NoError(t, err)
	assert.Empty(t, probs)
	return img
}

func pad(b []byte, size int64) []byte {
	return append(append([]byte(nil), b...), make([]byte, size-int64(len(b)))...)
}

func convertTo(t testing.TB, src disk.Image, path string, opt Options) {
	t.Helper()
	out := disk.NewOutput(false)
	defer out.Abort()
	w, err := Create(out, path, src.Size(), opt)
	require.NoError(t, err)
	require.NoError(t, disk.Copy(context.Background(), src, w, disk.CopyOptions{}))
	require.NoError(t, out.Commit())
}

// TestWriteQemuReads writes dynamic and static VDIs: qemu-img checks them
// clean, gives them the size it gives its own, and compares them equal to
// the source both ways; a dynamic image allocates only the blocks holding
// data.
func TestWriteQemuReads(t *testing.T) {
	for _, size := range []int64{10<<20 + 3*512, 7<<20 + 1000, 16 << 20} {
		for _, opt := range []Options{{}, {Static: true}} {
			t.Run(strconv.FormatInt(size, 10)+" static="+strconv.FormatBool(opt.Static), func(t *testing.T) {
				dir := t.TempDir()
				want := disktest.Pattern(size, 3)
				raw := filepath.Join(dir, "src.raw")
				disktest.WriteSparse(t, raw, want)
				src, err := disk.OpenRaw(raw)
				require.NoError(t, err)
				defer src.Close()
				p := filepath.Join(dir, "out.vdi")
				convertTo(t, src, p, opt)

				assert.Contains(t, disktest.QemuImg(t, "check", "-f", "vdi", p), "No errors were found")
				ref := filepath.Join(dir, "ref.vdi")
				disktest.QemuImg(t, "convert", "-f", "raw", "-O", "vdi", raw, ref)
				assert.Equal(t, virtualSize(t, ref), virtualSize(t, p), "qemu-img sees the size it gives its own")
				disktest.QemuImg(t, "compare", "-f", "vdi", "-F", "raw", p, raw)
				disktest.QemuImg(t, "compare", "-f", "raw", "-F", "vdi", raw, p)

				img := openChecked(t, p)
				got := disktest.ReadAll(t, img)
				require.True(t, bytes.Equal(pad(want, img.Size()), got))
				disktest.RequireExtentsCover(t, img, got)
				l, err := layoutFor(size)
				require.NoError(t, err)
				blocks := l.blocks
				if !opt.Static {
					blocks = dataBlocks(want)
					assert.Less(t, blocks, l.blocks, "the pattern leaves blocks empty")
				}
				assert.Equal(t, blocks, img.Info().AllocatedBlocks)
				assert.Equal(t, l.dataOff+blocks<<20, disktest.FileSizes(t, p))
			})
		}
	}
}

// dataBlocks counts the 1 MiB blocks of b that hold a non-zero byte.
func dataBlocks(b []byte) int64 {
	var n int64
	for off := 0; off < len(b); off += 1 << 20 {
		if !disk.IsZero(b[off:min(off+1<<20, len(b))]) {
			n++
		}
	}
	return n
}

func virtualSize(t testing.TB, p string) int64 {
	var info struct {
		VirtualSize int64 `json:"virtual-size"`
	}
	require.NoError(t, json.Unmarshal([]byte(disktest.QemuImg(t, "info", "--output", "json", "-f", "vdi", p)), &info))
	return info.VirtualSize
}

// TestSmallBlocks reads images qemu does not (4 KiB blocks, extra data
// before each block) with blocks out of order, a zero block, unallocated
// blocks and a last block the file holds only as far as the disk does;
// Check says what qemu would refuse.
func TestSmallBlocks(t *testing.T) {
	for _, extra := range []uint32{0, 512} {
		t.Run("extra="+strconv.Itoa(int(extra)), func(t *testing.T) {
			b, want := smallVDI(extra)
			p := filepath.Join(t.TempDir(), "small.vdi")
			require.NoError(t, os.WriteFile(p, b, 0o644))
			img, err := Open(p)
			require.NoError(t, err)
			defer img.Close()
			require.Equal(t, want, disktest.ReadAll(t, img))
			disktest.RequireExtentsCover(t, img, want)
			ext, err := img.Extents(0, img.Size())
			require.NoError(t, err)
			kinds := map[int64]disk.Kind{}
			for _, e := range ext {
				for off := e.Offset; off < e.End(); off += 4096 {
					kinds[off/4096] = e.Kind
				}
			}
			assert.Equal(t, map[int64]disk.Kind{0: disk.Data, 1: disk.Unallocated, 2: disk.Zero, 3: disk.Data, 4: disk.Data, 5: disk.Unallocated, 6: disk.Data}, kinds)
			assert.Equal(t, Info{Filename: p, Subformat: "dynamic", VirtualSize: 6*4096 + 2048, Version: "1.1", Creator: "Oracle VM VirtualBox Disk Image",
				UUID: img.Info().UUID, ModificationUUID: img.Info().ModificationUUID, ActualSize: img.Info().ActualSize,
				BlockSize: 4096, Blocks: 7, AllocatedBlocks: 4, ZeroBlocks: 1}, img.Info())
			probs, err := Check(p)
			require.NoError(t, err)
			var what []string
			for _, pr := range probs {
				what = append(what, pr.String())
			}
			wantProbs := []string{p + " at 0x178: header: block size 4096: qemu reads only 1048576"}
			if extra != 0 {
				wantProbs = append(wantProbs, p+" at 0x17c: header: block extra size 512: qemu reads the blocks without skipping it")
			}
			assert.Equal(t, wantProbs, what)
		})
	}
}

func TestDetect(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "qemu-empty.vdi"))
	require.NoError(t, err)
	assert.True(t, Detect(b))
	assert.True(t, Detect(b[:preHeaderSize]))
	assert.False(t, Detect(b[:offSignature+3]))
	assert.False(t, Detect(make([]byte, 512)))
}

func TestParseOptions(t *testing.T) {
	o, err := ParseOptions(map[string]string{"static": "on"})
	require.NoError(t, err)
	assert.Equal(t, Options{Static: true}, o)
	o, err = ParseOptions(nil)
	require.NoError(t, err)
	assert.Equal(t, Options{}, o)
	_, err = ParseOptions(map[string]string{"static": "maybe"})
	assert.ErrorContains(t, err, `static="maybe"`)
	_, err = ParseOptions(map[string]string{"cluster_size": "1M"})
	assert.ErrorContains(t, err, `unknown option "cluster_size" (known: static)`)
}

// TestSizeLimits: the block map's offset and the data offset are u32, so
// the largest VDI is a little under qemu's 1 PiB limit; a size past it is
// refused before anything is allocated.
func TestSizeLimits(t *testing.T) {
	l, err := layoutFor(0)
	require.NoError(t, err)
	assert.Equal(t, layout{size: 0, blocks: 0, dataOff: 1 << 20}, l)
	l, err = layoutFor(1000)
	require.NoError(t, err)
	assert.Equal(t, layout{size: 1024, blocks: 1, dataOff: 1 << 20}, l)
	l, err = layoutFor(1 << 40)
	require.NoError(t, err)
	assert.Equal(t, int64(5<<20), l.dataOff, "4 MiB of map after the header, aligned")
	for _, size := range []int64{-1, maxBlocks << 20, 1 << 62} {
		_, err := layoutFor(size)
		assert.Error(t, err, size)
	}
	out := disk.NewOutput(false)
	defer out.Abort()
	_, err = Create(out, filepath.Join(t.TempDir(), "x.vdi"), 1<<62, Options{})
	assert.ErrorContains(t, err, "x.vdi")
	_, err = Create(out, disk.Stdout, 1<<20, Options{})
	assert.ErrorContains(t, err, "standard output")
}

// TestWriterErrors: chunks out of order or past the end are refused, and
// the error sticks.
func TestWriterErrors(t *testing.T) {
	out := disk.NewOutput(false)
	defer out.Abort()
	w, err := Create(out, filepath.Join(t.TempDir(), "x.vdi"), 2<<20, Options{})
	require.NoError(t, err)
	data := bytes.Repeat([]byte{1}, 1<<20)
	require.NoError(t, w.WriteChunk(&disk.Chunk{Offset: 1 << 20, Data: data, Length: len(data)}))
	err = w.WriteChunk(&disk.Chunk{Offset: 0, Data: data, Length: len(data)})
	require.ErrorContains(t, err, "out of order")
	assert.Equal(t, err, w.Close())

	w, err = Create(out, filepath.Join(t.TempDir(), "y.vdi"), 1<<20, Options{})
	require.NoError(t, err)
	require.ErrorContains(t, w.WriteChunk(&disk.Chunk{Offset: 1 << 20, Data: data, Length: len(data)}), "past the disk size")
}
