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
