package neutral

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmconv/vmconv/disk"
)

func addSeeds(f *testing.F, pattern string) {
	files, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed files %s", pattern)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func FuzzParseVM(f *testing.F) {
	addSeeds(f, "vm.json")
	if b, err := fullVM().MarshalIndent(); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"schema":1,"firmware":"uefi","cpus":1,"memory_mib":1,"disks":[{"id":"a","device":"cdrom","bus":"ide"}],"nics":[{"mac":""}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		vm, err := ParseVM(data, "vm.json")
		if err != nil {
			return
		}
		// Whatever parses re-encodes, and the encoding is stable.
		out, err := vm.MarshalIndent()
		if err != nil {
			t.Fatalf("valid VM does not encode: %v", err)
		}
		vm2, err := ParseVM(out, "vm.json")
		if err != nil {
			t.Fatalf("encoded VM does not parse: %v\n%s", err, out)
		}
		out2, err := vm2.MarshalIndent()
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("encoding not stable: %v\n%s\n%s", err, out, out2)
		}
	})
}

func FuzzChunkList(f *testing.F) {
	addSeeds(f, "disk*.json")
	var b bytes.Buffer
	if sampleList().encode(&b) == nil {
		f.Add(b.Bytes())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := parseChunkList(bytes.NewReader(data))
		if err != nil {
			return
		}
		if int64(len(l.data)) > chunkCount(l.VirtualSize) {
			t.Fatalf("%d data chunks for %d bytes", len(l.data), l.VirtualSize)
		}
		for i := 1; i < len(l.data); i++ {
			if l.data[i].index <= l.data[i-1].index {
				t.Fatalf("chunk indexes out of order")
			}
		}
		var out bytes.Buffer
		if err := l.encode(&out); err != nil {
			t.Fatal(err)
		}
		l2, err := parseChunkList(bytes.NewReader(out.Bytes()))
		if err != nil {
			t.Fatalf("re-encoded list does not parse: %v\n%s", err, out.Bytes())
		}
		if l2.Digest != l.Digest || len(l2.data) != len(l.data) || l2.VirtualSize != l.VirtualSize {
			t.Fatalf("round trip changed the list")
		}
		// Reading through the list never goes outside it.
		img := newBundleImage("b", l.ID, l, dirSource(t.TempDir()))
		exts, err := img.Extents(0, l.VirtualSize)
		if err != nil {
			t.Fatal(err)
		}
		var pos int64
		for _, e := range exts {
			if e.Offset != pos || e.Length <= 0 {
				t.Fatalf("extents not contiguous: %+v", exts)
			}
			pos = e.End()
		}
		if pos != l.VirtualSize {
			t.Fatalf("extents end at %d, size %d", pos, l.VirtualSize)
		}
	})
}

// FuzzBundleTar opens arbitrary bytes as a bundle tar and reads every disk:
// errors are fine, panics, hangs and unbounded allocations are not.
func FuzzBundleTar(f *testing.F) {
	addSeeds(f, "*.vmb.tar")
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "f.vmb.tar")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		vm, err := OpenBundle(p)
		if err != nil {
			return
		}
		defer vm.Close()
		buf := make([]byte, 64<<10)
		for _, d := range vm.Disks {
			if d.Image == nil {
				continue
			}
			exts, err := d.Image.Extents(0, d.Image.Size())
			if err != nil {
				t.Fatal(err)
			}
			// Read the start of each data extent, at most a few.
			for i, e := range exts {
				if i > 8 {
					break
				}
				if e.Kind == disk.Data {
					d.Image.ReadAt(buf[:min(int64(len(buf)), e.Length)], e.Offset)
				}
			}
		}
	})
}
