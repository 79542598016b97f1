//go:build xfsseeds

package xfs

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestWriteSeeds rebuilds the fuzz seeds (testdata/*.bin.gz) with mkfs.xfs,
// and testdata/kernel-v5.bin.gz from the image kernel-image.sh wrote when
// VMCONV_XFS_KERNEL_IMG names it. It is a generator, not a test: it runs
// only when asked for, with the build tag:
//
//	go test -tags xfsseeds -run TestWriteSeeds ./boot/xfs
func TestWriteSeeds(t *testing.T) {
	save := func(img []byte, name string) {
		var buf bytes.Buffer
		zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		require.NoError(t, err)
		_, err = zw.Write(encodeSparse(img))
		require.NoError(t, err)
		require.NoError(t, zw.Close())
		require.NoError(t, os.WriteFile(filepath.Join("testdata", name), buf.Bytes(), 0o644))
	}
	if kimg := os.Getenv("VMCONV_XFS_KERNEL_IMG"); kimg != "" {
		img, err := os.ReadFile(kimg)
		require.NoError(t, err)
		save(img, kernelImage)
	}
	for name, opts := range seeds {
		img, err := os.ReadFile(mkfs(t, seedTree(), 16<<20, opts...))
		require.NoError(t, err)
		save(img, name)
	}
}
