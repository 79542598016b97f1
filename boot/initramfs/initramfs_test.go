package initramfs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/internal/testutil"
)

// buildImage writes an initramfs as initramfs-tools and dracut do: an
// uncompressed early-microcode cpio made by GNU cpio, then the main tree as
// a cpio compressed by the named tool's own CLI (compress is its argv).
func buildImage(t *testing.T, compress ...string) []byte {
	t.Helper()
	testutil.RequireTool(t, "cpio")
	testutil.RequireTool(t, compress[0])
	dir := t.TempDir()
	early := filepath.Join(dir, "early")
	main := filepath.Join(dir, "main")
	files := map[string]string{
		early + "/kernel/x86/microcode/GenuineIntel.bin":                               strings.Repeat("\x01ucode", 100),
		main + "/usr/lib/modules/6.1.0-50-amd64/kernel/drivers/block/virtio_blk.ko":    strings.Repeat("\x7fELF", 5000),
		main + "/usr/lib/modules/6.1.0-50-amd64/modules.builtin":                       "kernel/drivers/virtio/virtio.ko\n",
		main + "/usr/lib/modules/6.1.0-50-amd64/kernel/drivers/scsi/vmw_pvscsi.ko.zst": "zst",
		main + "/etc/hostname": "guest\n",
		main + "/init":         "#!/bin/sh\nexec /sbin/init\n",
	}
	for p, c := range files {
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(c), 0o644))
	}
	require.NoError(t, os.Symlink("usr/lib", filepath.Join(main, "lib")))
	pack := func(d string) []byte {
		cmd := exec.Command("sh", "-c", "find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0")
		cmd.Dir = d
		out, err := cmd.Output()
		require.NoError(t, err)
		return out
	}
	img := pack(early)
	cmd := exec.Command(compress[0], compress[1:]...)
	cmd.Stdin = bytes.NewReader(pack(main))
	z, err := cmd.Output()
	require.NoError(t, err, "%v", compress)
	return append(img, z...)
}

func TestReadRealImages(t *testing.T) {
	tests := []struct {
		name     string
		compress []string
	}{
		{"gzip", []string{"gzip", "-9", "-n"}},
		{"xz", []string{"xz", "--check=crc32", "-T1"}},
		{"zstd", []string{"zstd", "-q", "-19", "-T1"}},
		{"lz4", []string{"lz4", "-l", "-9", "-q"}},
		{"bzip2", []string{"bzip2", "-9"}},
		{"lzma", []string{"lzma", "-9"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := buildImage(t, tc.compress...)
			im, err := Read(data, Limits{})
			require.NoError(t, err)
			assert.Equal(t, []string{"cpio", tc.name}, im.Archives)
			names := map[string]Entry{}
			for _, e := range im.Entries {
				names[e.Name] = e
			}
			ko := names["usr/lib/modules/6.1.0-50-amd64/kernel/drivers/block/virtio_blk.ko"]
			assert.Equal(t, int64(20000), ko.Size)
			assert.True(t, ko.IsRegular())
			assert.Equal(t, tc.name, ko.Format)
			assert.Equal(t, 0, names["kernel/x86/microcode/GenuineIntel.bin"].Archive)
			assert.True(t, names["usr/lib/modules"].IsDir())
			assert.Equal(t, uint32(0o120000), names["lib"].Mode&0o170000, "lib is a symlink")
			b, err := im.ReadFile("/usr/lib/modules/6.1.0-50-amd64/modules.builtin", 1<<10)
			require.NoError(t, err)
			assert.Equal(t, "kernel/drivers/virtio/virtio.ko\n", string(b))
			b, err = im.ReadFile("kernel/x86/microcode/GenuineIntel.bin", 1<<10)
			require.NoError(t, err)
			assert.Equal(t, strings.Repeat("\x01ucode", 100), string(b))
			_, err = im.ReadFile("etc/shadow", 1<<10)
			assert.Error(t, err)
		})
	}
}

// TestDebianInitrd reads the initrd update-initramfs wrote for the real
// Debian guest (testdata/guest/build.sh): the block drivers it was told to
// carry are there.
func TestDebianInitrd(t *testing.T) {
	dir, err := testutil.GuestDir("../..")
	require.NoError(t, err)
	data, err := os.ReadFile(filepath.Join(dir, "initrd.img"))
	if err != nil {
		testutil.Unavailable(t, "the Debian guest is not built (sh testdata/guest/build.sh)")
	}
	kver, err := os.ReadFile(filepath.Join(dir, "kernel-version"))
	require.NoError(t, err)
	im, err := Read(data, Limits{})
	require.NoError(t, err)
	var mods []string
	for _, e := range im.Entries {
		if strings.Contains(e.Name, "/modules/"+strings.TrimSpace(string(kver))+"/") && strings.Contains(e.Name, ".ko") {
			mods = append(mods, filepath.Base(e.Name))
		}
	}
	for _, want := range []string{"virtio_blk.ko", "mptspi.ko", "xen-blkfront.ko"} {
		assert.Condition(t, func() bool {
			for _, m := range mods {
				if strings.HasPrefix(m, want) {
					return true
				}
			}
			return false
		}, "%s in %v", want, mods)
	}
	_, err = im.ReadFile("usr/lib/modules/"+strings.TrimSpace(string(kver))+"/modules.builtin", 1<<20)
	assert.NoError(t, err)
}

func TestReadErrors(t *testing.T) {
	gz := func(t *testing.T) []byte { return buildImage(t, "gzip", "-n") }
	tests := []struct {
		name string
		data func(t *testing.T) []byte
		lim  Limits
		want string
	}{
		{"empty", func(*testing.T) []byte { return nil }, Limits{}, "empty image"},
		{"zeros only", func(*testing.T) []byte { return make([]byte, 512) }, Limits{}, "empty image"},
		{"unknown magic", func(*testing.T) []byte { return []byte("MZ\x90\x00garbage") }, Limits{}, "unknown format"},
		{"truncated", func(t *testing.T) []byte { b := gz(t); return b[:len(b)-200] }, Limits{}, "archive 1 (gzip)"},
		{"bad hex", func(*testing.T) []byte { return []byte("070701zzzzzzzz" + strings.Repeat("0", 96)) }, Limits{}, "not hex"},
		{"decompressed bound", gz, Limits{MaxBytes: 4096}, "decompressed bytes"},
		{"entry bound", gz, Limits{MaxEntries: 3}, "more than 3 entries"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(tc.data(t), tc.lim)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestKeepBound: a file above MaxKeep is listed but not kept.
func TestKeepBound(t *testing.T) {
	im, err := Read(buildImage(t, "zstd", "-q"), Limits{MaxKeep: 1000})
	require.NoError(t, err)
	_, err = im.ReadFile("usr/lib/modules/6.1.0-50-amd64/kernel/drivers/block/virtio_blk.ko", 1<<20)
	assert.ErrorIs(t, err, ErrNotKept)
	_, err = im.ReadFile("etc/hostname", 1<<20)
	assert.NoError(t, err)
}

// TestTrailingData: what follows a compressed archive. After gzip, whose end
// is exact, zero padding and more archives are read on; after the others,
// whose decoders read ahead, the archives already out are kept and the rest
// is noted.
func TestTrailingData(t *testing.T) {
	pad4 := func(b []byte) []byte { return append(b, make([]byte, (4-len(b)%4)%4)...) }
	tests := []struct {
		name     string
		compress []string
		tail     func(t *testing.T) []byte
		archives []string
		noted    bool
	}{
		{"gzip, zeros", []string{"gzip", "-n"}, func(*testing.T) []byte { return make([]byte, 512) }, []string{"cpio", "gzip"}, false},
		{"gzip, then another image", []string{"gzip", "-n"}, func(t *testing.T) []byte { return buildImage(t, "xz", "--check=crc32") },
			[]string{"cpio", "gzip", "cpio", "xz"}, false},
		{"zstd, zeros", []string{"zstd", "-q"}, func(*testing.T) []byte { return make([]byte, 512) }, []string{"cpio", "zstd"}, true},
		{"xz, 3 zeros", []string{"xz", "--check=crc32"}, func(*testing.T) []byte { return make([]byte, 3) }, []string{"cpio", "xz"}, true},
		{"bzip2, then a gzip image", []string{"bzip2"}, func(t *testing.T) []byte { return buildImage(t, "gzip") }, []string{"cpio", "bzip2"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := pad4(buildImage(t, tc.compress...))
			im, err := Read(append(data, tc.tail(t)...), Limits{})
			require.NoError(t, err)
			assert.Equal(t, tc.archives, im.Archives)
			assert.Equal(t, tc.noted, len(im.Notes) > 0, "%v", im.Notes)
			_, err = im.ReadFile("etc/hostname", 100)
			assert.NoError(t, err)
		})
	}
}

// TestDecompressionBomb: a zstd archive of a few KiB holding a 64 MiB file
// of zeros (made by GNU cpio and zstd) stops at the bound, and what is
// allocated stays far below what it unpacks to.
func TestDecompressionBomb(t *testing.T) {
	testutil.RequireTool(t, "cpio")
	testutil.RequireTool(t, "zstd")
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "zeros"), nil, 0o644))
	require.NoError(t, os.Truncate(filepath.Join(dir, "zeros"), 64<<20))
	cmd := exec.Command("sh", "-c", "echo zeros | cpio --quiet -o -H newc | zstd -q -19 -T1")
	cmd.Dir = dir
	bomb, err := cmd.Output()
	require.NoError(t, err)
	require.Less(t, len(bomb), 64<<10, "the archive is small")
	testutil.Bounded(t, 32<<20, func() {
		_, err = Read(bomb, Limits{MaxBytes: 16 << 20})
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "more than 16777216 decompressed bytes")
	im, err := Read(bomb, Limits{}) // within the default bound it is read, not kept
	require.NoError(t, err)
	require.Len(t, im.Entries, 1)
	assert.Equal(t, int64(64<<20), im.Entries[0].Size)
	_, err = im.ReadFile("zeros", 1<<20)
	assert.ErrorIs(t, err, ErrNotKept)
}
