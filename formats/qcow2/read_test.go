package qcow2

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/disk/disktest"
)

// qemuWrites are qemu-io commands touching every kind of cluster: data,
// zero clusters (write -z), discarded ranges, subcluster-sized pieces and a
// write across an L2 boundary for small clusters.
var qemuWrites = []string{
	"write -P 0x11 0 64k",
	"write -P 0x22 100k 4k",
	"write -z 128k 64k",
	"write -P 0x33 1M 1M",
	"discard 1536k 64k",
	"write -P 0x44 3M 512",
	"write -z 3M 4k",
	"write -P 0x55 9M 8k",
	"write -P 0x66 10481664 4k",
}

// TestReadQemuFiles reads images qemu-img and qemu-io wrote, in every
// layout the reader supports, and compares them byte for byte with
// qemu-img's own raw conversion.
func TestReadQemuFiles(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	const size = 10 << 20
	disktest.WriteSparse(t, src, disktest.Pattern(size, 7))
	tests := []struct {
		name  string
		setup func(t *testing.T, path string)
		info  func(t *testing.T, in Info)
	}{
		{"v3 default", create("-o", "compat=1.1"), func(t *testing.T, in Info) { assert.Equal(t, "1.1", in.Compat) }},
		{"v2 (compat 0.10)", create("-o", "compat=0.10"), func(t *testing.T, in Info) { assert.Equal(t, uint32(2), in.Version) }},
		{"512-byte clusters", create("-o", "cluster_size=512"), func(t *testing.T, in Info) { assert.Equal(t, int64(512), in.ClusterSize) }},
		{"2 MiB clusters", create("-o", "cluster_size=2M"), nil},
		{"extended L2", create("-o", "extended_l2=on"), func(t *testing.T, in Info) { assert.True(t, in.ExtendedL2) }},
		{"extended L2, 2 MiB clusters", create("-o", "extended_l2=on,cluster_size=2M"), nil},
		{"refcount_bits=1", create("-o", "refcount_bits=1"), func(t *testing.T, in Info) { assert.Equal(t, 1, in.RefcountBits) }},
		{"compressed zlib", func(t *testing.T, p string) { disktest.QemuImg(t, "convert", "-c", "-O", "qcow2", src, p) }, nil},
		{"compressed zlib, 4 KiB clusters", func(t *testing.T, p string) {
			disktest.QemuImg(t, "convert", "-c", "-O", "qcow2", "-o", "cluster_size=4k", src, p)
		}, nil},
		{"compressed zstd", func(t *testing.T, p string) {
			disktest.QemuImg(t, "convert", "-c", "-O", "qcow2", "-o", "compression_type=zstd", src, p)
		}, func(t *testing.T, in Info) { assert.Equal(t, "zstd", in.CompressionType) }},
		{"compressed zstd, extended L2", func(t *testing.T, p string) {
			disktest.QemuImg(t, "convert", "-c", "-O", "qcow2", "-o", "compression_type=zstd,extended_l2=on", src, p)
		}, nil},
		{"compressed v2", func(t *testing.T, p string) {
			disktest.QemuImg(t, "convert", "-c", "-O", "qcow2", "-o", "compat=0.10", src, p)
		}, nil},
		{"converted, uncompressed", func(t *testing.T, p string) { disktest.QemuImg(t, "convert", "-O", "qcow2", src, p) }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "img.qcow2")
			tc.setup(t, p)
			want := disktest.RawOf(t, p, "")
			img, err := Open(p)
			require.NoError(t, err)
			defer img.Close()
			require.Equal(t, int64(len(want)), img.Size())
			got := disktest.ReadAll(t, img)
			require.True(t, string(want) == string(got), "contents differ from qemu-img's raw conversion")
			disktest.RequireExtentsCover(t, img, want)
			if tc.info != nil {
				tc.info(t, img.Info())
			}
			res, err := Check(p)
			require.NoError(t, err)
			assert.Empty(t, res.Problems, "our check of a file qemu-img finds clean")
		})
	}
}

// create returns a setup that makes a 10 MiB image with qemu-img create and
// writes qemuWrites into it with qemu-io.
func create(args ...string) func(t *testing.T, path string) {
	return func(t *testing.T, path string) {
		disktest.QemuImg(t, append(append([]string{"create", "-f", "qcow2"}, args...), path, "10M")...)
		qemuIO(t, path, qemuWrites...)
	}
}

// TestReadBackingChains reads overlays over qcow2 and raw backing files,
// with zero clusters hiding backing data, and overlays larger than their
// backing file.
func TestReadBackingChains(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	disktest.QemuImg(t, "create", "-f", "qcow2", base, "8M")
	qemuIO(t, base, "write -P 0xa1 0 4M")
	raw := filepath.Join(dir, "base.raw")
	disktest.WriteSparse(t, raw, disktest.Pattern(8<<20, 3))

	mid := filepath.Join(dir, "mid.qcow2")
	disktest.QemuImg(t, "create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", mid)
	qemuIO(t, mid, "write -P 0xb2 1M 64k", "write -z 2M 64k")
	top := filepath.Join(dir, "top.qcow2")
	disktest.QemuImg(t, "create", "-f", "qcow2", "-o", "extended_l2=on", "-b", "mid.qcow2", "-F", "qcow2", top, "12M")
	qemuIO(t, top, "write -P 0xc3 1052672 4k", "write -z 3M 8k", "write -P 0xc4 11M 4k")
	overRaw := filepath.Join(dir, "over-raw.qcow2")
	disktest.QemuImg(t, "create", "-f", "qcow2", "-b", raw, "-F", "raw", overRaw)
	qemuIO(t, overRaw, "write -P 0xd5 0 64k")
	noFmt := filepath.Join(dir, "nofmt.qcow2")
	disktest.QemuImg(t, "create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", noFmt, "8M")
	dropBackingFormat(t, noFmt) // the format is then probed, as for old images

	for _, tc := range []struct {
		file  string
		chain int
	}{{"mid.qcow2", 1}, {"top.qcow2", 2}, {"over-raw.qcow2", 1}, {"nofmt.qcow2", 1}} {
		t.Run(tc.file, func(t *testing.T) {
			p := filepath.Join(dir, tc.file)
			want := disktest.RawOf(t, p, "")
			img, err := Open(p)
			require.NoError(t, err)
			defer img.Close()
			got := disktest.ReadAll(t, img)
			require.True(t, string(want) == string(got), "contents differ")
			disktest.RequireExtentsCover(t, img, want)
			assert.Len(t, img.Info().Chain, tc.chain)
		})
	}
}

func TestBackingLoopsAndDepth(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.qcow2"), filepath.Join(dir, "b.qcow2")
	disktest.QemuImg(t, "create", "-f", "qcow2", a, "1M")
	disktest.QemuImg(t, "create", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", b)
	// Point a at b: qemu-img rebase -u writes the header without opening.
	disktest.QemuImg(t, "rebase", "-u", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", a)
	_, err := Open(b)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "backing chain loop")

	self := filepath.Join(dir, "self.qcow2")
	disktest.QemuImg(t, "create", "-f", "qcow2", self, "1M")
	disktest.QemuImg(t, "rebase", "-u", "-f", "qcow2", "-b", "self.qcow2", "-F", "qcow2", self)
	_, err = Open(self)
	require.ErrorContains(t, err, "backing chain loop")

	prev := "l0.qcow2"
	disktest.QemuImg(t, "create", "-f", "qcow2", filepath.Join(dir, prev), "1M")
	for i := 1; i <= MaxChainDepth+1; i++ {
		name := fmt.Sprintf("l%d.qcow2", i)
		disktest.QemuImg(t, "create", "-f", "qcow2", "-u", "-b", prev, "-F", "qcow2", filepath.Join(dir, name), "1M")
		prev = name
	}
	_, err = Open(filepath.Join(dir, prev))
	require.ErrorContains(t, err, "deeper than")

	missing := filepath.Join(dir, "orphan.qcow2")
	disktest.QemuImg(t, "create", "-f", "qcow2", "-u", "-b", "gone.qcow2", "-F", "qcow2", missing, "1M")
	_, err = Open(missing)
	require.ErrorContains(t, err, "gone.qcow2")

	// A raw backing file that is absent, or a named pipe (which must not
	// block the open).
	rawGone := filepath.Join(dir, "raw-orphan.qcow2")
	disktest.QemuImg(t, "create", "-f", "qcow2", "-u", "-b", "gone.raw", "-F", "raw", rawGone, "1M")
	_, err = Open(rawGone)
	require.ErrorContains(t, err, "gone.raw")
	require.NoError(t, unix.Mkfifo(filepath.Join(dir, "pipe.raw"), 0o644))
	overPipe := filepath.Join(dir, "over-pipe.qcow2")
	disktest.QemuImg(t, "create", "-f", "qcow2", "-u", "-b", "pipe.raw", "-F", "raw", overPipe, "1M")
	_, err = Open(overPipe)
	require.ErrorContains(t, err, "a named pipe")
}

// A 1 TiB virtual image opens with memory that follows its file, not its
// virtual size, and maps as unallocated without reading every cluster.
func TestOpenHugeVirtualSize(t *testing.T) {
	p := filepath.Join(t.TempDir(), "huge.qcow2")
	disktest.QemuImg(t, "create", "-f", "qcow2", p, "1T")
	qemuIO(t, p, "write -P 0x77 512G 64k")
	img, err := Open(p)
	require.NoError(t, err)
	defer img.Close()
	ext, err := img.Extents(0, img.Size())
	require.NoError(t, err)
	require.Len(t, ext, 3)
	assert.Equal(t, disk.Extent{Offset: 512 << 30, Length: 64 << 10, Kind: disk.Data}, ext[1])
	buf := make([]byte, 4096)
	_, err = img.ReadAt(buf, 512<<30)
	require.NoError(t, err)
	assert.Equal(t, byte(0x77), buf[4095])
	fi, err := os.Stat(p)
	require.NoError(t, err)
	assert.Less(t, int64(len(img.l1))*8, fi.Size())
}

// dropBackingFormat turns an image's backing format extension into an
// unknown one, which readers skip.
func dropBackingFormat(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	i := bytes.Index(b[:4096], []byte{0xE2, 0x79, 0x2A, 0xCA})
	require.Positive(t, i)
	copy(b[i:], []byte{0x12, 0x34, 0x56, 0x78})
	require.NoError(t, os.WriteFile(path, b, 0o644))
}
