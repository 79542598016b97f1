package qcow2

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk/disktest"
	"github.com/vmconv/vmconv/internal/testutil"
)

// qemuImgIn runs qemu-img in dir, so that relative names in its options
// (data_file=) are stored in the header as given.
func qemuImgIn(t *testing.T, dir string, args ...string) {
	t.Helper()
	testutil.RequireTool(t, "qemu-img")
	cmd := exec.Command("qemu-img", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "qemu-img %v: %s", args, out)
}

// Images whose data clusters live in an external data file (qemu-img's
// data_file=), raw or not, written by qemu-img and qemu-io: read through
// the qcow2's tables from the file named relative to the image, as qemu
// reads them.
func TestReadExternalDataFile(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string)
		raw   bool
	}{
		{"raw data file, converted", func(t *testing.T, dir string) {
			disktest.WriteSparse(t, filepath.Join(dir, "src.raw"), disktest.Pattern(10<<20, 5))
			qemuImgIn(t, dir, "convert", "-O", "qcow2", "-o", "data_file=img.data,data_file_raw=on", "src.raw", "img.qcow2")
		}, true},
		{"data file, converted", func(t *testing.T, dir string) {
			disktest.WriteSparse(t, filepath.Join(dir, "src.raw"), disktest.Pattern(10<<20, 5))
			qemuImgIn(t, dir, "convert", "-O", "qcow2", "-o", "data_file=img.data", "src.raw", "img.qcow2")
		}, false},
		{"data file, written by qemu-io", func(t *testing.T, dir string) {
			qemuImgIn(t, dir, "create", "-f", "qcow2", "-o", "data_file=img.data", "img.qcow2", "10M")
			qemuIO(t, filepath.Join(dir, "img.qcow2"), "write -P 0x11 0 64k", "write -z 32k 4k", "write -P 0x22 9M 8k", "discard 9M 64k", "write -P 0x33 5M 1M")
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(dir) // QEMU 7 looks for a relative data file here
			tc.setup(t, dir)
			p := filepath.Join(dir, "img.qcow2")
			want := disktest.RawOf(t, p, "qcow2")
			// Read from another directory: the name resolves next to the image.
			t.Chdir(t.TempDir())
			img, err := Open(p)
			require.NoError(t, err)
			defer img.Close()
			got := disktest.ReadAll(t, img)
			require.True(t, string(want) == string(got), "contents differ from qemu-img's raw conversion")
			disktest.RequireExtentsCover(t, img, want)
			assert.Equal(t, "img.data", img.Info().DataFile)
			assert.Equal(t, tc.raw, img.Info().DataFileRaw)
			res, err := Check(p)
			require.NoError(t, err)
			assert.Empty(t, res.Problems, "our check of a file qemu-img finds clean")
		})
	}
}

func TestExternalDataFileRefusals(t *testing.T) {
	dir := t.TempDir()
	disktest.WriteSparse(t, filepath.Join(dir, "src.raw"), disktest.Pattern(1<<20, 5))
	qemuImgIn(t, dir, "convert", "-O", "qcow2", "-o", "data_file=img.data", "src.raw", "img.qcow2")
	p := filepath.Join(dir, "img.qcow2")

	require.NoError(t, os.Rename(filepath.Join(dir, "img.data"), filepath.Join(dir, "gone.data")))
	_, err := Open(p)
	require.ErrorContains(t, err, `data file "img.data"`)
	_, err = Check(p)
	require.ErrorContains(t, err, `data file "img.data"`)

	// A data file shorter than the clusters the tables point at.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "img.data"), []byte("short"), 0o644))
	img, err := Open(p)
	require.NoError(t, err)
	defer img.Close()
	_, err = img.ReadAt(make([]byte, 4096), 0) // cut short: zeros past the end, as qemu reads it
	require.NoError(t, err)
	_, err = img.ReadAt(make([]byte, 1<<20), 0)
	require.ErrorContains(t, err, "past the end of the data file img.data")
}
