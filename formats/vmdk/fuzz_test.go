package vmdk

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/disk/disktest"
)

func fuzzSeeds(f *testing.F, names ...string) {
	for _, n := range names {
		f.Add(testdataFile(f, n))
	}
}

// FuzzSparse opens arbitrary bytes as a sparse extent (header, footer, grain
// directory and tables, embedded descriptor) and reads through whatever it
// accepts: no panic, no unbounded allocation, errors only.
func FuzzSparse(f *testing.F) {
	fuzzSeeds(f, "monolithicSparse.vmdk", "streamOptimized.vmdk", "child.vmdk", "vmdkstream.vmdk")
	f.Add(ourStream(f, testdataFile(f, "src.raw")))
	f.Add(smallStream())
	f.Fuzz(fuzzSparse)
}

func fuzzSparse(t *testing.T, data []byte) {
	{
		r := bytes.NewReader(data)
		sp, err := openSparse("fuzz.vmdk", r, int64(len(data)))
		if err != nil {
			return
		}
		img := &Image{path: "fuzz.vmdk"}
		if err := img.fromSparse(sp, r); err != nil {
			return
		}
		img.fillInfo()
		ext, err := img.Extents(0, img.Size())
		if err != nil {
			t.Fatal(err)
		}
		var pos int64
		buf := make([]byte, 8<<10)
		reads := 0
		for _, e := range ext {
			if e.Offset != pos || e.Length <= 0 {
				t.Fatalf("extents not contiguous at %#x: %+v", pos, e)
			}
			pos = e.End()
			if e.Kind == disk.Data && reads < 8 {
				reads++
				n := min(e.Length, int64(len(buf)))
				img.ReadAt(buf[:n], e.Offset)
			}
		}
		if pos != img.Size() {
			t.Fatalf("extents end at %#x, size %#x", pos, img.Size())
		}
		img.ReadAt(buf, 0)
		img.ReadAt(buf, img.Size()-100)
		Check2(t, data)
	}
}

// Check2 runs the structural checker on data through a temporary file.
func Check2(t *testing.T, data []byte) {
	c := &checker{res: &CheckResult{}}
	c.sparse("fuzz.vmdk", bytes.NewReader(data), int64(len(data)))
}

// FuzzDescriptor parses arbitrary text as a descriptor; what parses must
// survive a format and re-parse unchanged.
func FuzzDescriptor(f *testing.F) {
	fuzzSeeds(f, "flat.vmdk", "split.vmdk")
	f.Add([]byte("# Disk DescriptorFile\r\nversion=1\r\nCID=1\r\ncreateType=\"custom\"\r\nRW 8 FLAT \"a b\"c\" 4\r\nRDONLY 1 ZERO\r\nddb.uuid = \"x\"\r\n"))
	f.Add(testdataFile(f, "monolithicSparse.vmdk")[512 : 21*512])
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseDescriptor("fuzz.vmdk", data)
		if err != nil {
			return
		}
		d2, err := ParseDescriptor("fuzz.vmdk", d.format())
		if err != nil {
			t.Fatalf("re-parse of formatted descriptor: %v\n%s", err, d.format())
		}
		if len(d2.Extents) != len(d.Extents) || d2.CID != d.CID || d2.ParentCID != d.ParentCID || d2.CreateType != d.CreateType {
			t.Fatalf("round trip changed the descriptor:\n%+v\n%+v", d, d2)
		}
		for i := range d.Extents {
			a, b := d.Extents[i], d2.Extents[i]
			if a.Type != "FLAT" {
				a.Offset, b.Offset = 0, 0
			}
			if a != b {
				t.Fatalf("extent %d changed: %+v → %+v", i, a, b)
			}
		}
	})
}

// FuzzStream reads arbitrary bytes as a streamOptimized stream.
func FuzzStream(f *testing.F) {
	fuzzSeeds(f, "streamOptimized.vmdk", "vmdkstream.vmdk")
	f.Add(ourStream(f, testdataFile(f, "src.raw")))
	f.Add(smallStream())
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := OpenStream(bytes.NewReader(data))
		if err != nil {
			return
		}
		last := int64(-1)
		for i := 0; i < 1000; i++ {
			off, p, err := st.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				return
			}
			if off <= last || off+int64(len(p)) > st.Size() {
				t.Fatalf("run at %#x+%d out of order or past size %d", off, len(p), st.Size())
			}
			last = off
		}
	})
}

// smallStream is a hand-built stream of a few sectors, so the fuzzer has a
// small input to mutate besides the real files.
func smallStream() []byte {
	return streamFile(2048, []streamGrain{{0, zlibOf([]byte("vmconv"))}, {256, zlibOf(make([]byte, 64<<10))}},
		metaSector(1, markerFooter), make([]byte, sectorSize), metaSector(0, markerEOS))
}

// FuzzESX opens arbitrary bytes as an ESXi delta extent (vmfsSparse when
// seSparse is false) and walks and reads whatever it accepts: no panic, no
// allocation beyond the file's size, extents that tile the disk.
func FuzzESX(f *testing.F) {
	const size = 256 << 10
	f.Add(false, buildCOWD(delta{kindsOf(size/512, "uddu"), disktest.Pattern(size, 1)}, 1))
	f.Add(false, buildCOWD(delta{kindsOf(size/4096, "dud"), disktest.Pattern(size, 1)}, 8))
	f.Add(true, buildSESparse(delta{kindsOf(size/4096, "udzmdd"), disktest.Pattern(size, 1)}))
	f.Fuzz(func(t *testing.T, seSparse bool, data []byte) {
		typ := "VMFSSPARSE"
		if seSparse {
			typ = "SESPARSE"
		}
		e, err := openESX(typ, "fuzz.vmdk", bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		img := &Image{path: "fuzz.vmdk", size: e.capBytes,
			exts: []*vext{{start: 0, end: e.capBytes, kind: extESX, esx: e, path: "fuzz.vmdk"}}}
		ext, err := img.Extents(0, img.Size())
		if err == nil {
			var pos int64
			for _, x := range ext {
				if x.Offset != pos || x.Length <= 0 {
					t.Fatalf("extents not contiguous at %#x: %+v", pos, x)
				}
				pos = x.End()
			}
			if pos != img.Size() {
				t.Fatalf("extents end at %#x, size %#x", pos, img.Size())
			}
		}
		buf := make([]byte, 64<<10)
		img.ReadAt(buf, 0)
		img.ReadAt(buf, max(0, img.Size()-int64(len(buf))/2))
		c := &checker{res: &CheckResult{}}
		c.esx(1, ExtentLine{Type: typ, Sectors: 1}, "fuzz.vmdk", bytes.NewReader(data), int64(len(data)))
	})
}

// FuzzCapacity: any file given as a VMDK whose extents are not here gives a
// size within the format's bounds or an error, never a panic.
func FuzzCapacity(f *testing.F) {
	fuzzSeeds(f, "flat.vmdk", "split.vmdk", "child.vmdk")
	f.Add(testdataFile(f, "monolithicSparse.vmdk")[:21*512])
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "d.vmdk")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		n, err := Capacity(p)
		if err != nil {
			return
		}
		if n < 0 || n > maxCapacitySectors*sectorSize || n%sectorSize != 0 {
			t.Fatalf("capacity %d bytes", n)
		}
	})
}
