package disk_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/internal/testutil"
)

// sparseImage writes 8 MiB with data in chunks 0 and 5 (a hole between)
// and returns the raw image and its bytes.
func sparseImage(t *testing.T) (*disk.Raw, []byte) {
	t.Helper()
	content := make([]byte, 8*disk.ChunkSize)
	copy(content, "first chunk")
	copy(content[5*disk.ChunkSize+100:], "sixth chunk")
	path := filepath.Join(t.TempDir(), "src.raw")
	f, err := os.Create(path)
	require.NoError(t, err)
	for _, off := range []int{0, 5 * disk.ChunkSize} {
		_, err := f.WriteAt(content[off:off+disk.ChunkSize], int64(off))
		require.NoError(t, err)
	}
	require.NoError(t, f.Truncate(int64(len(content))))
	require.NoError(t, f.Close())
	img, err := disk.OpenRaw(path)
	require.NoError(t, err)
	t.Cleanup(func() { img.Close() })
	return img, content
}

// A raw image is written onto an existing block device in place: its holes
// are zeroed over the device's old bytes, the bytes past the image are left
// alone, and the device node stays what it was.
func TestRawOntoBlockDevice(t *testing.T) {
	dev, backing := testutil.LoopDevice(t, 16*disk.ChunkSize, 0xAA)
	img, content := sparseImage(t)

	out := disk.NewOutput(true)
	f, err := out.CreateDisk(dev)
	require.NoError(t, err)
	require.NoError(t, disk.Copy(context.Background(), img, disk.NewRawWriter(f, img.Size()), disk.CopyOptions{}))
	require.NoError(t, out.Commit())

	fi, err := os.Stat(dev)
	require.NoError(t, err)
	assert.Equal(t, os.ModeDevice, fi.Mode()&(os.ModeDevice|os.ModeCharDevice), "still a block device")
	got, err := os.ReadFile(backing)
	require.NoError(t, err)
	require.True(t, bytes.Equal(content, got[:len(content)]), "the image differs on the device")
	assert.Equal(t, bytes.Repeat([]byte{0xAA}, len(got)-len(content)), got[len(content):], "past the image, the device is untouched")
}

// What may not be written onto a device fails before a byte is written,
// naming the device.
func TestBlockDeviceRefusals(t *testing.T) {
	dev, backing := testutil.LoopDevice(t, 4*disk.ChunkSize, 0xAA)
	img, _ := sparseImage(t) // 8 MiB: larger than the device
	tests := []struct {
		name    string
		force   bool
		create  func(o *disk.Output, path string) (*os.File, error)
		path    string
		hold    bool // another opener holds the device exclusively
		wantErr string
	}{
		{"without --force", false, (*disk.Output).CreateDisk, dev, false, dev + ": is a block device: use --force to write over it"},
		{"an image format other than raw", true, (*disk.Output).Create, dev, false, dev + ": is a device: only a raw image is written to a device"},
		{"a device in use", true, (*disk.Output).CreateDisk, dev, true, "device or resource busy"},
		{"a character device", true, (*disk.Output).CreateDisk, "/dev/null", false, "/dev/null: is a character device, not a disk"},
		{"a device this process reads", true, (*disk.Output).CreateDisk, dev, false, dev + ": is read by this conversion"},
		{"a device smaller than the image", true, (*disk.Output).CreateDisk, dev, false, "holds 4194304 bytes, less than the image's 8388608"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.hold {
				// Held by another process (as a mount holds it): one this
				// process holds is an input, refused before the kernel's
				// busy check.
				holder, err := os.OpenFile(dev, os.O_RDONLY|os.O_EXCL, 0)
				require.NoError(t, err)
				child := exec.Command("sleep", "60")
				child.ExtraFiles = []*os.File{holder}
				require.NoError(t, child.Start())
				holder.Close()
				defer func() { child.Process.Kill(); child.Wait() }()
			}
			if strings.Contains(tc.name, "this process reads") {
				input, err := disk.OpenFile(dev)
				require.NoError(t, err)
				defer input.Close()
			}
			out := disk.NewOutput(tc.force)
			defer out.Abort()
			f, err := tc.create(out, tc.path)
			if err == nil {
				err = disk.Copy(context.Background(), img, disk.NewRawWriter(f, img.Size()), disk.CopyOptions{})
			}
			require.ErrorContains(t, err, tc.wantErr)
			got, err := os.ReadFile(backing)
			require.NoError(t, err)
			assert.Equal(t, bytes.Repeat([]byte{0xAA}, 4*disk.ChunkSize), got, "the device is unchanged")
			fi, err := os.Stat(tc.path)
			require.NoError(t, err)
			assert.NotZero(t, fi.Mode()&os.ModeDevice, "the device node is still there")
		})
	}
}
