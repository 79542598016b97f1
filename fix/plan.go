// Package fix applies the minimal fixes a moved guest needs into a copy of
// its disks, never into the input: the guest's own kernel boots (QEMU, or
// vmconv's machine) with a small initramfs whose /init is vmconv itself,
// the guest's disks served writable behind copy-on-write overlays. /init
// mounts the guest's root, applies the steps the host planned (device
// names to UUIDs, an initramfs rebuilt by the guest's own tools with the
// target's drivers, a .link file that gives the new NIC the old name, the
// old hypervisor's tools disabled), reports each result as a JSON line on
// the console and powers off. The overlays then hold the fixed guest.
//
// The host side (planning, the initramfs, reading the results back) is
// here; the guest side is package fix/initfix.
package fix

import (
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/vmconv/vmconv/boot"
	"github.com/vmconv/vmconv/guest"
)

// Step kinds.
const (
	StepDeviceNames  = "device-names"  // /dev/sdX names to UUID= in the files that mount and boot
	StepNetLink      = "net-link"      // a systemd .link naming the VM's NIC as the configuration does
	StepToolsDisable = "tools-disable" // the old hypervisor's services no longer started
	StepInitramfs    = "initramfs"     // the initramfs rebuilt with the target's disk drivers
)

// Plan is what /init does in the guest: handed over as JSON inside the
// initramfs (PlanFile).
type Plan struct {
	Kernel string `json:"kernel"` // the version the modules and the initramfs are for
	Root   Mount  `json:"root"`
	// Mounts are mounted under the root before the steps run (/boot when
	// separate), in order.
	Mounts []Mount `json:"mounts,omitempty"`
	// Modules are the files under ModuleDir in the initramfs, in load order.
	Modules []string `json:"modules"`
	Steps   []Step   `json:"steps"`
}

// Mount is a guest filesystem as /init finds it: by UUID (or LABEL), in
// the LVM logical volume LV ("vg/lv", activated first) when set, and its
// type and mount options.
type Mount struct {
	Path    string `json:"path"`
	UUID    string `json:"uuid,omitempty"`
	Label   string `json:"label,omitempty"`
	LV      string `json:"lv,omitempty"`
	FSType  string `json:"fstype"`
	Options string `json:"options,omitempty"` // e.g. "subvol=@" for a btrfs root subvolume
}

// Step is one fix.
type Step struct {
	Kind  string   `json:"kind"`
	Codes []string `json:"codes"` // the findings it answers
	// device-names: the files to rewrite and each device name's UUID= form.
	Files []string          `json:"files,omitempty"`
	Names map[string]string `json:"names,omitempty"`
	// net-link: the VM's MAC and the name the configuration uses.
	MAC  string `json:"mac,omitempty"`
	Name string `json:"name,omitempty"`
	// tools-disable: the units whose enablement links go.
	Units []string `json:"units,omitempty"`
	// initramfs: the drivers to add; Tool is "update-initramfs" or
	// "dracut"; Initrd the file dracut writes (the one the guest boots).
	Drivers []string `json:"drivers,omitempty"`
	Tool    string   `json:"tool,omitempty"`
	Initrd  string   `json:"initrd,omitempty"`
}

// Where the initramfs keeps the plan and the modules.
const (
	PlanFile  = "/vmconv-fix.json"
	ModuleDir = "/lib/modules/vmconv-fix"
)

// Unfixed is a finding no step answers, and why.
type Unfixed struct {
	Code   string `json:"code"`
	Where  string `json:"where,omitempty"`
	Reason string `json:"reason"`
}

// rewritable are the files StepDeviceNames knows how to rewrite, with
// the BLS entries (rewritableFile).
var rewritable = map[string]bool{
	"/etc/fstab": true, "/etc/crypttab": true,
	"/boot/grub/grub.cfg": true, "/boot/grub2/grub.cfg": true, "/etc/default/grub": true,
	"/boot/grub/grubenv": true, "/boot/grub2/grubenv": true,
	"/boot/grub/menu.lst": true, "/boot/grub/grub.conf": true,
	"/boot/extlinux/extlinux.conf": true, "/boot/syslinux/syslinux.cfg": true,
	"/etc/initramfs-tools/conf.d/resume": true,
}

func rewritableFile(name string) bool {
	dir, base := path.Split(name)
	return rewritable[name] || dir == "/boot/loader/entries/" && strings.HasSuffix(base, ".conf") && !strings.Contains(base, "..")
}

// toolUnits are the systemd units of each hypervisor's guest tools.
var toolUnits = map[string][]string{
	"vmware-tools": {"open-vm-tools.service", "vmtoolsd.service", "vgauth.service", "vmware-tools.service"},
	"xen-tools":    {"xe-linux-distribution.service", "xen-guest-agent.service"},
}

var ifaceInMessage = regexp.MustCompile(`bound to interface ([A-Za-z0-9_.:@-]{1,15});`)

// PlanFor turns an inspection's findings into steps. macs are the VM's NIC
// MACs (none for a bare image). Findings with no step are returned as
// Unfixed. A report with no root mount cannot be fixed.
func PlanFor(rep *guest.Report, target guest.Target, macs []string) (*Plan, []Unfixed, error) {
	if len(rep.Mounts) == 0 || rep.Mounts[0].Path != "/" {
		return nil, nil, fmt.Errorf("fix: no Linux root filesystem found")
	}
	root := rep.Mounts[0]
	if root.Volume.UUID == "" && root.Volume.Label == "" {
		return nil, nil, fmt.Errorf("fix: the root filesystem has neither UUID nor label")
	}
	p := &Plan{Kernel: rep.Kernel, Root: planMount(root)}
	for _, m := range rep.Mounts[1:] {
		if m.Path == "/boot" {
			p.Mounts = append(p.Mounts, planMount(m))
		}
	}
	var unfixed []Unfixed
	steps := map[string]*Step{}
	step := func(kind, code string) *Step {
		s := steps[kind]
		if s == nil {
			s = &Step{Kind: kind}
			steps[kind] = s
		}
		if !contains(s.Codes, code) {
			s.Codes = append(s.Codes, code)
		}
		return s
	}
	names := deviceNames(volumesOf(rep))
	for _, f := range rep.Findings {
		switch {
		case (f.Code == "device-name" || f.Code == "device-name-fragile") && rewritableFile(f.File) && len(names) > 0:
			s := step(StepDeviceNames, f.Code)
			if !contains(s.Files, f.File) {
				s.Files = append(s.Files, f.File)
			}
			s.Names = names
		case f.Code == "initramfs-no-disk-driver" && rep.Kernel != "":
			s := step(StepInitramfs, f.Code)
			s.Drivers, s.Tool = initramfsDrivers(target), initramfsTool(rep)
			if s.Tool == "dracut" {
				s.Initrd = dracutImage(rep)
			}
		case f.Code == "net-config-by-name" && len(macs) > 0:
			m := ifaceInMessage.FindStringSubmatch(f.Message)
			if m == nil {
				unfixed = append(unfixed, Unfixed{f.Code, f.Where(), "the interface name could not be read from the finding"})
				continue
			}
			if s := steps[StepNetLink]; s != nil && s.Name != m[1] {
				unfixed = append(unfixed, Unfixed{f.Code, f.Where(), "a second interface name (" + m[1] + "): one NIC is renamed"})
				continue
			}
			s := step(StepNetLink, f.Code)
			s.MAC, s.Name = strings.ToLower(macs[0]), m[1]
		case toolUnits[f.Code] != nil:
			step(StepToolsDisable, f.Code).Units = toolUnits[f.Code]
		default:
			unfixed = append(unfixed, Unfixed{f.Code, f.Where(), noFixReason(f.Code, len(macs) > 0)})
		}
	}
	if s := steps[StepDeviceNames]; s != nil && (contains(s.Files, "/boot/grub/grub.cfg") || contains(s.Files, "/boot/grub2/grub.cfg")) &&
		!contains(s.Files, "/etc/default/grub") {
		// grub.cfg is generated: the next update-grub must not write the
		// device names back (GRUB_DISABLE_LINUX_UUID=true is commented out).
		s.Files = append(s.Files, "/etc/default/grub")
	}
	// The .link file goes in before the initramfs is rebuilt, so a hook
	// that copies /etc/systemd/network into it finds it.
	for _, k := range []string{StepDeviceNames, StepNetLink, StepToolsDisable, StepInitramfs} {
		if s := steps[k]; s != nil {
			sort.Strings(s.Files)
			p.Steps = append(p.Steps, *s)
		}
	}
	return p, unfixed, nil
}

func noFixReason(code string, haveMAC bool) string {
	switch code {
	case "net-config-by-name":
		if !haveMAC {
			return "a bare image has no NIC MAC to match"
		}
	case "device-name", "device-name-fragile":
		return "no volume with a UUID matches the name, or the file is not one vmconv rewrites"
	case "net-config-by-mac":
		return "keep the MAC on the target VM"
	case "no-net-driver":
		return "the kernel's module package must be installed in the guest"
	}
	return "no automatic fix"
}

func volumesOf(rep *guest.Report) []boot.Volume {
	var vols []boot.Volume
	for _, m := range rep.Mounts {
		vols = append(vols, m.Volume)
	}
	return vols
}

// deviceNames maps every kernel name a partition may have had (sdb2, vdb2,
// xvdb2, hdb2, nvme1n1p2) to UUID=, for the volumes with a UUID.
func deviceNames(vols []boot.Volume) map[string]string {
	out := map[string]string{}
	for _, v := range vols {
		if v.UUID == "" || v.LV != "" {
			continue
		}
		letters := diskLetters(v.Disk)
		part := ""
		if v.Partition > 0 {
			part = fmt.Sprint(v.Partition)
		}
		for _, pre := range []string{"sd", "vd", "xvd", "hd"} {
			out["/dev/"+pre+letters+part] = "UUID=" + v.UUID
		}
		nv := fmt.Sprintf("/dev/nvme%dn1", v.Disk)
		if part != "" {
			nv += "p" + part
		}
		out[nv] = "UUID=" + v.UUID
	}
	return out
}

// diskLetters is the kernel's letters for disk i: 0 a, 25 z, 26 aa.
func diskLetters(i int) string {
	s := ""
	for i++; i > 0; i = (i - 1) / 26 {
		s = string(rune('a'+(i-1)%26)) + s
	}
	return s
}

// initramfsDrivers are the target's disk drivers (the first of each group
// of alternatives), and virtio_mmio: vmconv verify's machines attach their
// disks over virtio-mmio, not PCI.
func initramfsDrivers(t guest.Target) []string {
	var out []string
	for _, g := range t.Disk {
		out = append(out, g[0])
	}
	if contains(out, "virtio_blk") {
		out = append(out, "virtio_mmio")
	}
	return out
}

// planMount is how /init finds and mounts a guest filesystem.
func planMount(m guest.Mount) Mount {
	v := m.Volume
	out := Mount{Path: m.Path, UUID: v.UUID, Label: v.Label, LV: v.LV, FSType: v.FSType}
	if v.FSType == "btrfs" && v.Subvolume != "" {
		out.Options = "subvol=" + v.Subvolume
	}
	return out
}

// initramfsTool is the tool that made the guest's initramfs.
func initramfsTool(rep *guest.Report) string {
	return guest.InitramfsTool(rep.Mounts[0].Volume.FS, rep.OS)
}

// dracutImage is the initramfs file the guest boots, as a path in the
// root filesystem: the boot entry's, under /boot whichever filesystem
// holds it; RHEL's name when the entry has none.
func dracutImage(rep *guest.Report) string {
	if rep.Boot != nil && rep.Boot.InitrdPath != "" {
		first := strings.Fields(rep.Boot.InitrdPath)[0]
		if base := path.Base(first); base != "/" && base != "." {
			return "/boot/" + base
		}
	}
	return "/boot/initramfs-" + rep.Kernel + ".img"
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
