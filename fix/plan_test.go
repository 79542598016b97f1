package fix

import (
	"io/fs"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/boot"
	"github.com/vmconv/vmconv/guest"
)

const rootUUID = "5b1e0c4a-8d1f-4a47-9c1e-6d2f0b7a9e32"

// brokenReport is what vmconv inspect says of a Debian guest moved from
// VMware (testdata/guest/build-wild.sh broken), findings as guest words them.
func brokenReport() *guest.Report {
	return &guest.Report{
		Target: "kvm", Kernel: "6.1.0-50-amd64", OS: &guest.OS{ID: "debian"},
		Mounts: []guest.Mount{{Path: "/", Volume: boot.Volume{Disk: 0, Partition: 1, FSType: "ext4", UUID: rootUUID}}},
		Findings: []guest.Finding{
			{Code: "initramfs-no-disk-driver", Severity: guest.Error, File: "/boot/initrd.img-6.1.0-50-amd64"},
			{Code: "device-name", Severity: guest.Error, File: "/etc/fstab", Line: 2},
			{Code: "device-name", Severity: guest.Error, File: "/boot/grub/grub.cfg", Line: 116},
			{Code: "device-name", Severity: guest.Error, File: "/boot/grub/grub.cfg", Line: 134},
			{Code: "net-config-by-name", Severity: guest.Warning, File: "/etc/network/interfaces", Line: 12,
				Message: `the ifupdown "inet static" configuration is bound to interface ens192; on kvm the NIC has another model and slot, so another name, and stays unconfigured`},
			{Code: "vmware-tools", Severity: guest.Warning, File: "/var/lib/dpkg/status", Line: 2984},
			{Code: "firmware-efi-only", Severity: guest.Error, File: "/boot/efi/EFI/debian/grubx64.efi"},
		},
	}
}

func TestPlanFor(t *testing.T) {
	kvm := guest.Targets["kvm"]
	t.Run("the broken Debian guest", func(t *testing.T) {
		p, unfixed, err := PlanFor(brokenReport(), kvm, []string{"00:50:56:3F:A2:23"})
		require.NoError(t, err)
		assert.Equal(t, Mount{Path: "/", UUID: rootUUID, FSType: "ext4"}, p.Root)
		var kinds []string
		for _, s := range p.Steps {
			kinds = append(kinds, s.Kind)
		}
		// The .link file before the initramfs rebuild, which may copy it.
		assert.Equal(t, []string{StepDeviceNames, StepNetLink, StepToolsDisable, StepInitramfs}, kinds)
		dn := p.Steps[0]
		assert.Equal(t, []string{"/boot/grub/grub.cfg", "/etc/default/grub", "/etc/fstab"}, dn.Files)
		assert.Equal(t, "UUID="+rootUUID, dn.Names["/dev/sda1"])
		assert.Equal(t, "UUID="+rootUUID, dn.Names["/dev/xvda1"])
		assert.Equal(t, "UUID="+rootUUID, dn.Names["/dev/nvme0n1p1"])
		assert.Equal(t, []string{"device-name"}, dn.Codes)
		assert.Equal(t, Step{Kind: StepNetLink, Codes: []string{"net-config-by-name"}, MAC: "00:50:56:3f:a2:23", Name: "ens192"}, p.Steps[1])
		assert.Contains(t, p.Steps[2].Units, "open-vm-tools.service")
		assert.Equal(t, Step{Kind: StepInitramfs, Codes: []string{"initramfs-no-disk-driver"}, Tool: "update-initramfs",
			Drivers: []string{"virtio_blk", "virtio_pci", "virtio_mmio"}}, p.Steps[3])
		assert.Equal(t, []Unfixed{{Code: "firmware-efi-only", Where: "/boot/efi/EFI/debian/grubx64.efi", Reason: "no automatic fix"}}, unfixed)
	})
	t.Run("a bare image: no MAC, the network is not fixed", func(t *testing.T) {
		p, unfixed, err := PlanFor(brokenReport(), kvm, nil)
		require.NoError(t, err)
		for _, s := range p.Steps {
			assert.NotEqual(t, StepNetLink, s.Kind)
		}
		assert.Contains(t, unfixed, Unfixed{Code: "net-config-by-name", Where: "/etc/network/interfaces:12", Reason: "a bare image has no NIC MAC to match"})
	})
	tools := []struct {
		name           string
		os             *guest.OS
		files          []string // in the guest's root
		initrd         string   // the boot entry's
		tool, wantFile string
	}{
		{"RHEL family", &guest.OS{ID: "rocky", IDLike: "rhel centos fedora"}, nil,
			"/initramfs-6.1.0-50-amd64.img", "dracut", "/boot/initramfs-6.1.0-50-amd64.img"},
		{"RHEL family, no boot entry", &guest.OS{ID: "rhel"}, nil, "", "dracut", "/boot/initramfs-6.1.0-50-amd64.img"},
		{"Debian switched to dracut", &guest.OS{ID: "debian"}, []string{"/usr/bin/dracut"},
			"/boot/initrd.img-6.1.0-50-amd64", "dracut", "/boot/initrd.img-6.1.0-50-amd64"},
		{"Ubuntu, dracut in /usr/sbin", &guest.OS{ID: "ubuntu", IDLike: "debian"}, []string{"/usr/sbin/dracut"},
			"/initrd.img-6.1.0-50-amd64", "dracut", "/boot/initrd.img-6.1.0-50-amd64"},
		{"Debian with initramfs-tools", &guest.OS{ID: "debian"}, []string{"/usr/sbin/update-initramfs"},
			"/boot/initrd.img-6.1.0-50-amd64", "update-initramfs", ""},
	}
	for _, tc := range tools {
		t.Run("initramfs tool: "+tc.name, func(t *testing.T) {
			r := brokenReport()
			r.OS = tc.os
			r.Mounts[0].Volume.FS = fakeFS(tc.files)
			if tc.initrd != "" {
				r.Boot = &boot.Entry{InitrdPath: tc.initrd}
			}
			p, _, err := PlanFor(r, kvm, nil)
			require.NoError(t, err)
			s := p.Steps[len(p.Steps)-1]
			assert.Equal(t, tc.tool, s.Tool)
			assert.Equal(t, tc.wantFile, s.Initrd)
		})
	}
	mounts := []struct {
		name   string
		mutate func(*guest.Report)
		root   Mount
		boot   []Mount
	}{
		{"root in an LV, /boot on XFS", func(r *guest.Report) {
			r.Mounts[0].Volume = boot.Volume{Disk: 0, LV: "rhel/root", FSType: "xfs", UUID: rootUUID}
			r.Mounts = append(r.Mounts, guest.Mount{Path: "/boot", Volume: boot.Volume{Partition: 1, FSType: "xfs", UUID: "b0"}},
				guest.Mount{Path: "/home", Volume: boot.Volume{LV: "rhel/home", FSType: "xfs", UUID: "h0"}})
		}, Mount{Path: "/", UUID: rootUUID, LV: "rhel/root", FSType: "xfs"}, []Mount{{Path: "/boot", UUID: "b0", FSType: "xfs"}}},
		{"/boot in an LV", func(r *guest.Report) {
			r.Mounts = append(r.Mounts, guest.Mount{Path: "/boot", Volume: boot.Volume{LV: "vg0/boot", FSType: "ext4", Label: "boot"}})
		}, Mount{Path: "/", UUID: rootUUID, FSType: "ext4"}, []Mount{{Path: "/boot", Label: "boot", LV: "vg0/boot", FSType: "ext4"}}},
		{"btrfs root subvolume without a default", func(r *guest.Report) {
			r.Mounts[0].Volume = boot.Volume{Partition: 1, FSType: "btrfs", UUID: rootUUID, Subvolume: "@"}
		}, Mount{Path: "/", UUID: rootUUID, FSType: "btrfs", Options: "subvol=@"}, nil},
		{"btrfs with its default subvolume set", func(r *guest.Report) {
			r.Mounts[0].Volume = boot.Volume{Partition: 1, FSType: "btrfs", UUID: rootUUID}
		}, Mount{Path: "/", UUID: rootUUID, FSType: "btrfs"}, nil},
	}
	for _, tc := range mounts {
		t.Run("mounts: "+tc.name, func(t *testing.T) {
			r := brokenReport()
			tc.mutate(r)
			p, _, err := PlanFor(r, kvm, nil)
			require.NoError(t, err)
			assert.Equal(t, tc.root, p.Root)
			assert.Equal(t, tc.boot, p.Mounts)
		})
	}
	t.Run("nothing to fix", func(t *testing.T) {
		r := brokenReport()
		r.Findings = nil
		p, unfixed, err := PlanFor(r, kvm, nil)
		require.NoError(t, err)
		assert.Empty(t, p.Steps)
		assert.Empty(t, unfixed)
	})
	errs := []struct {
		name   string
		mutate func(*guest.Report)
		want   string
	}{
		{"no root", func(r *guest.Report) { r.Mounts = nil }, "no Linux root"},
		{"no UUID", func(r *guest.Report) { r.Mounts[0].Volume.UUID = "" }, "neither UUID nor label"},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) {
			r := brokenReport()
			tc.mutate(r)
			_, _, err := PlanFor(r, kvm, nil)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestDiskLetters(t *testing.T) {
	for i, want := range map[int]string{0: "a", 1: "b", 25: "z", 26: "aa", 27: "ab", 701: "zz", 702: "aaa"} {
		assert.Equal(t, want, diskLetters(i), "disk %d", i)
	}
}

// fakeFS is a guest filesystem holding empty files at the given paths.
type fakeFS []string

func (f fakeFS) ReadFile(name string, max int64) ([]byte, error) {
	if _, _, err := f.Stat(name); err != nil {
		return nil, err
	}
	return nil, nil
}

func (f fakeFS) ReadDir(name string) ([]string, error) { return nil, fs.ErrNotExist }

func (f fakeFS) Stat(name string) (int64, bool, error) {
	for _, p := range f {
		if p == name {
			return 0, false, nil
		}
	}
	return 0, false, fs.ErrNotExist
}
