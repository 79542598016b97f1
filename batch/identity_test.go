package batch

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestIdentity(t *testing.T) {
	later := time.Now().Add(time.Hour)
	tests := []struct {
		name    string
		source  string // relative to the VM's directory
		change  func(t *testing.T, dir string)
		changed bool
	}{
		{"nothing changes", "web.vmx", func(*testing.T, string) {}, false},
		{"a temporary file appears beside it", "web.vmx", func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, ".web.xva.tmp-1"), []byte("x"), 0o644))
		}, false},
		{"the description's content", "web.vmx", func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "web.vmx"), []byte(`displayName = "web2"`+"\n"), 0o644))
		}, true},
		{"a disk's size", "web.vmx", func(t *testing.T, dir string) {
			require.NoError(t, os.Truncate(filepath.Join(dir, "web-flat.vmdk"), 2<<20))
		}, true},
		{"a disk's modification time", "web.vmx", func(t *testing.T, dir string) {
			require.NoError(t, os.Chtimes(filepath.Join(dir, "web-flat.vmdk"), later, later))
		}, true},
		{"a large image's modification time", "big.img", func(t *testing.T, dir string) {
			require.NoError(t, os.Chtimes(filepath.Join(dir, "big.img"), later, later))
		}, true},
		{"a bundle's disk list", "b.vmb", func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "b.vmb", "disks", "d1.json"), []byte("{}"), 0o644))
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(dir, "web.vmx"), []byte(`displayName = "web"`+"\n"), 0o644))
			require.NoError(t, os.WriteFile(filepath.Join(dir, "web-flat.vmdk"), make([]byte, 1<<20), 0o644))
			big, err := os.Create(filepath.Join(dir, "big.img"))
			require.NoError(t, err)
			require.NoError(t, big.Truncate(4<<20))
			require.NoError(t, big.Close())
			require.NoError(t, os.MkdirAll(filepath.Join(dir, "b.vmb", "disks"), 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(dir, "b.vmb", "vm.json"), []byte("{}"), 0o644))

			src := filepath.Join(dir, tc.source)
			before, err := Identity(src)
			require.NoError(t, err)
			tc.change(t, dir)
			after, err := Identity(src)
			require.NoError(t, err)
			assert.Equal(t, tc.changed, before != after)
		})
	}
	_, err := Identity(filepath.Join(t.TempDir(), "gone.vmx"))
	assert.ErrorContains(t, err, "gone.vmx")
}

// A disk kept in another directory counts with its size.
func TestIdentityDiskElsewhere(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "vm"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "disks"), 0o755))
	vmx := "displayName = \"web\"\nscsi0.present = \"TRUE\"\nscsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"../disks/web.vmdk\"\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "vm", "web.vmx"), []byte(vmx), 0o644))
	descriptor := func(sectors int) {
		d := fmt.Sprintf("# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\nRW %d FLAT \"web-flat.vmdk\" 0\n", sectors)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "disks", "web.vmdk"), []byte(d), 0o644))
		require.NoError(t, os.Truncate(filepath.Join(dir, "disks", "web-flat.vmdk"), int64(sectors)*512))
	}
	f, err := os.Create(filepath.Join(dir, "disks", "web-flat.vmdk"))
	require.NoError(t, err)
	require.NoError(t, f.Close())
	descriptor(2048)
	before, err := Identity(filepath.Join(dir, "vm", "web.vmx"))
	require.NoError(t, err)
	descriptor(4096)
	after, err := Identity(filepath.Join(dir, "vm", "web.vmx"))
	require.NoError(t, err)
	assert.NotEqual(t, before, after)
}
