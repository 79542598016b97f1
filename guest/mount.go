package guest

import (
	"errors"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/vmconv/vmconv/boot"
)

const maxTextFile = 1 << 20 // configuration files read whole

// fstabEntry is one line of /etc/fstab.
type fstabEntry struct {
	spec, dir, typ, opts string
	line                 int
}

func parseFstab(b []byte) []fstabEntry {
	var out []fstabEntry
	for i, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		e := fstabEntry{spec: f[0], dir: f[1], line: i + 1}
		if len(f) > 2 {
			e.typ = f[2]
		}
		if len(f) > 3 {
			e.opts = f[3]
		}
		out = append(out, e)
	}
	return out
}

// devName matches the kernel names of disks and partitions that depend on
// the bus (and order) the hypervisor gives them.
var devName = regexp.MustCompile(`/dev/(?:(sd|hd|xvd|vd)([a-z]+)([0-9]*)|nvme([0-9]+)n([0-9]+)(?:p([0-9]+))?|disk/by-path/[^\s"',;]+)`)

// diskOf says which disk and partition a device name means, by the order
// the guest saw its disks: sda and nvme0n1 are disk 0. ok is false for names
// that do not say (by-path).
func diskOf(name string) (d, part int, ok bool) {
	m := devName.FindStringSubmatch(name)
	switch {
	case m == nil:
		return 0, 0, false
	case m[2] != "":
		for _, ch := range m[2] {
			d = d*26 + int(ch-'a') + 1
		}
		d--
		part, _ = strconv.Atoi(m[3])
		return d, part, true
	case m[4] != "":
		d, _ = strconv.Atoi(m[4])
		part, _ = strconv.Atoi(m[6])
		return d, part, true
	}
	return 0, 0, false
}

// lvName returns "vg/lv" for the names udev gives a logical volume:
// /dev/mapper/VG-LV (dashes inside a name doubled) and /dev/VG/LV.
func lvName(spec string) string {
	if m, ok := strings.CutPrefix(spec, "/dev/mapper/"); ok {
		// The separator is the first dash not part of a "--" pair.
		for i := 0; i < len(m); i++ {
			if m[i] != '-' {
				continue
			}
			if i+1 < len(m) && m[i+1] == '-' {
				i++
				continue
			}
			vg, lv := strings.ReplaceAll(m[:i], "--", "-"), strings.ReplaceAll(m[i+1:], "--", "-")
			if vg == "" || lv == "" {
				return ""
			}
			return vg + "/" + lv
		}
		return ""
	}
	if rest, ok := strings.CutPrefix(spec, "/dev/"); ok {
		if vg, lv, ok := strings.Cut(rest, "/"); ok && vg != "" && lv != "" && !strings.Contains(lv, "/") &&
			!strings.HasPrefix(rest, "disk/") && !strings.HasPrefix(rest, "mapper/") {
			return vg + "/" + lv
		}
	}
	return ""
}

// resolve finds the volume an fstab spec or root= value names.
func resolve(spec string, vols []boot.Volume) *boot.Volume {
	key, val, _ := strings.Cut(spec, "=")
	for _, p := range [][2]string{{"/dev/disk/by-uuid/", "UUID"}, {"/dev/disk/by-label/", "LABEL"}, {"/dev/disk/by-partuuid/", "PARTUUID"}} {
		if v, ok := strings.CutPrefix(spec, p[0]); ok {
			key, val = p[1], v
		}
	}
	for i := range vols {
		v := &vols[i]
		switch key {
		case "UUID":
			if strings.EqualFold(v.UUID, val) {
				return v
			}
		case "LABEL":
			if v.Label == val {
				return v
			}
		case "PARTUUID":
			if v.PartUUID != "" && strings.EqualFold(v.PartUUID, val) {
				return v
			}
		}
	}
	if lv := lvName(spec); lv != "" {
		for i := range vols {
			if vols[i].LV == lv {
				return &vols[i]
			}
		}
	}
	if d, p, ok := diskOf(spec); ok && strings.HasPrefix(spec, "/dev/") {
		for i := range vols {
			if vols[i].Disk == d && vols[i].Partition == p {
				return &vols[i]
			}
		}
	}
	return nil
}

// mountGuest picks the root filesystem (the boot entry's root=, else the
// first volume with /etc/fstab or /etc/os-release) and mounts the others
// /etc/fstab names on it.
func mountGuest(vols []boot.Volume, entry *boot.Entry) (boot.FS, []Mount, []string) {
	var root *boot.Volume
	if entry != nil {
		if spec := cmdlineParam(entry.Cmdline, "root"); spec != "" {
			if v := resolve(spec, vols); v != nil && isRoot(v.FS) {
				root = v
			}
		}
	}
	for i := 0; root == nil && i < len(vols); i++ {
		if isRoot(vols[i].FS) {
			root = &vols[i]
		}
	}
	if root == nil {
		return nil, nil, nil
	}
	mounts := []Mount{{Path: "/", Volume: *root}}
	var notes []string
	b, _ := root.FS.ReadFile("/etc/fstab", maxTextFile)
	for _, e := range parseFstab(b) {
		if e.dir == "/" || !strings.HasPrefix(e.dir, "/") || e.typ == "swap" || e.typ == "tmpfs" || e.typ == "proc" {
			if e.dir == "/" {
				mounts[0].Spec = e.spec
			}
			continue
		}
		v := resolve(e.spec, vols)
		if v == nil {
			notes = append(notes, "/etc/fstab:"+strconv.Itoa(e.line)+": "+e.spec+" on "+e.dir+": no readable volume matches")
			continue
		}
		mounts = append(mounts, Mount{Path: path.Clean(e.dir), Spec: e.spec, Volume: *v})
	}
	// Deepest mount point first, so route finds the one a path is under.
	byDepth := append([]Mount(nil), mounts...)
	sort.SliceStable(byDepth, func(i, j int) bool { return len(byDepth[i].Path) > len(byDepth[j].Path) })
	return &mountFS{mounts: byDepth}, mounts, notes
}

func isRoot(f boot.FS) bool {
	for _, n := range []string{"/etc/fstab", "/etc/os-release", "/usr/lib/os-release"} {
		if _, _, err := f.Stat(n); err == nil {
			return true
		}
	}
	return false
}

// mountFS routes each path to the filesystem mounted deepest above it.
type mountFS struct{ mounts []Mount } // deepest mount point first

func (m *mountFS) route(name string) (boot.FS, string, error) {
	name = path.Clean("/" + name)
	for _, mt := range m.mounts {
		if mt.Path == "/" {
			return mt.Volume.FS, name, nil
		}
		if name == mt.Path || strings.HasPrefix(name, mt.Path+"/") {
			return mt.Volume.FS, "/" + strings.TrimPrefix(strings.TrimPrefix(name, mt.Path), "/"), nil
		}
	}
	return nil, "", errors.New("no root mounted")
}

func (m *mountFS) ReadFile(name string, max int64) ([]byte, error) {
	f, p, err := m.route(name)
	if err != nil {
		return nil, err
	}
	return f.ReadFile(p, max)
}

func (m *mountFS) ReadDir(name string) ([]string, error) {
	f, p, err := m.route(name)
	if err != nil {
		return nil, err
	}
	return f.ReadDir(p)
}

func (m *mountFS) Stat(name string) (int64, bool, error) {
	f, p, err := m.route(name)
	if err != nil {
		return 0, false, err
	}
	return f.Stat(p)
}

// cmdlineParam returns the value of key= on a kernel command line (the
// last one wins, as in the kernel).
func cmdlineParam(cmdline, key string) string {
	v := ""
	for _, f := range strings.Fields(cmdline) {
		if val, ok := strings.CutPrefix(f, key+"="); ok {
			v = val
		}
	}
	return v
}

// lines calls fn for each line of a text file that is not a comment.
func lines(b []byte, fn func(n int, line string)) {
	for i, l := range strings.Split(string(b), "\n") {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		fn(i+1, l)
	}
}
