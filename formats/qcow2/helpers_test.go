package qcow2

import (
	"context"
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/internal/testutil"
)

func qemuIO(t testing.TB, file string, cmds ...string) {
	t.Helper()
	testutil.RequireTool(t, "qemu-io")
	args := []string{"-f", "qcow2"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	testutil.Run(t, "qemu-io", append(args, file)...)
}

type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// convertTo writes src through our writer into path.
func convertTo(t testing.TB, src disk.Image, path string, opt Options) {
	t.Helper()
	out := disk.NewOutput(false)
	defer out.Abort()
	w, err := Create(out, path, src.Size(), opt)
	require.NoError(t, err)
	require.NoError(t, disk.Copy(context.Background(), src, w, disk.CopyOptions{}))
	require.NoError(t, out.Commit())
}
