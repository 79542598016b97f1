package xva

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/neutral"
	"github.com/vmconv/vmconv/internal/testutil"
)

// rawSpec describes a test disk: size, then data written at offsets;
// random fills the whole disk with random bytes.
type rawSpec struct {
	name   string
	size   int64
	random bool
	writes map[int64]string
}

func makeRaw(t *testing.T, dir string, s rawSpec) string {
	t.Helper()
	p := filepath.Join(dir, s.name+".raw")
	f, err := os.Create(p)
	require.NoError(t, err)
	defer f.Close()
	if s.random {
		_, err = io.CopyN(f, rand.Reader, s.size)
		require.NoError(t, err)
	}
	require.NoError(t, f.Truncate(s.size))
	for off, data := range s.writes {
		_, err := f.WriteAt([]byte(data), off)
		require.NoError(t, err)
	}
	return p
}

// sha256Padded hashes a file's bytes followed by zeros up to size.
func sha256Padded(t *testing.T, path string, size int64) string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	require.NoError(t, err)
	require.LessOrEqual(t, n, size)
	_, err = io.CopyN(h, zeroReader{}, size-n)
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// sha256Image hashes an image read through ReadAt in odd-sized pieces.
func sha256Image(t *testing.T, img disk.Image) string {
	t.Helper()
	h := sha256.New()
	buf := make([]byte, 300_007)
	for off := int64(0); off < img.Size(); {
		n := min(int64(len(buf)), img.Size()-off)
		k, err := img.ReadAt(buf[:n], off)
		require.NoError(t, err)
		require.EqualValues(t, n, k)
		h.Write(buf[:n])
		off += n
	}
	return hex.EncodeToString(h.Sum(nil))
}

// sha256Stream hashes a disk.Stream, zeros where it returns no run.
func sha256Stream(t *testing.T, s disk.Stream) string {
	t.Helper()
	h := sha256.New()
	pos := int64(0)
	for {
		off, p, err := s.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		require.GreaterOrEqual(t, off, pos)
		_, _ = io.CopyN(h, zeroReader{}, off-pos)
		h.Write(p)
		pos = off + int64(len(p))
	}
	_, _ = io.CopyN(h, zeroReader{}, s.Size()-pos)
	return hex.EncodeToString(h.Sum(nil))
}

func python(t *testing.T) string {
	t.Helper()
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		py = testutil.RequireTool(t, "python3")
	}
	if err := exec.Command(py, "-c", "import xxhash").Run(); err != nil {
		testutil.Unavailable(t, "python3-xxhash is not installed")
	}
	return py
}

// checkWithPython runs testdata/checkxva.py, the reader not written in Go.
func checkWithPython(t *testing.T, path string) map[string]struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	Chunks int    `json:"chunks"`
} {
	t.Helper()
	out, err := exec.Command(python(t), "testdata/checkxva.py", path).Output()
	var stderr []byte
	if ee, ok := err.(*exec.ExitError); ok {
		stderr = ee.Stderr
	}
	require.NoError(t, err, "checkxva.py: %s", stderr)
	var res map[string]struct {
		SHA256 string `json:"sha256"`
		Size   int64  `json:"size"`
		Chunks int    `json:"chunks"`
	}
	require.NoError(t, json.Unmarshal(out, &res))
	return res
}

func xoWriter(t *testing.T) string {
	t.Helper()
	node := testutil.RequireTool(t, "node")
	if _, err := os.Stat("testdata/xo/node_modules/@xen-orchestra/xva/_writeDisk.mjs"); err != nil {
		testutil.Unavailable(t, "Xen Orchestra's writer is not installed (npm ci --prefix formats/xva/testdata/xo)")
	}
	return node
}

type xoDesc struct {
	VM       map[string]any   `json:"vm"`
	Disks    []map[string]any `json:"disks"`
	SR       map[string]any   `json:"sr"`
	Network  map[string]any   `json:"network"`
	Networks []map[string]any `json:"networks"`
}

// writeXO writes an XVA with Xen Orchestra's writer.
func writeXO(t *testing.T, dir string, desc xoDesc) string {
	t.Helper()
	node := xoWriter(t)
	dp := filepath.Join(dir, "xo.json")
	b, err := json.Marshal(desc)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(dp, b, 0o644))
	out := filepath.Join(dir, "xo.xva")
	cmd := exec.Command(node, "testdata/xo/write-xva.mjs", dp, out)
	msg, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", msg)
	return out
}

// writeXapi writes an XVA in xapi's layout with testdata/mkxva_xapi.py.
func writeXapi(t *testing.T, dir string, desc map[string]any) string {
	t.Helper()
	py := python(t)
	dp := filepath.Join(dir, "xapi.json")
	b, err := json.Marshal(desc)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(dp, b, 0o644))
	out := filepath.Join(dir, "xapi.xva")
	msg, err := exec.Command(py, "testdata/mkxva_xapi.py", dp, out).CombinedOutput()
	require.NoError(t, err, "%s", msg)
	return out
}

var xoDisks = []rawSpec{
	{name: "full", size: 3_000_000, random: true},                                                      // random, not a MiB multiple
	{name: "sparse", size: 5<<20 + 4321, writes: map[int64]string{2_000_000: "hello", 5 << 20: "end"}}, // sparse, data in the short tail
	{name: "empty", size: 2<<20 + 17},                                                                  // all zeros
}

func makeXOFile(t *testing.T) (string, []string) {
	dir := t.TempDir()
	var paths []string
	desc := xoDesc{
		VM:       map[string]any{"name_label": "web01", "memory": 2 << 30, "nCpus": 2, "firmware": "uefi"},
		SR:       map[string]any{"name_label": "Local storage", "uuid": "c8e2b6a1-1111-4c1d-8f2e-3a4b5c6d7e8f"},
		Network:  map[string]any{"name_label": "Pool-wide network associated with eth0", "uuid": "7f6e5d4c-3b2a-4190-8f7e-6d5c4b3a2910"},
		Networks: []map[string]any{{"macAddress": "00:50:56:01:02:03", "isGenerated": false}, {"macAddress": "02:AA:bb:cc:dd:ee", "isGenerated": true}},
	}
	for _, s := range xoDisks {
		p := makeRaw(t, dir, s)
		paths = append(paths, p)
		desc.Disks = append(desc.Disks, map[string]any{"path": p, "name_label": s.name})
	}
	return writeXO(t, dir, desc), paths
}

func TestReadXenOrchestraXVA(t *testing.T) {
	xva, raws := makeXOFile(t)
	vm, err := Open(xva)
	require.NoError(t, err)
	defer vm.Close()

	assert.Equal(t, "web01", vm.Name)
	assert.Equal(t, 2, vm.CPUs)
	assert.EqualValues(t, 2048, vm.MemoryMiB)
	assert.Equal(t, "uefi", vm.Firmware)
	require.Len(t, vm.NICs, 2)
	assert.Equal(t, "00:50:56:01:02:03", vm.NICs[0].MAC)
	assert.Equal(t, "02:AA:bb:cc:dd:ee", vm.NICs[1].MAC) // exactly as written
	assert.Equal(t, "Pool-wide network associated with eth0", vm.NICs[0].Network)
	require.Len(t, vm.Disks, len(xoDisks))
	for i, d := range vm.Disks {
		s := xoDisks[i]
		// Xen Orchestra starts userdevice at 1 and rounds virtual_size up to a MiB.
		assert.Equal(t, diskID(i+1), d.ID)
		assert.Equal(t, i+1, d.Unit)
		assert.Equal(t, "disk", d.Device)
		aligned := (s.size + mib - 1) / mib * mib
		assert.Equal(t, aligned, d.CapacityBytes)
		require.NotNil(t, d.Image)
		assert.Equal(t, sha256Padded(t, raws[i], aligned), sha256Image(t, d.Image), "disk %s", s.name)
		want, err := disk.Digest(context.Background(), disk.FromReaderAt(paddedReader(t, raws[i], aligned), aligned), disk.CopyOptions{})
		require.NoError(t, err)
		got, err := disk.Digest(context.Background(), d.Image, disk.CopyOptions{})
		require.NoError(t, err)
		assert.Equal(t, want, got, "digest of disk %s", s.name)
	}
	// The empty disk has only its first and last chunk.
	ext, err := vm.Disks[2].Image.Extents(0, vm.Disks[2].Image.Size())
	require.NoError(t, err)
	var data int64
	for _, e := range ext {
		if e.Kind == disk.Data {
			data += e.Length
		}
	}
	assert.EqualValues(t, 2*mib, data)

	// One pass, plain and compressed (gzip by Go, zstd by the zstd tool).
	variants := map[string]string{"plain": xva}
	gz := xva + ".gz"
	gzf, err := os.Create(gz)
	require.NoError(t, err)
	zw := gzip.NewWriter(gzf)
	src, err := os.Open(xva)
	require.NoError(t, err)
	_, err = io.Copy(zw, src)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	require.NoError(t, gzf.Close())
	src.Close()
	variants["gzip"] = gz
	if zstdTool, err := exec.LookPath("zstd"); err == nil {
		require.NoError(t, exec.Command(zstdTool, "-q", "-3", xva, "-o", xva+".zst").Run())
		variants["zstd"] = xva + ".zst"
	} else {
		t.Run("zstd", func(t *testing.T) { testutil.Unavailable(t, "zstd is not installed") })
	}
	for name, p := range variants {
		t.Run(name, func(t *testing.T) {
			f, err := os.Open(p)
			require.NoError(t, err)
			defer f.Close()
			head := make([]byte, 4096)
			n, _ := io.ReadFull(f, head)
			if name == "plain" {
				assert.True(t, Detect(head[:n]))
			} else {
				assert.False(t, Detect(head[:n]))
				assert.True(t, DetectCompressed(head[:n]))
				_, err := Open(p)
				assert.ErrorIs(t, err, ErrCompressed)
			}
			_, err = f.Seek(0, 0)
			require.NoError(t, err)
			sr, err := NewStreamReader(f)
			require.NoError(t, err)
			defer sr.Close()
			assert.Equal(t, "web01", sr.VM().Name)
			seen := 0
			for {
				id, s, err := sr.NextDisk()
				if err == io.EOF {
					break
				}
				require.NoError(t, err)
				i := unitFromID(id) - 1
				require.True(t, i >= 0 && i < len(raws), id)
				assert.Equal(t, sha256Padded(t, raws[i], s.Size()), sha256Stream(t, s), "disk %s", id)
				seen++
			}
			assert.Equal(t, len(raws), seen)
		})
	}
}

func paddedReader(t *testing.T, path string, size int64) io.ReaderAt {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return bytes.NewReader(append(b, make([]byte, size-int64(len(b)))...))
}

// xapiDesc is a VM in xapi's layout: VDI ids Ref:9 and Ref:10 stream in
// string order (Ref:10 first) while userdevice puts Ref:9 first; chunk 1 of
// Ref:9 is followed by a 0-byte keep-alive entry, so later chunk numbers run
// ahead of their offsets.
func xapiDesc(t *testing.T, dir, format string) (map[string]any, []string) {
	root := makeRaw(t, dir, rawSpec{name: "root", size: 7_340_035, writes: map[int64]string{
		0: "boot sector", 1_500_000: "one", 6_000_000: "tail", 7_340_030: "last!"}})
	data := makeRaw(t, dir, rawSpec{name: "data", size: 5 << 20, random: true})
	return map[string]any{
		"name": "db01", "uuid": "6f1c0f5e-2b7a-4b8e-9a55-0d3c7e1a9b21", "cpus": 4, "cores_per_socket": 2,
		"memory": 4<<30 + 12345, "firmware": "bios", "pv_args": "console=hvc0\nquiet & <fast>",
		"disks": []map[string]any{
			{"path": root, "ref": "Ref:9", "vbd": "Ref:14", "userdevice": 0, "name": "root", "bootable": true, "keepalive": []int{1}},
			{"path": data, "ref": "Ref:10", "vbd": "Ref:15", "userdevice": 1, "name": "data", "mode": "RO"},
		},
		"cd":     map[string]any{"vbd": "Ref:16", "userdevice": 3},
		"nics":   []map[string]any{{"ref": "Ref:21", "device": 1, "mac": "aa:00:00:00:00:02"}, {"ref": "Ref:20", "device": 0, "mac": "AA:00:00:00:00:01"}},
		"format": format,
	}, []string{root, data}
}

func TestReadXapiLayoutXVA(t *testing.T) {
	for _, format := range []string{"gnu", "pax", "ustar"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			desc, raws := xapiDesc(t, dir, format)
			xva := writeXapi(t, dir, desc)
			vm, err := Open(xva)
			require.NoError(t, err)
			defer vm.Close()
			assert.Equal(t, "db01", vm.Name)
			assert.Equal(t, "6f1c0f5e-2b7a-4b8e-9a55-0d3c7e1a9b21", vm.UUID)
			assert.Equal(t, 4, vm.CPUs)
			assert.Equal(t, 2, vm.CoresPerSocket)
			assert.EqualValues(t, 4096+1, vm.MemoryMiB) // rounded up
			assert.Equal(t, "bios", vm.Firmware)
			assert.Equal(t, "Debian Bullseye 11", vm.GuestOS)
			require.NotNil(t, vm.Boot)
			assert.Equal(t, "console=hvc0\nquiet & <fast>", vm.Boot.Cmdline)
			require.Len(t, vm.Disks, 3)
			assert.Equal(t, []string{"xvda", "xvdb", "xvdd"}, []string{vm.Disks[0].ID, vm.Disks[1].ID, vm.Disks[2].ID})
			assert.True(t, vm.Disks[0].Bootable)
			assert.False(t, vm.Disks[1].Bootable)
			assert.True(t, vm.Disks[1].ReadOnly)
			assert.Equal(t, "cdrom", vm.Disks[2].Device)
			assert.Nil(t, vm.Disks[2].Image)
			assert.EqualValues(t, 7_340_035, vm.Disks[0].CapacityBytes)
			for i, raw := range raws {
				assert.Equal(t, sha256Padded(t, raw, vm.Disks[i].CapacityBytes), sha256Image(t, vm.Disks[i].Image), "disk %d", i)
			}
			require.Len(t, vm.NICs, 2)
			assert.Equal(t, "AA:00:00:00:00:01", vm.NICs[0].MAC) // device 0 first
			assert.Equal(t, "aa:00:00:00:00:02", vm.NICs[1].MAC)

			f, err := os.Open(xva)
			require.NoError(t, err)
			defer f.Close()
			sr, err := NewStreamReader(f)
			require.NoError(t, err)
			var order []string
			for {
				id, s, err := sr.NextDisk()
				if err == io.EOF {
					break
				}
				require.NoError(t, err)
				order = append(order, id)
				i := map[string]int{"xvda": 0, "xvdb": 1}[id]
				assert.Equal(t, sha256Padded(t, raws[i], s.Size()), sha256Stream(t, s), "disk %s", id)
			}
			assert.Equal(t, []string{"xvdb", "xvda"}, order, "archive order is VDI id string order")
		})
	}
}

// newRawVM builds a neutral VM over raw disk files, as a VMX source would.
func newRawVM(t *testing.T, paths []string) *neutral.VM {
	vm := &neutral.VM{Schema: 1, Name: "from-vmware", Firmware: "bios", CPUs: 2, CoresPerSocket: 1, MemoryMiB: 1024,
		GuestOS:    "debian11-64",
		NICs:       []neutral.NIC{{MAC: "00:0c:29:aa:bb:cc", Network: "VM Network", Model: "vmxnet3"}},
		Extensions: neutral.Extensions{VMware: map[string]string{"ethernet0.addressType": "static", "vmci0.present": "TRUE"}}}
	for i, p := range paths {
		img, err := disk.OpenRaw(p)
		require.NoError(t, err)
		vm.Disks = append(vm.Disks, neutral.Disk{ID: "scsi0:" + string(rune('0'+i)), Device: "disk", Bus: "scsi", Unit: 0,
			CapacityBytes: img.Size(), Bootable: i == 0, Image: img})
	}
	vm.Disks = append(vm.Disks, neutral.Disk{ID: "ide1:0", Device: "cdrom", Bus: "ide"})
	t.Cleanup(func() { vm.Close() })
	return vm
}

func TestWriteCheckedByPython(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	specs := []rawSpec{
		{name: "boot", size: 3<<20 + 5, writes: map[int64]string{0: "MBR", 1 << 20: "x"}}, // short last chunk, zero
		{name: "rand", size: 2_500_000, random: true},
		{name: "zero", size: 4 << 20}, // only first and last chunk
		{name: "tiny", size: 1000, writes: map[int64]string{10: "y"}},
		{name: "void", size: 0},
	}
	for _, s := range specs {
		paths = append(paths, makeRaw(t, dir, s))
	}
	for _, tc := range []struct{ checksum, compress string }{{"sha1", "off"}, {"xxhash", "off"}, {"sha1", "gzip"}, {"xxhash", "zstd"}} {
		t.Run(tc.checksum+"/"+tc.compress, func(t *testing.T) {
			vm := newRawVM(t, paths)
			opt, err := ParseOptions(map[string]string{"checksum": tc.checksum, "compress": tc.compress})
			require.NoError(t, err)
			out := filepath.Join(t.TempDir(), "out.xva")
			f, err := os.Create(out)
			require.NoError(t, err)
			// A pipe-like writer: Write must never seek.
			require.NoError(t, Write(context.Background(), struct{ io.Writer }{f}, vm, opt, disk.CopyOptions{}))
			require.NoError(t, f.Close())

			res := checkWithPython(t, out)
			if tc.compress != "off" {
				out = decompressed(t, out, tc.compress)
			}
			back, err := Open(out)
			require.NoError(t, err)
			defer back.Close()
			require.Len(t, back.Disks, len(specs)+1)
			for i, s := range specs {
				d := back.Disks[i]
				ref := back.Extensions.Xen[extDisks].(map[string]any)[d.ID].(map[string]any)["vdi"].(map[string]any)["id"].(string)
				assert.Equal(t, vm.Disks[i].ID, d.ID)
				r, ok := res[ref]
				if s.size == 0 {
					assert.False(t, ok, "a 0-byte VDI has no chunks")
					assert.EqualValues(t, 0, d.CapacityBytes)
					continue
				}
				require.True(t, ok, "python saw VDI %s", ref)
				assert.Equal(t, s.size, r.Size)
				assert.Equal(t, sha256Padded(t, paths[i], s.size), r.SHA256, "disk %s", s.name)
				assert.Equal(t, i == 0, d.Bootable)
			}
			zeroRef := back.Extensions.Xen[extDisks].(map[string]any)["scsi0:2"].(map[string]any)["vdi"].(map[string]any)["id"].(string)
			assert.Equal(t, 2, res[zeroRef].Chunks, "zero disk: first and last chunk only")
			assert.Equal(t, "cdrom", back.Disks[len(specs)].Device)
			assert.Equal(t, "00:0c:29:aa:bb:cc", back.NICs[0].MAC)
			assert.Equal(t, "VM Network", back.NICs[0].Network)
			assert.Equal(t, 2, back.CPUs)
			assert.EqualValues(t, 1024, back.MemoryMiB)
			// What ova.xml has no field for comes back from other_config.
			assert.Equal(t, "debian11-64", back.GuestOS)
			assert.Equal(t, map[string]string{"ethernet0.addressType": "static", "vmci0.present": "TRUE"}, back.Extensions.VMware)
			for i, d := range vm.Disks {
				assert.Equal(t, d.ID, back.Disks[i].ID)
				assert.Equal(t, d.Bus, back.Disks[i].Bus)
				assert.Equal(t, d.Unit, back.Disks[i].Unit)
			}
			assert.Equal(t, "vmxnet3", back.NICs[0].Model)
			// Disks in slots 0, 1, 2, 4, 5; the CD drive in xapi's slot 3.
			doc := readOva(t, out)
			var slots []string
			for i := range doc.Objects {
				if o := &doc.Objects[i]; o.Class == "VBD" {
					typ, _ := o.Snapshot.Get("type")
					ud, _ := o.Snapshot.Get("userdevice")
					slots = append(slots, typ.Text+":"+ud.Text)
				}
			}
			assert.Equal(t, []string{"Disk:0", "Disk:1", "Disk:2", "Disk:4", "Disk:5", "CD:3"}, slots)

			ents := tarNames(t, out)
			ext := "." + map[string]string{"sha1": ChecksumSHA1, "xxhash": ChecksumXXHash}[tc.checksum]
			for _, n := range ents[1:] {
				if filepath.Ext(n) != "" {
					assert.Equal(t, ext, filepath.Ext(n))
				}
			}
		})
	}
}

func tarNames(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	tr := tar.NewReader(f)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		require.NoError(t, err)
		names = append(names, h.Name)
	}
}

// decompressed writes the plain tar of a compressed export beside it, after
// checking that the file starts with the compression's magic.
func decompressed(t *testing.T, path, kind string) string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	head := make([]byte, 4)
	_, err = io.ReadFull(f, head)
	require.NoError(t, err)
	_, err = f.Seek(0, io.SeekStart)
	require.NoError(t, err)
	var r io.Reader
	switch kind {
	case "gzip":
		require.Equal(t, gzipMagic, head[:2])
		r, err = gzip.NewReader(f)
	case "zstd":
		require.Equal(t, zstdMagic, head)
		r, err = zstd.NewReader(f)
	}
	require.NoError(t, err)
	out := path + ".tar"
	o, err := os.Create(out)
	require.NoError(t, err)
	_, err = io.Copy(o, r)
	require.NoError(t, err)
	require.NoError(t, o.Close())
	return out
}
