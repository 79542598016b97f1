package xl

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/neutral"
)

// Format is the neutral Source.Format of VMs read from an xl.cfg.
const Format = "xl"

// ExtKey is the Extensions.Xen entry holding what the neutral VM does not
// model: {"cfg": {key: value}, "disks": {vdev: [options]}, "vifs":
// [[options]]}. Values are strings, float64 for bare numbers, and []any.
const ExtKey = "xl"

// Limits.
const (
	maxCPUs      = 4096
	maxMemoryMiB = 1 << 24
	maxDisks     = 256
	maxNICs      = 64
)

// modelled are the keys the neutral fields carry; the rest go to the
// extensions verbatim.
var modelled = map[string]bool{"name": true, "uuid": true, "memory": true, "maxmem": true, "vcpus": true,
	"maxvcpus": true, "kernel": true, "ramdisk": true, "cmdline": true, "root": true, "extra": true,
	"disk": true, "vif": true}

// mapper carries one file through the mapping steps.
type mapper struct {
	f     *File
	vm    *neutral.VM
	specs []DiskSpec // per vm.Disks
	ext   map[string]any
}

func (m *mapper) errf(key string, format string, args ...any) error {
	_, line, _ := m.f.Get(key)
	if line > 0 {
		return fmt.Errorf("xl %s: line %d: %s: %s", m.f.Name, line, key, fmt.Sprintf(format, args...))
	}
	return fmt.Errorf("xl %s: %s: %s", m.f.Name, key, fmt.Sprintf(format, args...))
}

// str returns key as a string (a list is an error).
func (m *mapper) str(key string) (string, bool, error) {
	v, _, ok := m.f.Get(key)
	if !ok {
		return "", false, nil
	}
	if v.Kind != String {
		return "", true, m.errf(key, "expected a string, got a list")
	}
	return v.Text, true, nil
}

// num returns key as a number in [lo, hi]; libxlu accepts numbers written
// as strings ('1024') too.
func (m *mapper) num(key string, lo, hi int64) (int64, bool, error) {
	t, ok, err := m.str(key)
	if !ok || err != nil {
		return 0, ok, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(t), 0, 64)
	if err != nil || n < lo || n > hi {
		return 0, true, m.errf(key, "%q: want a number %d–%d", clip(t), lo, hi)
	}
	return n, true, nil
}

// ToVM maps a parsed file to a neutral VM whose disks have no content; the
// disk specs come back parallel to vm.Disks.
func ToVM(f *File) (*neutral.VM, []DiskSpec, error) {
	m := &mapper{f: f, ext: map[string]any{}}
	m.vm = &neutral.VM{Schema: neutral.Schema, Firmware: "bios", CPUs: 1, CoresPerSocket: 1, MemoryMiB: 128,
		Disks: []neutral.Disk{}, NICs: []neutral.NIC{}}
	for _, step := range []func() error{m.mapIdentity, m.mapCPUs, m.mapMemory, m.mapFirmware, m.mapBoot,
		m.mapDisks, m.mapNICs, m.mapExtensions} {
		if err := step(); err != nil {
			return nil, nil, err
		}
	}
	if err := m.vm.Validate(); err != nil {
		return nil, nil, fmt.Errorf("xl %s: %w", f.Name, err)
	}
	return m.vm, m.specs, nil
}

func (m *mapper) mapIdentity() error {
	name, ok, err := m.str("name")
	if err != nil {
		return err
	}
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("xl %s: no name: xl requires `name = \"...\"`", m.f.Name)
	}
	m.vm.Name = name
	if u, ok, err := m.str("uuid"); err != nil {
		return err
	} else if ok {
		if !uuidShape(u) {
			return m.errf("uuid", "%q is not a UUID", clip(u))
		}
		m.vm.UUID = strings.ToLower(u)
	}
	return nil
}

// mapCPUs: maxvcpus when set (the VM can use that many), else vcpus.
func (m *mapper) mapCPUs() error {
	v, okV, err := m.num("vcpus", 1, maxCPUs)
	if err != nil {
		return err
	}
	mx, okM, err := m.num("maxvcpus", 1, maxCPUs)
	if err != nil {
		return err
	}
	switch {
	case okM:
		m.vm.CPUs = int(mx)
		if okV && v > mx {
			return m.errf("vcpus", "%d is more than maxvcpus %d", v, mx)
		}
	case okV:
		m.vm.CPUs = int(v)
	}
	return nil
}

// mapMemory: maxmem when set (memory < maxmem starts ballooned), else memory.
func (m *mapper) mapMemory() error {
	mem, okMem, err := m.num("memory", 1, maxMemoryMiB)
	if err != nil {
		return err
	}
	mx, okMax, err := m.num("maxmem", 1, maxMemoryMiB)
	if err != nil {
		return err
	}
	switch {
	case okMax && (!okMem || mx >= mem):
		m.vm.MemoryMiB = mx
	case okMem:
		m.vm.MemoryMiB = mem
	}
	return nil
}

// guestType is type, else builder ("hvm" or "generic" = PV), else PV.
func (m *mapper) guestType() (string, error) {
	if t, ok, err := m.str("type"); err != nil || ok {
		t = strings.ToLower(strings.TrimSpace(t))
		if err == nil && t != "pv" && t != "pvh" && t != "hvm" {
			return "", m.errf("type", "%q: want pv, pvh or hvm", clip(t))
		}
		return t, err
	}
	if b, ok, err := m.str("builder"); err != nil || ok {
		if strings.EqualFold(strings.TrimSpace(b), "hvm") {
			return "hvm", err
		}
		return "pv", err
	}
	return "pv", nil
}

// mapFirmware: UEFI when firmware is uefi/ovmf or bios is ovmf.
func (m *mapper) mapFirmware() error {
	if _, err := m.guestType(); err != nil {
		return err
	}
	for _, k := range []string{"firmware", "bios"} {
		v, _, err := m.str(k)
		if err != nil {
			return err
		}
		if l := strings.ToLower(strings.TrimSpace(v)); l == "uefi" || l == "ovmf" {
			m.vm.Firmware = "uefi"
		}
	}
	return nil
}

// mapBoot takes a direct kernel boot: kernel, ramdisk and the command line
// (cmdline, else "root=<root> <extra>" as xl builds it).
func (m *mapper) mapBoot() error {
	var b neutral.Boot
	var err error
	if b.Kernel, _, err = m.str("kernel"); err != nil {
		return err
	}
	if b.Initrd, _, err = m.str("ramdisk"); err != nil {
		return err
	}
	cmd, hasCmd, err := m.str("cmdline")
	if err != nil {
		return err
	}
	if !hasCmd {
		root, _, err := m.str("root")
		if err != nil {
			return err
		}
		extra, _, err := m.str("extra")
		if err != nil {
			return err
		}
		if root != "" {
			cmd = "root=" + root
		}
		if extra != "" {
			cmd = strings.TrimSpace(cmd + " " + extra)
		}
	}
	b.Cmdline = cmd
	if b != (neutral.Boot{}) {
		m.vm.Boot = &b
	}
	return nil
}

// mapDisks reads `disk = [...]` in order; the vdev names each drive.
func (m *mapper) mapDisks() error {
	v, _, ok := m.f.Get("disk")
	if !ok {
		return nil
	}
	if v.Kind != List {
		return m.errf("disk", "expected a list of disk specifications")
	}
	if len(v.Items) > maxDisks {
		return m.errf("disk", "%d disks: at most %d", len(v.Items), maxDisks)
	}
	seen := map[string]bool{}
	opts := map[string]any{}
	for i, it := range v.Items {
		if it.Kind != String {
			return m.errf("disk", "entry %d: expected a string", i+1)
		}
		d, err := ParseDiskSpec(it.Text)
		if err != nil {
			return m.errf("disk", "entry %d: %v", i+1, err)
		}
		if seen[d.Vdev] {
			return m.errf("disk", "entry %d: vdev %s given twice", i+1, d.Vdev)
		}
		seen[d.Vdev] = true
		idx, _, _ := VdevIndex(d.Vdev)
		nd := neutral.Disk{ID: d.Vdev, Device: "disk", Bus: busOf(d.Vdev), Unit: idx, ReadOnly: d.Access == "ro"}
		if d.CDROM {
			nd.Device = "cdrom"
		}
		if !neutral.ValidDiskID(nd.ID) {
			nd.ID = fmt.Sprintf("disk%d", i)
		}
		if len(d.Other) > 0 || d.Script != "" || d.Partial {
			o := append([]any{}, toAny(d.Other)...)
			if d.Script != "" {
				o = append(o, "script="+d.Script)
			}
			opts[d.Vdev] = o
		}
		m.vm.Disks = append(m.vm.Disks, nd)
		m.specs = append(m.specs, d)
	}
	for i := range m.vm.Disks {
		if m.vm.Disks[i].Device == "disk" {
			m.vm.Disks[i].Bootable = true
			break
		}
	}
	if len(opts) > 0 {
		m.ext["disks"] = opts
	}
	return nil
}

func busOf(vdev string) string {
	switch {
	case strings.HasPrefix(vdev, "hd"):
		return "ide"
	case strings.HasPrefix(vdev, "sd"):
		return "scsi"
	}
	return "xen"
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, x := range s {
		out[i] = x
	}
	return out
}

// mapNICs reads `vif = [...]`: MAC, bridge (the network), model.
func (m *mapper) mapNICs() error {
	v, _, ok := m.f.Get("vif")
	if !ok {
		return nil
	}
	if v.Kind != List {
		return m.errf("vif", "expected a list of network specifications")
	}
	if len(v.Items) > maxNICs {
		return m.errf("vif", "%d NICs: at most %d", len(v.Items), maxNICs)
	}
	var opts []any
	keep := false
	for i, it := range v.Items {
		if it.Kind != String {
			return m.errf("vif", "entry %d: expected a string", i+1)
		}
		s, err := ParseVifSpec(it.Text)
		if err != nil {
			return m.errf("vif", "entry %d: %v", i+1, err)
		}
		m.vm.NICs = append(m.vm.NICs, neutral.NIC{MAC: s.MAC, Network: s.Bridge, Model: s.Model})
		opts = append(opts, toAny(s.Other))
		keep = keep || len(s.Other) > 0
	}
	if keep {
		m.ext["vifs"] = opts
	}
	return nil
}

// mapExtensions keeps every other key verbatim, and memory/vcpus when they
// say more than the neutral fields (a ballooned or hot-plug start).
func (m *mapper) mapExtensions() error {
	cfg := map[string]any{}
	for _, k := range m.f.Keys() {
		v, _, _ := m.f.Get(k)
		keepCount := (k == "memory" && m.f.has("maxmem")) || (k == "vcpus" && m.f.has("maxvcpus"))
		if modelled[k] && !keepCount {
			continue
		}
		cfg[k] = valueJSON(v)
	}
	if len(cfg) > 0 {
		m.ext["cfg"] = cfg
	}
	if len(m.ext) > 0 {
		m.vm.Extensions.Xen = map[string]any{ExtKey: m.ext}
	}
	return nil
}

func (f *File) has(k string) bool { _, _, ok := f.Get(k); return ok }

// valueJSON turns a value into JSON-compatible data: strings, float64 for
// bare numbers, []any for lists.
func valueJSON(v Value) any {
	if v.Kind == List {
		out := make([]any, len(v.Items))
		for i, it := range v.Items {
			out[i] = valueJSON(it)
		}
		return out
	}
	if v.Number {
		if n, err := strconv.ParseInt(v.Text, 0, 64); err == nil && n >= -(1<<53) && n <= 1<<53 {
			return float64(n)
		}
	}
	return v.Text
}

func uuidShape(u string) bool {
	if len(u) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := u[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
		} else if !isHexDigit(c) {
			return false
		}
	}
	return true
}

// ReadOptions tune Read.
type ReadOptions struct {
	// Open opens a disk file in the named format ("raw", "qcow2", "vhd").
	Open func(path, format string) (disk.Image, error)
	// MarkMissing marks absent disk files Missing instead of failing, and
	// disks whose backing file is absent (File names that file).
	MarkMissing bool
	// Capacity, when set, gives such a disk's size from the file that is
	// here, in the named format.
	Capacity func(path, format string) (int64, error)
}

// Read reads the xl.cfg at path and opens its disks; relative targets are
// taken relative to the file's directory.
func Read(path string, opt ReadOptions) (*neutral.VM, error) {
	fh, err := disk.OpenFile(path)
	if err != nil {
		return nil, fmt.Errorf("xl: %w", err)
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("xl %s: %w", path, err)
	}
	f, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	vm, specs, err := ToVM(f)
	if err != nil {
		return nil, err
	}
	vm.Source = &neutral.Source{Format: Format, File: path}
	for i, s := range specs {
		if err := openDisk(vm, i, s, filepath.Dir(path), opt); err != nil {
			vm.Close()
			return nil, fmt.Errorf("xl %s: disk %s: %w", path, s.Vdev, err)
		}
	}
	return vm, nil
}

func openDisk(vm *neutral.VM, i int, s DiskSpec, dir string, opt ReadOptions) error {
	d := &vm.Disks[i]
	if s.Target == "" {
		return nil // an empty CD-ROM drive
	}
	if s.Script != "" {
		return fmt.Errorf("target %q goes through the %s script, which vmconv cannot follow", clip(s.Target), s.Script)
	}
	p := s.Target
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		switch {
		case d.Device == "cdrom":
			return nil // the ISO is not here: an empty drive
		case opt.MarkMissing:
			d.Missing, d.File = true, p
			return nil
		}
		return fmt.Errorf("%s not found", p)
	}
	if opt.Open == nil {
		return errors.New("no disk opener")
	}
	img, err := opt.Open(p, s.Format)
	if err != nil {
		// The target is here but a file it names is not (a qcow2's or
		// VHD's backing file): missing too, named by the absent file.
		if missing, ok := disk.MissingFile(err); ok && opt.MarkMissing {
			d.Missing, d.File = true, missing
			if opt.Capacity != nil {
				d.CapacityBytes, _ = opt.Capacity(p, s.Format) // unknown (0) when it cannot say
			}
			return nil
		}
		return err
	}
	d.Image, d.CapacityBytes = img, img.Size()
	return nil
}
