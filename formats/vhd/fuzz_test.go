package vhd

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf16"

	"github.com/vmconv/vmconv/internal/testutil"
)

// smallDynamic is a dynamic VHD with 4 KiB blocks, one allocated, so the
// fuzzer has a small file with a live BAT to mutate.
func smallDynamic() []byte { return smallSparse(typeDynamic) }

// smallSparse is smallDynamic, or (typeDifferencing) a differencing disk
// whose block bitmap marks half its sectors and whose parent is named by
// the header and by W2ru and MacX locators.
func smallSparse(diskType uint32) []byte {
	const size, bs = 64 << 10, 4096
	ft := Footer{Features: 2, FileFormatVersion: 0x10000, DataOffset: 512, CurrentSize: size, OriginalSize: size,
		Cylinders: 65535, Heads: 16, SectorsPerTrack: 255, DiskType: diskType}
	copy(ft.Cookie[:], "conectix")
	copy(ft.CreatorApplication[:], "qem2")
	h := DynamicHeader{DataOffset: noOffset, TableOffset: 1536, HeaderVersion: 0x10000, MaxTableEntries: size / bs, BlockSize: bs}
	copy(h.Cookie[:], "cxsparse")
	b := make([]byte, 2048+512+bs+512)
	if diskType == typeDifferencing {
		b = append(b, make([]byte, 1024)...)
		h.ParentUniqueID[0] = 7
		for i, c := range utf16.Encode([]rune("parent.vhd")) {
			binary.BigEndian.PutUint16(h.ParentUnicodeName[i*2:], c)
		}
		locAt := len(b) - 512 - 1024
		rel := utf16le(`.\parent.vhd`)
		copy(b[locAt:], rel)
		mac := []byte("file://./parent.vhd")
		copy(b[locAt+512:], mac)
		h.ParentLocators[0] = ParentLocator{PlatformCode: platW2ru, PlatformDataSpace: 1, PlatformDataLength: uint32(len(rel)), PlatformDataOffset: uint64(locAt)}
		h.ParentLocators[1] = ParentLocator{PlatformCode: platMacX, PlatformDataSpace: 1, PlatformDataLength: uint32(len(mac)), PlatformDataOffset: uint64(locAt + 512)}
	}
	copy(b, ft.encode())
	copy(b[512:], h.encode())
	for i := 0; i < size/bs; i++ {
		binary.BigEndian.PutUint32(b[1536+i*4:], batUnused)
	}
	binary.BigEndian.PutUint32(b[1536+8:], 2048/512)
	b[2048] = 0xF0
	copy(b[2048+512:], bytes.Repeat([]byte("vhd!"), bs/4))
	copy(b[len(b)-512:], ft.encode())
	return b
}

// fuzzSeeds are VHDs qemu-img wrote (fixed with its geometry, fixed with
// force_size, dynamic without and with a data block) and our small
// dynamic and differencing disks.
func fuzzSeeds(f *testing.F) [][]byte {
	var out [][]byte
	for _, n := range []string{"fixed.vhd", "empty-dyn.vhd", "qemu-fixed-force.vhd", "qemu-dynamic.vhd.gz"} {
		b, err := os.ReadFile(filepath.Join("testdata", n))
		if err != nil {
			f.Fatal(err)
		}
		if filepath.Ext(n) == ".gz" {
			zr, err := gzip.NewReader(bytes.NewReader(b))
			if err != nil {
				f.Fatal(err)
			}
			if b, err = io.ReadAll(zr); err != nil {
				f.Fatal(err)
			}
		}
		out = append(out, b)
	}
	return append(out, smallDynamic(), smallSparse(typeDifferencing))
}

// FuzzOpen opens arbitrary bytes as a VHD (footer, header, BAT, parent
// locators), maps and reads what it accepts, and checks it: errors only,
// never a panic or a hang, and allocations bounded by the input's size.
func FuzzOpen(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// The BAT and the block bitmaps are read whole: at most the file.
		testutil.Bounded(t, 64<<20+16*uint64(len(data)), func() { fuzzOpen(t, data) })
	})
}

func fuzzOpen(t *testing.T, data []byte) {
	r := bytes.NewReader(data)
	img, err := newImage("fuzz.vhd", r, int64(len(data)))
	if err != nil {
		return
	}
	img.parentNames()
	if img.footer.DiskType == typeDifferencing {
		// A parent in memory, so that block bitmaps are read too.
		p := smallDynamic()
		img.parent, _ = newImage("parent.vhd", bytes.NewReader(p), int64(len(p)))
	}
	if err := testutil.WalkWindow(t, img, 0, 64<<20); err != nil {
		t.Fatal(err)
	}
	img.ReadAt(make([]byte, 16<<10), img.Size()-100)
	check("fuzz.vhd", r, int64(len(data)))
}
