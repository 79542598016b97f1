package guest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/internal/testutil"
)

const (
	brokenKver = "6.1.0-50-amd64"
	brokenUUID = "0f3c2a55-7b1d-4e0a-9d8e-2c41f6a7b901"
	brokenMAC  = "00:50:56:aa:bb:cc"
)

// brokenTree is a Debian guest as VMware left it, each file written so
// that a problem sits on a known line.
var brokenTree = map[string]string{
	"etc/os-release": "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n",
	"etc/fstab": "# <file system> <mount point> <type> <options> <dump> <pass>\n" +
		"/dev/sda1 / ext4 errors=remount-ro 0 1\n" +
		"/dev/sdb1 /srv ext4 defaults,nofail 0 2\n",
	"boot/grub/grub.cfg": "set default=0\nset timeout=5\nmenuentry 'Debian GNU/Linux' {\n" +
		"\tlinux /boot/vmlinuz-" + brokenKver + " root=/dev/sda1 ro quiet\n" +
		"\tinitrd /boot/initrd.img-" + brokenKver + "\n}\n",
	"etc/default/grub":                               "GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n",
	"etc/initramfs-tools/conf.d/resume":              "RESUME=/dev/sda2\n",
	"boot/vmlinuz-" + brokenKver:                     "not a kernel, only its name matters here\n",
	"lib/modules/" + brokenKver + "/modules.builtin": "kernel/drivers/scsi/scsi_mod.ko\nkernel/drivers/scsi/sd_mod.ko\n",
	"lib/modules/" + brokenKver + "/modules.dep":     "kernel/drivers/net/vmxnet3/vmxnet3.ko:\nkernel/drivers/scsi/mptspi.ko:\n",
	"etc/network/interfaces": "auto lo\niface lo inet loopback\n\nauto ens192\n" +
		"iface ens192 inet static\n\taddress 192.0.2.10/24\n\tgateway 192.0.2.1\n",
	"etc/netplan/50-static.yaml": "network:\n  version: 2\n  ethernets:\n    ens192:\n" +
		"      addresses: [192.0.2.10/24]\n      routes:\n        - to: default\n          via: 192.0.2.1\n",
	"var/lib/dpkg/status": "Package: libc6\nStatus: install ok installed\nVersion: 2.36-9\n\n" +
		"Package: open-vm-tools\nStatus: install ok installed\nPriority: extra\nVersion: 2:12.2.0-1\n\n" +
		"Package: xe-guest-utilities\nStatus: deinstall ok config-files\nVersion: 7.20.2-0\n",
}

// buildInitrd makes the guest's initramfs with GNU cpio and zstd: an early
// microcode cpio, then a zstd cpio holding only the VMware SCSI drivers.
func buildInitrd(t *testing.T, dir string) []byte {
	t.Helper()
	testutil.RequireTool(t, "cpio")
	testutil.RequireTool(t, "zstd")
	files := map[string]string{
		"early/kernel/x86/microcode/GenuineIntel.bin":                               "microcode",
		"main/usr/lib/modules/" + brokenKver + "/kernel/drivers/scsi/mptspi.ko":     "\x7fELF mptspi",
		"main/usr/lib/modules/" + brokenKver + "/kernel/drivers/scsi/vmw_pvscsi.ko": "\x7fELF vmw_pvscsi",
		"main/usr/lib/modules/" + brokenKver + "/modules.builtin":                   brokenTree["lib/modules/"+brokenKver+"/modules.builtin"],
		"main/init": "#!/bin/sh\n",
	}
	writeTree(t, dir, files)
	sh := func(script string) []byte {
		cmd := exec.Command("sh", "-c", script)
		cmd.Dir = dir
		out, err := cmd.Output()
		require.NoError(t, err, script)
		return out
	}
	early := sh("cd early && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0")
	main := sh("cd main && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 | zstd -q -19 -T1")
	return append(early, main...)
}

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(root, p)
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(c), 0o644))
	}
}

// buildBroken writes the broken guest as the real tools make a disk: the
// tree staged, mkfs.ext4 -d, an MBR from sfdisk, no mounting.
func buildBroken(t *testing.T) string {
	t.Helper()
	testutil.RequireTool(t, "mkfs.ext4")
	testutil.RequireTool(t, "sfdisk")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	writeTree(t, root, brokenTree)
	initrd := buildInitrd(t, filepath.Join(dir, "initrd"))
	require.NoError(t, os.WriteFile(filepath.Join(root, "boot", "initrd.img-"+brokenKver), initrd, 0o644))
	raw := filepath.Join(dir, "disk.raw")
	f, err := os.Create(raw)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(34<<20))
	require.NoError(t, f.Close())
	cmd := exec.Command("sfdisk", "--no-reread", "--no-tell-kernel", "-q", raw)
	cmd.Stdin = strings.NewReader("label: dos\nlabel-id: 0x1234abcd\nunit: sectors\nstart=2048, size=65536, type=83, bootable\n")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	fsimg := filepath.Join(dir, "root.ext4")
	testutil.Run(t, "mkfs.ext4", "-q", "-F", "-U", brokenUUID, "-d", root, fsimg, "32M")
	b, err := os.ReadFile(fsimg)
	require.NoError(t, err)
	f, err = os.OpenFile(raw, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(b, 2048*512)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	return raw
}

// TestBrokenGuest: each problem planted in the broken guest is named with
// its file and line, its severity and a fix, for a conversion to KVM.
func TestBrokenGuest(t *testing.T) {
	img, err := disk.OpenRaw(buildBroken(t))
	require.NoError(t, err)
	defer img.Close()
	rep, err := Inspect([]disk.Image{img}, Options{Target: "kvm", Firmware: "bios", MACs: []string{brokenMAC}})
	require.NoError(t, err)
	js, _ := json.MarshalIndent(rep, "", "  ")
	require.NotNil(t, rep.OS, "%s", js)
	assert.Equal(t, "debian", rep.OS.ID)
	want := []struct {
		code, where string
		sev         Severity
		msg, fix    string
	}{
		{"initramfs-no-disk-driver", "/boot/initrd.img-" + brokenKver, Error, "virtio_blk, virtio_pci", "/etc/initramfs-tools/modules"},
		{"device-name", "/etc/fstab:2", Error, "/dev/sda1", "use UUID=" + brokenUUID},
		{"device-name", "/etc/fstab:3", Warning, "/dev/sdb1", "UUID="}, // nofail; its disk is not there to name
		{"device-name", "/boot/grub/grub.cfg:4", Error, "/dev/sda1", "use root=UUID=" + brokenUUID},
		{"device-name", "/etc/initramfs-tools/conf.d/resume:1", Warning, "/dev/sda2", "UUID="},
		{"no-net-driver", "/lib/modules/" + brokenKver + "/modules.dep", Warning, "virtio_net", "virtio_net"},
		{"net-config-by-name", "/etc/network/interfaces:5", Warning, "static", brokenMAC},
		{"net-config-by-name", "/etc/netplan/50-static.yaml:4", Warning, "netplan static", brokenMAC},
		{"vmware-tools", "/var/lib/dpkg/status:5", Warning, "open-vm-tools", "open-vm-tools"},
	}
	for _, w := range want {
		t.Run(w.code+"@"+w.where, func(t *testing.T) {
			var got *Finding
			for i, f := range rep.Findings {
				if f.Code == w.code && f.Where() == w.where {
					got = &rep.Findings[i]
				}
			}
			require.NotNil(t, got, "no %s at %s in\n%s", w.code, w.where, js)
			assert.Equal(t, w.sev, got.Severity)
			assert.Contains(t, got.Message, w.msg)
			assert.Contains(t, got.Fix, w.fix)
		})
	}
	assert.Len(t, rep.Findings, len(want), "%s", js)
	assert.Equal(t, 3, rep.Errors(), "%s", js)

	// The same guest goes to VMware cleanly but for its device names'
	// fragility and its network, which is VMware's own.
	rep, err = Inspect([]disk.Image{img}, Options{Target: "vmware"})
	require.NoError(t, err)
	codes := map[string]int{}
	for _, f := range rep.Findings {
		codes[fmt.Sprintf("%s/%s", f.Code, f.Severity)]++
	}
	assert.Equal(t, map[string]int{"device-name-fragile/warning": 4, "net-config-by-name/warning": 2}, codes)
	assert.Zero(t, rep.Errors())
}
