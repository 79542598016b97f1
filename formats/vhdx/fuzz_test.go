package vhdx

import (
	"bytes"
	"testing"

	"github.com/vmconv/vmconv/disk"
)

// FuzzOpen opens arbitrary bytes as a VHDX (identifier, headers, region
// tables, metadata, BAT), maps and reads what it accepts, and checks it.
// The seed is our own writer's output: qemu-img's smallest VHDX is 4 MiB
// too, as the layout puts the BAT at 3 MiB.
func FuzzOpen(f *testing.F) {
	f.Add(smallImage(f))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		img, err := newImage("fuzz.vhdx", r, int64(len(data)))
		if err != nil {
			return
		}
		ext, err := img.Extents(0, 64<<20)
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
		check("fuzz.vhdx", r, int64(len(data)))
	})
}
