package boot

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
)

// TestVolumes: the real Debian guest's one ext4 partition, as mkfs.ext4 and
// sfdisk made it, with its identities, readable through the exported FS;
// and a disk with nothing on it gives a note, not a volume.
func TestVolumes(t *testing.T) {
	dir := guestDir(t)
	img, err := disk.OpenRaw(filepath.Join(dir, "disk.raw"))
	require.NoError(t, err)
	defer img.Close()
	empty := filepath.Join(t.TempDir(), "empty.raw")
	require.NoError(t, os.WriteFile(empty, make([]byte, 1<<20), 0o644))
	blank, err := disk.OpenRaw(empty)
	require.NoError(t, err)
	defer blank.Close()

	vols, notes := Volumes([]disk.Image{img, blank})
	require.Len(t, vols, 1)
	v := vols[0]
	assert.Equal(t, 0, v.Disk)
	assert.Equal(t, 1, v.Partition)
	assert.Equal(t, "ext4", v.FSType)
	assert.Equal(t, strings.TrimSpace(string(readGuestFile(t, dir, "root-uuid"))), v.UUID)
	assert.Equal(t, "root", v.Label)
	assert.Equal(t, "7a3c9e51-01", v.PartUUID)
	assert.Equal(t, "mbr", v.Table)
	names, err := v.FS.ReadDir("/etc")
	require.NoError(t, err)
	assert.Contains(t, names, "fstab")
	b, err := v.FS.ReadFile("/etc/fstab", 1<<20)
	require.NoError(t, err)
	assert.Contains(t, string(b), "UUID="+v.UUID)
	require.Len(t, notes, 1)
	assert.Contains(t, notes[0], "disk 1: no partition table")
}
