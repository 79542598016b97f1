package guest

import (
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/vmconv/vmconv/boot"
	"github.com/vmconv/vmconv/boot/initramfs"
)

// Target is what a hypervisor gives a guest: each inner list of Disk (and
// Net) is a set of alternatives, one of which must be there.
type Target struct {
	Disk  [][]string
	Net   [][]string
	Tools []string // the guest tools that belong to this hypervisor
}

// Targets are the hypervisors vmconv converts to.
var Targets = map[string]Target{
	"kvm":    {Disk: [][]string{{"virtio_blk"}, {"virtio_pci"}}, Net: [][]string{{"virtio_net"}}},
	"xen":    {Disk: [][]string{{"xen_blkfront"}}, Net: [][]string{{"xen_netfront"}}, Tools: []string{"xen"}},
	"vmware": {Disk: [][]string{{"vmw_pvscsi", "mptspi", "ahci"}}, Net: [][]string{{"vmxnet3", "e1000"}}, Tools: []string{"vmware"}},
	// vmconv's own machines (verify's engines): virtio devices on MMIO,
	// not PCI, as in QEMU's microvm.
	"vmconv": {Disk: [][]string{{"virtio_blk"}, {"virtio_mmio"}}, Net: [][]string{{"virtio_net"}}},
}

// TargetNames lists the known targets, sorted.
func TargetNames() []string {
	var out []string
	for k := range Targets {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// moduleName is the module a file is, or "": "virtio_blk.ko.xz" -> "virtio_blk".
func moduleName(file string) string {
	b := path.Base(file)
	for _, s := range []string{".xz", ".zst", ".gz"} {
		b = strings.TrimSuffix(b, s)
	}
	if !strings.HasSuffix(b, ".ko") {
		return ""
	}
	return strings.ReplaceAll(strings.TrimSuffix(b, ".ko"), "-", "_")
}

// moduleSet reads a modules.builtin (or modules.dep) listing into names.
func moduleSet(b []byte, into map[string]bool) {
	lines(b, func(_ int, l string) {
		f, _, _ := strings.Cut(l, ":") // modules.dep: "path: deps"
		if m := moduleName(strings.TrimSpace(f)); m != "" {
			into[m] = true
		}
	})
}

// missing returns, for each group of alternatives none of which is in any
// of sets, the group joined with " or ".
func missing(groups [][]string, sets ...map[string]bool) []string {
	var out []string
	for _, g := range groups {
		found := false
		for _, m := range g {
			for _, s := range sets {
				found = found || s[m]
			}
		}
		if !found {
			out = append(out, strings.Join(g, " or "))
		}
	}
	return out
}

// builtin reads the kernel's modules.builtin from the guest's root.
func (c *checkCtx) builtin() map[string]bool {
	set := map[string]bool{}
	for _, d := range []string{"/lib/modules/", "/usr/lib/modules/"} {
		if b, err := c.fs.ReadFile(d+c.kver+"/modules.builtin", 8<<20); err == nil {
			moduleSet(b, set)
			break
		}
	}
	return set
}

// checkInitramfs: the initramfs the boot entry loads must carry (or the
// kernel have built in) the target's disk drivers, or the root filesystem
// is never found.
func checkInitramfs(c *checkCtx) (_ []Finding, notes []string) {
	if c.entry == nil || c.kver == "" {
		return nil, []string{"initramfs not checked: no boot entry or kernel version found"}
	}
	builtin := c.builtin()
	inInitrd := map[string]bool{}
	file := c.entry.InitrdPath
	if len(c.entry.Initrd) > 0 {
		im, err := initramfs.Read(c.entry.Initrd, initramfs.Limits{})
		if err != nil {
			return nil, []string{fmt.Sprintf("initramfs %s: %v", file, err)}
		}
		for _, n := range im.Notes {
			notes = append(notes, fmt.Sprintf("initramfs %s: %s", file, n))
		}
		for _, e := range im.Entries {
			if strings.Contains("/"+e.Name, "/lib/modules/"+c.kver+"/") {
				if m := moduleName(e.Name); m != "" {
					inInitrd[m] = true
				}
			}
			if path.Base(e.Name) == "modules.builtin" && strings.Contains(e.Name, c.kver) {
				if b, err := im.ReadFile(e.Name, 8<<20); err == nil {
					moduleSet(b, builtin)
				}
			}
		}
	} else {
		file = c.entry.KernelPath
	}
	miss := missing(c.target.Disk, builtin, inInitrd)
	if len(miss) == 0 {
		return nil, notes
	}
	f := Finding{Code: "initramfs-no-disk-driver", Severity: Error, File: file,
		Message: fmt.Sprintf("the initramfs for kernel %s has no %s driver (nor is it built into the kernel): the root disk will not be found on %s",
			c.kver, strings.Join(miss, ", "), c.opt.Target),
		Fix: initramfsFix(c, miss)}
	if len(c.entry.Initrd) == 0 {
		f.Message = fmt.Sprintf("kernel %s boots without an initramfs and has no %s driver built in", c.kver, strings.Join(miss, ", "))
	}
	return []Finding{f}, notes
}

// initramfsFix says how this guest adds drivers to its initramfs, with
// the tool it has (InitramfsTool).
func initramfsFix(c *checkCtx, mods []string) string {
	var names []string
	for _, m := range mods {
		names = append(names, strings.Split(m, " or ")[0])
	}
	if InitramfsTool(c.fs, c.os) == "update-initramfs" {
		return fmt.Sprintf("add %s to /etc/initramfs-tools/modules and run update-initramfs -u -k %s",
			strings.Join(names, ", "), c.kver)
	}
	image := "/boot/initramfs-" + c.kver + ".img"
	if c.entry != nil && c.entry.InitrdPath != "" {
		image = "/boot/" + path.Base(strings.Fields(c.entry.InitrdPath)[0])
	}
	return fmt.Sprintf("add force_drivers+=\" %s \" to a file in /etc/dracut.conf.d/ and run dracut --force %s %s",
		strings.Join(names, " "), image, c.kver)
}

// InitramfsTool is the tool that makes the guest's initramfs, read from
// its root filesystem: "dracut" when the guest has it (the RHEL family,
// SUSE, and Debian or Ubuntu guests switched to it, where it replaces
// initramfs-tools), else "update-initramfs" on Debian-like guests, else
// "dracut".
func InitramfsTool(root boot.FS, o *OS) string {
	for _, p := range []string{"/usr/bin/dracut", "/usr/sbin/dracut", "/sbin/dracut"} {
		if root != nil {
			if _, dir, err := root.Stat(p); err == nil && !dir {
				return "dracut"
			}
		}
	}
	if o != nil && (o.ID == "debian" || o.ID == "ubuntu" || strings.Contains(o.IDLike, "debian")) {
		return "update-initramfs"
	}
	return "dracut"
}

// checkNetDriver: the target's network driver must be installed for the
// kernel (it loads from the root filesystem, not the initramfs).
func checkNetDriver(c *checkCtx) ([]Finding, []string) {
	if c.kver == "" {
		return nil, nil
	}
	dep := map[string]bool{}
	var file string
	for _, d := range []string{"/lib/modules/", "/usr/lib/modules/"} {
		if b, err := c.fs.ReadFile(d+c.kver+"/modules.dep", 16<<20); err == nil {
			moduleSet(b, dep)
			file = d + c.kver + "/modules.dep"
			break
		}
	}
	if file == "" {
		return nil, []string{"network driver not checked: no modules.dep for kernel " + c.kver}
	}
	miss := missing(c.target.Net, dep, c.builtin())
	if len(miss) == 0 {
		return nil, nil
	}
	return []Finding{{Code: "no-net-driver", Severity: Warning, File: file,
		Message: fmt.Sprintf("kernel %s has no %s driver installed: no network on %s", c.kver, strings.Join(miss, ", "), c.opt.Target),
		Fix:     "install the kernel's module package that carries " + strings.Join(miss, ", ")}}, nil
}
