package fat

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmconv/vmconv/internal/testutil"
)

// mkfat makes a FAT image with mkfs.vfat and copies dir into it with mtools.
func mkfat(t testing.TB, dir string, sizeKiB, bits int, extra ...string) string {
	t.Helper()
	testutil.RequireTool(t, "mkfs.vfat")
	testutil.RequireTool(t, "mcopy")
	img := filepath.Join(t.TempDir(), "fat.img")
	args := append([]string{"-C", "-F", fmt.Sprint(bits), "-i", "ABCD1234", "-n", "ESP"}, extra...)
	testutil.Run(t, "mkfs.vfat", append(args, img, fmt.Sprint(sizeKiB))...)
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range ents {
		cmd := exec.Command("mcopy", "-s", "-i", img, filepath.Join(dir, e.Name()), "::/")
		cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	return img
}

func random(t testing.TB, n int) []byte {
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

func TestRead(t *testing.T) {
	dir := t.TempDir()
	files := map[string][]byte{
		"EFI/debian/grub.cfg":                      []byte("search.fs_uuid x root\n"),
		"EFI/BOOT/BOOTX64.EFI":                     random(t, 70000),
		"Kernels/vmlinuz-6.1.0-a-rather-long-name": random(t, 200000),
		"loader/entries/Mixed Case Name.conf":      []byte("title x\n"),
		"short.txt":                                []byte("s"),
		"empty":                                    {},
	}
	for name, data := range files {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o644))
	}
	// Enough entries that the directory spans several clusters.
	for i := 0; i < 200; i++ {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "Kernels", fmt.Sprintf("filler-file-number-%03d", i)), []byte{byte(i)}, 0o644))
	}
	for _, tc := range []struct {
		bits, kib int
		extra     []string
	}{
		{12, 2048, nil},
		{16, 20 * 1024, nil},
		{32, 40 * 1024, nil},
		{32, 40 * 1024, []string{"-s", "1"}},
		{16, 20 * 1024, []string{"-s", "1"}},
	} {
		t.Run(fmt.Sprintf("fat%d %v", tc.bits, tc.extra), func(t *testing.T) {
			img := mkfat(t, dir, tc.kib, tc.bits, tc.extra...)
			b, err := os.ReadFile(img)
			require.NoError(t, err)
			f, err := Open(bytes.NewReader(b), int64(len(b)))
			require.NoError(t, err)
			assert.Equal(t, tc.bits, f.Type)
			assert.Equal(t, "ABCD-1234", f.UUID())
			assert.Equal(t, "ESP", f.Label())
			for name, data := range files {
				got, err := f.ReadFile("/"+name, MaxFileSize)
				require.NoError(t, err, name)
				assert.True(t, bytes.Equal(data, got), name)
			}
			got, err := f.ReadFile("/efi/DEBIAN/GRUB.CFG", 100) // case-insensitive
			require.NoError(t, err)
			assert.Equal(t, files["EFI/debian/grub.cfg"], got)
			ents, err := f.ReadDir("/Kernels")
			require.NoError(t, err)
			assert.Len(t, ents, 201)
			_, err = f.ReadFile("/nope", 100)
			assert.ErrorIs(t, err, fs.ErrNotExist)
			_, err = f.ReadFile("/Kernels/vmlinuz-6.1.0-a-rather-long-name", 1000)
			assert.ErrorContains(t, err, "more than the 1000")
			size, dir, err := f.Stat("/EFI")
			require.NoError(t, err)
			assert.True(t, dir)
			assert.Zero(t, size)
		})
	}
}

func TestOpenRejects(t *testing.T) {
	img := mkfat(t, t.TempDir(), 2048, 12)
	good, err := os.ReadFile(img)
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		mut  func(b []byte)
		err  string
	}{
		{"signature", func(b []byte) { b[510] = 0 }, "55 AA"},
		{"bytes per sector", func(b []byte) { b[11], b[12] = 0x10, 0 }, "bytes per sector"},
		{"sectors per cluster", func(b []byte) { b[13] = 3 }, "sectors per cluster"},
		{"size beyond device", func(b []byte) { b[19], b[20], b[32], b[33], b[34] = 0, 0, 0, 0, 0x10 }, "device holds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := append([]byte(nil), good...)
			tc.mut(b)
			_, err := Open(bytes.NewReader(b), int64(len(b)))
			require.ErrorContains(t, err, tc.err)
		})
	}
}

// A cluster chain that loops ends in an error, not a hang.
func TestChainLoop(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "big"), random(t, 20000), 0o644))
	img := mkfat(t, dir, 20*1024, 16)
	b, err := os.ReadFile(img)
	require.NoError(t, err)
	f, err := Open(bytes.NewReader(b), int64(len(b)))
	require.NoError(t, err)
	ents, err := f.ReadDir("/")
	require.NoError(t, err)
	c := ents[0].Cluster
	// Point the file's second cluster back at its first, in the first FAT.
	off := f.reservedSec*f.bytesPerSec + int64(c+1)*2
	b[off], b[off+1] = byte(c), byte(c>>8)
	f, err = Open(bytes.NewReader(b), int64(len(b)))
	require.NoError(t, err)
	_, err = f.ReadFile("/big", MaxFileSize)
	require.ErrorContains(t, err, "cluster")
}

func FuzzFAT(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "fat12.img")); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fsys, err := Open(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		_, _ = fsys.ReadDir("/")
		_, _ = fsys.ReadDir("/EFI/debian")
		_, _ = fsys.ReadFile("/EFI/debian/grub.cfg", 1<<20)
	})
}
