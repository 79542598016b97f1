//go:build linux

package initfix

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/fix"
)

func writeTree(t *testing.T, root string, files map[string]string) {
	for name, body := range files {
		p := filepath.Join(root, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o640))
	}
}

func TestSteps(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"/etc/fstab":                                "# <file system> <mount point>   <type>  <options>       <dump>  <pass>\n/dev/sda1       /               ext4    errors=remount-ro 0       1\n",
		"/etc/initramfs-tools/modules":              "vmw_pvscsi\nmptspi\nvirtio-pci",
		"/lib/systemd/system/open-vm-tools.service": "[Unit]\n",
	})
	wants := filepath.Join(root, "/etc/systemd/system/multi-user.target.wants")
	require.NoError(t, os.MkdirAll(wants, 0o755))
	require.NoError(t, os.Symlink("/lib/systemd/system/open-vm-tools.service", filepath.Join(wants, "open-vm-tools.service")))
	require.NoError(t, os.WriteFile(filepath.Join(wants, "vgauth.service"), nil, 0o644)) // not a link: left alone

	r := runStep(root, "6.1.0-50-amd64", fix.Step{Kind: fix.StepDeviceNames, Files: []string{"/etc/fstab"},
		Names: map[string]string{"/dev/sda1": "UUID=5b1e"}}, nil)
	assert.True(t, r.OK, r.Message)
	b, _ := os.ReadFile(filepath.Join(root, "/etc/fstab"))
	assert.Equal(t, "# <file system> <mount point>   <type>  <options>       <dump>  <pass>\nUUID=5b1e       /               ext4    errors=remount-ro 0       1\n", string(b))
	fi, _ := os.Stat(filepath.Join(root, "/etc/fstab"))
	assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm(), "mode kept")

	r = runStep(root, "", fix.Step{Kind: fix.StepNetLink, MAC: "00:50:56:3f:a2:23", Name: "ens192"}, nil)
	assert.True(t, r.OK, r.Message)
	b, _ = os.ReadFile(filepath.Join(root, "/etc/systemd/network/10-vmconv-ens192.link"))
	assert.Contains(t, string(b), "[Match]\nMACAddress=00:50:56:3f:a2:23\n\n[Link]\nName=ens192\n")

	r = runStep(root, "", fix.Step{Kind: fix.StepNetLink, MAC: "00:50:56:3f:a2:23", Name: "../../x"}, nil)
	assert.False(t, r.OK)
	assert.Contains(t, r.Message, "invalid interface name")

	r = runStep(root, "", fix.Step{Kind: fix.StepToolsDisable, Units: []string{"open-vm-tools.service", "vgauth.service"}}, nil)
	assert.True(t, r.OK, r.Message)
	assert.Equal(t, []string{"/etc/systemd/system/multi-user.target.wants/open-vm-tools.service"}, r.Changed)
	assert.FileExists(t, filepath.Join(wants, "vgauth.service"))

	r = runStep(root, "", fix.Step{Kind: fix.StepDeviceNames, Files: []string{"/etc/../etc/shadow"}}, nil)
	assert.False(t, r.OK)
}

func TestAddModules(t *testing.T) {
	assert.Equal(t, "vmw_pvscsi\nvirtio-pci\nvirtio_blk\nvirtio_mmio\n",
		string(addModules([]byte("vmw_pvscsi\nvirtio-pci"), []string{"virtio_blk", "virtio_pci", "virtio_mmio"})))
	assert.Equal(t, "virtio_blk\n", string(addModules(nil, []string{"virtio_blk"})))
	assert.Equal(t, "# virtio_blk\nvirtio_blk\n", string(addModules([]byte("# virtio_blk\n"), []string{"virtio_blk"})))
}

// udevLinks names every block device by number under block/, as udev
// does, and gives the shell its /dev/fd.
func TestUdevLinks(t *testing.T) {
	dev := t.TempDir()
	require.NoError(t, udevLinks(dev))
	require.NoError(t, udevLinks(dev), "a second run replaces the links")
	target, err := os.Readlink(filepath.Join(dev, "fd"))
	require.NoError(t, err)
	assert.Equal(t, "/proc/self/fd", target)
	names, _ := filepath.Glob("/sys/class/block/*")
	for _, n := range names {
		num, err := os.ReadFile(filepath.Join(n, "dev"))
		require.NoError(t, err)
		target, err := os.Readlink(filepath.Join(dev, "block", strings.TrimSpace(string(num))))
		require.NoError(t, err)
		assert.Equal(t, "../"+filepath.Base(n), target)
	}
}
