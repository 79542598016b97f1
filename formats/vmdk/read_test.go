package vmdk

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/disk/disktest"
	"github.com/vmconv/vmconv/internal/testutil"
)

var qemuSubformats = []string{"monolithicSparse", "streamOptimized", "monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat"}

func TestReadQemuConverted(t *testing.T) {
	sizes := []int64{9<<20 + 3*512, 3 << 20} // not a multiple of the grain or of 1 MiB; a small one
	for _, sf := range qemuSubformats {
		for _, size := range sizes {
			t.Run(sf, func(t *testing.T) {
				dir := t.TempDir()
				want := disktest.Pattern(size, size)
				raw := filepath.Join(dir, "src.raw")
				disktest.WriteSparse(t, raw, want)
				vm := filepath.Join(dir, "disk.vmdk")
				disktest.QemuImg(t, "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat="+sf, raw, vm)
				img, err := Open(vm)
				require.NoError(t, err)
				defer img.Close()
				require.Equal(t, size, img.Size())
				got := disktest.ReadAll(t, img)
				require.True(t, string(got) == string(want), "contents differ")
				require.Equal(t, string(disktest.RawOf(t, vm, "")), string(got))
				disktest.RequireExtentsCover(t, img, want)
				in := img.Info()
				assert.Equal(t, sf, in.CreateType)
				assert.Equal(t, size, in.VirtualSize)
				assert.Equal(t, uint32(noParentCID), in.ParentCID)
				assert.NotZero(t, in.CID)
				assert.Equal(t, "ide", in.AdapterType)
				assert.Positive(t, in.ActualSize)
				if strings.Contains(sf, "Sparse") || sf == "streamOptimized" {
					ext, err := img.Extents(0, img.Size())
					require.NoError(t, err)
					assert.Greater(t, len(ext), 3, "sparse images have holes")
					assert.Equal(t, int64(65536), in.Extents[0].GrainSize)
				}
				assert.Equal(t, sf == "streamOptimized", in.Extents[0].Compressed)
				res, err := Check(vm)
				require.NoError(t, err)
				assert.Empty(t, res.Problems)
			})
		}
	}
}

func TestReadQemuCreatedEmpty(t *testing.T) {
	for _, sf := range qemuSubformats {
		t.Run(sf, func(t *testing.T) {
			dir := t.TempDir()
			vm := filepath.Join(dir, "e.vmdk")
			disktest.QemuImg(t, "create", "-f", "vmdk", "-o", "subformat="+sf+",adapter_type=lsilogic", vm, "5M")
			img, err := Open(vm)
			require.NoError(t, err)
			defer img.Close()
			got := disktest.ReadAll(t, img)
			assert.True(t, isZero(got))
			assert.Equal(t, "lsilogic", img.Info().AdapterType)
			ext, err := img.Extents(0, img.Size())
			require.NoError(t, err)
			if !strings.Contains(sf, "Flat") {
				require.Len(t, ext, 1)
				assert.Equal(t, disk.Unallocated, ext[0].Kind)
			}
		})
	}
}

func TestReadSnapshotChain(t *testing.T) {
	testutil.RequireTool(t, "qemu-io")
	dir := t.TempDir()
	size := int64(6<<20 + 4096)
	want := disktest.Pattern(size, 7)
	raw := filepath.Join(dir, "src.raw")
	disktest.WriteSparse(t, raw, want)
	base := filepath.Join(dir, "base.vmdk")
	disktest.QemuImg(t, "convert", "-f", "raw", "-O", "vmdk", raw, base)
	mid := filepath.Join(dir, "mid.vmdk")
	disktest.QemuImg(t, "create", "-f", "vmdk", "-o", "zeroed_grain=on", "-b", "base.vmdk", "-F", "vmdk", mid)
	testutil.Run(t, "qemu-io", "-c", "write -P 0xab 1M 64k", "-c", "write -z 3M 64k", mid)
	top := filepath.Join(dir, "top.vmdk")
	disktest.QemuImg(t, "create", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse", "-b", "mid.vmdk", "-F", "vmdk", top)
	testutil.Run(t, "qemu-io", "-c", "write -P 0xcd 1081344 4k", "-c", "write -P 0x11 5M 8k", top)

	img, err := Open(top)
	require.NoError(t, err)
	defer img.Close()
	got := disktest.ReadAll(t, img)
	exp := disktest.RawOf(t, top, "")
	require.Equal(t, len(exp), len(got))
	require.True(t, string(exp) == string(got), "chain contents differ from qemu-img's")
	disktest.RequireExtentsCover(t, img, exp)
	// The zeroed grain in mid hides the base's data at 3 MiB.
	require.False(t, isZero(want[3<<20:3<<20+65536]))
	ext, err := img.Extents(3<<20, 65536)
	require.NoError(t, err)
	assert.Equal(t, []disk.Extent{{Offset: 3 << 20, Length: 65536, Kind: disk.Zero}}, ext)
	in := img.Info()
	assert.Equal(t, "mid.vmdk", in.BackingFile)
	require.Len(t, in.Chain, 2)
	assert.Equal(t, base, in.Chain[1])
	require.NotNil(t, in.Parent)
	assert.Equal(t, in.Parent.CID, in.ParentCID)
}

func TestReadVmdkinfoAgrees(t *testing.T) {
	testutil.RequireTool(t, "vmdkinfo")
	for _, sf := range qemuSubformats {
		t.Run(sf, func(t *testing.T) {
			dir := t.TempDir()
			vm := filepath.Join(dir, "v.vmdk")
			disktest.QemuImg(t, "create", "-f", "vmdk", "-o", "subformat="+sf, vm, "3M")
			out := testutil.Run(t, "vmdkinfo", vm)
			img, err := Open(vm)
			require.NoError(t, err)
			defer img.Close()
			in := img.Info()
			assert.Contains(t, strings.ToLower(out), "media size")
			assert.Contains(t, out, "3145728 bytes")
			assert.Contains(t, out, "Content identifier:\t\t0x"+hex8(in.CID))
		})
	}
}

func hex8(v uint32) string {
	const d = "0123456789abcdef"
	b := make([]byte, 8)
	for i := 7; i >= 0; i-- {
		b[i] = d[v&15]
		v >>= 4
	}
	return string(b)
}

var _ = os.Stat

// python3-vmdkstream writes VMware's stream layout (footer, markers): a third
// producer besides qemu and our own writer.
func TestReadVMDKstreamOutput(t *testing.T) {
	py := testutil.RequireTool(t, "/usr/bin/python3")
	if err := exec.Command(py, "-c", "import VMDKstream").Run(); err != nil {
		testutil.Unavailable(t, "python3-vmdkstream is not installed")
	}
	dir := t.TempDir()
	size := int64(5<<20 + 512*3)
	want := disktest.Pattern(size, 11)
	raw := filepath.Join(dir, "src.raw")
	disktest.WriteSparse(t, raw, want)
	vm := filepath.Join(dir, "vs.vmdk")
	testutil.Run(t, py, "-c", "import sys, VMDKstream; VMDKstream.convert_to_stream(sys.argv[1], sys.argv[2])", raw, vm)
	img, err := Open(vm)
	require.NoError(t, err)
	defer img.Close()
	got := disktest.ReadAll(t, img)
	require.True(t, string(want) == string(got))
	disktest.RequireExtentsCover(t, img, want)
	assert.Equal(t, "streamOptimized", img.Info().CreateType)
	res, err := Check(vm)
	require.NoError(t, err)
	assert.Empty(t, res.Problems)
}
