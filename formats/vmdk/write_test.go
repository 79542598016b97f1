package vmdk

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/disk/disktest"
	"github.com/vmconv/vmconv/internal/testutil"
)

// convert writes src through our writer for subformat into path.
func convert(t *testing.T, src disk.Image, path string, opt Options) {
	t.Helper()
	out := disk.NewOutput(false)
	defer out.Abort()
	w, err := Create(out, path, src.Size(), opt)
	require.NoError(t, err)
	require.NoError(t, disk.Copy(context.Background(), src, w, disk.CopyOptions{}))
	require.NoError(t, out.Commit())
}

func TestWriteEverySubformat(t *testing.T) {
	disktest.QemuImg(t, "--version")
	for _, sf := range subformats {
		for _, size := range []int64{9<<20 + 3*512, 1<<20 + 1000} {
			t.Run(sf, func(t *testing.T) {
				dir := t.TempDir()
				want := disktest.Pattern(size, size+1)
				raw := filepath.Join(dir, "src.raw")
				disktest.WriteSparse(t, raw, want)
				src, err := disk.OpenRaw(raw)
				require.NoError(t, err)
				defer src.Close()
				vm := filepath.Join(dir, "out.vmdk")
				convert(t, src, vm, Options{Subformat: sf, AdapterType: "lsilogic"})

				out := disktest.QemuImg(t, "check", vm)
				assert.Contains(t, out, "No errors were found")
				// qemu-img compare: the raw source has a size not a multiple of
				// 512 only if we chose one; ours are sector multiples of data.
				disktest.QemuImg(t, "compare", "-f", "vmdk", "-F", "raw", vm, raw)
				info := disktest.QemuImg(t, "info", vm)
				assert.Contains(t, info, "create type: "+sf)

				img, err := Open(vm)
				require.NoError(t, err)
				defer img.Close()
				got := disktest.ReadAll(t, img)
				require.True(t, string(got[:size]) == string(want), "contents differ")
				in := img.Info()
				assert.Equal(t, sf, in.CreateType)
				assert.Equal(t, "lsilogic", in.AdapterType)
				assert.Equal(t, "4", in.HWVersion)
				assert.NotEmpty(t, in.UUID)
				assert.Equal(t, int64(64), in.Heads)
				assert.Equal(t, int64(32), in.Sectors)

				if hasTool("vmdkinfo") || testutil.Strict() {
					vi := testutil.Run(t, testutil.RequireTool(t, "vmdkinfo"), vm)
					assert.Contains(t, vi, "Content identifier:\t\t0x"+hex8(in.CID))
				}
				res, err := Check(vm)
				require.NoError(t, err)
				assert.Empty(t, res.Problems)
			})
		}
	}
}

func TestWriteSparseSkipsZeroGrains(t *testing.T) {
	for _, sf := range []string{MonolithicSparse, StreamOptimized, TwoGbMaxExtentSparse} {
		t.Run(sf, func(t *testing.T) {
			dir := t.TempDir()
			size := int64(34 << 20)
			b := make([]byte, size)
			b[33<<20+5] = 1 // one grain of data, in the second grain table
			vm := filepath.Join(dir, "z.vmdk")
			convert(t, disk.FromReaderAt(bytesReaderAt(b), size), vm, Options{Subformat: sf})
			img, err := Open(vm)
			require.NoError(t, err)
			defer img.Close()
			ext, err := img.Extents(0, size)
			require.NoError(t, err)
			var data int64
			for _, e := range ext {
				if e.Kind == disk.Data {
					data += e.Length
				}
			}
			assert.Equal(t, int64(writeGrainBytes), data, "exactly one grain allocated")
		})
	}
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

// A 4 GiB disk holding 4 KiB becomes a streamOptimized file under 2 MiB.
func TestWriteStreamLargeSparseDisk(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "big.raw")
	f, err := os.Create(raw)
	require.NoError(t, err)
	p := make([]byte, 4096)
	for i := range p {
		p[i] = byte(i*7 + 1)
	}
	_, err = f.WriteAt(p, 3<<30)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(4<<30))
	require.NoError(t, f.Close())
	src, err := disk.OpenRaw(raw)
	require.NoError(t, err)
	defer src.Close()
	vm := filepath.Join(dir, "big.vmdk")
	convert(t, src, vm, Options{Subformat: StreamOptimized})
	fi, err := os.Stat(vm)
	require.NoError(t, err)
	assert.Less(t, fi.Size(), int64(2<<20))
	if hasTool("qemu-img") || testutil.Strict() {
		assert.Contains(t, disktest.QemuImg(t, "check", vm), "No errors were found")
		disktest.QemuImg(t, "compare", "-f", "vmdk", "-F", "raw", vm, raw)
	}
}

// The streamOptimized writer never seeks: written to a pipe (standard output
// replaced by one), the bytes are a valid image.
func TestWriteStreamToPipe(t *testing.T) {
	dir := t.TempDir()
	size := int64(5<<20 + 512)
	want := disktest.Pattern(size, 3)
	pr, pw, err := os.Pipe()
	require.NoError(t, err)
	saved := os.Stdout
	os.Stdout = pw
	defer func() { os.Stdout = saved }()
	vm := filepath.Join(dir, "piped.vmdk")
	done := make(chan error, 1)
	go func() {
		f, err := os.Create(vm)
		if err == nil {
			_, err = io.Copy(f, pr)
			f.Close()
		}
		done <- err
	}()
	out := disk.NewOutput(false)
	w, err := Create(out, "-", size, Options{Subformat: StreamOptimized})
	require.NoError(t, err)
	require.NoError(t, disk.Copy(context.Background(), disk.FromReaderAt(bytesReaderAt(want), size), w, disk.CopyOptions{}))
	require.NoError(t, out.Commit())
	os.Stdout = saved
	require.NoError(t, pw.Close())
	require.NoError(t, <-done)

	img, err := Open(vm)
	require.NoError(t, err)
	defer img.Close()
	got := disktest.ReadAll(t, img)
	require.True(t, string(got) == string(want))
	if hasTool("qemu-img") || testutil.Strict() {
		assert.Contains(t, disktest.QemuImg(t, "check", vm), "No errors were found")
		require.Equal(t, string(want), string(disktest.RawOf(t, vm, "")[:size]))
	}
}

func TestCreateRefusesStdoutForSeekingFormats(t *testing.T) {
	for _, sf := range []string{MonolithicSparse, MonolithicFlat, TwoGbMaxExtentSparse, TwoGbMaxExtentFlat} {
		_, err := Create(disk.NewOutput(false), "-", 1<<20, Options{Subformat: sf})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "only streamOptimized")
	}
}

func TestParseOptions(t *testing.T) {
	o, err := ParseOptions(map[string]string{"subformat": "streamoptimized", "adapter_type": "legacyesx", "compat6": "on", "toolsversion": "12352", "zeroed_grain": "on"})
	require.NoError(t, err)
	assert.Equal(t, Options{Subformat: StreamOptimized, AdapterType: "legacyESX", HWVersion: "6", ToolsVersion: "12352", ZeroedGrain: true}, o)
	for _, tc := range []struct{ k, v, want string }{
		{"subformat", "vmfs", "subformat"},
		{"adapter_type", "nvme", "adapter_type"},
		{"hwversion", "x", "hwversion"},
		{"bogus", "1", `"bogus"`},
		{"compat6", "maybe", "compat6"},
		{"backing_file", "a.vmdk", "backing_file"},
	} {
		_, err := ParseOptions(map[string]string{tc.k: tc.v})
		require.Error(t, err, tc.k)
		assert.Contains(t, err.Error(), tc.want)
	}
	_, err = ParseOptions(map[string]string{"compat6": "on", "hwversion": "7"})
	require.Error(t, err)
}

func TestGeometry(t *testing.T) {
	// qemu's ide geometry for a 10 MiB disk (verified: 20/16/63) and
	// VMware's SCSI translation ranges.
	c, h, s := geometry(20480, "ide")
	assert.Equal(t, []int64{20, 16, 63}, []int64{c, h, s})
	c, h, s = geometry(40<<21, "lsilogic") // 40 GiB
	assert.Equal(t, []int64{5221, 255, 63}, []int64{c, h, s})
	_, h, s = geometry(1<<20, "buslogic") // 512 MiB
	assert.Equal(t, []int64{64, 32}, []int64{h, s})
}

var _ = strings.Contains

func TestWriteOptionsReachTheFile(t *testing.T) {
	dir := t.TempDir()
	size := int64(3 << 20)
	want := disktest.Pattern(size, 5)
	vm := filepath.Join(dir, "o.vmdk")
	opt, err := ParseOptions(map[string]string{"adapter_type": "buslogic", "hwversion": "11", "toolsversion": "12352", "zeroed_grain": "on"})
	require.NoError(t, err)
	convert(t, disk.FromReaderAt(bytesReaderAt(want), size), vm, opt)
	b, err := os.ReadFile(vm)
	require.NoError(t, err)
	h := decodeHeader(b)
	assert.Equal(t, uint32(2), h.Version)
	assert.NotZero(t, h.Flags&flagZeroedGrain)
	img, err := Open(vm)
	require.NoError(t, err)
	defer img.Close()
	in := img.Info()
	assert.Equal(t, "buslogic", in.AdapterType)
	assert.Equal(t, "11", in.HWVersion)
	assert.Equal(t, "12352", in.ToolsVersion)
	// The header lines qemu parses at fixed offsets: CID= then parentCID=.
	desc := string(b[512 : 21*512])
	assert.Regexp(t, `\nCID=[0-9a-f]{8}\nparentCID=ffffffff\ncreateType="monolithicSparse"\n`, desc)
	assert.True(t, strings.HasPrefix(desc, "# Disk DescriptorFile\n"))
	if hasTool("qemu-img") || testutil.Strict() {
		assert.Contains(t, disktest.QemuImg(t, "check", vm), "No errors were found")
		require.Equal(t, string(want), string(disktest.RawOf(t, vm, "")))
	}
}
