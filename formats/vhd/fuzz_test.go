package vhd

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmconv/vmconv/disk"
)

// smallDynamic is a dynamic VHD with 4 KiB blocks, one allocated, so the
// fuzzer has a small file with a live BAT to mutate.
func smallDynamic() []byte {
	const size, bs = 64 << 10, 4096
	ft := Footer{Features: 2, FileFormatVersion: 0x10000, DataOffset: 512, CurrentSize: size, OriginalSize: size,
		Cylinders: 65535, Heads: 16, SectorsPerTrack: 255, DiskType: typeDynamic}
	copy(ft.Cookie[:], "conectix")
	copy(ft.CreatorApplication[:], "qem2")
	h := DynamicHeader{DataOffset: noOffset, TableOffset: 1536, HeaderVersion: 0x10000, MaxTableEntries: size / bs, BlockSize: bs}
	copy(h.Cookie[:], "cxsparse")
	b := make([]byte, 2048+512+bs+512)
	copy(b, ft.encode())
	copy(b[512:], h.encode())
	for i := 0; i < size/bs; i++ {
		binary.BigEndian.PutUint32(b[1536+i*4:], batUnused)
	}
	binary.BigEndian.PutUint32(b[1536+8:], 2048/512)
	b[2048] = 0xFF
	copy(b[2048+512:], bytes.Repeat([]byte("vhd!"), bs/4))
	copy(b[len(b)-512:], ft.encode())
	return b
}

// FuzzOpen opens arbitrary bytes as a VHD (footer, header, BAT), maps and
// reads what it accepts, and checks it: errors only, never a panic.
func FuzzOpen(f *testing.F) {
	for _, n := range []string{"fixed.vhd", "empty-dyn.vhd"} {
		b, err := os.ReadFile(filepath.Join("testdata", n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(smallDynamic())
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		img, err := newImage("fuzz.vhd", r, int64(len(data)))
		if err != nil {
			return
		}
		const window = 64 << 20
		ext, err := img.Extents(0, window)
		if err != nil {
			t.Fatal(err)
		}
		pos := int64(0)
		buf := make([]byte, 16<<10)
		for i, e := range ext {
			if e.Offset != pos || e.Length <= 0 {
				t.Fatalf("extents not contiguous at %#x: %+v", pos, e)
			}
			pos = e.End()
			if e.Kind == disk.Data && i < 8 {
				img.ReadAt(buf[:min(e.Length, int64(len(buf)))], e.Offset)
			}
		}
		img.ReadAt(buf, img.Size()-100)
		check("fuzz.vhd", r, int64(len(data)))
	})
}
