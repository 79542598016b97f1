package initramfs

import (
	"testing"

	"github.com/vmconv/vmconv/internal/testutil"
)

// FuzzRead feeds Read arbitrary images, seeded with real ones
// (testdata/fuzz/FuzzRead: an early-microcode cpio then a cpio compressed
// by the gzip, xz, zstd, lz4 -l, bzip2 and lzma CLIs; a plain GNU cpio).
// Bad input must give an error, within bounds.
func FuzzRead(f *testing.F) {
	lim := Limits{MaxBytes: 8 << 20, MaxEntries: 1000, MaxKeep: 64 << 10, MaxKept: 1 << 20}
	f.Fuzz(func(t *testing.T, data []byte) {
		testutil.Bounded(t, 96<<20, func() {
			im, err := Read(data, lim)
			if err != nil {
				return
			}
			if len(im.Entries) > lim.MaxEntries {
				t.Fatalf("%d entries, more than the bound", len(im.Entries))
			}
			for _, e := range im.Entries {
				im.ReadFile(e.Name, 1<<20)
			}
		})
	})
}
