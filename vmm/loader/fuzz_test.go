package loader

import (
	"bytes"
	"os"
	"testing"

	"github.com/vmconv/vmconv/vmm/internal/probe"
)

// FuzzLoad feeds arbitrary kernels to the loader: it must return an error or
// a kernel, never panic or allocate without bound.
func FuzzLoad(f *testing.F) {
	elfBytes, err := os.ReadFile(probe.ELF(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(elfBytes)
	for _, c := range []string{"gzip", "xz", "lz4", "zstd"} {
		f.Add(probe.BzImage(probe.Compress(f, c, elfBytes)))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := Load(bytes.NewReader(b), int64(len(b)))
		if err == nil && len(k.Segments) == 0 {
			t.Fatal("kernel without segments")
		}
	})
}
