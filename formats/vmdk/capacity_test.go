package vmdk

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/internal/testutil"
)

// A descriptor copied without the files it names (its extents, a
// snapshot's parent) cannot be opened, and the error names the first absent
// file as an *fs.PathError, so that `info` can mark the disk missing; its
// size is still known from the descriptor (or the sparse header). The files
// are qemu-img's.
func TestCapacityWithoutExtentsOrParent(t *testing.T) {
	qemuImg := testutil.RequireTool(t, "qemu-img")
	const size = 3<<20 + 64<<10 // not a multiple of a grain table's span
	tests := []struct {
		name    string
		create  []string // qemu-img create arguments after the file name
		remove  []string // files removed after creation
		missing string   // the absent file the error must name
	}{
		{name: "monolithicFlat without its extent", create: []string{"-o", "subformat=monolithicFlat"},
			remove: []string{"d-flat.vmdk"}, missing: "d-flat.vmdk"},
		{name: "twoGbMaxExtentFlat without its extent", create: []string{"-o", "subformat=twoGbMaxExtentFlat"},
			remove: []string{"d-f001.vmdk"}, missing: "d-f001.vmdk"},
		{name: "twoGbMaxExtentSparse without its extent", create: []string{"-o", "subformat=twoGbMaxExtentSparse"},
			remove: []string{"d-s001.vmdk"}, missing: "d-s001.vmdk"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "d.vmdk")
			testutil.Run(t, qemuImg, append([]string{"create", "-q", "-f", "vmdk", p}, append(tc.create, "3136K")...)...)
			for _, r := range tc.remove {
				require.NoError(t, os.Remove(filepath.Join(dir, r)))
			}
			_, err := Open(p)
			require.Error(t, err)
			assert.ErrorIs(t, err, fs.ErrNotExist)
			var pe *fs.PathError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, filepath.Join(dir, tc.missing), pe.Path)
			_, looked, _ := strings.Cut(err.Error(), "looked for ")
			assert.Equal(t, filepath.Join(dir, tc.missing)+")", looked, "each place looked at once")

			got, err := Capacity(p)
			require.NoError(t, err)
			assert.Equal(t, int64(size), got)
		})
	}

	// A hosted snapshot (a sparse file with an embedded descriptor) whose
	// parent stayed behind: its own header gives the size.
	t.Run("snapshot without its parent", func(t *testing.T) {
		dir := t.TempDir()
		base, child := filepath.Join(dir, "base.vmdk"), filepath.Join(dir, "child.vmdk")
		testutil.Run(t, qemuImg, "create", "-q", "-f", "vmdk", base, "3136K")
		testutil.Run(t, qemuImg, "create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", child)
		require.NoError(t, os.Remove(base))
		_, err := Open(child)
		var pe *fs.PathError
		require.ErrorAs(t, err, &pe)
		assert.Equal(t, base, pe.Path)
		got, err := Capacity(child)
		require.NoError(t, err)
		assert.Equal(t, int64(size), got)
	})

	// Every subformat whose data is in the one file: the header's capacity.
	for _, sub := range []string{"monolithicSparse", "streamOptimized"} {
		t.Run(sub, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "d.vmdk")
			testutil.Run(t, qemuImg, "create", "-q", "-f", "vmdk", "-o", "subformat="+sub, p, "3136K")
			got, err := Capacity(p)
			require.NoError(t, err)
			assert.Equal(t, int64(size), got)
		})
	}
}

// Capacity reads only what it is given, and refuses what is not a VMDK.
func TestCapacityBadInput(t *testing.T) {
	hdr := make([]byte, 512)
	copy(hdr, "KDMV") // magic only: version 0
	tests := []struct {
		name    string
		content []byte
		wantErr string
	}{
		{"bad sparse header", hdr, "header: version 0"},
		{"not a descriptor", []byte("hello, world\n"), "neither a sparse extent"},
		{"extent too large", []byte("# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\nRW 99999999999999999 FLAT \"d-flat.vmdk\" 0\n"), "extent size"},
		{"extents add up too large", []byte("# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"twoGbMaxExtentFlat\"\n" +
			strings.Repeat("RW 1099511627776 FLAT \"d-f001.vmdk\" 0\n", 2)), "more than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "d.vmdk")
			require.NoError(t, os.WriteFile(p, tc.content, 0o644))
			_, err := Capacity(p)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.wantErr)
			assert.Contains(t, err.Error(), p)
		})
	}
	_, err := Capacity(filepath.Join(t.TempDir(), "absent.vmdk"))
	assert.True(t, errors.Is(err, fs.ErrNotExist))
}
