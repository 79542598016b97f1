package ovf_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats"
	"github.com/vmconv/vmconv/internal/testutil"
)

// chunkedPackage splits the disk of a foreign OVA's package into chunk
// files of size bytes, as ovftool --chunkSize does (box-disk1.vmdk.000000000,
// …), gzip-compressing it first when gz, and sets the descriptor's
// ovf:chunkSize and ovf:size. It returns the package's directory, the chunk
// names and the raw disk the package holds.
func chunkedPackage(t *testing.T, size int, gz bool) (string, []string, string) {
	t.Helper()
	ova, raw := foreignOVA(t, []string{"ovf", "disk"}, "", false)
	dir := filepath.Dir(ova)
	vmdkPath := filepath.Join(dir, "box-disk1.vmdk")
	attrs := fmt.Sprintf(`ovf:chunkSize="%d" `, size)
	if gz {
		testutil.Run(t, "python3", "-c", `import gzip,shutil,sys; shutil.copyfileobj(open(sys.argv[1],"rb"), gzip.open(sys.argv[1]+".gz","wb"))`, vmdkPath)
		require.NoError(t, os.Rename(vmdkPath+".gz", vmdkPath))
		attrs += `ovf:compression="gzip" `
	}
	data, err := os.ReadFile(vmdkPath)
	require.NoError(t, err)
	require.NoError(t, os.Remove(vmdkPath))
	var names []string
	for i := 0; i*size < len(data); i++ {
		name := fmt.Sprintf("box-disk1.vmdk.%09d", i)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data[i*size:min((i+1)*size, len(data))], 0o644))
		names = append(names, name)
	}
	require.Greater(t, len(names), 2, "the disk file spans several chunks")
	desc, err := os.ReadFile(filepath.Join(dir, "box.ovf"))
	require.NoError(t, err)
	attrs += `ovf:size="` + strconv.Itoa(len(data)) + `" `
	desc = bytes.Replace(desc, []byte(`<File ovf:href="box-disk1.vmdk"`), []byte(`<File `+attrs+`ovf:href="box-disk1.vmdk"`), 1)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "box.ovf"), desc, 0o644))
	require.NoError(t, os.Remove(ova))
	return dir, names, raw
}

// mkChunkedOVA archives the package: descriptor, manifest, chunks.
func mkChunkedOVA(t *testing.T, dir string, names []string) string {
	t.Helper()
	ova := filepath.Join(dir, "chunked.ova")
	args := []string{filepath.Join("testdata", "tools", "mkova.py"), ova, filepath.Join(dir, "box.ovf")}
	for _, n := range names {
		args = append(args, filepath.Join(dir, n))
	}
	testutil.Run(t, "python3", append(args, "--mf=box.mf")...)
	return ova
}

func TestChunkedDisk(t *testing.T) {
	for _, gz := range []bool{false, true} {
		t.Run(fmt.Sprintf("gzip=%v", gz), func(t *testing.T) {
			size := 1024
			if gz {
				size = 128 // the gzipped stream is a few hundred bytes
			}
			dir, names, raw := chunkedPackage(t, size, gz)
			ova := mkChunkedOVA(t, dir, names) // also writes box.mf beside box.ovf
			want := rawDigest(t, raw)
			for _, src := range []struct{ path, format string }{{filepath.Join(dir, "box.ovf"), "ovf"}, {ova, "ova"}} {
				vm, err := formats.OpenVM(src.path, mustLookup(t, src.format))
				require.NoError(t, err, src.format)
				got, err := disk.Digest(context.Background(), vm.Disks[0].Image, disk.CopyOptions{})
				require.NoError(t, err)
				assert.Equal(t, want, got, src.format)
				vm.Close()
			}
			// A pipe cannot join chunks: said so, not "missing".
			_, _, err := streamDigest(t, ova)
			assert.ErrorContains(t, err, `file "box-disk1.vmdk" is split into chunks (ovf:chunkSize), which only an OVA read from a file can join`)
		})
	}
}

func TestChunkedDiskErrors(t *testing.T) {
	cases := []struct {
		name   string
		change func(t *testing.T, dir string, names []string)
		want   string
	}{
		{"a chunk missing", func(t *testing.T, dir string, names []string) {
			require.NoError(t, os.Remove(filepath.Join(dir, names[1])))
		}, `chunk "box-disk1.vmdk.000000001" is missing`},
		{"no chunk at all", func(t *testing.T, dir string, names []string) {
			require.NoError(t, os.Remove(filepath.Join(dir, names[0])))
		}, `its first chunk`},
		{"a chunk cut short", func(t *testing.T, dir string, names []string) {
			require.NoError(t, os.Truncate(filepath.Join(dir, names[0]), 4000))
		}, `chunk "box-disk1.vmdk.000000001" follows a chunk shorter than ovf:chunkSize=4096`},
		{"a chunk longer than chunkSize", func(t *testing.T, dir string, names []string) {
			f, err := os.OpenFile(filepath.Join(dir, names[0]), os.O_APPEND|os.O_WRONLY, 0)
			require.NoError(t, err)
			f.Write([]byte("x"))
			f.Close()
		}, `chunk "box-disk1.vmdk.000000000" is 4097 bytes, want 1 to ovf:chunkSize=4096`},
		{"a chunk changed after the manifest", func(t *testing.T, dir string, names []string) {
			p := filepath.Join(dir, names[1])
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			b[100] ^= 0xff
			require.NoError(t, os.WriteFile(p, b, 0o644))
		}, `of "box-disk1.vmdk.000000001" is`},
		{"chunkSize not a size", func(t *testing.T, dir string, names []string) {
			require.NoError(t, os.Remove(filepath.Join(dir, "box.mf")))
			p := filepath.Join(dir, "box.ovf")
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(p, bytes.Replace(b, []byte(`ovf:chunkSize="4096"`), []byte(`ovf:chunkSize="-4"`), 1), 0o644))
		}, `ovf:chunkSize="-4": want a positive number of bytes`},
	}
	base, names, _ := chunkedPackage(t, 4096, false)
	testutil.Run(t, "python3", filepath.Join("testdata", "tools", "mkova.py"), filepath.Join(base, "unused.ova"), filepath.Join(base, "box.ovf"), filepath.Join(base, names[0]), filepath.Join(base, names[1]), filepath.Join(base, names[2]), "--mf=box.mf")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, n := range append([]string{"box.ovf", "box.mf"}, names...) {
				b, err := os.ReadFile(filepath.Join(base, n))
				require.NoError(t, err)
				require.NoError(t, os.WriteFile(filepath.Join(dir, n), b, 0o644))
			}
			tc.change(t, dir, names)
			_, err := formats.OpenVM(filepath.Join(dir, "box.ovf"), mustLookup(t, "ovf"))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
