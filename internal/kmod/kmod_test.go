package kmod

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A slice of Debian 6.1's modules.dep, as depmod writes it.
const debDep = `kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/lib/crc16.ko:
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/crypto/crc32c_generic.ko.xz:
`

func TestOrder(t *testing.T) {
	dep := ParseDep([]byte(debDep))
	builtin := ParseBuiltin([]byte("kernel/drivers/virtio/virtio_mmio.ko\nkernel/fs/xfs/xfs.ko\n"))
	tests := []struct {
		name    string
		want    []string
		order   []string
		wantErr string
	}{
		{"ext4 after its deps", []string{"ext4"}, []string{"kernel/lib/crc16.ko", "kernel/fs/mbcache.ko", "kernel/fs/jbd2/jbd2.ko", "kernel/fs/ext4/ext4.ko"}, ""},
		{"shared deps once, ring before virtio", []string{"virtio_blk", "virtio-pci"}, []string{
			"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko", "kernel/drivers/block/virtio_blk.ko",
			"kernel/drivers/virtio/virtio_pci_legacy_dev.ko", "kernel/drivers/virtio/virtio_pci_modern_dev.ko", "kernel/drivers/virtio/virtio_pci.ko"}, ""},
		{"builtin skipped", []string{"virtio_mmio", "xfs"}, nil, ""},
		{"compressed name", []string{"crc32c_generic"}, []string{"kernel/crypto/crc32c_generic.ko.xz"}, ""},
		{"missing named", []string{"btrfs"}, nil, "module btrfs (needed by the request) is not installed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Order(dep.Deps, builtin, tc.want)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.order, got)
		})
	}
}

func TestOrderLoop(t *testing.T) {
	dep := ParseDep([]byte("a.ko: b.ko\nb.ko: a.ko\n"))
	_, err := Order(dep.Deps, nil, []string{"a"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "loop")
}

func TestName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/drivers/block/virtio_blk.ko.xz": "virtio_blk",
		"kernel/crypto/crc32c-generic.ko.zst":   "crc32c_generic",
		"virtio-pci":                            "virtio_pci",
		"c.ko.ko":                               "c", // as kmod: the name ends at the first dot
		"kernel/fs/":                            "fs",
	} {
		assert.Equal(t, want, Name(in), in)
		assert.Equal(t, want, Name(Name(in)), "Name(Name(%q))", in)
	}
}
