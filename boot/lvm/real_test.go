package lvm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/boot/ext4"
	"github.com/vmconv/vmconv/internal/testutil"
)

// VGs built by the real LVM tools on loop devices: every LV gets a distinct
// pattern written where `lvs --segments` and `pvs` say its extents are, and
// VG.Open must give exactly that pattern back, extent by extent.
func TestRealVGs(t *testing.T) {
	cases := []struct {
		name  string
		disks []int // MiB
		build func(l *lab)
		lvs   map[string]int // LV -> segments LVM reports
		bare  int            // PVs without metadata of their own
	}{
		{
			name:  "one PV, a fragmented linear LV",
			disks: []int{24},
			build: func(l *lab) {
				l.lvm("pvcreate", "-y", l.loops[0])
				l.lvm("vgcreate", "-s", "1M", "vg1", l.loops[0])
				l.lvcreate("-L", "3M", "-n", "root", "vg1")
				l.lvcreate("-L", "2M", "-n", "boot", "vg1")
				l.lvm("lvextend", "--driverloaded", "n", "-L", "+4M", "vg1/root")
				l.lvcreate("-L", "1M", "-n", "swap", "vg1")
			},
			lvs: map[string]int{"root": 2, "boot": 1, "swap": 1},
		},
		{
			name:  "two PVs, striped and spanning LVs",
			disks: []int{16, 16},
			build: func(l *lab) {
				l.lvm("pvcreate", "-y", l.loops[0], l.loops[1])
				l.lvm("vgcreate", "-s", "1M", "vg2", l.loops[0], l.loops[1])
				l.lvcreate("-i", "2", "-I", "64k", "-L", "6M", "-n", "stripe", "vg2")
				l.lvcreate("-i", "2", "-I", "4k", "-L", "2M", "-n", "small", "vg2")
				l.lvcreate("-L", "20M", "-n", "span", "vg2")
			},
			lvs: map[string]int{"stripe": 1, "span": 2, "small": 1},
		},
		{
			name:  "two metadata copies, a bootloader area, 1 MiB data alignment",
			disks: []int{24},
			build: func(l *lab) {
				l.lvm("pvcreate", "-y", "--pvmetadatacopies", "2", "--bootloaderareasize", "512k", l.loops[0])
				l.lvm("vgcreate", "vg3", l.loops[0])
				l.lvcreate("-L", "8M", "-n", "root", "vg3")
			},
			lvs: map[string]int{"root": 1},
		},
		{
			name:  "a second PV without metadata, found by its UUID",
			disks: []int{16, 16},
			build: func(l *lab) {
				l.lvm("pvcreate", "-y", l.loops[0])
				l.lvm("pvcreate", "-y", "--pvmetadatacopies", "0", l.loops[1])
				l.lvm("vgcreate", "-s", "2M", "vg4", l.loops[0], l.loops[1])
				l.lvcreate("-i", "2", "-I", "128k", "-L", "4M", "-n", "data", "vg4")
				l.lvcreate("-L", "20M", "-n", "root", "vg4")
			},
			lvs:  map[string]int{"root": 2, "data": 1},
			bare: 1,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t, tc.disks...)
			tc.build(l)
			vgName := l.report("vgs", "vg", "-o", "vg_name")[0]["vg_name"]
			want := map[string][]byte{}
			for _, row := range l.report("lvs", "lv", "-o", "lv_name,lv_size") {
				want[row["lv_name"]] = pattern(row["lv_name"], atoi(t, row["lv_size"]))
				l.writeLV(vgName, row["lv_name"], want[row["lv_name"]])
			}
			require.Len(t, want, len(tc.lvs))
			pvs := l.pvs()
			bare := 0
			// The label's areas are where LVM reports them.
			for _, row := range l.report("pvs", "pv", "-o", "pv_uuid,dev_size,pe_start,pv_ba_start,pv_ba_size,pv_mda_count") {
				i := indexOf(uuids(pvs), strings.ReplaceAll(row["pv_uuid"], "-", ""))
				require.GreaterOrEqual(t, i, 0, "PV %s not read", row["pv_uuid"])
				pv := pvs[i]
				assert.Equal(t, atoi(t, row["dev_size"]), int64(pv.DeviceSize))
				require.Len(t, pv.DataAreas, 1)
				assert.Equal(t, atoi(t, row["pe_start"]), int64(pv.DataAreas[0].Offset))
				assert.Len(t, pv.MetadataAreas, int(atoi(t, row["pv_mda_count"])))
				var ba []DiskLocn
				if n := atoi(t, row["pv_ba_size"]); n > 0 {
					ba = []DiskLocn{{Offset: uint64(atoi(t, row["pv_ba_start"])), Size: uint64(n)}}
				}
				assert.Equal(t, ba, pv.BootloaderAreas)
			}
			seqno := atoi(t, l.report("vgs", "vg", "-o", "vg_seqno")[0]["vg_seqno"])
			for _, pv := range pvs {
				if pv.VG == nil {
					bare++
					continue
				}
				assert.Equal(t, seqno, int64(pv.VG.Seqno))
			}
			assert.Equal(t, tc.bare, bare, "PVs without metadata")
			vg, err := Assemble(pvs)
			require.NoError(t, err)
			extent := int64(vg.ExtentSize) * sectorSize
			infos := vg.LVs()
			require.Len(t, infos, len(tc.lvs))
			for _, info := range infos {
				assert.NoError(t, info.Err, info.Name)
				assert.Len(t, info.Segments, tc.lvs[info.Name], info.Name)
				r, size, err := vg.Open(info.Name)
				require.NoError(t, err)
				require.Equal(t, int64(len(want[info.Name])), size, info.Name)
				got := make([]byte, size)
				_, err = r.ReadAt(got, 0)
				require.NoError(t, err)
				for e := int64(0); e < size/extent; e++ {
					w, g := want[info.Name][e*extent:(e+1)*extent], got[e*extent:(e+1)*extent]
					assert.True(t, bytes.Equal(w, g), "%s extent %d starts %q, want %q", info.Name, e, g[:16], w[:16])
				}
				// Reads at odd offsets and lengths, across chunks and segments.
				rng := rand.New(rand.NewPCG(uint64(size), 1))
				for range 50 {
					off := rng.Int64N(size)
					b := make([]byte, rng.Int64N(min(size-off, 3*extent))+1)
					n, err := r.ReadAt(b, off)
					require.NoError(t, err)
					require.Equal(t, len(b), n)
					assert.True(t, bytes.Equal(want[info.Name][off:off+int64(n)], b), "%s: %d bytes at %d", info.Name, n, off)
				}
				checkMapping(t, l, vg, pvs, vgName, info.Name)
			}
		})
	}
}

// checkMapping compares the device-mapper table of an LV with where LVM's
// own report puts its segments, and its name and UUID with LVM's.
func checkMapping(t *testing.T, l *lab, vg *VG, pvs []*PV, vgName, lvName string) {
	t.Helper()
	m, err := vg.Mapping(lvName)
	require.NoError(t, err)
	row := l.report("lvs", "lv", "-o", "lv_dm_path,lv_uuid,vg_uuid", vgName+"/"+lvName)[0]
	assert.Equal(t, row["lv_dm_path"], "/dev/mapper/"+m.Name)
	assert.Equal(t, "LVM-"+strings.ReplaceAll(row["vg_uuid"]+row["lv_uuid"], "-", ""), m.UUID)
	extent, segs := l.segments(vgName, lvName)
	require.Len(t, m.Targets, len(segs), lvName)
	for i, s := range segs {
		tg := m.Targets[i]
		assert.Equal(t, uint64(s.start*extent/sectorSize), tg.Start, "%s segment %d start", lvName, i)
		assert.Equal(t, uint64(s.count*extent/sectorSize), tg.Length, "%s segment %d length", lvName, i)
		require.Len(t, tg.Areas, len(s.areas))
		if len(s.areas) > 1 {
			assert.Equal(t, uint64(s.stripeSize/sectorSize), tg.StripeSize)
		}
		for k, a := range s.areas {
			assert.Equal(t, pvs[indexOf(l.images, a.image)].UUID, tg.Areas[k].PV)
			assert.Equal(t, uint64(a.off/sectorSize), tg.Areas[k].Offset)
		}
		typ, params := tg.Params(func(pv string) string { return "7:" + pv[:4] })
		if len(s.areas) == 1 {
			assert.Equal(t, "linear", typ)
			assert.Equal(t, fmt.Sprintf("7:%s %d", tg.Areas[0].PV[:4], a0(s).off/sectorSize), params)
		} else {
			assert.Equal(t, "striped", typ)
			assert.True(t, strings.HasPrefix(params, fmt.Sprintf("%d %d 7:", len(s.areas), s.stripeSize/sectorSize)), params)
		}
	}
}

func a0(s layout) physical { return s.areas[0] }

func uuids(pvs []*PV) []string {
	var out []string
	for _, pv := range pvs {
		out = append(out, pv.UUID)
	}
	return out
}

// The metadata area wraps: a small area and many updates, with two copies
// per PV. The reader follows the wrap, and falls back to the second copy
// when the first is damaged.
func TestRealWrappedMetadata(t *testing.T) {
	l := newLab(t, 16)
	l.lvm("pvcreate", "-y", "--metadatasize", "32k", "--dataalignment", "64k", "--pvmetadatacopies", "2", l.loops[0])
	l.lvm("vgcreate", "-s", "1M", "vgw", l.loops[0])
	l.lvcreate("-L", "2M", "-n", "root", "vgw")
	l.lvcreate("-L", "1M", "-n", "boot", "vgw")
	img := l.images[0]
	pv := l.pvs()[0]
	require.Len(t, pv.MetadataAreas, 2)
	first := pv.MetadataAreas[0]
	wrapped := func() bool {
		b, err := os.ReadFile(img)
		require.NoError(t, err)
		off, size := rawLocnAt(b, first.Offset)
		return off+size > first.Size
	}
	updates := 0
	for ; !wrapped(); updates++ {
		require.Less(t, updates, 200, "the metadata never wrapped")
		l.lvm("lvchange", "--addtag", "t"+strings.Repeat("x", updates), "vgw/boot")
	}
	t.Logf("wrapped after %d updates", updates)
	seqno := atoi(t, l.report("vgs", "vg", "-o", "vg_seqno")[0]["vg_seqno"])
	pv = l.pvs()[0]
	require.NotNil(t, pv.VG)
	assert.Equal(t, seqno, int64(pv.VG.Seqno))
	assert.Len(t, pv.VG.lvs, 2)

	// Damage the first copy's text: the second still reads.
	b, err := os.ReadFile(img)
	require.NoError(t, err)
	off, _ := rawLocnAt(b, first.Offset)
	l.writeAt(img, []byte("#"), int64(first.Offset+off+3))
	pv = l.pvs()[0]
	assert.Equal(t, seqno, int64(pv.VG.Seqno))
	// Damage the second too: the error names both.
	second := pv.MetadataAreas[1]
	off2, _ := rawLocnAt(b, second.Offset)
	l.writeAt(img, []byte("#"), int64(second.Offset+off2+3))
	f, err := os.Open(img)
	require.NoError(t, err)
	defer f.Close()
	_, err = ReadPV(f, int64(len(b)))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "metadata area 1")
	assert.Contains(t, err.Error(), "metadata area 2")
	assert.Contains(t, err.Error(), "checksum")
}

// rawLocnAt reads the first raw_locn of the metadata area at mda.
func rawLocnAt(b []byte, mda uint64) (off, size uint64) {
	return binary.LittleEndian.Uint64(b[mda+40:]), binary.LittleEndian.Uint64(b[mda+48:])
}

// Thin pools, thin LVs and snapshots cannot be made here without
// device-mapper, so the test gives vgcfgrestore (which checks them) the VG's
// own backup with them added, as LVM writes them.
func TestRealUnsupportedAndMissing(t *testing.T) {
	l := newLab(t, 16, 16)
	l.lvm("pvcreate", "-y", l.loops[0], l.loops[1])
	l.lvm("vgcreate", "-s", "1M", "vgt", l.loops[0], l.loops[1])
	l.lvcreate("-L", "2M", "-n", "root", "vgt")
	l.lvcreate("-L", "4M", "-n", "pdata", "vgt") // lvcreate refuses the names _tdata, _tmeta
	l.lvcreate("-L", "1M", "-n", "pmeta", "vgt")
	l.lvcreate("-L", "1M", "-n", "snapcow", "vgt")
	l.lvcreate("-L", "20M", "-n", "onboth", "vgt")
	backup := filepath.Join(l.dir, "vgt.txt")
	l.lvm("vgcfgbackup", "-f", backup, "vgt")
	text, err := os.ReadFile(backup)
	require.NoError(t, err)
	edited := addThinAndSnapshot(t, string(text))
	require.NoError(t, os.WriteFile(backup, []byte(edited), 0o644))
	l.lvm("vgcfgrestore", "--force", "-f", backup, "vgt")
	types, origins := map[string]string{}, map[string]string{}
	for _, row := range l.report("lvs", "lv", "-a", "-o", "lv_name,segtype,origin") {
		types[strings.Trim(row["lv_name"], "[]")] = row["segtype"]
		origins[strings.Trim(row["lv_name"], "[]")] = row["origin"]
	}
	require.Equal(t, "root", origins["snapcow"], "LVM should see snapcow as a snapshot of root")
	require.Equal(t, "thin", types["thin1"], "%v", types)
	require.Equal(t, "thin-pool", types["pool"])

	vg, err := Assemble(l.pvs())
	require.NoError(t, err)
	cases := []struct {
		lv   string
		want string // "" when it opens
	}{
		{"root", ""},
		{"pool_tdata", ""}, // a hidden sub-LV is plain linear
		{"thin1", `segment type "thin"`},
		{"pool", `segment type "thin-pool"`},
		{"snapshot0", `segment type "snapshot"`},
		{"snapcow", "copy-on-write store"},
	}
	infos := map[string]LVInfo{}
	for _, info := range vg.LVs() {
		infos[info.Name] = info
	}
	for _, tc := range cases {
		t.Run(tc.lv, func(t *testing.T) {
			_, _, err := vg.Open(tc.lv)
			if tc.want == "" {
				assert.NoError(t, err)
				assert.NoError(t, infos[tc.lv].Err)
				return
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrUnsupported)
			assert.ErrorIs(t, infos[tc.lv].Err, ErrUnsupported)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	assert.False(t, infos["pool_tdata"].Visible())
	assert.True(t, infos["thin1"].Visible())

	// Only the first disk: "onboth" spans onto the second and is missing a
	// PV; "root", on the first, still reads.
	alone, err := Assemble(l.pvs()[:1])
	require.NoError(t, err)
	_, _, err = alone.Open("onboth")
	assert.ErrorIs(t, err, ErrMissingPV)
	assert.Contains(t, err.Error(), "pv1")
	_, _, err = alone.Open("root")
	assert.NoError(t, err)
}

// addThinAndSnapshot turns the LVs pdata and pmeta of a vgcfgbackup into
// a thin pool's hidden sub-LVs pool_tdata and pool_tmeta, adds the pool, a thin LV
// in it, and a snapshot of root whose COW store is snapcow.
func addThinAndSnapshot(t *testing.T, text string) string {
	t.Helper()
	text = strings.Replace(text, "\t\tpdata {", "\t\tpool_tdata {", 1)
	text = strings.Replace(text, "\t\tpmeta {", "\t\tpool_tmeta {", 1)
	for _, sub := range []string{"pool_tdata", "pool_tmeta", "snapcow"} {
		i := strings.Index(text, "\t\t"+sub+" {")
		require.GreaterOrEqual(t, i, 0, sub)
		j := i + strings.Index(text[i:], `"VISIBLE"]`)
		if sub != "snapcow" { // sub-LVs are hidden
			text = text[:j-2] + "]" + text[j+len(`"VISIBLE"]`):]
		}
	}
	extra := `
		pool {
			id = "poolAA-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaaa"
			status = ["READ", "WRITE", "VISIBLE"]
			flags = []
			segment_count = 1
			segment1 {
				start_extent = 0
				extent_count = 4
				type = "thin-pool"
				metadata = "pool_tmeta"
				pool = "pool_tdata"
				transaction_id = 1
				chunk_size = 128
				discards = "passdown"
				zero_new_blocks = 0
			}
		}
		thin1 {
			id = "thinAA-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaaa"
			status = ["READ", "WRITE", "VISIBLE"]
			flags = []
			segment_count = 1
			segment1 {
				start_extent = 0
				extent_count = 8
				type = "thin"
				thin_pool = "pool"
				transaction_id = 0
				device_id = 1
			}
		}
		snapshot0 {
			id = "snapAA-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaaa"
			status = ["READ"]
			flags = []
			segment_count = 1
			segment1 {
				start_extent = 0
				extent_count = 2
				type = "snapshot"
				chunk_size = 8
				origin = "root"
				cow_store = "snapcow"
			}
		}
`
	i := strings.Index(text, "\tlogical_volumes {\n")
	require.GreaterOrEqual(t, i, 0)
	i += len("\tlogical_volumes {\n")
	return text[:i] + extra + text[i:]
}

// A real ext4 filesystem in a fragmented LV, read through boot/ext4.
func TestRealExt4InLV(t *testing.T) {
	testutil.RequireTool(t, "mkfs.ext4")
	l := newLab(t, 24)
	l.lvm("pvcreate", "-y", l.loops[0])
	l.lvm("vgcreate", "-s", "1M", "vgr", l.loops[0])
	l.lvcreate("-L", "4M", "-n", "root", "vgr")
	l.lvcreate("-L", "1M", "-n", "gap", "vgr")
	l.lvm("lvextend", "--driverloaded", "n", "-L", "+4M", "vgr/root")
	segs := l.report("lvs", "seg", "--segments", "-o", "seg_start_pe", "vgr/root")
	require.Len(t, segs, 2, "root should be fragmented")

	src := filepath.Join(l.dir, "root")
	files := map[string]string{
		"boot/vmlinuz-6.1.0-13-amd64":    strings.Repeat("kernel", 200000), // spans extents
		"boot/grub/grub.cfg":             "linux /boot/vmlinuz-6.1.0-13-amd64 root=/dev/mapper/vgr-root\n",
		"etc/fstab":                      "/dev/mapper/vgr-root / ext4 defaults 0 1\n",
		"boot/initrd.img-6.1.0-13-amd64": strings.Repeat("initrd", 1000),
	}
	for name, data := range files {
		p := filepath.Join(src, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(data), 0o644))
	}
	fsImg := filepath.Join(l.dir, "root.ext4")
	require.NoError(t, os.WriteFile(fsImg, nil, 0o644))
	require.NoError(t, os.Truncate(fsImg, 8<<20))
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", src, fsImg).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	data, err := os.ReadFile(fsImg)
	require.NoError(t, err)
	l.writeLV("vgr", "root", data)

	vg, err := Assemble(l.pvs())
	require.NoError(t, err)
	r, size, err := vg.Open("root")
	require.NoError(t, err)
	require.Equal(t, int64(8<<20), size)
	fsys, err := ext4.Open(r, size)
	require.NoError(t, err)
	for name, data := range files {
		got, err := fsys.ReadFile("/"+name, 4<<20)
		require.NoError(t, err, name)
		assert.True(t, string(got) == data, "%s: %d bytes, want %d", name, len(got), len(data))
	}
}
