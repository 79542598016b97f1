package ext4

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmconv/vmconv/internal/testutil"
)

func mkfs(t testing.TB, dir string, size string, opts ...string) string {
	t.Helper()
	testutil.RequireTool(t, "mke2fs")
	img := filepath.Join(t.TempDir(), "fs.img")
	args := append([]string{"-q", "-F", "-d", dir}, opts...)
	testutil.Run(t, "mke2fs", append(args, img, size)...)
	return img
}

func open(t testing.TB, img string) *FS {
	t.Helper()
	f, err := os.Open(img)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	require.NoError(t, err)
	fsys, err := Open(f, st.Size())
	require.NoError(t, err)
	return fsys
}

func random(t testing.TB, n int) []byte {
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

// Every flavour mkfs makes: the same tree reads back byte for byte.
func TestReadVariants(t *testing.T) {
	dir := t.TempDir()
	files := map[string][]byte{
		"boot/vmlinuz-1":     random(t, 1<<20+17),
		"boot/small":         []byte("tiny"),
		"boot/empty":         {},
		"a/b/c/d/e.txt":      []byte("deep\n"),
		"sparse-ish/zeros":   make([]byte, 300000),
		"boot/grub/grub.cfg": []byte("set default=0\n"),
	}
	for name, data := range files {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o644))
	}
	// A directory big enough to be hashed (htree) with 1 KiB blocks.
	for i := 0; i < 400; i++ {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "a", fmt.Sprintf("file-with-a-longish-name-%04d", i)), []byte(fmt.Sprint(i)), 0o644))
	}
	require.NoError(t, os.Symlink("boot/vmlinuz-1", filepath.Join(dir, "vmlinuz")))
	require.NoError(t, os.Symlink("/boot/small", filepath.Join(dir, "abs-link")))
	require.NoError(t, os.Symlink("../boot/"+strings.Repeat("x", 0)+"vmlinuz-1", filepath.Join(dir, "a", "rel-up")))
	long := strings.Repeat("../a/", 20) + "../boot/small" // > 60 bytes: a slow symlink
	require.NoError(t, os.Symlink(long, filepath.Join(dir, "a", "slow")))
	require.NoError(t, os.Symlink("loop2", filepath.Join(dir, "loop1")))
	require.NoError(t, os.Symlink("loop1", filepath.Join(dir, "loop2")))

	for _, tc := range []struct {
		name string
		opts []string
		size string
	}{
		{"ext2", []string{"-t", "ext2"}, ""},
		{"ext3 1k blocks", []string{"-t", "ext3", "-b", "1024"}, ""},
		{"ext4 default", []string{"-t", "ext4"}, ""},
		{"ext4 64bit metadata_csum 1k", []string{"-t", "ext4", "-b", "1024", "-O", "64bit,metadata_csum,flex_bg"}, ""},
		{"ext4 no extents", []string{"-t", "ext4", "-O", "^extent,^64bit"}, ""},
		{"ext4 inline_data 256-byte inodes", []string{"-t", "ext4", "-I", "256", "-O", "inline_data"}, ""},
		{"ext4 meta_bg 64k blocks", []string{"-t", "ext4", "-b", "65536", "-O", "meta_bg,^resize_inode"}, "96M"},
		{"ext4 128-byte inodes", []string{"-t", "ext4", "-I", "128"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			size := tc.size
			if size == "" {
				size = "24M"
			}
			f := open(t, mkfs(t, dir, size, tc.opts...))
			for name, data := range files {
				got, err := f.ReadFile("/"+name, MaxFileSize)
				require.NoError(t, err, name)
				assert.True(t, bytes.Equal(data, got), "%s: content differs", name)
			}
			got, err := f.ReadFile("/vmlinuz", MaxFileSize)
			require.NoError(t, err)
			assert.Equal(t, files["boot/vmlinuz-1"], got)
			for _, l := range []string{"/abs-link", "/a/slow", "a/../boot/small"} {
				got, err = f.ReadFile(l, MaxFileSize)
				require.NoError(t, err, l)
				assert.Equal(t, "tiny", string(got), l)
			}
			got, err = f.ReadFile("/a/rel-up", MaxFileSize)
			require.NoError(t, err)
			assert.Equal(t, files["boot/vmlinuz-1"], got)
			target, err := f.Readlink("/a/slow")
			require.NoError(t, err)
			assert.Equal(t, long, target)

			ents, err := f.ReadDir("/a")
			require.NoError(t, err)
			assert.Len(t, ents, 400+3) // 400 files, b/, rel-up, slow
			_, err = f.ReadFile("/a/file-with-a-longish-name-0399", MaxFileSize)
			require.NoError(t, err)

			_, err = f.ReadFile("/loop1", MaxFileSize)
			require.ErrorContains(t, err, "symlinks")
			_, err = f.ReadFile("/nope", MaxFileSize)
			require.ErrorIs(t, err, fs.ErrNotExist)
			_, err = f.ReadFile("/boot/vmlinuz-1", 1000)
			require.ErrorContains(t, err, "more than the 1000")
			_, err = f.ReadFile("/boot", MaxFileSize)
			require.ErrorContains(t, err, "not a regular file")
		})
	}
}

// A file written into a filesystem full of one-block holes gets thousands of
// extents: an extent tree two levels deep, which must read back exactly.
func TestDeepExtentTree(t *testing.T) {
	debugfs := testutil.RequireTool(t, "debugfs")
	dir := t.TempDir()
	const n = 3000
	for i := 0; i < n; i++ {
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%05d", i)), random(t, 1024), 0o644))
	}
	img := mkfs(t, dir, "8M", "-t", "ext4", "-b", "1024", "-O", "64bit,metadata_csum", "-N", "4000")
	var script strings.Builder
	for i := 0; i < n; i += 2 {
		fmt.Fprintf(&script, "rm f%05d\n", i)
	}
	big := random(t, 1400*1024)
	src := filepath.Join(t.TempDir(), "big")
	require.NoError(t, os.WriteFile(src, big, 0o644))
	fmt.Fprintf(&script, "write %s big\n", src)
	cmd := exec.Command(debugfs, "-w", "-f", "-", img)
	cmd.Stdin = strings.NewReader(script.String())
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)

	f := open(t, img)
	in, err := f.Lookup("/big")
	require.NoError(t, err)
	depth := binary.LittleEndian.Uint16(in.Block[6:])
	assert.GreaterOrEqual(t, int(depth), 2, "extent tree depth")
	maps, err := f.blockMap(in, 1400)
	require.NoError(t, err)
	assert.Greater(t, len(maps), 4*84, "extents")
	got, err := f.ReadFile("/big", MaxFileSize)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(big, got), "fragmented file differs")
	got, err = f.ReadFile("/f00001", MaxFileSize)
	require.NoError(t, err)
	want, err := os.ReadFile(filepath.Join(dir, "f00001"))
	require.NoError(t, err)
	assert.Equal(t, want, got)
}

func TestOpenRejects(t *testing.T) {
	dir := t.TempDir()
	img := mkfs(t, dir, "4M", "-t", "ext4")
	good, err := os.ReadFile(img)
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		mut  func(b []byte)
		err  string
	}{
		{"magic", func(b []byte) { b[1024+0x38] = 0 }, "magic"},
		{"block size", func(b []byte) { binary.LittleEndian.PutUint32(b[1024+0x18:], 9) }, "s_log_block_size"},
		{"inode size", func(b []byte) { binary.LittleEndian.PutUint16(b[1024+0x58:], 100) }, "inode size"},
		{"blocks beyond device", func(b []byte) { binary.LittleEndian.PutUint32(b[1024+4:], 1<<30) }, "device holds"},
		{"blocks per group", func(b []byte) { binary.LittleEndian.PutUint32(b[1024+0x20:], 0) }, "per group"},
		{"inodes vs groups", func(b []byte) { binary.LittleEndian.PutUint32(b[1024:], 1<<31) }, "inodes but"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := append([]byte(nil), good...)
			tc.mut(b)
			_, err := Open(bytes.NewReader(b), int64(len(b)))
			require.ErrorContains(t, err, tc.err)
		})
	}
	_, err = Open(bytes.NewReader(good[:2000]), 2000)
	require.Error(t, err)
}

// FuzzExt4 opens, looks up and reads files of mutated small images: no
// panic, no hang, no unbounded allocation.
func FuzzExt4(f *testing.F) {
	for _, name := range []string{"ext4-small.img", "ext2-small.img", "ext4-csum.img"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fsys, err := Open(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		for _, p := range []string{"/boot/grub/grub.cfg", "/vmlinuz", "/boot", "/a/slow"} {
			_, _ = fsys.ReadFile(p, 1<<20)
			_, _ = fsys.ReadDir(p)
		}
		_, _ = fsys.ReadDir("/")
	})
}

// The fuzz seeds are real mke2fs images that read correctly.
func TestFuzzSeedsRead(t *testing.T) {
	for _, name := range []string{"ext4-small.img", "ext2-small.img", "ext4-csum.img"} {
		f := open(t, filepath.Join("testdata", name))
		b, err := f.ReadFile("/vmlinuz", 100)
		require.NoError(t, err, name)
		assert.Equal(t, "kernel\n", string(b), name)
		b, err = f.ReadFile("/a/slow", 100)
		require.NoError(t, err, name)
		assert.Equal(t, "kernel\n", string(b), name)
	}
}

// A directory linked below itself (debugfs's link keeps no counts, as a
// corrupt image would) is reported as a loop, not walked 4096 times.
func TestDirectoryLoop(t *testing.T) {
	debugfs := testutil.RequireTool(t, "debugfs")
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "boot", "grub"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "boot", "grub", "grub.cfg"), []byte("set timeout=1\n"), 0o644))
	img := mkfs(t, dir, "4M", "-t", "ext4")
	out, err := exec.Command(debugfs, "-w", "-R", "link /boot /boot/grub/again", img).CombinedOutput()
	require.NoError(t, err, "%s", out)

	f := open(t, img)
	boot, err := f.Lookup("/boot")
	require.NoError(t, err)
	_, err = f.ReadFile("/boot/grub/again/grub/grub.cfg", MaxFileSize)
	require.ErrorContains(t, err, fmt.Sprintf("ext4: /boot/grub/again/grub/grub.cfg: directory loop: boot/grub/again is inode %d, also its own ancestor", boot.Num))
	got, err := f.ReadFile("/boot/grub/grub.cfg", MaxFileSize)
	require.NoError(t, err)
	assert.Equal(t, "set timeout=1\n", string(got))
}
