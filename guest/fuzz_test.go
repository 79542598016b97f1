package guest

import (
	"sort"
	"testing"

	"github.com/vmconv/vmconv/boot"
	"github.com/vmconv/vmconv/internal/testutil"
)

// fuzzFiles are the guest files the checks parse; a fuzz input is placed at
// one of them.
var fuzzFiles = []string{
	"/etc/fstab", "/etc/crypttab", "/boot/grub/grub.cfg", "/etc/default/grub",
	"/etc/initramfs-tools/conf.d/resume", "/etc/network/interfaces", "/etc/netplan/01.yaml",
	"/etc/NetworkManager/system-connections/a.nmconnection", "/etc/sysconfig/network-scripts/ifcfg-eth0",
	"/etc/systemd/network/a.network", "/etc/udev/rules.d/70-persistent-net.rules", "/var/lib/dpkg/status",
	"/etc/os-release", "/lib/modules/6.1.0-50-amd64/modules.builtin", "/lib/modules/6.1.0-50-amd64/modules.dep",
}

// FuzzChecks runs every check over a guest whose configuration files hold
// arbitrary text, seeded with the broken guest's real files: findings are
// fine, panics and hangs are not, and every finding names its file.
func FuzzChecks(f *testing.F) {
	paths := make([]string, 0, len(brokenTree))
	for p := range brokenTree {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		for i, ff := range fuzzFiles {
			if ff == "/"+p {
				f.Add(uint8(i), brokenTree[p])
			}
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, text string) {
		files := memFS{"/etc/os-release": "ID=debian\n"}
		files[fuzzFiles[int(which)%len(fuzzFiles)]] = text
		testutil.Bounded(t, 64<<20, func() {
			for _, target := range TargetNames() {
				c := ctxFor(files, target, "52:54:00:12:34:56")
				c.entry = &boot.Entry{KernelPath: "/boot/vmlinuz-6.1.0-50-amd64", Cmdline: text, Config: "x"}
				rep := &Report{}
				c.run(rep)
				for _, fd := range rep.Findings {
					if fd.Code == "" || fd.Message == "" || fd.File == "" && fd.Code != "initramfs-no-disk-driver" {
						t.Fatalf("finding without code, message or file: %+v", fd)
					}
				}
			}
			mountGuest([]boot.Volume{{FS: files}}, &boot.Entry{Cmdline: text})
		})
	})
}
