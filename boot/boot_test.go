package boot

import (
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
	kver     = "6.1.0-50-amd64"
	rootUUID = "5b1e0c4a-8d1f-4a47-9c1e-6d2f0b7a9e31" // the UUID in testdata/grub/debian12.cfg
	bootUUID = "0f6b7f0e-2c55-4d1e-9d3a-0c1b2a3d4e5f"
)

// debianCfg is /boot/grub/grub.cfg exactly as grub-mkconfig wrote it for the
// Debian 12 guest that testdata/guest/build.sh builds.
func debianCfg(t testing.TB) []byte {
	b, err := os.ReadFile("testdata/grub/debian12.cfg")
	require.NoError(t, err)
	return b
}

// linuxLine returns the arguments after the path on the first linux line of
// a grub.cfg: what the test expects the finder to report.
func linuxLine(t testing.TB, cfg []byte) string {
	for _, l := range strings.Split(string(cfg), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "linux" {
			return strings.Join(f[2:], " ")
		}
	}
	t.Fatal("no linux line")
	return ""
}

type want struct {
	kernel, initrd []byte
	kernelPath     string
	initrdPath     string
	cmdline        string
	adjusted       string
	config         string // suffix of Entry.Config
	partition      int
	fs             string
	title          string
}

func check(t *testing.T, disks []disk.Image, w want) *Entry {
	t.Helper()
	e, err := Find(disks)
	require.NoError(t, err)
	assert.Equal(t, w.kernelPath, e.KernelPath, "kernel path")
	assert.True(t, string(w.kernel) == string(e.Kernel), "kernel bytes differ from the file put in the image (%d vs %d bytes)", len(e.Kernel), len(w.kernel))
	assert.Equal(t, w.initrdPath, e.InitrdPath, "initrd path")
	assert.True(t, string(w.initrd) == string(e.Initrd), "initrd bytes differ from the file put in the image (%d vs %d bytes)", len(e.Initrd), len(w.initrd))
	assert.Equal(t, w.cmdline, e.Cmdline, "cmdline")
	if w.adjusted != "" {
		assert.Equal(t, w.adjusted, e.AdjustedCmdline, "adjusted cmdline")
	}
	assert.True(t, strings.HasSuffix(e.Config, w.config), "config %q, want suffix %q", e.Config, w.config)
	assert.Equal(t, w.partition, e.Partition, "partition")
	if w.fs != "" {
		assert.Equal(t, w.fs, e.FS)
	}
	if w.title != "" {
		assert.Equal(t, w.title, e.Title)
	}
	return e
}

// Debian 12 as built by grub-mkconfig: MBR, one ext4 root holding /boot.
func TestFindGrub2Debian(t *testing.T) {
	cfg := debianCfg(t)
	kernel, initrd := randomBytes(t, 3<<20+123), randomBytes(t, 1<<20+7)
	root := tree(t, map[string][]byte{
		"boot/grub/grub.cfg":      cfg,
		"boot/vmlinuz-" + kver:    kernel,
		"boot/initrd.img-" + kver: initrd,
		"vmlinuz":                 []byte("->boot/vmlinuz-" + kver),
		"initrd.img":              []byte("->boot/initrd.img-" + kver),
		"etc/fstab":               []byte("UUID=" + rootUUID + " / ext4 errors=remount-ro 0 1\n"),
	})
	img := mkext(t, root, 24, rootUUID, "-t", "ext4")
	d := mkdisk(t, "dos", []partSpec{{img: img, typ: "83", extra: "bootable"}})
	cmd := linuxLine(t, cfg)
	check(t, []disk.Image{openImage(t, d)}, want{
		kernel: kernel, initrd: initrd,
		kernelPath: "/boot/vmlinuz-" + kver, initrdPath: "/boot/initrd.img-" + kver,
		cmdline: cmd, adjusted: strings.ReplaceAll(cmd, "/dev/sda1", "/dev/vda1") + " console=ttyS0",
		config: "disk 0 partition 1: /boot/grub/grub.cfg", partition: 1, fs: "ext4",
		title: firstTitle(t, cfg),
	})
}

// firstTitle returns the title of a grub.cfg's first menuentry.
func firstTitle(t testing.TB, cfg []byte) string {
	for _, l := range strings.Split(string(cfg), "\n") {
		if strings.HasPrefix(l, "menuentry '") {
			return strings.SplitN(l, "'", 3)[1]
		}
	}
	t.Fatal("no menuentry")
	return ""
}

// /boot on its own partition (primary 1) and root in a logical partition
// (5): grub.cfg names kernels relative to /boot's filesystem and finds it by
// UUID; the root is named /dev/sda5 as an old VMware guest would.
func TestFindGrub2SeparateBootLogical(t *testing.T) {
	cfg := `set default="1>1"
if [ -s $prefix/grubenv ]; then
  set have_grubenv=true
  load_env
fi
menuentry 'Debian GNU/Linux' --class debian $menuentry_id_option 'gnulinux-simple-` + rootUUID + `' {
	insmod part_msdos
	insmod ext2
	set root='hd0,msdos1'
	if [ x$feature_platform_search_hint = xy ]; then
	  search --no-floppy --fs-uuid --set=root --hint-bios=hd0,msdos1 --hint-efi=hd0,msdos1 --hint-baremetal=ahci0,msdos1  ` + bootUUID + `
	else
	  search --no-floppy --fs-uuid --set=root ` + bootUUID + `
	fi
	linux	/vmlinuz-6.1.0-40-amd64 root=/dev/sda5 ro  quiet
	initrd	/initrd.img-6.1.0-40-amd64
}
submenu 'Advanced options for Debian GNU/Linux' $menuentry_id_option 'gnulinux-advanced-` + rootUUID + `' {
	menuentry 'Debian GNU/Linux, with Linux 6.1.0-40-amd64' --class debian $menuentry_id_option 'gnulinux-6.1.0-40-amd64-advanced' {
		search --no-floppy --fs-uuid --set=root ` + bootUUID + `
		linux	/vmlinuz-6.1.0-40-amd64 root=/dev/sda5 ro  quiet
		initrd	/initrd.img-6.1.0-40-amd64
	}
	menuentry 'Debian GNU/Linux, with Linux 6.1.0-30-amd64' --class debian $menuentry_id_option 'gnulinux-6.1.0-30-amd64-advanced' {
		search --no-floppy --fs-uuid --set=root ` + bootUUID + `
		echo	'Loading Linux 6.1.0-30-amd64 ...'
		linux	/vmlinuz-6.1.0-30-amd64 root=/dev/sda5 ro console=ttyS0,115200n8 console=tty0 resume=/dev/sdb1
		echo	'Loading initial ramdisk ...'
		initrd	/initrd.img-6.1.0-30-amd64
	}
}
`
	k40, k30, i30 := randomBytes(t, 200000), randomBytes(t, 300000), randomBytes(t, 400000)
	boot := tree(t, map[string][]byte{
		"grub/grub.cfg":             []byte(cfg),
		"vmlinuz-6.1.0-40-amd64":    k40,
		"initrd.img-6.1.0-40-amd64": randomBytes(t, 1000),
		"vmlinuz-6.1.0-30-amd64":    k30,
		"initrd.img-6.1.0-30-amd64": i30,
	})
	root := tree(t, map[string][]byte{"etc/fstab": []byte("/dev/sda5 / ext4 defaults 0 1\n")})
	d := mkdisk(t, "dos", []partSpec{
		{img: mkext(t, boot, 8, bootUUID, "-t", "ext2"), typ: "83", extra: "bootable"},
		{typ: "82", sizeMiB: 1},
		{img: mkext(t, root, 8, rootUUID, "-t", "ext4"), typ: "83", logical: true},
	})
	check(t, []disk.Image{openImage(t, d), openImage(t, d)}, want{
		kernel: k30, initrd: i30,
		kernelPath: "/vmlinuz-6.1.0-30-amd64", initrdPath: "/initrd.img-6.1.0-30-amd64",
		cmdline:  "root=/dev/sda5 ro console=ttyS0,115200n8 console=tty0 resume=/dev/sdb1",
		adjusted: "root=/dev/vda5 ro console=tty0 resume=/dev/vdb1 console=ttyS0,115200n8",
		config:   "disk 0 partition 1: /grub/grub.cfg", partition: 1, fs: "ext2",
		title: "Advanced options for Debian GNU/Linux>Debian GNU/Linux, with Linux 6.1.0-30-amd64",
	})
}

// GPT with an EFI system partition whose grub.cfg (as Fedora's grub2-efi
// writes it) hands over to /boot's grub.cfg, which runs blscfg; grubenv
// chooses the entry and supplies $kernelopts.
func TestFindGPTEFIBLS(t *testing.T) {
	espCfg := "search --no-floppy --fs-uuid --set=dev " + bootUUID + "\nset boot=${dev}\nset prefix=($dev)/grub2\nexport $prefix\nconfigfile $prefix/grub.cfg\n"
	bootCfg := `set pager=1
if [ -f ${config_directory}/grubenv ]; then
  load_env -f ${config_directory}/grubenv
elif [ -s $prefix/grubenv ]; then
  load_env
fi
if [ "${next_entry}" ] ; then
   set default="${next_entry}"
   set next_entry=
   save_env next_entry
   set boot_once=true
else
   set default="${saved_entry}"
fi
insmod part_gpt
insmod ext2
search --no-floppy --fs-uuid --set=root ` + bootUUID + `
insmod blscfg
blscfg
`
	grubenv := "# GRUB Environment Block\nsaved_entry=0123abcd-6.5.6-300.fc39.x86_64\nkernelopts=root=UUID=" + rootUUID + " ro rhgb quiet\nboot_success=0\n"
	grubenv += strings.Repeat("#", 1024-len(grubenv))
	k656, i656 := randomBytes(t, 500000), randomBytes(t, 600000)
	boot := tree(t, map[string][]byte{
		"grub2/grub.cfg": []byte(bootCfg),
		"grub2/grubenv":  []byte(grubenv),
		"loader/entries/0123abcd-6.5.6-300.fc39.x86_64.conf":  []byte("title Fedora Linux (6.5.6-300.fc39.x86_64) 39\nversion 6.5.6-300.fc39.x86_64\nlinux /vmlinuz-6.5.6-300.fc39.x86_64\ninitrd /initramfs-6.5.6-300.fc39.x86_64.img\noptions $kernelopts\ngrub_users $grub_users\ngrub_arg --unrestricted\ngrub_class fedora\n"),
		"loader/entries/0123abcd-6.10.1-200.fc39.x86_64.conf": []byte("title Fedora Linux (6.10.1-200.fc39.x86_64) 39\nversion 6.10.1-200.fc39.x86_64\nlinux /vmlinuz-6.10.1-200.fc39.x86_64\ninitrd /initramfs-6.10.1-200.fc39.x86_64.img\noptions $kernelopts\n"),
		"vmlinuz-6.5.6-300.fc39.x86_64":                       k656,
		"initramfs-6.5.6-300.fc39.x86_64.img":                 i656,
		"vmlinuz-6.10.1-200.fc39.x86_64":                      randomBytes(t, 1000),
		"initramfs-6.10.1-200.fc39.x86_64.img":                randomBytes(t, 1000),
	})
	esp := tree(t, map[string][]byte{"EFI/fedora/grub.cfg": []byte(espCfg), "EFI/BOOT/BOOTX64.EFI": randomBytes(t, 5000)})
	root := tree(t, map[string][]byte{"etc/fstab": []byte("UUID=" + rootUUID + " / ext4 defaults 1 1\n")})
	d := mkdisk(t, "gpt", []partSpec{
		{img: mkfat(t, esp, 40*1024, 32, "1234ABCD"), typ: "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"},
		{img: mkext(t, boot, 16, bootUUID, "-t", "ext4", "-O", "64bit,metadata_csum"), typ: "0FC63DAF-8483-4772-8E79-3D69D8477DE4"},
		{img: mkext(t, root, 8, rootUUID, "-t", "ext4"), typ: "0FC63DAF-8483-4772-8E79-3D69D8477DE4"},
	})
	check(t, []disk.Image{openImage(t, d)}, want{
		kernel: k656, initrd: i656,
		kernelPath: "/vmlinuz-6.5.6-300.fc39.x86_64", initrdPath: "/initramfs-6.5.6-300.fc39.x86_64.img",
		cmdline:  "root=UUID=" + rootUUID + " ro rhgb quiet",
		adjusted: "root=UUID=" + rootUUID + " ro rhgb quiet console=ttyS0",
		config:   "disk 0 partition 2: /loader/entries/0123abcd-6.5.6-300.fc39.x86_64.conf", partition: 2, fs: "ext4",
		title: "Fedora Linux (6.5.6-300.fc39.x86_64) 39",
	})
}

// BLS entries without a grub.cfg: the newest version (6.10 > 6.9) boots.
func TestFindBLSStandaloneNewest(t *testing.T) {
	k610, i610 := randomBytes(t, 70000), randomBytes(t, 80000)
	root := tree(t, map[string][]byte{
		"boot/loader/entries/abc-6.9.0.conf":  []byte("title Old\nversion 6.9.0\nlinux /boot/vmlinuz-6.9.0\ninitrd /boot/initrd-6.9.0\noptions root=LABEL=root ro\n"),
		"boot/loader/entries/abc-6.10.0.conf": []byte("title New\nversion 6.10.0\nlinux /boot/vmlinuz-6.10.0\ninitrd /boot/initrd-6.10.0\noptions root=LABEL=root ro console=hvc0\n"),
		"boot/vmlinuz-6.9.0":                  randomBytes(t, 100),
		"boot/initrd-6.9.0":                   randomBytes(t, 100),
		"boot/vmlinuz-6.10.0":                 k610,
		"boot/initrd-6.10.0":                  i610,
	})
	d := mkdisk(t, "dos", []partSpec{{img: mkext(t, root, 8, "", "-t", "ext4", "-L", "root"), typ: "83"}})
	check(t, []disk.Image{openImage(t, d)}, want{
		kernel: k610, initrd: i610, kernelPath: "/boot/vmlinuz-6.10.0", initrdPath: "/boot/initrd-6.10.0",
		cmdline: "root=LABEL=root ro console=hvc0", adjusted: "root=LABEL=root ro console=hvc0 console=ttyS0",
		config: "/boot/loader/entries/abc-6.10.0.conf", partition: 1, title: "New",
	})
}

// extlinux on ext3 with a MENU DEFAULT, a relative LINUX path and root=/dev/sda1.
func TestFindExtlinux(t *testing.T) {
	k, i := randomBytes(t, 150000), randomBytes(t, 160000)
	root := tree(t, map[string][]byte{
		"boot/extlinux/extlinux.conf": []byte("UI menu.c32\nPROMPT 0\nTIMEOUT 50\nDEFAULT old\n\nLABEL old\n  MENU LABEL Old kernel\n  LINUX ../vmlinuz-old\n  APPEND root=/dev/sda1\n\nLABEL linux\n  MENU LABEL Alpine\n  MENU DEFAULT\n  LINUX ../vmlinuz-lts\n  INITRD ../initramfs-lts\n  APPEND root=/dev/sda1 modules=sd-mod,usb-storage,ext4 quiet rootfstype=ext4\n"),
		"boot/vmlinuz-lts":            k,
		"boot/initramfs-lts":          i,
		"boot/vmlinuz-old":            randomBytes(t, 10),
	})
	d := mkdisk(t, "dos", []partSpec{{img: mkext(t, root, 8, "", "-t", "ext3"), typ: "83"}})
	check(t, []disk.Image{openImage(t, d)}, want{
		kernel: k, initrd: i, kernelPath: "/boot/vmlinuz-lts", initrdPath: "/boot/initramfs-lts",
		cmdline:  "root=/dev/sda1 modules=sd-mod,usb-storage,ext4 quiet rootfstype=ext4",
		adjusted: "root=/dev/vda1 modules=sd-mod,usb-storage,ext4 quiet rootfstype=ext4 console=ttyS0",
		config:   "/boot/extlinux/extlinux.conf", partition: 1, fs: "ext3", title: "linux",
	})
}

// syslinux.cfg on a FAT12 partition with long file names and initrd= in APPEND.
func TestFindSyslinuxFAT(t *testing.T) {
	k, i := randomBytes(t, 90000), randomBytes(t, 95000)
	boot := tree(t, map[string][]byte{
		"syslinux/syslinux.cfg":               []byte("default xen\nlabel xen\n kernel /Kernels/vmlinuz-5.10.0-long-name\n append initrd=/Kernels/Initrd.Img-5.10.0-long-name root=/dev/xvda2 console=hvc0\n"),
		"Kernels/vmlinuz-5.10.0-long-name":    k,
		"Kernels/Initrd.Img-5.10.0-long-name": i,
	})
	d := mkdisk(t, "dos", []partSpec{{img: mkfat(t, boot, 1024, 12, "00C0FFEE"), typ: "1", extra: "bootable"}})
	check(t, []disk.Image{openImage(t, d)}, want{
		kernel: k, initrd: i, kernelPath: "/Kernels/vmlinuz-5.10.0-long-name", initrdPath: "/Kernels/Initrd.Img-5.10.0-long-name",
		cmdline: "root=/dev/xvda2 console=hvc0", adjusted: "root=/dev/vda2 console=hvc0 console=ttyS0",
		config: "/syslinux/syslinux.cfg", partition: 1, fs: "fat12",
	})
}

// GRUB legacy menu.lst as Xen's pygrub reads it: default 1, root (hd0,0),
// root=/dev/xvda1.
func TestFindGrubLegacyXen(t *testing.T) {
	k, i := randomBytes(t, 120000), randomBytes(t, 130000)
	root := tree(t, map[string][]byte{
		"boot/grub/menu.lst":                 []byte("default\t\t1\ntimeout\t\t5\n\ntitle\t\tDebian GNU/Linux, kernel 2.6.32-5-xen-amd64 (single-user)\nroot\t\t(hd0,0)\nkernel\t\t/boot/vmlinuz-2.6.32-5-xen-amd64 root=/dev/xvda1 ro single\n\ntitle\t\tDebian GNU/Linux, kernel 2.6.32-5-xen-amd64\nroot\t\t(hd0,0)\nkernel\t\t/boot/vmlinuz-2.6.32-5-xen-amd64 root=/dev/xvda1 ro console=hvc0 quiet\ninitrd\t\t/boot/initrd.img-2.6.32-5-xen-amd64\n"),
		"boot/vmlinuz-2.6.32-5-xen-amd64":    k,
		"boot/initrd.img-2.6.32-5-xen-amd64": i,
	})
	d := mkdisk(t, "dos", []partSpec{{img: mkext(t, root, 8, "", "-t", "ext3"), typ: "83"}})
	check(t, []disk.Image{openImage(t, d)}, want{
		kernel: k, initrd: i, kernelPath: "/boot/vmlinuz-2.6.32-5-xen-amd64", initrdPath: "/boot/initrd.img-2.6.32-5-xen-amd64",
		cmdline: "root=/dev/xvda1 ro console=hvc0 quiet", adjusted: "root=/dev/vda1 ro console=hvc0 quiet console=ttyS0",
		config: "/boot/grub/menu.lst", partition: 1, title: "Debian GNU/Linux, kernel 2.6.32-5-xen-amd64",
	})
}

// A filesystem on the whole disk, no boot loader configuration: the /vmlinuz
// and /initrd.img links (relative, absolute, and a slow symlink whose target
// is too long for the inode) lead to the kernel.
func TestFindLinksWholeDisk(t *testing.T) {
	k, i := randomBytes(t, 77777), randomBytes(t, 88888)
	long := "boot/" + strings.Repeat("d", 70) + "/vmlinuz-real"
	root := tree(t, map[string][]byte{
		long:                         k,
		"boot/vmlinuz-6.1.0-9-amd64": []byte("->" + strings.Repeat("d", 70) + "/vmlinuz-real"),
		"boot/initrd.img-6.1.0-9":    i,
		"vmlinuz":                    []byte("->boot/vmlinuz-6.1.0-9-amd64"),
		"initrd.img":                 []byte("->/boot/initrd.img-6.1.0-9"),
		"etc/fstab":                  []byte("/dev/vda / ext4 defaults 0 1\n"),
	})
	img := mkext(t, root, 8, rootUUID, "-t", "ext4")
	check(t, []disk.Image{openImage(t, img)}, want{
		kernel: k, initrd: i, kernelPath: "/vmlinuz", initrdPath: "/initrd.img",
		cmdline: "root=UUID=" + rootUUID + " ro", adjusted: "root=UUID=" + rootUUID + " ro console=ttyS0",
		config: "disk 0: /vmlinuz (no boot loader configuration)", partition: 0, fs: "ext4",
	})
}

// The second disk boots when the first holds no kernel; hd1 device names work.
func TestFindSecondDisk(t *testing.T) {
	k := randomBytes(t, 5000)
	data := mkdisk(t, "dos", []partSpec{{img: mkext(t, tree(t, map[string][]byte{"data/x": []byte("x")}), 8, "", "-t", "ext4"), typ: "83"}})
	sys := mkdisk(t, "gpt", []partSpec{{img: mkext(t, tree(t, map[string][]byte{
		"boot/grub/grub.cfg": []byte("menuentry 'x' {\n linux (hd1,gpt1)/boot/k root=/dev/sdb1\n}\n"),
		"boot/k":             k,
	}), 8, "", "-t", "ext4"), typ: "0FC63DAF-8483-4772-8E79-3D69D8477DE4"}})
	e := check(t, []disk.Image{openImage(t, data), openImage(t, sys)}, want{
		kernel: k, kernelPath: "/boot/k", cmdline: "root=/dev/sdb1", adjusted: "root=/dev/vdb1 console=ttyS0",
		config: "disk 1 partition 1: /boot/grub/grub.cfg", partition: 1,
	})
	assert.Equal(t, 1, e.Disk)
}

func TestFindNoKernel(t *testing.T) {
	d := mkdisk(t, "dos", []partSpec{
		{img: mkext(t, tree(t, map[string][]byte{"etc/hostname": []byte("x\n")}), 8, "", "-t", "ext4"), typ: "83"},
		{typ: "83", sizeMiB: 1},
	})
	_, err := Find([]disk.Image{openImage(t, d)})
	require.Error(t, err)
	msg := err.Error()
	for _, s := range []string{"no kernel found", "disk 0 partition 1 (ext4)", "/boot/grub/grub.cfg", "/boot/loader/entries",
		"extlinux.conf", "menu.lst", "/boot/vmlinuz", "disk 0 partition 2 (type 0x83): no ext2/3/4, FAT"} {
		assert.Contains(t, msg, s)
	}
}

// A grub.cfg whose default entry names a kernel that is not there fails with
// the entry and the path.
func TestFindMissingKernel(t *testing.T) {
	d := mkdisk(t, "dos", []partSpec{{img: mkext(t, tree(t, map[string][]byte{
		"boot/grub/grub.cfg": []byte("menuentry 'gone' {\n linux /boot/vmlinuz-gone root=/dev/vda1\n}\n"),
	}), 8, "", "-t", "ext4"), typ: "83"}})
	_, err := Find([]disk.Image{openImage(t, d)})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "kernel /boot/vmlinuz-gone on disk 0 partition 1")
	assert.Contains(t, err.Error(), "file does not exist")
}

// A grub.cfg whose default entry cannot load is reported as skipped when a
// later source (here the /boot/vmlinuz link) boots.
func TestFindSkippedConfig(t *testing.T) {
	k := randomBytes(t, 4096)
	d := mkdisk(t, "dos", []partSpec{{img: mkext(t, tree(t, map[string][]byte{
		"boot/grub/grub.cfg":   []byte("menuentry 'gone' {\n linux /boot/vmlinuz-gone root=/dev/vda1\n}\n"),
		"boot/vmlinuz-6.1.0-1": k,
		"boot/vmlinuz":         []byte("->vmlinuz-6.1.0-1"),
	}), 8, rootUUID, "-t", "ext4"), typ: "83"}})
	e := check(t, []disk.Image{openImage(t, d)}, want{kernel: k, kernelPath: "/boot/vmlinuz",
		cmdline: "", config: "/boot/vmlinuz (no boot loader configuration)", partition: 1})
	require.Len(t, e.Skipped, 1)
	assert.Contains(t, e.Skipped[0], "kernel /boot/vmlinuz-gone")
}

// RHEL 9: grubenv no longer holds kernelopts; an entry that still says
// $kernelopts gets the command line kernel-install keeps in the root
// filesystem's /etc/kernel/cmdline.
func TestFindBLSKernelCmdlineFile(t *testing.T) {
	grubenv := "# GRUB Environment Block\nsaved_entry=ab12-5.14.0-427.el9.x86_64\nboot_success=1\n"
	grubenv += strings.Repeat("#", 1024-len(grubenv))
	k, i := randomBytes(t, 90000), randomBytes(t, 70000)
	boot := tree(t, map[string][]byte{
		"grub2/grubenv": []byte(grubenv),
		"loader/entries/ab12-5.14.0-427.el9.x86_64.conf": []byte("title Rocky Linux (5.14.0-427.el9.x86_64) 9.4\nversion 5.14.0-427.el9.x86_64\nlinux /vmlinuz-5.14.0-427.el9.x86_64\ninitrd /initramfs-5.14.0-427.el9.x86_64.img $tuned_initrd\noptions $kernelopts $tuned_params\ngrub_users $grub_users\n"),
		"vmlinuz-5.14.0-427.el9.x86_64":                  k,
		"initramfs-5.14.0-427.el9.x86_64.img":            i,
	})
	root := tree(t, map[string][]byte{
		"etc/fstab":          []byte("/dev/mapper/rl-root / xfs defaults 0 0\n"),
		"etc/kernel/cmdline": []byte("root=/dev/mapper/rl-root ro crashkernel=1G-4G:192M rd.lvm.lv=rl/root\n"),
	})
	d := mkdisk(t, "gpt", []partSpec{
		{img: mkext(t, boot, 16, bootUUID, "-t", "ext4"), typ: "0FC63DAF-8483-4772-8E79-3D69D8477DE4"},
		{img: mkext(t, root, 8, rootUUID, "-t", "ext4"), typ: "0FC63DAF-8483-4772-8E79-3D69D8477DE4"},
	})
	check(t, []disk.Image{openImage(t, d)}, want{
		kernel: k, initrd: i,
		kernelPath: "/vmlinuz-5.14.0-427.el9.x86_64", initrdPath: "/initramfs-5.14.0-427.el9.x86_64.img",
		cmdline:  "root=/dev/mapper/rl-root ro crashkernel=1G-4G:192M rd.lvm.lv=rl/root",
		adjusted: "root=/dev/mapper/rl-root ro crashkernel=1G-4G:192M rd.lvm.lv=rl/root console=ttyS0",
		config:   "disk 0 partition 1: /loader/entries/ab12-5.14.0-427.el9.x86_64.conf", partition: 1, fs: "ext4",
		title: "Rocky Linux (5.14.0-427.el9.x86_64) 9.4",
	})
}

// mkbtrfs makes a btrfs image of dir with mkfs.btrfs --rootdir, its
// subvolumes given as mkfs.btrfs --subvol arguments ("default:@").
func mkbtrfs(t testing.TB, dir string, sizeMiB int, uuid string, subvols ...string) string {
	t.Helper()
	testutil.RequireTool(t, "mkfs.btrfs")
	if out, _ := exec.Command("mkfs.btrfs", "--help").CombinedOutput(); !strings.Contains(string(out), "--subvol") {
		testutil.Unavailable(t, "mkfs.btrfs has no --subvol (btrfs-progs >= 6.13 needed)")
	}
	img := filepath.Join(t.TempDir(), "btrfs.img")
	require.NoError(t, os.WriteFile(img, nil, 0o644))
	require.NoError(t, os.Truncate(img, int64(sizeMiB)<<20))
	args := []string{"-q", "-f", "-r", dir, "-U", uuid}
	for _, s := range subvols {
		args = append(args, "--subvol", s)
	}
	run(t, "mkfs.btrfs", append(args, img)...)
	return img
}

// openSUSE and Fedora on one btrfs filesystem: GRUB's configuration in the
// default subvolume names the kernel by a path in that subvolume or by a
// path from the top level (/@/boot/...); both load.
func TestFindBtrfsSubvolumes(t *testing.T) {
	const uuid = "6a0f9e1c-3b52-4d8e-a1f7-0c9d2e4b5a61"
	for _, tc := range []struct{ name, kernelRef, initrdRef string }{
		{"default subvolume paths", "/boot/vmlinuz-6.4.0-150600.23-default", "/boot/initrd-6.4.0-150600.23-default"},
		{"top-level paths", "/@/boot/vmlinuz-6.4.0-150600.23-default", "/@/boot/initrd-6.4.0-150600.23-default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, i := randomBytes(t, 300000), randomBytes(t, 200000)
			cfg := "set btrfs_relative_path=\"y\"\nmenuentry 'openSUSE Leap 15.6' {\n  search --no-floppy --fs-uuid --set=root " + uuid +
				"\n  linux " + tc.kernelRef + " root=UUID=" + uuid + " rootflags=subvol=@ splash=silent\n  initrd " + tc.initrdRef + "\n}\n"
			dir := tree(t, map[string][]byte{
				"@/boot/grub2/grub.cfg":                  []byte(cfg),
				"@/boot/vmlinuz-6.4.0-150600.23-default": k,
				"@/boot/initrd-6.4.0-150600.23-default":  i,
				"@/etc/fstab":                            []byte("UUID=" + uuid + " / btrfs defaults 0 0\n"),
				"@home/user/.profile":                    []byte("PATH=$PATH\n"),
			})
			img := mkbtrfs(t, dir, 256, uuid, "default:@", "@home")
			d := mkdisk(t, "gpt", []partSpec{{img: img, typ: "0FC63DAF-8483-4772-8E79-3D69D8477DE4"}})
			check(t, []disk.Image{openImage(t, d)}, want{
				kernel: k, initrd: i, kernelPath: tc.kernelRef, initrdPath: tc.initrdRef,
				cmdline:  "root=UUID=" + uuid + " rootflags=subvol=@ splash=silent",
				adjusted: "root=UUID=" + uuid + " rootflags=subvol=@ splash=silent console=ttyS0",
				config:   "disk 0 partition 1: /boot/grub2/grub.cfg", partition: 1, fs: "btrfs",
				title: "openSUSE Leap 15.6",
			})
		})
	}
}

// Rocky/RHEL 8 as installed on UEFI: the ESP's grub.cfg hands over to the
// real one on an XFS /boot, whose blscfg entries take $kernelopts from
// grubenv.
func TestFindXFSBootEFI(t *testing.T) {
	const xfsUUID = "3c0f2e8a-6b1d-4f5e-9a7c-2d4b6e8f0a1c"
	espCfg := "search --no-floppy --fs-uuid --set=dev " + xfsUUID + "\nset boot=${dev}\nset prefix=($dev)/grub2\nexport $prefix\nconfigfile $prefix/grub.cfg\n"
	bootCfg := "set default=\"${saved_entry}\"\nload_env -f ${config_directory}/grubenv\nsearch --no-floppy --fs-uuid --set=root " + xfsUUID + "\ninsmod blscfg\nblscfg\n"
	grubenv := "# GRUB Environment Block\nsaved_entry=e1f2-4.18.0-553.el8_10.x86_64\nkernelopts=root=/dev/mapper/rl-root ro resume=/dev/mapper/rl-swap rd.lvm.lv=rl/root\n"
	grubenv += strings.Repeat("#", 1024-len(grubenv))
	k, i := randomBytes(t, 400000), randomBytes(t, 300000)
	boot := tree(t, map[string][]byte{
		"grub2/grub.cfg": []byte(bootCfg),
		"grub2/grubenv":  []byte(grubenv),
		"loader/entries/e1f2-4.18.0-553.el8_10.x86_64.conf": []byte("title Rocky Linux (4.18.0-553.el8_10.x86_64) 8.10 (Green Obsidian)\nversion 4.18.0-553.el8_10.x86_64\nlinux /vmlinuz-4.18.0-553.el8_10.x86_64\ninitrd /initramfs-4.18.0-553.el8_10.x86_64.img $tuned_initrd\noptions $kernelopts $tuned_params\nid rocky-20240528-4.18.0-553.el8_10.x86_64\n"),
		"vmlinuz-4.18.0-553.el8_10.x86_64":                  k,
		"initramfs-4.18.0-553.el8_10.x86_64.img":            i,
	})
	esp := tree(t, map[string][]byte{"EFI/rocky/grub.cfg": []byte(espCfg), "EFI/BOOT/BOOTX64.EFI": randomBytes(t, 5000)})
	d := mkdisk(t, "gpt", []partSpec{
		{img: mkfat(t, esp, 40*1024, 32, "5A3BC0DE"), typ: "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"},
		{img: mkxfs(t, boot, 64, xfsUUID), typ: "0FC63DAF-8483-4772-8E79-3D69D8477DE4"},
	})
	check(t, []disk.Image{openImage(t, d)}, want{
		kernel: k, initrd: i,
		kernelPath: "/vmlinuz-4.18.0-553.el8_10.x86_64", initrdPath: "/initramfs-4.18.0-553.el8_10.x86_64.img",
		cmdline:  "root=/dev/mapper/rl-root ro resume=/dev/mapper/rl-swap rd.lvm.lv=rl/root",
		adjusted: "root=/dev/mapper/rl-root ro resume=/dev/mapper/rl-swap rd.lvm.lv=rl/root console=ttyS0",
		config:   "disk 0 partition 2: /loader/entries/e1f2-4.18.0-553.el8_10.x86_64.conf", partition: 2, fs: "xfs",
		title: "Rocky Linux (4.18.0-553.el8_10.x86_64) 8.10 (Green Obsidian)",
	})
}

// A btrfs whose system is in a subvolume that is not the default (Ubuntu's
// @) names it, for mounting with subvol=; one whose default subvolume is the
// system (openSUSE's) does not need to.
func TestVolumesBtrfsSubvolume(t *testing.T) {
	const uuid = "7b1e0c4a-8d1f-4a47-9c1e-6d2f0b7a9e33"
	for _, tc := range []struct {
		name    string
		subvols []string
		want    string
	}{
		{"@ without a default", []string{"@", "@home"}, "@"},
		{"@ as the default", []string{"default:@", "@home"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tree(t, map[string][]byte{
				"@/etc/fstab":         []byte("UUID=" + uuid + " / btrfs defaults,subvol=@ 0 0\n"),
				"@home/user/.profile": []byte("PATH=$PATH\n"),
			})
			img := mkbtrfs(t, dir, 256, uuid, tc.subvols...)
			d := mkdisk(t, "gpt", []partSpec{{img: img, typ: "0FC63DAF-8483-4772-8E79-3D69D8477DE4"}})
			vols, _ := Volumes([]disk.Image{openImage(t, d)})
			require.Len(t, vols, 1)
			assert.Equal(t, "btrfs", vols[0].FSType)
			assert.Equal(t, tc.want, vols[0].Subvolume)
			_, _, err := vols[0].FS.Stat("/etc/fstab")
			assert.NoError(t, err)
		})
	}
}

// Bare keyword lines in a guest's menu.lst ("initrd" or "kernel" with
// nothing after them, as a half-edited file has) are skipped, not a crash:
// the entry boots with what it does name.
func TestFindGrubLegacyBareLines(t *testing.T) {
	tests := []struct {
		name, menu, wantInitrd, wantErr string
	}{
		{"bare initrd", "title a\nkernel /k root=/dev/xvda1\ninitrd\n", "", ""},
		{"bare initrd then one", "title a\nkernel /k\ninitrd \t\ninitrd /i\n", "/i", ""},
		{"bare kernel", "title a\nkernel\ninitrd /i\n", "", `entry "a" has no kernel`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fsys := memFS{"/boot/grub/menu.lst": tc.menu, "/k": "kernel", "/i": "initrd"}
			vols := memVolumes(fsys)
			e, _, err := findGrubLegacy(vols[0], vols)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, "/k", e.KernelPath)
			assert.Equal(t, tc.wantInitrd, e.InitrdPath)
		})
	}
}
