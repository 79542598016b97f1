package lvm

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The fixtures come from testdata/make-fixtures.sh (the real LVM tools).
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

func readPV(b []byte) (*PV, error) { return ReadPV(bytes.NewReader(b), int64(len(b))) }

// rawLocn0 is the first raw_locn of the fixtures' metadata area at 4096.
func rawLocn0(b []byte) (off, size uint64) {
	return binary.LittleEndian.Uint64(b[4096+40:]), binary.LittleEndian.Uint64(b[4096+48:])
}

func TestReadPVFixtures(t *testing.T) {
	backup, err := ParseMetadata(fixture(t, "vg-backup.txt"))
	require.NoError(t, err)
	cases := []struct {
		name    string
		file    string
		wrapped bool
	}{
		{"fresh metadata", "pv-head.img", false},
		{"metadata wrapped around the area's end", "pv-wrapped.img", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := fixture(t, tc.file)
			off, size := rawLocn0(b)
			require.Equal(t, tc.wrapped, off+size > 61440, "raw_locn %d+%d", off, size)
			pv, err := readPV(b)
			require.NoError(t, err)
			require.NotNil(t, pv.VG)
			assert.Equal(t, strings.ReplaceAll(backup.PVs[0].ID, "-", ""), pv.UUID)
			assert.Equal(t, uint64(16<<20), pv.DeviceSize)
			assert.Equal(t, []DiskLocn{{Offset: 4096, Size: 61440}}, pv.MetadataAreas)
			assert.Equal(t, []DiskLocn{{Offset: 65536}}, pv.DataAreas)
			vg := pv.VG
			assert.Equal(t, backup.Name, vg.Name)
			assert.Equal(t, backup.ID, vg.ID)
			assert.Equal(t, backup.PVs, vg.PVs)
			assert.Equal(t, backup.lvs, vg.lvs)
			if tc.wrapped {
				assert.Greater(t, vg.Seqno, backup.Seqno)
			} else {
				assert.Equal(t, backup.Seqno, vg.Seqno)
			}
		})
	}
}

func TestParseMetadataBackup(t *testing.T) {
	vg, err := ParseMetadata(fixture(t, "vg-backup.txt"))
	require.NoError(t, err)
	assert.Equal(t, "vgfix", vg.Name)
	assert.Equal(t, uint64(2048), vg.ExtentSize)
	require.Len(t, vg.PVs, 1)
	assert.Equal(t, PVInfo{Name: "pv0", ID: vg.PVs[0].ID, Device: vg.PVs[0].Device, DevSize: 32768, PEStart: 128, PECount: 15}, vg.PVs[0])
	lvs := vg.LVs()
	require.Len(t, lvs, 2)
	assert.Equal(t, "root", lvs[0].Name)
	assert.Equal(t, int64(5<<20), lvs[0].Size)
	assert.Equal(t, []Segment{
		{StartExtent: 0, ExtentCount: 3, Type: "striped", Stripes: []Stripe{{"pv0", 0}}},
		{StartExtent: 3, ExtentCount: 2, Type: "striped", Stripes: []Stripe{{"pv0", 5}}},
	}, lvs[0].Segments)
	assert.Equal(t, "boot", lvs[1].Name)
	assert.True(t, lvs[1].Visible())
	// Not assembled: no devices, so both say which PV they miss.
	assert.ErrorIs(t, lvs[0].Err, ErrMissingPV)
}

// A PV with a fake device: Open maps the fixture's LVs onto a disk whose
// every byte says where it is, so each extent's origin can be checked.
func TestOpenMapsExtents(t *testing.T) {
	pv, err := readPV(fixture(t, "pv-head.img"))
	require.NoError(t, err)
	disk := pattern("disk", 16<<20)
	pv.r, pv.size = bytes.NewReader(disk), int64(len(disk))
	vg, err := Assemble([]*PV{pv})
	require.NoError(t, err)
	const mib, peStart = 1 << 20, 65536
	cases := []struct {
		lv   string
		pes  []int64 // the physical extent behind each logical one
		size int64
	}{
		{"root", []int64{0, 1, 2, 5, 6}, 5 * mib},
		{"boot", []int64{3, 4}, 2 * mib},
	}
	for _, tc := range cases {
		t.Run(tc.lv, func(t *testing.T) {
			r, size, err := vg.Open(tc.lv)
			require.NoError(t, err)
			require.Equal(t, tc.size, size)
			got := make([]byte, size)
			n, err := r.ReadAt(got, 0)
			require.NoError(t, err)
			require.Equal(t, len(got), n)
			for le, pe := range tc.pes {
				want := disk[peStart+pe*mib : peStart+(pe+1)*mib]
				assert.True(t, bytes.Equal(want, got[int64(le)*mib:int64(le+1)*mib]), "extent %d is not PE %d", le, pe)
			}
			// A read across the segment boundary, and one past the end.
			b := make([]byte, 100)
			_, err = r.ReadAt(b, size-50)
			assert.ErrorIs(t, err, io.EOF)
			assert.Equal(t, got[size-50:], b[:50])
		})
	}
}

func TestReadPVNoLabel(t *testing.T) {
	for _, size := range []int{0, 100, 2048, 1 << 20} {
		_, err := readPV(make([]byte, size))
		assert.ErrorIs(t, err, ErrNoLabel, "size %d", size)
	}
}

// Corrupt PVs: each damage gives an error naming the field.
func TestReadPVCorrupt(t *testing.T) {
	le := binary.LittleEndian
	cases := []struct {
		name   string
		damage func(b []byte)
		want   string
	}{
		{"label CRC", func(b []byte) { b[512+100] ^= 1 }, "crc_xl"},
		{"label sector_xl", func(b []byte) { le.PutUint64(b[512+8:], 3) }, "sector_xl is 3"},
		{"metadata area past the device", func(b []byte) {
			le.PutUint64(b[512+32+32+8+32:], 1<<40)
			fixLabelCRC(b)
		}, "does not fit the"},
		{"area header magic", func(b []byte) { b[4096+5] = 'X' }, "header magic"},
		{"area header checksum", func(b []byte) { b[4096+100] = 1 }, "header checksum"},
		{"metadata offset past the area", func(b []byte) {
			le.PutUint64(b[4096+40:], 1<<20)
			fixMDACRC(b)
		}, "raw_locn offset 0x100000"},
		{"metadata size beyond bound", func(b []byte) {
			le.PutUint64(b[4096+48:], 1<<40)
			fixMDACRC(b)
		}, "raw_locn size"},
		{"metadata checksum", func(b []byte) {
			off, _ := rawLocn0(b)
			b[4096+off+10] ^= 1
		}, "does not match its"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := fixture(t, "pv-head.img")
			tc.damage(b)
			_, err := readPV(b)
			require.Error(t, err)
			assert.NotErrorIs(t, err, ErrNoLabel)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func fixLabelCRC(b []byte) {
	binary.LittleEndian.PutUint32(b[512+16:], lvmCRC(b[512+20:1024]))
}

func fixMDACRC(b []byte) {
	binary.LittleEndian.PutUint32(b[4096:], lvmCRC(b[4096+4:4096+512]))
}

// Corrupt metadata text: the fixture with one line changed.
func TestParseMetadataCorrupt(t *testing.T) {
	good := string(fixture(t, "vg-backup.txt"))
	cases := []struct {
		name      string
		old, new_ string
		want      string
	}{
		{"segment past pe_count", `"pv0", 5`, `"pv0", 14`, `extents 14..15 on pv0 are past its pe_count 15`},
		{"stripe on an unknown PV", `"pv0", 5`, `"pv7", 5`, `stripe on unknown PV "pv7"`},
		{"gap between segments", "start_extent = 3", "start_extent = 4", "starts at extent 4, not at 3"},
		{"stripes without stripe_size", "stripe_count = 1", "stripe_count = 2", "no stripe_size"},
		{"stripe count and list disagree", "stripe_count = 1", "stripe_count = 2\nstripe_size = 128", "stripes has 2 entries, want 4"},
		{"zero extent size", "extent_size = 2048", "extent_size = 0", "extent_size is 0"},
		{"huge extent size", "extent_size = 2048", "extent_size = 99999999999", "extent_size = 99999999999 is not in"},
		{"negative pe_start", "pe_start = 128", "pe_start = -1", "pe_start = -1"},
		{"string for a number", "pe_count = 15", `pe_count = "15"`, "pe_count has the wrong type"},
		{"unclosed section", "\n}\n", "\n", "is not closed"},
		{"unclosed string", "\n}\n", "\n}\nx = \"abc", "string not closed"},
		{"missing id", "\tid = ", "\tid_ = ", "no id"},
		{"LV without segments", "segment1 {", "notasegment {", `LV "boot" (line 66): no segments`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			i := strings.LastIndex(good, tc.old)
			require.GreaterOrEqual(t, i, 0, "fixture lacks %q", tc.old)
			bad := good[:i] + tc.new_ + good[i+len(tc.old):]
			_, err := ParseMetadata([]byte(bad))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), "lvm metadata")
		})
	}
}

func TestParseConfigSyntax(t *testing.T) {
	cases := []struct {
		name, text string
		want       string // error text; "" for none
	}{
		{"comments and arrays", "a { # c\n k = [ \"x\", 1 ,2 ] # d\n s = \"q\\\"uote\" }", ""},
		{"empty array", "a { k = [] }", ""},
		{"nested array", "a { k = [ [1] ] }", "expected a value"},
		{"deep nesting", strings.Repeat("a {", 20) + strings.Repeat("}", 20), "nested deeper than 16"},
		{"stray close", "}", "'}' with no open section"},
		{"bare word value", "a { k = v }", `"v" is not a number`},
		{"missing value", "a { k = ", "expected a value"},
		{"name without body", "a", "followed by nothing"},
		{"too many items", "a { k = [" + strings.Repeat("1,", maxItems) + "] }", "more than 1048576 sections, keys and array elements"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root, err := parseConfig(tc.text)
			if tc.want != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.want)
				return
			}
			require.NoError(t, err)
			require.Len(t, root.children, 1)
		})
	}
	root, err := parseConfig(cases[0].text)
	require.NoError(t, err)
	k := root.children[0].keys["k"]
	require.Equal(t, kindArray, k.kind)
	assert.Equal(t, []value{{kind: kindString, str: "x"}, {kind: kindInt, num: 1}, {kind: kindInt, num: 2}}, k.arr)
	assert.Equal(t, `q"uote`, root.children[0].keys["s"].str)
}

func TestAssembleAll(t *testing.T) {
	text := string(fixture(t, "vg-backup.txt"))
	parse := func(name, id, pvID string) *VG {
		s := strings.Replace(text, "vgfix {", name+" {", 1)
		s = strings.Replace(s, `id = "`, `id = "`+id, 1) // the VG's id comes first
		vg0, err := ParseMetadata([]byte(text))
		require.NoError(t, err)
		s = strings.Replace(s, vg0.PVs[0].ID, pvID, 1)
		vg, err := ParseMetadata([]byte(s))
		require.NoError(t, err)
		return vg
	}
	a := parse("vga", "A", "aaaaaa-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaaa")
	b := parse("vgb", "B", "bbbbbb-bbbb-bbbb-bbbb-bbbb-bbbb-bbbbbb")
	aOld := parse("vga", "A", "aaaaaa-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaaa")
	aOld.Seqno--
	aOld.lvs = aOld.lvs[:1]
	disk := bytes.NewReader(make([]byte, 16<<20))
	pv := func(uuid string, vg *VG) *PV {
		return &PV{UUID: strings.Repeat(uuid, 32), VG: vg, r: disk, size: disk.Size()}
	}
	cases := []struct {
		name  string
		pvs   []*PV
		vgs   []string
		nLVs  int    // LVs of the first VG
		error string // of AssembleAll
	}{
		{"two VGs", []*PV{pv("b", b), pv("a", a)}, []string{"vga", "vgb"}, 2, ""},
		{"the newest metadata wins", []*PV{pv("a", aOld), pv("c", a)}, []string{"vga"}, 2, ""},
		{"a cloned disk", []*PV{pv("a", a), pv("a", a)}, nil, 0, "on two of the devices"},
		{"no metadata", []*PV{pv("a", nil)}, nil, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			vgs, err := AssembleAll(tc.pvs)
			if tc.error != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.error)
				return
			}
			require.NoError(t, err)
			var names []string
			for _, vg := range vgs {
				names = append(names, vg.Name)
			}
			assert.Equal(t, tc.vgs, names)
			if len(vgs) > 0 {
				assert.Len(t, vgs[0].LVs(), tc.nLVs)
				_, _, err := vgs[0].Open("root")
				assert.NoError(t, err)
			}
			_, err = Assemble(tc.pvs)
			assert.Equal(t, len(vgs) == 1, err == nil, "Assemble: %v", err)
		})
	}
}
