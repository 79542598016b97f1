package qcow2

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/internal/testutil"
)

// An overlay whose backing file stayed behind cannot be opened (the error
// is an *fs.PathError naming the base) but still states its size; the
// images are qemu-img's.
func TestCapacityWithoutBackingFile(t *testing.T) {
	qemuImg := testutil.RequireTool(t, "qemu-img")
	for _, compat := range []string{"0.10", "1.1"} {
		t.Run("compat="+compat, func(t *testing.T) {
			dir := t.TempDir()
			base, top := filepath.Join(dir, "base.qcow2"), filepath.Join(dir, "top.qcow2")
			testutil.Run(t, qemuImg, "create", "-q", "-f", "qcow2", "-o", "compat="+compat, base, "65M")
			testutil.Run(t, qemuImg, "create", "-q", "-f", "qcow2", "-o", "compat="+compat, "-b", "base.qcow2", "-F", "qcow2", top, "70M")
			require.NoError(t, os.Remove(base))
			_, err := Open(top)
			var pe *fs.PathError
			require.ErrorAs(t, err, &pe)
			assert.ErrorIs(t, err, fs.ErrNotExist)
			assert.Equal(t, base, pe.Path)
			got, err := Capacity(top)
			require.NoError(t, err)
			assert.Equal(t, int64(70<<20), got)
		})
	}
}

func TestCapacityBadInput(t *testing.T) {
	qemuImg := testutil.RequireTool(t, "qemu-img")
	dir := t.TempDir()
	good := filepath.Join(dir, "good.qcow2")
	testutil.Run(t, qemuImg, "create", "-q", "-f", "qcow2", good, "1M")
	img, err := os.ReadFile(good)
	require.NoError(t, err)
	badBits := append([]byte(nil), img...)
	badBits[23] = 40 // cluster_bits
	tests := []struct {
		name    string
		content []byte
		wantErr string
	}{
		{"short", img[:40], "truncated header: file is 40 bytes"},
		{"not qcow2", make([]byte, 512), "magic"},
		{"bad cluster bits", badBits, "cluster_bits 40"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, "bad.qcow2")
			require.NoError(t, os.WriteFile(p, tc.content, 0o644))
			_, err := Capacity(p)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.wantErr)
			assert.Contains(t, err.Error(), p)
		})
	}
}
