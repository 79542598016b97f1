package xva

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/neutral"
)

// holeImage is an image of any size holding nothing (for metadata tests).
type holeImage struct{ size int64 }

func (h holeImage) ReadAt(p []byte, off int64) (int, error) { clear(p); return len(p), nil }
func (h holeImage) Size() int64                             { return h.size }
func (h holeImage) Close() error                            { return nil }
func (h holeImage) Extents(off, n int64) ([]disk.Extent, error) {
	end := min(off+n, h.size)
	if end <= off {
		return nil, nil
	}
	return []disk.Extent{{Offset: off, Length: end - off, Kind: disk.Unallocated}}, nil
}

// Real files are in testdata/fuzz/<target>/ (written by regenSeeds).
func ovaSeeds(f *testing.F) {
	f.Add(ovaXML(map[string]string{"Ref:a": "2097152", "Ref:b": "0"}, ""))
}

// FuzzOvaXML: parsing never panics, and whatever parses maps to a neutral
// VM whose ova.xml, as the writer renders it, parses again into the same VM.
func FuzzOvaXML(f *testing.F) {
	ovaSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		// Plain comparisons: testify's diff of large trees is too slow for
		// the fuzzer's minimizer.
		doc, err := ParseOvaXML(data)
		if err != nil {
			return
		}
		// Marshal is faithful to the parsed tree.
		again, err := ParseOvaXML(doc.Marshal())
		if err != nil {
			t.Fatalf("marshalled document does not parse: %v", err)
		}
		if !reflect.DeepEqual(toJSON(&doc.Version), toJSON(&again.Version)) || !reflect.DeepEqual(objectsByID(doc), objectsByID(again)) {
			t.Fatalf("marshalled document parses differently")
		}
		L, err := buildLayout(doc)
		if err != nil {
			return
		}
		vm, err := toNeutral(doc, L)
		if err != nil {
			return
		}
		// Through vm.json, as a bundle keeps it.
		js, err := json.Marshal(vm)
		if err != nil {
			t.Fatalf("vm.json: %v", err)
		}
		vm = &neutral.VM{}
		if err := json.Unmarshal(js, vm); err != nil {
			t.Fatalf("vm.json back: %v", err)
		}
		for i := range vm.Disks {
			if vm.Disks[i].Device == "disk" {
				vm.Disks[i].Image = holeImage{vm.Disks[i].CapacityBytes}
			}
		}
		out, _, err := fromNeutral(vm)
		if err != nil {
			return // e.g. cores-per-socket not dividing the vCPUs
		}
		doc2, err := ParseOvaXML(out.Marshal())
		if err != nil {
			t.Fatalf("writer output does not parse: %v", err)
		}
		L2, err := buildLayout(doc2)
		if err != nil {
			t.Fatalf("writer output does not lay out: %v", err)
		}
		vm2, err := toNeutral(doc2, L2)
		if err != nil {
			t.Fatalf("writer output does not map: %v", err)
		}
		if vm.Name != vm2.Name || vm.CPUs != vm2.CPUs || vm.MemoryMiB != vm2.MemoryMiB ||
			len(vm.Disks) != len(vm2.Disks) || len(vm.NICs) != len(vm2.NICs) {
			t.Fatalf("VM changed: %+v / %+v", *vm, *vm2)
		}
		for i := range vm.NICs {
			if vm.NICs[i].MAC != vm2.NICs[i].MAC {
				t.Fatalf("NIC %d: MAC %q became %q", i, vm.NICs[i].MAC, vm2.NICs[i].MAC)
			}
		}
	})
}

func tarSeeds(f *testing.F) {
	// A compact archive: a 1500-byte VDI in chunks of 1000 and 500 bytes.
	f.Add(buildTar(f, cat([]tentry{{name: "ova.xml", data: ovaXML(map[string]string{"Ref:a": "1500"}, "")}},
		chunkEntries("Ref:a", 0, bytes.Repeat([]byte{1}, 1000)), chunkEntries("Ref:a", 1, []byte("tail")))))
}

// FuzzTarWalk: the stream reader and the indexed reader never panic or
// hang on any archive, and agree on whether it is good.
func FuzzTarWalk(f *testing.F) {
	tarSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		streamErr := drainStream(bytes.NewReader(data))
		vm, _, err := openReaderAt(bytes.NewReader(data), int64(len(data)), nil, "fuzz")
		if err != nil {
			return
		}
		defer vm.Close()
		readErr := error(nil)
		for _, d := range vm.Disks {
			if d.Image == nil {
				continue
			}
			if _, err := d.Image.Extents(0, d.Image.Size()); err != nil {
				t.Fatalf("extents: %v", err)
			}
			// One byte of each chunk verifies them all.
			for _, c := range d.Image.(*Image).chunks {
				var b [1]byte
				if _, err := d.Image.ReadAt(b[:], c.off); err != nil && readErr == nil {
					readErr = err
				}
			}
		}
		if readErr == nil && streamErr != nil {
			t.Fatalf("indexed read succeeded, stream read failed: %v", streamErr)
		}
	})
}

// TestSeeds keeps the committed seeds readable (and regenerates them from
// the real writers when VMCONV_XVA_REGEN_SEEDS is set).
func TestSeeds(t *testing.T) {
	if os.Getenv("VMCONV_XVA_REGEN_SEEDS") != "" {
		regenSeeds(t)
	}
	ovas, _ := filepath.Glob("testdata/ova/*.xml")
	seeds, _ := filepath.Glob("testdata/seed/*.xva")
	require.NotEmpty(t, ovas)
	require.NotEmpty(t, seeds)
	for _, p := range ovas {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		doc, err := ParseOvaXML(b)
		require.NoError(t, err, p)
		_, err = buildLayout(doc)
		require.NoError(t, err, p)
	}
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		require.NoError(t, drainStream(bytes.NewReader(b)), p)
	}
}

// regenSeeds writes small real archives: xapi's layout with tiny disks (the
// last chunk is short, so the files stay small), and the ova.xml of Xen
// Orchestra's and xapi's layouts.
func regenSeeds(t *testing.T) {
	require.NoError(t, os.MkdirAll("testdata/seed", 0o755))
	require.NoError(t, os.MkdirAll("testdata/ova", 0o755))
	dir := t.TempDir()
	a := makeRaw(t, dir, rawSpec{name: "a", size: 1000, writes: map[int64]string{3: "abc"}})
	b := makeRaw(t, dir, rawSpec{name: "b", size: 3000, random: true})
	for _, format := range []string{"gnu", "pax"} {
		desc := map[string]any{
			"name": "seed", "uuid": "6f1c0f5e-2b7a-4b8e-9a55-0d3c7e1a9b21", "cpus": 2, "cores_per_socket": 1,
			"memory": 1 << 30, "firmware": "bios",
			"disks": []map[string]any{
				{"path": a, "ref": "Ref:9", "vbd": "Ref:14", "userdevice": 0, "name": "a", "bootable": true},
				{"path": b, "ref": "Ref:10", "vbd": "Ref:15", "userdevice": 1, "name": "b"},
			},
			"cd":     map[string]any{"vbd": "Ref:16", "userdevice": 3},
			"nics":   []map[string]any{{"ref": "Ref:20", "device": 0, "mac": "aa:00:00:00:00:01"}},
			"format": format,
		}
		p := writeXapi(t, dir, desc)
		data, err := os.ReadFile(p)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile("testdata/seed/xapi-"+format+".xva", trimTar(t, data), 0o644))
		if format == "gnu" {
			require.NoError(t, os.WriteFile("testdata/ova/xapi.xml", firstEntry(t, data), 0o644))
		}
	}
	xo, _ := makeXOFile(t)
	data, err := os.ReadFile(xo)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile("testdata/ova/xo.xml", firstEntry(t, data), 0o644))

	// The same files as fuzz corpus entries.
	for target, glob := range map[string]string{"FuzzOvaXML": "testdata/ova/*.xml", "FuzzTarWalk": "testdata/seed/*.xva"} {
		dir := filepath.Join("testdata/fuzz", target)
		require.NoError(t, os.MkdirAll(dir, 0o755))
		files, _ := filepath.Glob(glob)
		for _, p := range files {
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			entry := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
			require.NoError(t, os.WriteFile(filepath.Join(dir, "seed-"+filepath.Base(p)), []byte(entry), 0o644))
		}
	}
}

func firstEntry(t *testing.T, data []byte) []byte {
	tr := tar.NewReader(bytes.NewReader(data))
	_, err := tr.Next()
	require.NoError(t, err)
	b, err := io.ReadAll(tr)
	require.NoError(t, err)
	return b
}

// trimTar drops the zero padding after the end-of-archive blocks.
func trimTar(t *testing.T, data []byte) []byte {
	end := len(data)
	for end >= 512 && bytes.Count(data[end-512:end], []byte{0}) == 512 {
		end -= 512
	}
	return data[:min(len(data), end+1024)]
}
