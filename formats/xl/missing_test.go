package xl

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
)

// A target that is here but whose backing file is not (a qcow2 overlay
// copied without its base) is described as missing, named by the absent
// file; without MarkMissing, and for any other opener error, the read fails.
func TestReadMarksMissingBackingFile(t *testing.T) {
	errCorrupt := errors.New("L1 table: out of range")
	tests := []struct {
		name        string
		openErr     func(dir string) error
		markMissing bool
		capacity    func(path, format string) (int64, error)
		wantFile    string // joined to the config's directory
		wantSize    int64
		wantErr     error
	}{
		{
			name: "backing file gone",
			openErr: func(dir string) error {
				return fmt.Errorf("qcow2 top.qcow2: backing file %q: %w", "base.qcow2",
					&fs.PathError{Op: "stat", Path: filepath.Join(dir, "base.qcow2"), Err: fs.ErrNotExist})
			},
			markMissing: true,
			wantFile:    "base.qcow2",
		},
		{
			name: "backing file gone, size from the overlay",
			openErr: func(dir string) error {
				return &fs.PathError{Op: "stat", Path: filepath.Join(dir, "base.qcow2"), Err: fs.ErrNotExist}
			},
			markMissing: true,
			capacity: func(path, format string) (int64, error) {
				if filepath.Base(path) != "top.qcow2" || format != "qcow2" {
					return 0, fmt.Errorf("asked the size of %s (%s)", path, format)
				}
				return 10 << 30, nil
			},
			wantFile: "base.qcow2",
			wantSize: 10 << 30,
		},
		{
			name: "backing file gone, not describing",
			openErr: func(dir string) error {
				return &fs.PathError{Op: "stat", Path: filepath.Join(dir, "base.qcow2"), Err: fs.ErrNotExist}
			},
			wantErr: fs.ErrNotExist,
		},
		{
			name:        "corrupt image",
			openErr:     func(string) error { return errCorrupt },
			markMissing: true,
			wantErr:     errCorrupt,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "web.cfg")
			require.NoError(t, os.WriteFile(cfg, []byte("name = \"web\"\nmemory = 512\ndisk = [ 'format=qcow2, vdev=xvda, access=rw, target=top.qcow2' ]\n"), 0o644))
			require.NoError(t, os.WriteFile(filepath.Join(dir, "top.qcow2"), []byte("here"), 0o644))
			open := func(p, format string) (disk.Image, error) {
				assert.Equal(t, filepath.Join(dir, "top.qcow2"), p)
				assert.Equal(t, "qcow2", format)
				return nil, tc.openErr(dir)
			}
			vm, err := Read(cfg, ReadOptions{Open: open, MarkMissing: tc.markMissing, Capacity: tc.capacity})
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				assert.Contains(t, err.Error(), "disk xvda")
				return
			}
			require.NoError(t, err)
			defer vm.Close()
			require.Len(t, vm.Disks, 1)
			d := vm.Disks[0]
			assert.True(t, d.Missing)
			assert.Nil(t, d.Image)
			assert.Equal(t, filepath.Join(dir, tc.wantFile), d.File)
			assert.Equal(t, tc.wantSize, d.CapacityBytes)
		})
	}
}
