package xl

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/neutral"
)

// WriteOptions tune Write.
type WriteOptions struct {
	// DiskFormat is the format disks are written in and named in the
	// file: "raw" (default), "qcow2" or "vhd".
	DiskFormat string
	// NewDisk creates a writer for a disk of that format at path.
	NewDisk func(out *disk.Output, path string, size int64) (disk.Writer, error)
}

// diskExt is the file extension of each disk format written.
var diskExt = map[string]string{"raw": ".img", "qcow2": ".qcow2", "vhd": ".vhd", "qcow": ".qcow", "qed": ".qed"}

// Write writes vm as NAME.cfg at path with its disks beside it
// (NAME-VDEV.img, …; ISOs as NAME-VDEV.iso). Disk targets in the file are
// absolute paths of where the disks are written. Everything goes through
// out.
func Write(ctx context.Context, out *disk.Output, path string, vm *neutral.VM, opt WriteOptions, copyOpt disk.CopyOptions) error {
	if path == disk.Stdout {
		return errors.New("xl: a VM is a configuration with disk files and cannot be written to standard output")
	}
	if opt.DiskFormat == "" {
		opt.DiskFormat = "raw"
	}
	if _, ok := diskExt[opt.DiskFormat]; !ok {
		return fmt.Errorf("xl: disk format %q: want raw, qcow2 or vhd", opt.DiskFormat)
	}
	for _, d := range vm.Disks {
		if d.Device != "cdrom" && d.Image == nil {
			return fmt.Errorf("xl %s: disk %s has no content to write", path, d.ID)
		}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	dir := filepath.Dir(abs)
	base := strings.TrimSuffix(filepath.Base(abs), filepath.Ext(abs))
	vdevs := planVdevs(vm)
	files := make([]string, len(vm.Disks))
	for i, d := range vm.Disks {
		switch {
		case d.Device == "cdrom" && d.Image != nil:
			files[i] = filepath.Join(dir, base+"-"+vdevs[i]+".iso")
		case d.Device != "cdrom":
			files[i] = filepath.Join(dir, base+"-"+vdevs[i]+diskExt[opt.DiskFormat])
		}
	}
	text, err := FromVM(vm, vdevs, files, opt.DiskFormat)
	if err != nil {
		return err
	}
	if !out.Force {
		for _, t := range append([]string{path}, files...) {
			if _, err := os.Lstat(t); t != "" && err == nil {
				return fmt.Errorf("%s: already exists (use --force to replace it)", t)
			}
		}
	}
	if err := out.MkdirAll(filepath.Dir(path)); err != nil {
		return fmt.Errorf("xl %s: %w", path, err)
	}
	fh, err := out.Create(path)
	if err != nil {
		return err
	}
	if _, err := fh.Write(text); err != nil {
		return fmt.Errorf("xl %s: %w", path, err)
	}
	for i, d := range vm.Disks {
		if files[i] == "" {
			continue
		}
		target := filepath.Join(filepath.Dir(path), filepath.Base(files[i]))
		var w disk.Writer
		if d.Device == "cdrom" || opt.DiskFormat == "raw" || opt.NewDisk == nil {
			f, err := out.Create(target)
			if err != nil {
				return err
			}
			w = disk.NewRawWriter(f, d.Image.Size())
		} else if w, err = opt.NewDisk(out, target, d.Image.Size()); err != nil {
			return fmt.Errorf("xl %s: disk %s: %w", path, d.ID, err)
		}
		if err := disk.Copy(ctx, d.Image, w, copyOpt); err != nil {
			return fmt.Errorf("xl %s: disk %s → %s: %w", path, d.ID, filepath.Base(target), err)
		}
	}
	return nil
}

var vdevRe = regexp.MustCompile(`^(xvd|hd|sd)[a-z]{1,3}[0-9]{0,3}$`)

// planVdevs names each drive: its id when that is a Xen device name
// (a VM that came from Xen), else hdX for an IDE drive's unit, else the
// next free xvdX.
func planVdevs(vm *neutral.VM) []string {
	out := make([]string, len(vm.Disks))
	used := map[string]bool{}
	for i, d := range vm.Disks {
		if vdevRe.MatchString(d.ID) && !used[d.ID] {
			if _, _, err := VdevIndex(d.ID); err == nil {
				out[i], used[d.ID] = d.ID, true
			}
		}
	}
	for i, d := range vm.Disks {
		if out[i] != "" || d.Bus != "ide" || d.Unit > 3 || used[VdevName("hd", d.Unit)] {
			continue
		}
		out[i] = VdevName("hd", d.Unit)
		used[out[i]] = true
	}
	next := 0
	for i := range vm.Disks {
		if out[i] != "" {
			continue
		}
		for used[VdevName("xvd", next)] {
			next++
		}
		out[i] = VdevName("xvd", next)
		used[out[i]] = true
	}
	return out
}

// FromVM renders the xl.cfg of vm: the modelled settings, the disks and
// NICs, then every setting kept from an xl source. vdevs and files run
// parallel to vm.Disks ("" file for an empty drive).
func FromVM(vm *neutral.VM, vdevs, files []string, format string) ([]byte, error) {
	if vm.Name == "" {
		return nil, errors.New("xl: the VM has no name, which xl requires")
	}
	ext, cfg := xlExt(vm)
	var b strings.Builder
	put := func(k, v string) { fmt.Fprintf(&b, "%s = %s\n", k, v) }
	fmt.Fprintf(&b, "# Xen domain configuration (xl.cfg(5)) written by vmconv")
	if vm.Source != nil {
		fmt.Fprintf(&b, " from %s %s", vm.Source.Format, quoteComment(vm.Source.File))
	}
	b.WriteString("\n")
	put("name", quote(vm.Name))
	if vm.UUID != "" {
		put("uuid", quote(vm.UUID))
	}
	writeType(&b, vm, cfg)
	writeCPUMemory(&b, vm, cfg)
	writeBoot(&b, vm)
	if err := writeDisks(&b, vm, vdevs, files, format, ext); err != nil {
		return nil, err
	}
	writeNICs(&b, vm, ext)
	writeKept(&b, cfg)
	return []byte(b.String()), nil
}

// xlExt returns the VM's kept xl settings.
func xlExt(vm *neutral.VM) (map[string]any, map[string]any) {
	ext, _ := vm.Extensions.Xen[ExtKey].(map[string]any)
	cfg, _ := ext["cfg"].(map[string]any)
	return ext, cfg
}

// writeType writes the guest type: the source's own type/builder when it
// came from xl; else PVH for a direct kernel boot, HVM otherwise (with
// OVMF for UEFI).
func writeType(b *strings.Builder, vm *neutral.VM, cfg map[string]any) {
	_, hasType := cfg["type"]
	_, hasBuilder := cfg["builder"]
	if !hasType && !hasBuilder {
		t := "hvm"
		if vm.Boot != nil && vm.Boot.Kernel != "" {
			t = "pvh"
		}
		fmt.Fprintf(b, "type = %s\n", quote(t))
	}
	_, hasFW := cfg["firmware"]
	_, hasBIOS := cfg["bios"]
	if vm.Firmware == "uefi" && !hasFW && !hasBIOS {
		fmt.Fprintf(b, "bios = %s\n", quote("ovmf"))
	}
}

func writeCPUMemory(b *strings.Builder, vm *neutral.VM, cfg map[string]any) {
	if _, ok := cfg["vcpus"]; ok {
		fmt.Fprintf(b, "maxvcpus = %d\n", vm.CPUs)
	} else {
		fmt.Fprintf(b, "vcpus = %d\n", vm.CPUs)
	}
	if _, ok := cfg["memory"]; ok {
		fmt.Fprintf(b, "maxmem = %d\n", vm.MemoryMiB)
	} else {
		fmt.Fprintf(b, "memory = %d\n", vm.MemoryMiB)
	}
}

func writeBoot(b *strings.Builder, vm *neutral.VM) {
	if vm.Boot == nil {
		return
	}
	if vm.Boot.Kernel != "" {
		fmt.Fprintf(b, "kernel = %s\n", quote(vm.Boot.Kernel))
	}
	if vm.Boot.Initrd != "" {
		fmt.Fprintf(b, "ramdisk = %s\n", quote(vm.Boot.Initrd))
	}
	if vm.Boot.Cmdline != "" {
		fmt.Fprintf(b, "cmdline = %s\n", quote(vm.Boot.Cmdline))
	}
}

// writeDisks writes each drive in key=value form, target last (it takes
// the rest of the spec, so any path is safe there).
func writeDisks(b *strings.Builder, vm *neutral.VM, vdevs, files []string, format string, ext map[string]any) error {
	if len(vm.Disks) == 0 {
		return nil
	}
	opts, _ := ext["disks"].(map[string]any)
	b.WriteString("disk = [\n")
	for i, d := range vm.Disks {
		f := format
		if d.Device == "cdrom" {
			f = "raw"
		}
		parts := []string{"format=" + f, "vdev=" + vdevs[i]}
		access := "rw"
		if d.ReadOnly || d.Device == "cdrom" {
			access = "ro"
		}
		parts = append(parts, "access="+access)
		if d.Device == "cdrom" {
			parts = append(parts, "devtype=cdrom")
		}
		if o, ok := opts[d.ID].([]any); ok {
			for _, x := range o {
				if s, ok := x.(string); ok && !strings.ContainsAny(s, ",'\"\n") && !strings.HasPrefix(s, "target=") {
					parts = append(parts, s)
				}
			}
		}
		if files[i] != "" {
			if strings.ContainsAny(files[i], "'\n") {
				return fmt.Errorf("xl: disk file %q cannot be written in a disk specification", files[i])
			}
			parts = append(parts, "target="+files[i])
		}
		fmt.Fprintf(b, "    '%s',\n", strings.Join(parts, ", "))
	}
	b.WriteString("]\n")
	return nil
}

// xlModels are the NIC models xl passes to QEMU as they are; VMware's and
// others become e1000 (an HVM guest's safest emulated NIC).
var xlModels = map[string]bool{"e1000": true, "rtl8139": true, "virtio-net": true, "ne2k_pci": true, "pcnet": true, "i82551": true, "i82557b": true, "i82559er": true}

func writeNICs(b *strings.Builder, vm *neutral.VM, ext map[string]any) {
	if len(vm.NICs) == 0 {
		return
	}
	opts, _ := ext["vifs"].([]any)
	b.WriteString("vif = [\n")
	for i, n := range vm.NICs {
		var parts []string
		if n.MAC != "" {
			parts = append(parts, "mac="+strings.ToLower(n.MAC))
		}
		if n.Network != "" && !strings.ContainsAny(n.Network, ",'\"= \n") {
			parts = append(parts, "bridge="+n.Network)
		}
		if m := strings.ToLower(n.Model); m != "" {
			if !xlModels[m] {
				m = "e1000"
			}
			parts = append(parts, "model="+m)
		}
		if i < len(opts) {
			if o, ok := opts[i].([]any); ok {
				for _, x := range o {
					if s, ok := x.(string); ok && !strings.ContainsAny(s, ",'\"\n") {
						parts = append(parts, s)
					}
				}
			}
		}
		fmt.Fprintf(b, "    '%s',\n", strings.Join(parts, ", "))
	}
	b.WriteString("]\n")
}

var keyRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// writeKept writes the settings kept from an xl source, sorted.
func writeKept(b *strings.Builder, cfg map[string]any) {
	keys := make([]string, 0, len(cfg))
	for k := range cfg {
		if keyRe.MatchString(k) && (!modelled[k] || k == "memory" || k == "vcpus") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if v, ok := render(cfg[k], 0); ok {
			fmt.Fprintf(b, "%s = %s\n", k, v)
		}
	}
}

// render writes a kept value back: numbers bare, strings quoted, lists.
func render(x any, depth int) (string, bool) {
	switch v := x.(type) {
	case string:
		return quote(v), true
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return strconv.FormatInt(int64(v), 10), true
		}
		return strconv.FormatFloat(v, 'g', -1, 64), true
	case bool:
		if v {
			return "1", true
		}
		return "0", true
	case []any:
		if depth >= maxNesting {
			return "", false
		}
		parts := make([]string, 0, len(v))
		for _, it := range v {
			s, ok := render(it, depth+1)
			if !ok {
				return "", false
			}
			parts = append(parts, s)
		}
		return "[ " + strings.Join(parts, ", ") + " ]", true
	}
	return "", false
}

// quote writes a double-quoted string with the escapes libxlu reads.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if c < 0x20 || c == 0x7f {
				b.WriteByte('?') // libxlu drops numeric escapes: no way to write it
				continue
			}
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func quoteComment(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}
