package guest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/internal/testutil"
)

// debianDisk opens the real Debian guest testdata/guest/build.sh builds.
func debianDisk(t *testing.T) (disk.Image, string) {
	t.Helper()
	dir, err := testutil.GuestDir("..")
	require.NoError(t, err)
	img, err := disk.OpenRaw(filepath.Join(dir, "disk.raw"))
	if err != nil {
		testutil.Unavailable(t, "the Debian guest is not built (sh testdata/guest/build.sh): "+err.Error())
	}
	t.Cleanup(func() { img.Close() })
	return img, dir
}

// TestDebianGuest: the real Debian guest inspects as Debian 12 with its
// kernel's virtio_blk in the initramfs and nothing that stops it booting
// on KVM; on VMware its LSI Logic driver (mptspi) is there too.
func TestDebianGuest(t *testing.T) {
	img, dir := debianDisk(t)
	kver, err := os.ReadFile(filepath.Join(dir, "kernel-version"))
	require.NoError(t, err)
	for _, target := range []string{"kvm", "xen", "vmware"} {
		t.Run(target, func(t *testing.T) {
			rep, err := Inspect([]disk.Image{img}, Options{Target: target, MACs: []string{"00:50:56:3f:a2:17"}})
			require.NoError(t, err)
			js, _ := json.MarshalIndent(rep, "", "  ")
			require.NotNil(t, rep.OS, "%s", js)
			assert.Equal(t, "debian", rep.OS.ID)
			assert.Equal(t, "12", rep.OS.VersionID)
			assert.Contains(t, rep.OS.PrettyName, "Debian GNU/Linux 12")
			assert.Equal(t, strings.TrimSpace(string(kver)), rep.Kernel)
			assert.Zero(t, rep.Errors(), "%s", js)
			for _, f := range rep.Findings {
				assert.NotEqual(t, "initramfs-no-disk-driver", f.Code, "%s", js)
			}
			for _, n := range rep.Notes {
				assert.NotContains(t, n, "initramfs", "the initramfs was read")
			}
		})
	}
}

func TestLVName(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{"/dev/mapper/vg0-root", "vg0/root"},
		{"/dev/mapper/rl-root", "rl/root"},
		{"/dev/mapper/ubuntu--vg-ubuntu--lv", "ubuntu-vg/ubuntu-lv"},
		{"/dev/vg0/root", "vg0/root"},
		{"/dev/mapper/luks-0a1b", "luks/0a1b"},
		{"/dev/mapper/nodash", ""},
		{"/dev/disk/by-uuid", ""},
		{"/dev/sda1", ""},
		{"UUID=abc", ""},
	} {
		assert.Equal(t, tc.want, lvName(tc.spec), tc.spec)
	}
}

// The wild guests testdata/guest/build-wild.sh builds, inspected for KVM:
// the XFS + LVM + UEFI and the btrfs guests mount their root from the LV
// and the @ subvolume and have nothing that stops them; the guest built to
// fail has each planted problem named, with the file and line it is on.
func TestWildGuests(t *testing.T) {
	for _, tc := range []struct {
		variant  string
		rootFS   string
		rootLV   string
		findings []string // code@file, in any order; nil: none that is an error
	}{
		{variant: "xfs-lvm-efi", rootFS: "ext4", rootLV: "vg0/root"},
		{variant: "btrfs", rootFS: "btrfs"},
		{variant: "broken", rootFS: "ext4", findings: []string{
			"initramfs-no-disk-driver@/boot/initrd.img-6.1.0-50-amd64",
			"device-name@/etc/fstab", "device-name@/boot/grub/grub.cfg",
			"net-config-by-name@/etc/network/interfaces", "vmware-tools@/var/lib/dpkg/status",
		}},
	} {
		t.Run(tc.variant, func(t *testing.T) {
			dir := testutil.RequireWildGuest(t, "..", tc.variant)
			img, err := disk.OpenRaw(filepath.Join(dir, "disk.raw"))
			require.NoError(t, err)
			defer img.Close()
			mac, err := os.ReadFile(filepath.Join(dir, "mac"))
			require.NoError(t, err)
			rep, err := Inspect([]disk.Image{img}, Options{Target: "kvm", MACs: []string{strings.TrimSpace(string(mac))}})
			require.NoError(t, err)
			js, _ := json.MarshalIndent(rep, "", "  ")
			require.NotNil(t, rep.OS, "%s", js)
			assert.Equal(t, "debian", rep.OS.ID)
			require.NotEmpty(t, rep.Mounts, "%s", js)
			assert.Equal(t, "/", rep.Mounts[0].Path)
			assert.Equal(t, tc.rootFS, rep.Mounts[0].Volume.FSType)
			assert.Equal(t, tc.rootLV, rep.Mounts[0].Volume.LV)
			if tc.findings == nil {
				assert.Zero(t, rep.Errors(), "%s", js)
				return
			}
			var got []string
			for _, f := range rep.Findings {
				assert.NotEmpty(t, f.Fix, "%s has no fix", f.Code)
				got = append(got, f.Code+"@"+f.File)
			}
			for _, want := range tc.findings {
				assert.Contains(t, got, want, "%s", js)
			}
		})
	}
}
