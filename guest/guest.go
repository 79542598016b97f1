// Package guest inspects a guest's filesystems before it moves to another
// hypervisor, and names each thing that will stop it booting or reaching
// the network there: a missing disk driver in its initramfs, disks named by
// device (/dev/sda1) where the target names them otherwise, network
// configuration bound to an interface name or MAC that changes, the old
// hypervisor's tools, firmware it cannot boot with.
//
// Each check is a small function over a read-only view of the guest (the
// root filesystem with /boot and the others from /etc/fstab mounted in
// place), so each is tested alone on an in-memory tree.
package guest

import (
	"fmt"
	"sort"
	"strings"

	"github.com/vmconv/vmconv/boot"
	"github.com/vmconv/vmconv/disk"
)

// Severity says what a finding costs on the target.
type Severity string

const (
	// Error: the guest will not boot (or not be usable) on the target.
	Error Severity = "error"
	// Warning: the guest boots but may lose its network or misbehave.
	Warning Severity = "warning"
)

// Finding is one problem, where it is, and how to fix it.
type Finding struct {
	Code     string   `json:"code"`
	Severity Severity `json:"severity"`
	File     string   `json:"file,omitempty"`
	Line     int      `json:"line,omitempty"`
	Message  string   `json:"message"`
	Fix      string   `json:"fix,omitempty"`
}

// Where is "file:line", "file" or "".
func (f Finding) Where() string {
	if f.Line > 0 {
		return fmt.Sprintf("%s:%d", f.File, f.Line)
	}
	return f.File
}

// OS is the guest's operating system as /etc/os-release names it.
type OS struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	VersionID  string `json:"version_id,omitempty"`
	PrettyName string `json:"pretty_name,omitempty"`
	IDLike     string `json:"id_like,omitempty"`
}

// Mount is a filesystem of the guest and where it is mounted.
type Mount struct {
	Path   string      `json:"path"`
	Spec   string      `json:"spec,omitempty"` // as /etc/fstab names it
	Volume boot.Volume `json:"volume"`
}

// Report is the result of an inspection.
type Report struct {
	Target   string      `json:"target"`
	OS       *OS         `json:"os,omitempty"`
	Kernel   string      `json:"kernel,omitempty"` // version, e.g. 6.1.0-50-amd64
	Boot     *boot.Entry `json:"boot,omitempty"`
	Mounts   []Mount     `json:"mounts,omitempty"`
	Findings []Finding   `json:"findings"`
	Notes    []string    `json:"notes,omitempty"` // what could not be read or checked
}

// Errors counts the error-severity findings.
func (r *Report) Errors() int {
	n := 0
	for _, f := range r.Findings {
		if f.Severity == Error {
			n++
		}
	}
	return n
}

// Options describe the VM around the disks and where it goes.
type Options struct {
	Target   string   // "kvm", "xen", "vmware", or "vmconv" (verify's machines)
	Firmware string   // the VM's firmware on the target: "bios", "uefi" or "" (unknown)
	MACs     []string // the VM's NIC MACs, when a VM (not a bare image) was given
}

// Inspect reads the guest on disks and runs every check.
func Inspect(disks []disk.Image, opt Options) (*Report, error) {
	t, ok := Targets[opt.Target]
	if !ok {
		return nil, fmt.Errorf("guest: unknown target %q (want %s)", opt.Target, strings.Join(TargetNames(), ", "))
	}
	rep := &Report{Target: opt.Target, Findings: []Finding{}}
	vols, notes := boot.Volumes(disks)
	rep.Notes = append(rep.Notes, notes...)
	entry, err := boot.Find(disks)
	if err != nil {
		rep.Notes = append(rep.Notes, err.Error())
	}
	rep.Boot = entry
	root, mounts, mnotes := mountGuest(vols, entry)
	rep.Notes = append(rep.Notes, mnotes...)
	if root == nil {
		// No Linux: a Windows guest is named as such. (An NTFS data disk
		// beside a Linux root is no finding.)
		if f := findWindows(disks, vols); f != nil {
			rep.Findings = append(rep.Findings, *f)
			return rep, nil
		}
		rep.Notes = append(rep.Notes, "no Linux root filesystem found (no /etc/fstab or /etc/os-release on a readable volume)")
		return rep, nil
	}
	rep.Mounts = mounts
	c := &checkCtx{fs: root, entry: entry, vols: vols, opt: opt, target: t, disks: disks}
	c.run(rep)
	return rep, nil
}

// checkCtx is what every check reads.
type checkCtx struct {
	fs     boot.FS
	entry  *boot.Entry
	vols   []boot.Volume
	opt    Options
	target Target
	disks  []disk.Image
	os     *OS
	kver   string
	linked map[string]bool // interface names .link files give the VM's NICs
}

// A check looks at one thing and returns its findings.
type check func(c *checkCtx) ([]Finding, []string)

var checks = []check{checkInitramfs, checkNetDriver, checkDeviceNames, checkNetwork, checkTools, checkFirmware}

func (c *checkCtx) run(rep *Report) {
	c.os = readOS(c.fs)
	rep.OS = c.os
	c.kver = kernelVersion(c.fs, c.entry)
	rep.Kernel = c.kver
	for _, ch := range checks {
		fs, notes := ch(c)
		rep.Findings = append(rep.Findings, fs...)
		rep.Notes = append(rep.Notes, notes...)
	}
	sort.SliceStable(rep.Findings, func(i, j int) bool {
		return rep.Findings[i].Severity == Error && rep.Findings[j].Severity != Error
	})
}
