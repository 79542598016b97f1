package initramfs

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/vmconv/vmconv/internal/testutil"
)

// FuzzRead feeds Read arbitrary images, seeded with real ones (testdata:
// GNU cpio archives compressed by the gzip, xz, zstd and lz4 CLIs, an early
// microcode cpio in front). Bad input must give an error, within bounds.
func FuzzRead(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.img")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
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
