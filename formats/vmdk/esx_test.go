package vmdk

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/disk/disktest"
	"github.com/vmconv/vmconv/internal/testutil"
)

// Grain kinds of a test delta: what its tables say of each grain.
const (
	gUnalloc  = 'u' // read the parent
	gData     = 'd'
	gZero     = 'z' // seSparse zero grain
	gUnmapped = 'm' // seSparse unmapped grain (reads as zeros)
)

// delta is a snapshot delta to build: a kind for every grain, and the bytes
// its data grains hold (taken from content at the grain's place).
type delta struct {
	kinds   []byte
	content []byte
}

// grain returns grain g's bytes (zeros past the content).
func (d delta) grain(g, grainBytes int64) []byte {
	b := make([]byte, grainBytes)
	if g*grainBytes < int64(len(d.content)) {
		copy(b, d.content[g*grainBytes:])
	}
	return b
}

// placeOrder is the order data grains are laid out in the file: groups of
// three consecutive grains, the groups last to first, so reads meet both runs
// of neighbouring grains and jumps, as in a delta written in the guest's order.
func placeOrder(kinds []byte) []int64 {
	var data []int64
	for g, k := range kinds {
		if k == gData {
			data = append(data, int64(g))
		}
	}
	var out []int64
	for i := (len(data) - 1) / 3 * 3; i >= 0; i -= 3 {
		out = append(out, data[i:min(i+3, len(data))]...)
	}
	return out
}

// buildCOWD lays out a vmfsSparse delta as ESX does: the 2048-byte header,
// the grain directory at sector 4, grain tables of 4096 entries, grains.
func buildCOWD(d delta, grainSectors int64) []byte {
	grainBytes := grainSectors * sectorSize
	capSectors := int64(len(d.kinds)) * grainSectors
	tables := (int64(len(d.kinds)) + cowdGTEntries - 1) / cowdGTEntries
	gdBytes := (tables*4 + sectorSize - 1) / sectorSize * sectorSize
	buf := make([]byte, cowdHeaderSize+gdBytes)
	copy(buf, cowdMagic)
	le := binary.LittleEndian
	le.PutUint32(buf[4:], 1)
	le.PutUint32(buf[8:], 3)
	le.PutUint32(buf[12:], uint32(capSectors))
	le.PutUint32(buf[16:], uint32(grainSectors))
	le.PutUint32(buf[20:], cowdHeaderSize/sectorSize)
	le.PutUint32(buf[24:], uint32(tables))
	gtAt := map[int64]int64{}
	for g, k := range d.kinds {
		t := int64(g) / cowdGTEntries
		if _, ok := gtAt[t]; k == gData && !ok {
			gtAt[t] = int64(len(buf))
			le.PutUint32(buf[cowdHeaderSize+t*4:], uint32(len(buf)/sectorSize))
			buf = append(buf, make([]byte, cowdGTEntries*4)...)
		}
	}
	for _, g := range placeOrder(d.kinds) {
		le.PutUint32(buf[gtAt[g/cowdGTEntries]+g%cowdGTEntries*4:], uint32(len(buf)/sectorSize))
		buf = append(buf, d.grain(g, grainBytes)...)
	}
	le.PutUint32(buf[28:], uint32(len(buf)/sectorSize))
	return buf
}

// seSparseEntry encodes an allocated grain's cluster number as ESXi does:
// its low 12 bits in bits 48-59, the rest in bits 0-47.
func seSparseEntry(cluster uint64) uint64 {
	return 0x3<<60 | (cluster&0xFFF)<<48 | cluster>>12
}

// buildSESparse lays out a seSparse delta: constant header, volatile header,
// journal header and journal, grain directory, grain tables (indexed last to
// first), free bitmap, backmap, grains.
func buildSESparse(d delta) []byte {
	const grainBytes = seSparseGrainSectors * sectorSize
	const gtBytes = seSparseGTSectors * sectorSize
	tables := (int64(len(d.kinds)) + seSparseGTEntries - 1) / seSparseGTEntries
	gdSectors := (tables*8 + sectorSize - 1) / sectorSize
	var used []int64 // tables holding something, in directory order
	for t := int64(0); t < tables; t++ {
		for _, k := range d.kinds[t*seSparseGTEntries : min(int64(len(d.kinds)), (t+1)*seSparseGTEntries)] {
			if k != gUnalloc {
				used = append(used, t)
				break
			}
		}
	}
	h := SESparseConstHeader{Magic: seSparseConstMagic, Version: seSparseVersion,
		Capacity: uint64(len(d.kinds)) * seSparseGrainSectors, GrainSize: seSparseGrainSectors, GrainTableSize: seSparseGTSectors,
		VolatileHeaderOffset: 1, VolatileHeaderSize: 1, JournalHeaderOffset: 2, JournalHeaderSize: 1, JournalOffset: 3, JournalSize: 1,
		GrainDirOffset: 4, GrainDirSize: uint64(gdSectors)}
	h.GrainTablesOffset = h.GrainDirOffset + h.GrainDirSize
	h.GrainTablesSize = uint64(len(used)) * seSparseGTSectors
	h.FreeBitmapOffset, h.FreeBitmapSize = h.GrainTablesOffset+h.GrainTablesSize, 1
	h.BackmapOffset, h.BackmapSize = h.FreeBitmapOffset+1, 1
	h.GrainsOffset = h.BackmapOffset + 1
	order := placeOrder(d.kinds)
	h.GrainsSize = uint64(len(order)) * seSparseGrainSectors
	buf := make([]byte, int64(h.GrainsOffset)*sectorSize)
	var hb bytes.Buffer
	binary.Write(&hb, binary.LittleEndian, &h)
	copy(buf, hb.Bytes())
	hb.Reset()
	binary.Write(&hb, binary.LittleEndian, &SESparseVolatileHeader{Magic: seSparseVolatileMagic, FreeGTNumber: uint64(len(used)), NextTxnSeqNumber: 1})
	copy(buf[sectorSize:], hb.Bytes())
	le := binary.LittleEndian
	gtAt := map[int64]int64{}
	for i, t := range used {
		idx := int64(len(used) - 1 - i)
		le.PutUint64(buf[int64(h.GrainDirOffset)*sectorSize+t*8:], 0x10000000<<32|uint64(idx))
		gtAt[t] = int64(h.GrainTablesOffset)*sectorSize + idx*gtBytes
	}
	for g, k := range d.kinds {
		at := gtAt[int64(g)/seSparseGTEntries] + int64(g)%seSparseGTEntries*8
		switch k {
		case gZero:
			le.PutUint64(buf[at:], 0x2<<60)
		case gUnmapped:
			le.PutUint64(buf[at:], 0x1<<60)
		}
	}
	for c, g := range order {
		le.PutUint64(buf[gtAt[g/seSparseGTEntries]+g%seSparseGTEntries*8:], seSparseEntry(uint64(c)))
		buf = append(buf, d.grain(g, grainBytes)...)
	}
	return buf
}

// esxDescriptor is a descriptor as ESXi writes it for a base disk (vmfs, no
// parent) or a snapshot.
func esxDescriptor(createType string, cid, parentCID uint32, parent string, sectors int64, extType, file string) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\nCID=%08x\nparentCID=%08x\n", cid, parentCID)
	if parent != "" {
		b.WriteString("isNativeSnapshot=\"no\"\n")
	}
	fmt.Fprintf(&b, "createType=\"%s\"\n", createType)
	if parent != "" {
		fmt.Fprintf(&b, "parentFileNameHint=\"%s\"\n", parent)
	}
	fmt.Fprintf(&b, "# Extent description\nRW %d %s \"%s\"\n\n# The Disk Data Base\n#DDB\n\n", sectors, extType, file)
	b.WriteString("ddb.adapterType = \"lsilogic\"\nddb.virtualHWVersion = \"14\"\n")
	if parent == "" {
		b.WriteString("ddb.thinProvisioned = \"1\"\n")
	}
	return b.String()
}

// esxChain writes base.vmdk (vmfs, a flat file holding base) and one
// snapshot per layer on top of it, as ESXi names them, and returns the top
// descriptor's path and the disk as the top of the chain shows it.
func esxChain(t *testing.T, dir string, base []byte, layers ...esxLayer) (string, []byte) {
	t.Helper()
	sectors := int64(len(base)) / sectorSize
	write := func(name string, b []byte) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), b, 0o644))
	}
	write("base-flat.vmdk", base)
	write("base.vmdk", []byte(esxDescriptor("vmfs", 0x10, noParentCID, "", sectors, "VMFS", "base-flat.vmdk")))
	want := bytes.Clone(base)
	parent, cid := "base.vmdk", uint32(0x10)
	for i, l := range layers {
		name := fmt.Sprintf("base-%06d", i+1)
		var file, extType, createType string
		var body []byte
		if l.seSparse {
			file, extType, createType, body = name+"-sesparse.vmdk", "SESPARSE", "seSparse", buildSESparse(l.delta)
		} else {
			file, extType, createType, body = name+"-delta.vmdk", "VMFSSPARSE", "vmfsSparse", buildCOWD(l.delta, l.grainSectors)
		}
		write(file, body)
		write(name+".vmdk", []byte(esxDescriptor(createType, cid+1, cid, parent, sectors, extType, file)))
		gb := int64(len(base)) / int64(len(l.delta.kinds))
		for g, k := range l.delta.kinds {
			span := want[int64(g)*gb : min(int64(len(want)), int64(g+1)*gb)]
			switch k {
			case gData:
				copy(span, l.delta.content[int64(g)*gb:])
			case gZero, gUnmapped:
				clear(span)
			}
		}
		parent, cid = name+".vmdk", cid+1
	}
	return filepath.Join(dir, parent), want
}

type esxLayer struct {
	seSparse     bool
	grainSectors int64 // vmfsSparse
	delta        delta
}

// kindsOf repeats pattern over n grains.
func kindsOf(n int, pattern string) []byte {
	return bytes.Repeat([]byte(pattern), n/len(pattern)+1)[:n]
}

func TestReadESXDeltas(t *testing.T) {
	const size = 9 << 20
	cases := []struct {
		name   string
		layers []esxLayer
	}{
		{"vmfsSparse, one-sector grains", []esxLayer{{grainSectors: 1,
			delta: delta{kindsOf(size/512, "uuddduduuuuuuuuddddddddd"+string(bytes.Repeat([]byte{gUnalloc}, 5000))), disktest.Pattern(size, 2)}}}},
		{"vmfsSparse, 4 KiB grains", []esxLayer{{grainSectors: 8,
			delta: delta{kindsOf(size/4096, "dddduuud"), disktest.Pattern(size, 3)}}}},
		{"seSparse", []esxLayer{{seSparse: true,
			delta: delta{kindsOf(size/4096, "ddduuzzmmdud"+string(bytes.Repeat([]byte{gUnalloc}, 4500))), disktest.Pattern(size, 4)}}}},
		// Every grain written: 2304 clusters, and a table past the first.
		{"seSparse, all data", []esxLayer{{seSparse: true, delta: delta{kindsOf(size/4096, "d"), disktest.Pattern(size, 5)}}}},
		{"vmfsSparse under seSparse", []esxLayer{
			{grainSectors: 1, delta: delta{kindsOf(size/512, "udd"), disktest.Pattern(size, 6)}},
			{seSparse: true, delta: delta{kindsOf(size/4096, "uuzdmu"), disktest.Pattern(size, 7)}},
		}},
		{"empty seSparse", []esxLayer{{seSparse: true, delta: delta{kindsOf(size/4096, "u"), make([]byte, size)}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			top, want := esxChain(t, dir, disktest.Pattern(size, 1), tc.layers...)
			img, err := Open(top)
			require.NoError(t, err)
			defer img.Close()
			require.Equal(t, int64(size), img.Size())
			got := disktest.ReadAll(t, img)
			require.True(t, bytes.Equal(want, got), "contents differ from the chain's")
			require.True(t, bytes.Equal(disktest.RawOf(t, top, "vmdk"), got), "contents differ from qemu-img's reading")
			if len(tc.layers) == 1 && !tc.layers[0].seSparse {
				// libvmdk reads vmfsSparse (not seSparse).
				lib := libvmdkRead(t, top, filepath.Join(dir, "base.vmdk"))
				require.True(t, bytes.Equal(lib, got), "contents differ from libvmdk's reading")
			}
			disktest.RequireExtentsCover(t, img, want)

			// Reads that start and end inside grains, across runs.
			for _, r := range [][2]int64{{100, 1000}, {4095, 70000}, {size - 777, 777}, {3<<20 + 1, 1 << 20}} {
				p := make([]byte, r[1])
				_, err := img.ReadAt(p, r[0])
				require.NoError(t, err)
				require.True(t, bytes.Equal(want[r[0]:r[0]+r[1]], p), "read at %#x+%d", r[0], r[1])
			}

			in := img.Info()
			last := tc.layers[len(tc.layers)-1]
			wantType, wantGrain := "VMFSSPARSE", last.grainSectors*sectorSize
			if last.seSparse {
				wantType, wantGrain = "SESPARSE", 4096
			}
			require.Len(t, in.Extents, 1)
			assert.Equal(t, wantType, in.Extents[0].Type)
			assert.Equal(t, wantGrain, in.Extents[0].GrainSize)
			assert.Len(t, in.Chain, len(tc.layers))
			assert.Equal(t, filepath.Join(dir, "base.vmdk"), in.Chain[len(in.Chain)-1])
			res, err := Check(top)
			require.NoError(t, err)
			assert.Empty(t, res.Problems)
		})
	}
}

// An unallocated run spanning thousands of tables is one extent, and opening
// a 64 GiB delta reads only its directory.
func TestESXLargeSparseDelta(t *testing.T) {
	const size = 64 << 30
	kinds := make([]byte, size/4096)
	for i := range kinds {
		kinds[i] = gUnalloc
	}
	kinds[5] = gData
	kinds[len(kinds)-1] = gZero
	content := make([]byte, 8*4096)
	copy(content[5*4096:], bytes.Repeat([]byte{7}, 4096))
	body := buildSESparse(delta{kinds, content})
	require.Less(t, len(body), 200<<10, "the delta holds its directory, two tables and a grain")
	e, err := openSESparse("big-sesparse.vmdk", bytes.NewReader(body), int64(len(body)))
	require.NoError(t, err)
	v := &vext{start: 0, end: size, kind: extESX, esx: e, path: "big-sesparse.vmdk"}
	img := &Image{path: "big.vmdk", exts: []*vext{v}, size: size}
	ext, err := img.Extents(0, size)
	require.NoError(t, err)
	assert.Equal(t, []disk.Extent{
		{Offset: 0, Length: 5 * 4096, Kind: disk.Unallocated},
		{Offset: 5 * 4096, Length: 4096, Kind: disk.Data},
		{Offset: 6 * 4096, Length: size - 7*4096, Kind: disk.Unallocated},
		{Offset: size - 4096, Length: 4096, Kind: disk.Zero},
	}, ext)
	p := make([]byte, 3*4096)
	_, err = img.ReadAt(p, 4*4096)
	require.NoError(t, err)
	assert.Equal(t, bytes.Repeat([]byte{7}, 4096), p[4096:8192])
	assert.True(t, isZero(p[:4096]) && isZero(p[8192:]))
}

// Broken deltas are refused with the file, the place and the field named;
// grain tables are read when a read reaches them, so their faults show then
// (and in Check).
func TestESXDeltaErrors(t *testing.T) {
	const size = 1 << 20
	le := binary.LittleEndian
	cowd := func() []byte {
		return buildCOWD(delta{kindsOf(size/512, "ud"), disktest.Pattern(size, 1)}, 1)
	}
	se := func() []byte {
		return buildSESparse(delta{kindsOf(size/4096, "dzu"), disktest.Pattern(size, 1)})
	}
	seGD := func(b []byte) int64 { return int64(le.Uint64(b[128:])) * sectorSize }
	seGT := func(b []byte) int64 { return int64(le.Uint64(b[144:])) * sectorSize }
	cases := []struct {
		name     string
		seSparse bool
		body     func() []byte
		onRead   bool // the fault is in a grain table
		want     string
	}{
		{"vmfsSparse bad magic", false, func() []byte { b := cowd(); copy(b, "KDMV"); return b }, false, "magic"},
		{"vmfsSparse zero grain size", false, func() []byte { b := cowd(); le.PutUint32(b[16:], 0); return b }, false, "at 0x10: grain size 0 sectors"},
		{"vmfsSparse short directory", false, func() []byte { b := cowd(); le.PutUint32(b[24:], 0); return b }, false, "0 grain directory entries, a capacity of 2048 sectors needs 1"},
		{"vmfsSparse directory past the end", false, func() []byte { b := cowd(); le.PutUint32(b[20:], 1<<30); return b }, false, "grain directory at 0x8000000000 (1 entries) lies outside the file's data"},
		{"vmfsSparse table in the header", false, func() []byte { b := cowd(); le.PutUint32(b[2048:], 1); return b }, false, "grain table at 0x200 lies outside the file's data"},
		{"vmfsSparse grain past the end", false, func() []byte {
			b := cowd()
			gt := int64(le.Uint32(b[2048:])) * sectorSize
			le.PutUint32(b[gt+4:], 1<<30)
			return b
		}, true, "grain table 0 at 0xa00: entry 1: grain at sector 1073741824 lies past the end of the file"},
		{"vmfsSparse grain in the header", false, func() []byte {
			b := cowd()
			gt := int64(le.Uint32(b[2048:])) * sectorSize
			le.PutUint32(b[gt+4:], 2)
			return b
		}, true, "entry 1: grain at 0x400 lies outside the file's data"},
		{"seSparse bad magic", true, func() []byte { b := se(); b[0] = 0; return b }, false, "seSparse header at 0x0: magic 0xcafeba00"},
		{"seSparse unknown version", true, func() []byte { b := se(); le.PutUint64(b[8:], 0x200000002); return b }, false, "at 0x8: version 0x200000002"},
		{"seSparse 8 KiB grains", true, func() []byte { b := se(); le.PutUint64(b[24:], 16); return b }, false, "at 0x18: grain size 16 sectors, want 8"},
		{"seSparse flags", true, func() []byte { b := se(); le.PutUint64(b[40:], 1); return b }, false, "at 0x28: flags 0x1"},
		{"seSparse huge capacity", true, func() []byte { b := se(); le.PutUint64(b[16:], 1<<50); return b }, false, "at 0x10: capacity"},
		{"seSparse journal not replayed", true, func() []byte { b := se(); le.PutUint64(b[512+24:], 1); return b }, false, "the journal must be replayed first"},
		{"seSparse volatile header past the end", true, func() []byte { b := se(); le.PutUint64(b[80:], 1<<40); return b }, false, "volatile header at sector 1099511627776 lies past the end"},
		{"seSparse directory entry not a table", true, func() []byte { b := se(); le.PutUint64(b[seGD(b):], 0x20000000<<32); return b }, false, "want 0 or 0x10000000 in the top 32 bits"},
		{"seSparse table outside its region", true, func() []byte { b := se(); le.PutUint64(b[seGD(b):], 0x10000000<<32|9); return b }, false, "table 9, the grain tables region holds 1"},
		{"seSparse unknown entry kind", true, func() []byte { b := se(); le.PutUint64(b[seGT(b)+8:], 0x5<<60); return b }, true, "entry 1: 0x5000000000000000: unknown kind 0x5"},
		{"seSparse unallocated entry with bits", true, func() []byte { b := se(); le.PutUint64(b[seGT(b)+16:], 7); return b }, true, "entry 2: 0x0000000000000007: an unallocated entry must be all zero"},
		{"seSparse cluster past the end", true, func() []byte { b := se(); le.PutUint64(b[seGT(b):], seSparseEntry(1<<40)); return b }, true, "entry 0: 0x3000000010000000: cluster 1099511627776 lies past the end"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := esxLayer{seSparse: tc.seSparse, grainSectors: 1, delta: delta{kindsOf(size/512, "u"), nil}}
			if tc.seSparse {
				l.delta.kinds = kindsOf(size/4096, "u")
			}
			top, _ := esxChain(t, dir, make([]byte, size), l)
			file := filepath.Join(dir, "base-000001-delta.vmdk")
			if tc.seSparse {
				file = filepath.Join(dir, "base-000001-sesparse.vmdk")
			}
			require.NoError(t, os.WriteFile(file, tc.body(), 0o644))
			img, err := Open(top)
			if tc.onRead {
				require.NoError(t, err)
				defer img.Close()
				_, err = img.ReadAt(make([]byte, size), 0)
				require.Error(t, err)
				assert.Contains(t, err.Error(), file)
				assert.Contains(t, err.Error(), tc.want)
				_, err = img.Extents(0, size)
				assert.ErrorContains(t, err, tc.want)
			} else {
				require.Error(t, err)
				assert.Contains(t, err.Error(), file)
				assert.Contains(t, err.Error(), tc.want)
			}
			res, err := Check(top)
			require.NoError(t, err)
			require.Len(t, res.Problems, 1)
			assert.Contains(t, res.Problems[0].What, tc.want)
		})
	}
}

// A delta file opened by itself is refused: only its descriptor names the
// parent, and without it the disk would read as zeros where the parent holds
// data.
func TestESXDeltaAlone(t *testing.T) {
	const size = 1 << 20
	dir := t.TempDir()
	esxChain(t, dir, make([]byte, size),
		esxLayer{grainSectors: 1, delta: delta{kindsOf(size/512, "ud"), disktest.Pattern(size, 1)}},
		esxLayer{seSparse: true, delta: delta{kindsOf(size/4096, "ud"), disktest.Pattern(size, 1)}})
	for _, name := range []string{"base-000001-delta.vmdk", "base-000002-sesparse.vmdk"} {
		p := filepath.Join(dir, name)
		head := make([]byte, 512)
		f, err := os.Open(p)
		require.NoError(t, err)
		f.Read(head)
		f.Close()
		assert.True(t, Detect(head), "%s is detected as a VMDK", name)
		_, err = Open(p)
		assert.ErrorContains(t, err, "snapshot delta: open the descriptor that names it")
	}
}

// esxFixtures are the deltas of testdata/esx, which the CLI's scripts use
// beside descriptors and a base they write themselves: a 4 MiB disk's first
// snapshot (vmfsSparse) and second (seSparse).
func esxFixtures() map[string][]byte {
	const size = 4 << 20
	fill := func(b byte) []byte { return bytes.Repeat([]byte{b, b + 1, b + 2, 0}, size/4) }
	cowdKinds := make([]byte, size/512)
	for i := range cowdKinds {
		if i >= 1024 && i < 1536 || i >= 6000 && i < 6100 {
			cowdKinds[i] = gData
		} else {
			cowdKinds[i] = gUnalloc
		}
	}
	seKinds := kindsOf(size/4096, "uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu")
	for i := 256; i < 300; i++ {
		seKinds[i] = gData
	}
	seKinds[140], seKinds[141], seKinds[700] = gZero, gUnmapped, gData
	return map[string][]byte{
		"base-000001-delta.vmdk":    buildCOWD(delta{cowdKinds, fill(0x41)}, 1),
		"base-000002-sesparse.vmdk": buildSESparse(delta{seKinds, fill(0x61)}),
	}
}

// The committed fixtures are what the builders above make (set
// VMCONV_WRITE_FIXTURES=1 to write them again).
func TestESXFixtures(t *testing.T) {
	for name, want := range esxFixtures() {
		p := filepath.Join("testdata", "esx", name)
		if os.Getenv("VMCONV_WRITE_FIXTURES") == "1" {
			require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
			require.NoError(t, os.WriteFile(p, want, 0o644))
		}
		got, err := os.ReadFile(p)
		require.NoError(t, err)
		assert.True(t, bytes.Equal(want, got), "%s differs from what the builder makes", p)
	}
}

// libvmdkRead reads a VMDK with libvmdk's Python binding, its parent set
// (libvmdk does not open parents itself).
func libvmdkRead(t testing.TB, path, parent string) []byte {
	t.Helper()
	py := testutil.RequireTool(t, "/usr/bin/python3")
	if err := exec.Command(py, "-c", "import pyvmdk").Run(); err != nil {
		testutil.Unavailable(t, "python3-libvmdk (pyvmdk) is not installed")
	}
	out := filepath.Join(t.TempDir(), "lib.raw")
	testutil.Run(t, py, "-c", `import os, sys, pyvmdk
def open_vmdk(p):
    h = pyvmdk.handle(); h.open(p); h.open_extent_data_files(); return h
os.chdir(os.path.dirname(sys.argv[1])) # extent files are found from the working directory
parent = open_vmdk(sys.argv[3])
h = open_vmdk(sys.argv[1]); h.set_parent(parent)
open(sys.argv[2], 'wb').write(h.read_buffer(h.get_media_size()))`, path, out, parent)
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	return b
}

// A raw device mapping names a LUN, not a file: refused with what to do.
func TestRawDeviceMapping(t *testing.T) {
	for _, typ := range []string{"VMFSRDM", "VMFSRAW"} {
		dir := t.TempDir()
		p := filepath.Join(dir, "web.vmdk")
		require.NoError(t, os.WriteFile(p, []byte(esxDescriptor("vmfsPassthroughRawDeviceMap", 0x10, noParentCID, "", 8192, typ, "web-rdmp.vmdk")), 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "web-rdmp.vmdk"), make([]byte, 4<<20), 0o644))
		_, err := Open(p)
		require.Error(t, err)
		assert.Contains(t, err.Error(), p+": extent 1 (RW "+typ+` "web-rdmp.vmdk"): a raw device mapping`)
	}
}
