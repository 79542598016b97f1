package lvm

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/internal/testutil"
)

// lab is a set of image files attached to loop devices, and the real LVM
// tools run on them with a private configuration: only these devices are
// seen, no backups or archives, no locking or cache state outside the
// test's directory, and no device-mapper (there is none here).
type lab struct {
	t      *testing.T
	dir    string
	images []string
	loops  []string
	env    []string
}

func newLab(t *testing.T, sizesMiB ...int) *lab {
	t.Helper()
	testutil.RequireTool(t, "lvm")
	testutil.RequireTool(t, "losetup")
	if os.Geteuid() != 0 {
		testutil.Unavailable(t, "loop devices need root")
	}
	l := &lab{t: t, dir: t.TempDir()}
	conf := fmt.Sprintf(`devices { obtain_device_list_from_udev = 0 external_device_info_source = "none" use_devicesfile = 0 hints = "none" }
activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }
backup { backup = 0 archive = 0 }
global { locking_dir = %q thin_check_executable = "" }
`, l.dir)
	require.NoError(t, os.WriteFile(filepath.Join(l.dir, "lvm.conf"), []byte(conf), 0o644))
	l.env = append(os.Environ(), "LVM_SYSTEM_DIR="+l.dir, "LVM_SUPPRESS_FD_WARNINGS=1")
	for i, mib := range sizesMiB {
		img := filepath.Join(l.dir, fmt.Sprintf("disk%d.img", i))
		require.NoError(t, os.WriteFile(img, nil, 0o644))
		require.NoError(t, os.Truncate(img, int64(mib)<<20))
		out, err := exec.Command("losetup", "-f", "--show", img).CombinedOutput()
		if err != nil {
			testutil.Unavailable(t, fmt.Sprintf("losetup: %v: %s", err, out))
		}
		loop := strings.TrimSpace(string(out))
		t.Cleanup(func() {
			if out, err := exec.Command("losetup", "-d", loop).CombinedOutput(); err != nil {
				t.Errorf("losetup -d %s: %v: %s", loop, err, out)
			}
		})
		l.images = append(l.images, img)
		l.loops = append(l.loops, loop)
	}
	return l
}

// lvm runs an LVM command on the lab's devices only.
func (l *lab) lvm(cmd string, args ...string) string {
	l.t.Helper()
	full := append([]string{cmd, "--devices", strings.Join(l.loops, ",")}, args...)
	c := exec.Command("lvm", full...)
	c.Env = l.env
	out, err := c.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		l.t.Fatalf("lvm %s: %v\n%s%s", strings.Join(full, " "), err, out, stderr)
	}
	return string(out)
}

// lvcreate makes an LV without device-mapper: not activated, not zeroed.
func (l *lab) lvcreate(args ...string) {
	l.t.Helper()
	l.lvm("lvcreate", append([]string{"--driverloaded", "n", "-an", "-Zn", "-y"}, args...)...)
}

// report runs an LVM reporting command in JSON and returns its rows.
func (l *lab) report(cmd, kind string, args ...string) []map[string]string {
	l.t.Helper()
	out := l.lvm(cmd, append([]string{"--reportformat", "json", "--units", "b", "--nosuffix"}, args...)...)
	var rep struct {
		Report []map[string][]map[string]string `json:"report"`
	}
	require.NoError(l.t, json.Unmarshal([]byte(out), &rep), out)
	require.Len(l.t, rep.Report, 1)
	return rep.Report[0][kind]
}

// pvs opens every image of the lab with ReadPV.
func (l *lab) pvs() []*PV {
	l.t.Helper()
	var out []*PV
	for _, img := range l.images {
		f, err := os.Open(img)
		require.NoError(l.t, err)
		l.t.Cleanup(func() { f.Close() })
		st, err := f.Stat()
		require.NoError(l.t, err)
		pv, err := ReadPV(f, st.Size())
		require.NoError(l.t, err, img)
		out = append(out, pv)
	}
	return out
}

// physical is where LVM says a run of an LV's extents is.
type physical struct {
	image string
	off   int64 // bytes
}

// layout is one LV segment as `lvs --segments` reports it.
type layout struct {
	start, count int64 // extents
	stripeSize   int64 // bytes
	areas        []physical
}

// segments asks LVM where each segment of lv lies, in bytes on the images:
// the PE ranges of `lvs --segments` and the pe_start of `pvs`.
func (l *lab) segments(vg, lv string) (extent int64, segs []layout) {
	l.t.Helper()
	vgs := l.report("vgs", "vg", "-o", "vg_extent_size", vg)
	require.Len(l.t, vgs, 1)
	extent = atoi(l.t, vgs[0]["vg_extent_size"])
	peStart := map[string]int64{}
	for _, row := range l.report("pvs", "pv", "-o", "pv_name,pe_start") {
		peStart[row["pv_name"]] = atoi(l.t, row["pe_start"])
	}
	rows := l.report("lvs", "seg", "--segments", "-o", "seg_start_pe,seg_size_pe,stripe_size,seg_pe_ranges", vg+"/"+lv)
	for _, row := range rows {
		s := layout{start: atoi(l.t, row["seg_start_pe"]), count: atoi(l.t, row["seg_size_pe"]), stripeSize: atoi(l.t, row["stripe_size"])}
		for _, rng := range strings.Fields(row["seg_pe_ranges"]) {
			dev, pes, ok := strings.Cut(rng, ":")
			require.True(l.t, ok, rng)
			first, _, _ := strings.Cut(pes, "-")
			idx := indexOf(l.loops, dev)
			require.GreaterOrEqual(l.t, idx, 0, "PE range on unknown device %s", dev)
			s.areas = append(s.areas, physical{l.images[idx], peStart[dev] + atoi(l.t, first)*extent})
		}
		segs = append(segs, s)
	}
	return extent, segs
}

// writeLV writes data (the LV's whole contents) into the images where LVM
// says the LV's chunks are: chunk k of a striped segment on area k mod n,
// row k div n, as device-mapper's striped target places it.
func (l *lab) writeLV(vg, lv string, data []byte) {
	l.t.Helper()
	extent, segs := l.segments(vg, lv)
	for _, s := range segs {
		segData := data[s.start*extent : (s.start+s.count)*extent]
		chunk := int64(len(segData))
		if len(s.areas) > 1 {
			chunk = s.stripeSize
		}
		n := int64(len(s.areas))
		for k := int64(0); k*chunk < int64(len(segData)); k++ {
			a := s.areas[k%n]
			l.writeAt(a.image, segData[k*chunk:(k+1)*chunk], a.off+(k/n)*chunk)
		}
	}
}

func (l *lab) writeAt(image string, b []byte, off int64) {
	l.t.Helper()
	f, err := os.OpenFile(image, os.O_WRONLY, 0)
	require.NoError(l.t, err)
	defer f.Close()
	_, err = f.WriteAt(b, off)
	require.NoError(l.t, err)
}

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	require.NoError(t, err, "%q", s)
	return n
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// pattern is distinct content for an LV: every 16 bytes name the LV (its
// first 6 characters) and the offset they are at in hex, so a misplaced
// chunk shows where it came from.
func pattern(name string, size int64) []byte {
	b := make([]byte, size)
	tag := fmt.Sprintf("%-6.6s", name)
	const hex = "0123456789abcdef"
	for off := int64(0); off+16 <= size; off += 16 {
		copy(b[off:], tag)
		for i, v := 15, off; i >= 6; i, v = i-1, v>>4 {
			b[off+int64(i)] = hex[v&15]
		}
	}
	return b
}

func TestPattern(t *testing.T) {
	b := pattern("root", 64)
	assert.Equal(t, "root  0000000000root  0000000010root  0000000020root  0000000030", string(b))
}
