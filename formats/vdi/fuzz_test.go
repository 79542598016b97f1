package vdi

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmconv/vmconv/internal/testutil"
)

// smallVDI is a dynamic VDI with 4 KiB blocks, each behind extra bytes of
// private data: a disk of 6.5 blocks whose map holds data blocks out of
// order (entries 0, 3, 4, 6 hold data blocks 2, 0, 1, 3), a zero block (2)
// and unallocated ones (1, 5). The file ends where the disk does, half way
// into the last data block. want is the disk's contents.
func smallVDI(extra uint32) (file, want []byte) {
	const bs, size = 4096, 6*4096 + 2048
	h := Header{Signature: signature, Version: version11, HeaderSize: headerSize1Plus, ImageType: typeDynamic,
		OffsetBmap: 0x200, OffsetData: 0x400, Legacy: Geometry{SectorSize: sectorSize}, DiskSize: size,
		BlockSize: bs, BlockExtra: extra, BlocksInImage: 7, BlocksAllocated: 4,
		UUIDImage: [16]byte{0: 1, 15: 1}, UUIDLastSnap: [16]byte{0: 2, 15: 2}, LCHS: Geometry{SectorSize: sectorSize}}
	copy(h.Text[:], textVirtualBox)
	bmap := []uint32{2, unallocated, zeroBlock, 0, 1, unallocated, 3}
	per := bs + int(extra)
	file = make([]byte, 0x400+3*per+int(extra)+bs/2)
	copy(file, h.encode())
	want = make([]byte, size)
	for i, e := range bmap {
		binary.LittleEndian.PutUint32(file[0x200+4*i:], e)
		if e == unallocated || e == zeroBlock {
			continue
		}
		at := 0x400 + int(e)*per
		copy(file[at:at+int(extra)], bytes.Repeat([]byte{0xEE}, int(extra))) // never read
		for j := 0; j < min(bs, size-i*bs); j++ {
			v := byte(i*16 + j%13 + 1)
			file[at+int(extra)+j], want[i*bs+j] = v, v
		}
	}
	return file, want
}

// fuzzSeeds are VDIs qemu-img wrote (an empty 10 MiB one; dynamic and
// static 4 KiB disks with data, their files cut where the disk ends) and
// the small hand-made images with 4 KiB blocks.
func fuzzSeeds(f *testing.F) [][]byte {
	var out [][]byte
	for _, n := range []string{"qemu-empty.vdi", "qemu-4k.vdi", "qemu-static-4k.vdi"} {
		b, err := os.ReadFile(filepath.Join("testdata", n))
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	for _, extra := range []uint32{0, 512} {
		b, _ := smallVDI(extra)
		out = append(out, b)
	}
	return out
}

// FuzzOpen opens arbitrary bytes as a VDI (header, block map), maps and
// reads what it accepts, and checks it: errors only, never a panic or a
// hang, and allocations bounded by the input's size.
func FuzzOpen(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// The map is held three times over (its bytes, its entries, the
		// owner of each data block): a few times the file.
		testutil.Bounded(t, 64<<20+16*uint64(len(data)), func() { fuzzOpen(t, data) })
	})
}

func fuzzOpen(t *testing.T, data []byte) {
	r := bytes.NewReader(data)
	img, err := newImage("fuzz.vdi", r, int64(len(data)))
	if err != nil {
		return
	}
	if err := testutil.WalkWindow(t, img, 0, 64<<20); err != nil {
		t.Fatal(err)
	}
	if err := testutil.WalkWindow(t, img, max(0, img.Size()-3<<20), 64<<20); err != nil {
		t.Fatal(err)
	}
	img.ReadAt(make([]byte, 16<<10), img.Size()-100)
	img.Info()
	if _, err := check("fuzz.vdi", r, int64(len(data))); err != nil {
		t.Fatalf("Check fails on an image that opens: %v", err)
	}
}
