package boot

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/internal/testutil"
)

// fileImage is a raw image file as a disk.Image.
type fileImage struct {
	f    *os.File
	size int64
}

func openImage(t testing.TB, path string) disk.Image {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	st, err := f.Stat()
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return &fileImage{f: f, size: st.Size()}
}

func (i *fileImage) ReadAt(p []byte, off int64) (int, error) { return i.f.ReadAt(p, off) }
func (i *fileImage) Size() int64                             { return i.size }
func (i *fileImage) Close() error                            { return nil }
func (i *fileImage) Extents(off, length int64) ([]disk.Extent, error) {
	return []disk.Extent{{Offset: off, Length: min(length, i.size-off), Kind: disk.Data}}, nil
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	testutil.RequireTool(t, name)
	return testutil.Run(t, name, args...)
}

// tree writes files (path → content; content "->target" makes a symlink)
// under a new directory.
func tree(t testing.TB, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		if s := string(data); strings.HasPrefix(s, "->") {
			require.NoError(t, os.Symlink(strings.TrimPrefix(s, "->"), p))
			continue
		}
		require.NoError(t, os.WriteFile(p, data, 0o644))
	}
	return dir
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

// mkext makes an ext2/3/4 image of sizeMiB from dir with mkfs (-d).
func mkext(t testing.TB, dir string, sizeMiB int, uuid string, opts ...string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "fs.img")
	args := append([]string{"-q", "-F", "-d", dir}, opts...)
	if uuid != "" {
		args = append(args, "-U", uuid)
	}
	args = append(args, img, fmt.Sprintf("%dM", sizeMiB))
	run(t, "mke2fs", args...)
	return img
}

// mkfat makes a FAT image of sizeKiB holding dir's files (mtools).
func mkfat(t testing.TB, dir string, sizeKiB int, fatBits int, volID string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "fat.img")
	run(t, "mkfs.vfat", "-C", "-F", fmt.Sprint(fatBits), "-i", volID, img, fmt.Sprint(sizeKiB))
	testutil.RequireTool(t, "mcopy")
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range ents {
		cmd := exec.Command("mcopy", "-s", "-i", img, filepath.Join(dir, e.Name()), "::/")
		cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "mcopy: %s", out)
	}
	return img
}

// partSpec is one partition of a test disk: an image to copy in, its sfdisk
// type, and its size in MiB (0: the image's size).
type partSpec struct {
	img     string
	typ     string
	sizeMiB int
	extra   string // extra sfdisk attributes, e.g. "bootable"
	logical bool   // dos: a logical partition inside an extended one
}

// mkdisk lays partitions out with sfdisk ("dos" or "gpt") and copies each
// image in. Logical partitions go into one extended partition, created before
// the first of them.
func mkdisk(t testing.TB, label string, parts []partSpec) string {
	t.Helper()
	testutil.RequireTool(t, "sfdisk")
	path := filepath.Join(t.TempDir(), "disk.raw")
	var script strings.Builder
	fmt.Fprintf(&script, "label: %s\nunit: sectors\n", label)
	start := int64(2048)
	starts := make([]int64, len(parts))
	total := start
	for _, p := range parts {
		total += int64(sizeOf(t, p))*2048 + 4096
	}
	total += 4096
	extended := false
	for i, p := range parts {
		sz := int64(sizeOf(t, p)) * 2048
		if p.logical && !extended {
			extended = true
			fmt.Fprintf(&script, "start=%d, type=5\n", start)
		}
		if p.logical {
			start += 2048 // room for the EBR
		}
		starts[i] = start
		attrs := ""
		if p.extra != "" {
			attrs = ", " + p.extra
		}
		fmt.Fprintf(&script, "start=%d, size=%d, type=%s%s\n", start, sz, p.typ, attrs)
		start += sz
	}
	require.NoError(t, os.WriteFile(path, nil, 0o644))
	require.NoError(t, os.Truncate(path, (total+8192)*512))
	cmd := exec.Command("sfdisk", "--no-reread", "--no-tell-kernel", path)
	cmd.Stdin = strings.NewReader(script.String())
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "sfdisk: %s\n%s", out, script.String())
	for i, p := range parts {
		if p.img == "" {
			continue
		}
		run(t, "dd", "if="+p.img, "of="+path, "bs=512", fmt.Sprintf("seek=%d", starts[i]), "conv=notrunc,sparse", "status=none")
	}
	return path
}

func sizeOf(t testing.TB, p partSpec) int {
	if p.sizeMiB > 0 {
		return p.sizeMiB
	}
	st, err := os.Stat(p.img)
	require.NoError(t, err)
	return int((st.Size() + (1<<20 - 1)) >> 20)
}

// mkxfs makes an XFS (v5) image of dir with mkfs.xfs -p, the prototype file
// listing dir's files and directories.
func mkxfs(t testing.TB, dir string, sizeMiB int, uuid string) string {
	t.Helper()
	testutil.RequireTool(t, "mkfs.xfs")
	var proto strings.Builder
	proto.WriteString("/dev/null\n0 0\nd--755 0 0\n")
	var walk func(d string)
	walk = func(d string) {
		ents, err := os.ReadDir(d)
		require.NoError(t, err)
		for _, e := range ents {
			p := filepath.Join(d, e.Name())
			if e.IsDir() {
				fmt.Fprintf(&proto, "%s d--755 0 0\n", e.Name())
				walk(p)
				proto.WriteString("$\n")
				continue
			}
			fmt.Fprintf(&proto, "%s ---644 0 0 %s\n", e.Name(), p)
		}
	}
	walk(dir)
	proto.WriteString("$\n")
	work := t.TempDir()
	pf := filepath.Join(work, "proto")
	require.NoError(t, os.WriteFile(pf, []byte(proto.String()), 0o644))
	img := filepath.Join(work, "xfs.img")
	require.NoError(t, os.WriteFile(img, nil, 0o644))
	require.NoError(t, os.Truncate(img, int64(sizeMiB)<<20))
	cmd := exec.Command("mkfs.xfs", "-q", "-f", "-m", "uuid="+uuid, "-p", pf, img)
	// mkfs.xfs refuses filesystems under 300 MB unless run by xfstests,
	// which it recognises by these variables; small images keep tests fast.
	cmd.Env = append(os.Environ(), "TEST_DIR=1", "TEST_DEV=1", "QA_CHECK_FS=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "mkfs.xfs: %s", out)
	return img
}
