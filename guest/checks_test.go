package guest

import (
	"bytes"
	"errors"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/boot"
	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/internal/cpio"
)

// memFS is a guest filesystem in memory: path -> contents; directories are
// implied by the paths.
type memFS map[string]string

func (m memFS) ReadFile(name string, max int64) ([]byte, error) {
	c, ok := m[path.Clean(name)]
	if !ok {
		return nil, errors.New("no such file")
	}
	if int64(len(c)) > max {
		return nil, errors.New("too large")
	}
	return []byte(c), nil
}

func (m memFS) ReadDir(name string) ([]string, error) {
	prefix := strings.TrimSuffix(path.Clean(name), "/") + "/"
	seen := map[string]bool{}
	for p := range m {
		if rest, ok := strings.CutPrefix(p, prefix); ok {
			seen[strings.Split(rest, "/")[0]] = true
		}
	}
	if len(seen) == 0 {
		return nil, errors.New("no such directory")
	}
	var out []string
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

func (m memFS) Stat(name string) (int64, bool, error) {
	if c, ok := m[path.Clean(name)]; ok {
		return int64(len(c)), false, nil
	}
	if _, err := m.ReadDir(name); err == nil {
		return 0, true, nil
	}
	return 0, false, errors.New("no such file")
}

// found is a finding reduced to what the tables compare.
type found struct {
	Code  string
	Sev   Severity
	Where string
}

func summarize(fs []Finding) []found {
	out := []found{}
	for _, f := range fs {
		out = append(out, found{f.Code, f.Severity, f.Where()})
	}
	return out
}

func ctxFor(files memFS, target string, macs ...string) *checkCtx {
	return &checkCtx{fs: files, opt: Options{Target: target, MACs: macs}, target: Targets[target],
		vols: []boot.Volume{{Disk: 0, Partition: 1, FSType: "ext4", UUID: "1111-root", FS: files},
			{Disk: 1, Partition: 0, FSType: "ext4", UUID: "2222-data"}},
		kver: "6.1.0-9-amd64", os: &OS{ID: "debian"}}
}

func TestDiskOf(t *testing.T) {
	tests := []struct {
		name       string
		disk, part int
		ok         bool
	}{
		{"/dev/sda1", 0, 1, true},
		{"/dev/sdb", 1, 0, true},
		{"/dev/hdc3", 2, 3, true},
		{"/dev/xvda2", 0, 2, true},
		{"/dev/vdb", 1, 0, true},
		{"/dev/sdaa1", 26, 1, true},
		{"/dev/nvme0n1p3", 0, 3, true},
		{"/dev/nvme1n1", 1, 0, true},
		{"/dev/disk/by-path/pci-0000:00:10.0-scsi-0:0:0:0-part1", 0, 0, false},
		{"/dev/mapper/vg-root", 0, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, p, ok := diskOf(tc.name)
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.disk, d)
			assert.Equal(t, tc.part, p)
		})
	}
}

func TestCheckDeviceNames(t *testing.T) {
	tests := []struct {
		name   string
		files  memFS
		target string
		want   []found
		fix    string
	}{
		{"fstab by UUID", memFS{"/etc/fstab": "UUID=1111-root / ext4 defaults 0 1\n"}, "kvm", []found{}, ""},
		{"fstab sda1 to kvm", memFS{"/etc/fstab": "# comment /dev/sdz\n/dev/sda1 / ext4 defaults 0 1\n"}, "kvm",
			[]found{{"device-name", Error, "/etc/fstab:2"}}, "use UUID=1111-root"},
		{"fstab sdb nofail", memFS{"/etc/fstab": "/dev/sdb /data ext4 nofail 0 2\n"}, "kvm",
			[]found{{"device-name", Warning, "/etc/fstab:1"}}, "use UUID=2222-data"},
		{"fstab swap and noauto", memFS{"/etc/fstab": "/dev/sda5 none swap sw 0 0\n/dev/sdb1 /mnt/usb auto noauto,user 0 0\n"}, "kvm",
			[]found{{"device-name", Warning, "/etc/fstab:1"}, {"device-name", Warning, "/etc/fstab:2"}}, "UUID="},
		{"fstab vda1 to kvm is only fragile", memFS{"/etc/fstab": "/dev/vda1 / ext4 defaults 0 1\n"}, "kvm",
			[]found{{"device-name-fragile", Warning, "/etc/fstab:1"}}, "use UUID=1111-root"},
		{"fstab xvda1 to vmware", memFS{"/etc/fstab": "\n/dev/xvda1 / ext4 defaults 0 1\n"}, "vmware",
			[]found{{"device-name", Error, "/etc/fstab:2"}}, "use UUID=1111-root"},
		{"nvme unknown disk", memFS{"/etc/fstab": "/dev/nvme3n1p1 /x xfs defaults 0 0\n"}, "xen",
			[]found{{"device-name", Error, "/etc/fstab:1"}}, "name it by UUID="},
		{"by-path", memFS{"/etc/crypttab": "crypt /dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:1:0-part2 none luks\n"}, "kvm",
			[]found{{"device-name", Error, "/etc/crypttab:1"}}, "UUID="},
		{"grub.cfg root=", memFS{"/boot/grub/grub.cfg": "menuentry x {\n linux /vmlinuz root=/dev/sda1 ro\n}\n"}, "kvm",
			[]found{{"device-name", Error, "/boot/grub/grub.cfg:2"}}, "use root=UUID=1111-root"},
		{"default grub", memFS{"/etc/default/grub": "GRUB_CMDLINE_LINUX=\"root=/dev/hda1\"\n"}, "kvm",
			[]found{{"device-name", Error, "/etc/default/grub:1"}}, "use root=UUID=1111-root"},
		{"resume conf", memFS{"/etc/initramfs-tools/conf.d/resume": "RESUME=/dev/sda5 # swap: not a volume read\n"}, "kvm",
			[]found{{"device-name", Warning, "/etc/initramfs-tools/conf.d/resume:1"}}, "name it by UUID="},
		{"BLS entry", memFS{"/boot/loader/entries/a.conf": "title x\noptions root=/dev/sda1 resume=/dev/sda2\n"}, "kvm",
			[]found{{"device-name", Error, "/boot/loader/entries/a.conf:2"}, {"device-name", Warning, "/boot/loader/entries/a.conf:2"}}, "use root=UUID=1111-root"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := checkDeviceNames(ctxFor(tc.files, tc.target))
			assert.Equal(t, tc.want, summarize(got))
			if len(got) > 0 {
				assert.Contains(t, got[0].Fix, tc.fix)
			}
		})
	}
}

// TestCheckDeviceNamesCmdline: the boot entry's command line is checked
// when its configuration is not a file already scanned, once.
func TestCheckDeviceNamesCmdline(t *testing.T) {
	links := "disk 0 partition 1: /vmlinuz (no boot loader configuration)"
	bls := "disk 0 partition 1: /boot/loader/entries/a.conf"
	tests := []struct {
		name, config string
		files        memFS
		want         []found
	}{
		{"links", links, memFS{}, []found{{"device-name", Error, links}}},
		{"BLS entry scanned", bls, memFS{"/boot/loader/entries/a.conf": "linux /k\noptions root=/dev/sda1\n"},
			[]found{{"device-name", Error, "/boot/loader/entries/a.conf:2"}}},
		{"BLS kernelopts in grubenv", bls, memFS{"/boot/loader/entries/a.conf": "linux /k\noptions $kernelopts\n",
			"/boot/grub2/grubenv": "# GRUB Environment Block\nkernelopts=root=/dev/sda1 ro\n"},
			[]found{{"device-name", Error, "/boot/grub2/grubenv:2"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ctxFor(tc.files, "kvm")
			c.entry = &boot.Entry{Config: tc.config, Cmdline: "root=/dev/sda1 ro"}
			got, _ := checkDeviceNames(c)
			assert.Equal(t, tc.want, summarize(got))
		})
	}
}

func TestCheckNetwork(t *testing.T) {
	const vmMAC = "52:54:00:12:34:56"
	tests := []struct {
		name  string
		files memFS
		want  []found
	}{
		{"loopback only", memFS{"/etc/network/interfaces": "auto lo\niface lo inet loopback\n"}, []found{}},
		{"ifupdown static", memFS{"/etc/network/interfaces": "auto lo\niface lo inet loopback\niface ens192 inet static\n address 10.0.0.2/24\n"},
			[]found{{"net-config-by-name", Warning, "/etc/network/interfaces:3"}}},
		{"interfaces.d dhcp and hwaddress", memFS{"/etc/network/interfaces.d/eth0": "iface eth0 inet dhcp\n hwaddress ether 00:0c:29:01:02:03\n"},
			[]found{{"net-config-by-name", Warning, "/etc/network/interfaces.d/eth0:1"}, {"net-config-by-mac", Warning, "/etc/network/interfaces.d/eth0:2"}}},
		{"netplan by name", memFS{"/etc/netplan/01.yaml": "network:\n  ethernets:\n    ens192:\n      dhcp4: true\n"},
			[]found{{"net-config-by-name", Warning, "/etc/netplan/01.yaml:3"}}},
		{"netplan match name", memFS{"/etc/netplan/01.yaml": "network:\n  ethernets:\n    lan:\n      match:\n        name: ens*\n"}, []found{}},
		{"netplan the VM's MAC", memFS{"/etc/netplan/01.yaml": "network:\n  ethernets:\n    lan:\n      match: {macaddress: \"52:54:00:12:34:56\"}\n"}, []found{}},
		{"netplan broken yaml", memFS{"/etc/netplan/01.yaml": "network: [\n"}, []found{}},
		{"NetworkManager", memFS{"/etc/NetworkManager/system-connections/w.nmconnection": "[connection]\nid=w\ninterface-name=ens160\n[ethernet]\nmac-address=00:0C:29:AA:BB:CC\n"},
			[]found{{"net-config-by-name", Warning, "/etc/NetworkManager/system-connections/w.nmconnection:3"},
				{"net-config-by-mac", Warning, "/etc/NetworkManager/system-connections/w.nmconnection:5"}}},
		{"ifcfg", memFS{"/etc/sysconfig/network-scripts/ifcfg-eth0": "DEVICE=eth0\nBOOTPROTO=static\nHWADDR=52:54:00:12:34:56\n",
			"/etc/sysconfig/network-scripts/ifcfg-lo": "DEVICE=lo\n"},
			[]found{{"net-config-by-name", Warning, "/etc/sysconfig/network-scripts/ifcfg-eth0:1"}}},
		{"networkd", memFS{"/etc/systemd/network/10.network": "[Match]\nName=ens192\n[Network]\nDHCP=yes\n",
			"/etc/systemd/network/20.network": "[Match]\nName=en*\n",
			"/etc/systemd/network/10.link":    "[Match]\nMACAddress=00:50:56:01:02:03\n[Link]\nName=lan0\n"},
			[]found{{"net-config-by-name", Warning, "/etc/systemd/network/10.network:2"}, {"net-config-by-mac", Warning, "/etc/systemd/network/10.link:2"}}},
		{"ifupdown by name, the name given to the VM's MAC by a .link", memFS{
			"/etc/network/interfaces":                    "iface ens192 inet static\n address 192.0.2.10/24\n",
			"/etc/systemd/network/10-vmconv-ens192.link": "[Match]\nMACAddress=52:54:00:12:34:56\n\n[Link]\nName=ens192\n"},
			[]found{}},
		{"a .link for another MAC does not count", memFS{
			"/etc/network/interfaces":      "iface ens192 inet static\n address 192.0.2.10/24\n",
			"/etc/systemd/network/10.link": "[Match]\nMACAddress=00:50:56:01:02:03\n[Link]\nName=ens192\n"},
			[]found{{"net-config-by-name", Warning, "/etc/network/interfaces:1"}, {"net-config-by-mac", Warning, "/etc/systemd/network/10.link:2"}}},
		{"udev persistent names", memFS{"/etc/udev/rules.d/70-persistent-net.rules": "# eth0\nSUBSYSTEM==\"net\", ATTR{address}==\"00:50:56:9a:00:01\", NAME=\"eth0\"\n"},
			[]found{{"net-config-by-mac", Warning, "/etc/udev/rules.d/70-persistent-net.rules:2"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := checkNetwork(ctxFor(tc.files, "kvm", vmMAC))
			assert.Equal(t, tc.want, summarize(got))
		})
	}
}

func TestCheckTools(t *testing.T) {
	status := func(pkg, st string) string {
		return "Package: bash\nStatus: install ok installed\n\nPackage: " + pkg + "\nStatus: " + st + "\n"
	}
	tests := []struct {
		name   string
		files  memFS
		target string
		want   []found
	}{
		{"open-vm-tools to kvm", memFS{"/var/lib/dpkg/status": status("open-vm-tools", "install ok installed")}, "kvm",
			[]found{{"vmware-tools", Warning, "/var/lib/dpkg/status:4"}}},
		{"open-vm-tools to vmware", memFS{"/var/lib/dpkg/status": status("open-vm-tools", "install ok installed")}, "vmware", []found{}},
		{"removed, config kept", memFS{"/var/lib/dpkg/status": status("open-vm-tools", "deinstall ok config-files")}, "kvm", []found{}},
		{"xe-guest-utilities to vmware", memFS{"/var/lib/dpkg/status": status("xe-guest-utilities", "install ok installed")}, "vmware",
			[]found{{"xen-tools", Warning, "/var/lib/dpkg/status:4"}}},
		{"rpm system, by file", memFS{"/usr/sbin/xe-daemon": "x", "/usr/bin/vmtoolsd": "x"}, "kvm",
			[]found{{"vmware-tools", Warning, "/usr/bin/vmtoolsd"}, {"xen-tools", Warning, "/usr/sbin/xe-daemon"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := checkTools(ctxFor(tc.files, tc.target))
			assert.Equal(t, tc.want, summarize(got))
		})
	}
}

// newc writes an initramfs with the repository's cpio writer.
func newc(t *testing.T, files map[string]string) string {
	var b bytes.Buffer
	w := cpio.NewWriter(&b)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		require.NoError(t, w.File(n, 0o644, []byte(files[n])))
	}
	require.NoError(t, w.Close())
	return b.String()
}

func TestCheckInitramfs(t *testing.T) {
	const k = "usr/lib/modules/6.1.0-9-amd64/"
	tests := []struct {
		name    string
		initrd  map[string]string
		builtin string // the guest's /lib/modules/KVER/modules.builtin
		target  string
		os      *OS
		want    []found
		fix     string
	}{
		{"virtio modules", map[string]string{k + "kernel/drivers/block/virtio_blk.ko.zst": "x", k + "kernel/drivers/virtio/virtio_pci.ko.xz": "x"}, "", "kvm", nil, []found{}, ""},
		{"virtio_pci built in", map[string]string{k + "kernel/drivers/block/virtio_blk.ko": "x"}, "kernel/drivers/virtio/virtio_pci.ko\n", "kvm", nil, []found{}, ""},
		{"built in per the initramfs", map[string]string{k + "modules.builtin": "kernel/drivers/block/virtio_blk.ko\nkernel/drivers/virtio/virtio_pci.ko\n"}, "", "kvm", nil, []found{}, ""},
		{"only VMware drivers", map[string]string{k + "kernel/drivers/scsi/mptspi.ko": "x"}, "", "kvm", &OS{ID: "debian"},
			[]found{{"initramfs-no-disk-driver", Error, "/boot/initrd.img-6.1.0-9-amd64"}}, "update-initramfs -u -k 6.1.0-9-amd64"},
		{"another kernel's modules", map[string]string{"usr/lib/modules/5.10.0-1-amd64/kernel/drivers/block/virtio_blk.ko": "x",
			"usr/lib/modules/5.10.0-1-amd64/kernel/drivers/virtio/virtio_pci.ko": "x"}, "", "kvm", &OS{ID: "rocky", IDLike: "rhel centos fedora"},
			[]found{{"initramfs-no-disk-driver", Error, "/boot/initrd.img-6.1.0-9-amd64"}}, "add force_drivers+=\" virtio_blk virtio_pci \" to a file in /etc/dracut.conf.d/ and run dracut --force /boot/initrd.img-6.1.0-9-amd64 6.1.0-9-amd64"},
		{"xen-blkfront by its file name", map[string]string{k + "kernel/drivers/block/xen-blkfront.ko": "x"}, "", "xen", nil, []found{}, ""},
		{"vmware: any one of three", map[string]string{k + "kernel/drivers/ata/ahci.ko": "x"}, "", "vmware", nil, []found{}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files := memFS{}
			if tc.builtin != "" {
				files["/lib/modules/6.1.0-9-amd64/modules.builtin"] = tc.builtin
			}
			c := ctxFor(files, tc.target)
			c.os = tc.os
			c.entry = &boot.Entry{KernelPath: "/boot/vmlinuz-6.1.0-9-amd64", InitrdPath: "/boot/initrd.img-6.1.0-9-amd64", Initrd: []byte(newc(t, tc.initrd))}
			got, notes := checkInitramfs(c)
			assert.Empty(t, notes)
			assert.Equal(t, tc.want, summarize(got))
			if len(got) > 0 {
				assert.Contains(t, got[0].Fix, tc.fix)
			}
		})
	}
}

func TestCheckInitramfsUnreadable(t *testing.T) {
	c := ctxFor(memFS{}, "kvm")
	c.entry = &boot.Entry{KernelPath: "/boot/vmlinuz-6.1.0-9-amd64", InitrdPath: "/boot/initrd.img", Initrd: []byte("garbage")}
	got, notes := checkInitramfs(c)
	assert.Empty(t, got)
	require.Len(t, notes, 1)
	assert.Contains(t, notes[0], "unknown format")
}

func TestCheckFirmware(t *testing.T) {
	dir := t.TempDir()
	blank := filepath.Join(dir, "blank.raw")
	require.NoError(t, os.WriteFile(blank, make([]byte, 1<<20), 0o644))
	withCode := filepath.Join(dir, "code.raw")
	mbr := make([]byte, 1<<20)
	copy(mbr, []byte{0xeb, 0x63, 0x90}) // GRUB's boot.img starts with a jump
	require.NoError(t, os.WriteFile(withCode, mbr, 0o644))
	esp := memFS{"/EFI/debian/grubx64.efi": "MZ", "/EFI/debian/grub.cfg": "x"}
	tests := []struct {
		name     string
		disk     string
		esp      memFS
		firmware string
		want     []found
	}{
		{"EFI-only to BIOS", blank, esp, "bios", []found{{"firmware-efi-only", Error, "disk 0 partition 1: /EFI/debian/grubx64.efi"}}},
		{"EFI-only, firmware unknown", blank, esp, "", []found{{"firmware-efi-only", Warning, "disk 0 partition 1: /EFI/debian/grubx64.efi"}}},
		{"EFI-only to UEFI", blank, esp, "uefi", []found{}},
		{"ESP and BIOS code", withCode, esp, "bios", []found{}},
		{"no ESP", blank, memFS{"/readme.txt": "x"}, "bios", []found{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img, err := disk.OpenRaw(tc.disk)
			require.NoError(t, err)
			defer img.Close()
			c := &checkCtx{opt: Options{Target: "kvm", Firmware: tc.firmware}, disks: []disk.Image{img},
				vols: []boot.Volume{{Disk: 0, Partition: 1, FSType: "fat32", FS: tc.esp}}}
			got, _ := checkFirmware(c)
			assert.Equal(t, tc.want, summarize(got))
		})
	}
}

func TestReadOS(t *testing.T) {
	tests := []struct {
		name string
		file string
		want *OS
	}{
		{"debian", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n",
			&OS{ID: "debian", Name: "Debian GNU/Linux", VersionID: "12", PrettyName: "Debian GNU/Linux 12 (bookworm)"}},
		{"single quotes and comments", "# x\nID='rocky'\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID='9.3'\n",
			&OS{ID: "rocky", VersionID: "9.3", IDLike: "rhel centos fedora"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, readOS(memFS{"/etc/os-release": tc.file}))
		})
	}
	assert.Nil(t, readOS(memFS{}))
}

func TestMountGuest(t *testing.T) {
	root := memFS{"/etc/fstab": "UUID=1111-root / ext4 defaults 0 1\nLABEL=boot /boot ext4 defaults 0 2\n/dev/sdc1 /srv ext4 defaults 0 2\n", "/etc/os-release": "ID=debian\n"}
	bootFS := memFS{"/grub/grub.cfg": "menuentry"}
	vols := []boot.Volume{{Disk: 0, Partition: 2, UUID: "1111-root", FS: root}, {Disk: 0, Partition: 1, Label: "boot", FS: bootFS}}
	fs, mounts, notes := mountGuest(vols, &boot.Entry{Cmdline: "root=UUID=1111-root ro"})
	require.NotNil(t, fs)
	assert.Len(t, mounts, 2)
	b, err := fs.ReadFile("/boot/grub/grub.cfg", 100)
	require.NoError(t, err)
	assert.Equal(t, "menuentry", string(b))
	_, err = fs.ReadFile("/etc/os-release", 100)
	assert.NoError(t, err)
	require.Len(t, notes, 1)
	assert.Contains(t, notes[0], "/etc/fstab:3: /dev/sdc1 on /srv")
}
