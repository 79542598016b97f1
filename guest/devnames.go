package guest

import (
	"fmt"
	"path"
	"strings"
)

// nativePrefix is the disk name prefix each target's guests see.
var nativePrefix = map[string]string{"kvm": "/dev/vd", "vmconv": "/dev/vd", "xen": "/dev/xvd", "vmware": "/dev/sd"}

// devFile is a file where a disk device name matters, and what it costs.
type devFile struct {
	name string
	sev  Severity
	what string
}

var devFiles = []devFile{
	{"/etc/fstab", Error, "mounts"},
	{"/etc/crypttab", Error, "unlocks"},
	{"/boot/grub/grub.cfg", Error, "boots from"},
	{"/boot/grub2/grub.cfg", Error, "boots from"},
	{"/etc/default/grub", Error, "boots from"},
	{"/boot/grub/grubenv", Error, "boots from"}, // kernelopts of BLS entries
	{"/boot/grub2/grubenv", Error, "boots from"},
	{"/boot/grub/menu.lst", Error, "boots from"},
	{"/boot/grub/grub.conf", Error, "boots from"},
	{"/boot/extlinux/extlinux.conf", Error, "boots from"},
	{"/boot/syslinux/syslinux.cfg", Error, "boots from"},
	{"/extlinux.conf", Error, "boots from"},
	{"/etc/initramfs-tools/conf.d/resume", Warning, "resumes from"},
}

// checkDeviceNames finds disks named by kernel device name (or by PCI path)
// in the files that boot and mount the guest: on the target the disks get
// other names (sda becomes vda on KVM, xvda on Xen), so the guest stops at
// an emergency shell. A name already native to the target is a warning
// (disk order may still change).
func checkDeviceNames(c *checkCtx) ([]Finding, []string) {
	var out []Finding
	files := append([]devFile(nil), devFiles...)
	if names, err := c.fs.ReadDir("/boot/loader/entries"); err == nil {
		for _, n := range names {
			if strings.HasSuffix(n, ".conf") {
				files = append(files, devFile{"/boot/loader/entries/" + n, Error, "boots from"})
			}
		}
	}
	scanned := false // the boot entry's configuration was among them
	for _, df := range files {
		b, err := c.fs.ReadFile(df.name, maxTextFile)
		if err != nil {
			continue
		}
		if c.entry != nil && strings.HasSuffix(c.entry.Config, df.name) {
			scanned = true
		}
		lines(b, func(n int, l string) {
			for _, dev := range devName.FindAllString(l, -1) {
				out = append(out, c.devFinding(df, n, l, dev))
			}
		})
	}
	if c.entry != nil && !scanned {
		// A configuration read other than through the files above (the
		// /vmlinuz links, a file on a volume not mounted): its command line.
		for _, key := range []string{"root", "resume"} {
			if v := cmdlineParam(c.entry.Cmdline, key); devName.MatchString(v) {
				out = append(out, c.devFinding(devFile{c.entry.Config, Error, "boots from"}, 0, key+"="+v, v))
			}
		}
	}
	return out, nil
}

func (c *checkCtx) devFinding(df devFile, line int, text, dev string) Finding {
	sev := df.sev
	code := "device-name"
	msg := fmt.Sprintf("%s %s by its device name; on %s the disk gets another name (%sX)", df.what, dev, c.opt.Target, nativePrefix[c.opt.Target])
	if p := nativePrefix[c.opt.Target]; p != "" && strings.HasPrefix(dev, p) {
		sev, code = Warning, "device-name-fragile"
		msg = fmt.Sprintf("%s %s by its device name, which changes when the disk order does", df.what, dev)
	}
	if strings.HasPrefix(dev, "/dev/disk/by-path/") {
		msg = fmt.Sprintf("%s %s by its PCI path, which the target's virtual hardware does not have", df.what, dev)
	}
	if df.name == "/etc/fstab" && sev == Error && !fstabNeeded(text) {
		sev = Warning // the boot goes on without it
	}
	key := paramBefore(text, dev)
	if strings.EqualFold(key, "resume") {
		sev, msg = Warning, fmt.Sprintf("resumes from %s, a device name; the boot waits for it and hibernation breaks", dev)
	}
	fix := "name it by UUID= (blkid shows it)"
	if v := resolve(dev, c.vols); v != nil && v.UUID != "" {
		fix = "use UUID=" + v.UUID
		if key != "" {
			fix = fmt.Sprintf("use %s=UUID=%s", key, v.UUID)
		}
	}
	if path.Base(df.name) == "grub.cfg" {
		fix += " (grub.cfg is generated: fix /etc/default/grub, leave GRUB_DISABLE_LINUX_UUID unset, and run update-grub or grub2-mkconfig)"
	}
	return Finding{Code: code, Severity: sev, File: df.name, Line: line, Message: msg, Fix: fix}
}

// paramBefore is the parameter ("root", "resume", or RESUME as
// initramfs-tools spells it) whose value dev is in text, or "".
func paramBefore(text, dev string) string {
	before := text[:max(strings.Index(text, dev), 0)]
	for _, k := range []string{"root", "resume"} {
		if strings.HasSuffix(strings.ToLower(before), k+"=") {
			return before[len(before)-len(k)-1 : len(before)-1]
		}
	}
	return ""
}

// fstabNeeded reports whether the boot stops when an fstab line's device is
// missing: not for nofail or noauto mounts, nor for swap (systemd gives up
// on it after a timeout and boots on).
func fstabNeeded(line string) bool {
	f := parseFstab([]byte(line))
	if len(f) != 1 {
		return true
	}
	if f[0].typ == "swap" {
		return false
	}
	for _, o := range strings.Split(f[0].opts, ",") {
		if o == "nofail" || o == "noauto" {
			return false
		}
	}
	return true
}
