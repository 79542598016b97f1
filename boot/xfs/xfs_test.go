package xfs

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmconv/vmconv/internal/testutil"
)

// protofile writes an mkfs.xfs(8) prototype file describing the host tree
// at dir (regular files, directories, symlinks), which mkfs copies in.
func protofile(t testing.TB, dir string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("/dev/null\n0 0\nd--755 0 0\n")
	var walk func(d string)
	walk = func(d string) {
		ents, err := os.ReadDir(d)
		require.NoError(t, err)
		for _, e := range ents {
			p := filepath.Join(d, e.Name())
			require.NotContains(t, e.Name(), " ", "protofile names are whitespace-separated")
			switch {
			case e.Type()&fs.ModeSymlink != 0:
				target, err := os.Readlink(p)
				require.NoError(t, err)
				fmt.Fprintf(&b, "%s l--777 0 0 %s\n", e.Name(), target)
			case e.IsDir():
				fmt.Fprintf(&b, "%s d--755 0 0\n", e.Name())
				walk(p)
				b.WriteString("$\n")
			default:
				fmt.Fprintf(&b, "%s ---644 0 0 %s\n", e.Name(), p)
			}
		}
	}
	walk(dir)
	b.WriteString("$\n")
	proto := filepath.Join(t.TempDir(), "proto")
	require.NoError(t, os.WriteFile(proto, []byte(b.String()), 0o644))
	return proto
}

// mkfs builds an XFS image of size bytes holding the tree at dir.
func mkfs(t testing.TB, dir string, size int64, opts ...string) string {
	t.Helper()
	mkfsXFS := testutil.RequireTool(t, "mkfs.xfs")
	img := filepath.Join(t.TempDir(), "xfs.img")
	require.NoError(t, os.WriteFile(img, nil, 0o644))
	require.NoError(t, os.Truncate(img, size))
	args := append([]string{"-q", "-f", "-p", protofile(t, dir)}, opts...)
	cmd := exec.Command(mkfsXFS, append(args, img)...)
	// mkfs.xfs refuses filesystems under 300 MB unless run by xfstests,
	// which it recognises by these variables; small images keep tests fast.
	cmd.Env = append(os.Environ(), "TEST_DIR=1", "TEST_DEV=1", "QA_CHECK_FS=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "mkfs.xfs %v: %s", args, out)
	if !slices.Contains(opts, "crc=0") {
		fixRemoteSymlinks(t, img, dir)
	}
	return img
}

// fixRemoteSymlinks rewrites the v5 remote symlinks mkfs.xfs 6.1 made from
// the prototype file as the kernel writes them. That mkfs copies the target
// into the block without the XSLM header, so xfs_repair would junk the
// link and the kernel refuse it. Each target must fit one block.
func fixRemoteSymlinks(t testing.TB, img, dir string) {
	t.Helper()
	sb := xfsDB(t, img, "sb 0", "print blocksize agblocks")
	bs, err := strconv.ParseInt(field(t, sb, "blocksize"), 10, 64)
	require.NoError(t, err)
	agblocks, err := strconv.ParseInt(field(t, sb, "agblocks"), 10, 64)
	require.NoError(t, err)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink == 0 {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		require.NoError(t, err)
		name := "/" + filepath.ToSlash(rel)
		if format(t, img, name) != "2" {
			return nil
		}
		target, err := os.Readlink(p)
		require.NoError(t, err)
		require.LessOrEqual(t, int64(len(target)), bs-56, "%s: target longer than one remote block", name)
		var off, start, agno, agbno, count, flag int64
		_, err = fmt.Sscanf(xfsDB(t, img, "path "+name, "bmap"), "data offset %d startblock %d (%d/%d) count %d flag %d", &off, &start, &agno, &agbno, &count, &flag)
		require.NoError(t, err)
		pos := (agno*agblocks + agbno) * bs
		blk := make([]byte, bs)
		be := binary.BigEndian
		be.PutUint32(blk[0:], 0x58534c4d)
		be.PutUint32(blk[8:], uint32(len(target)))
		copy(blk[16:32], uuidBytes(t, img))
		be.PutUint64(blk[32:], inodeOf(t, img, name))
		be.PutUint64(blk[40:], uint64(pos/512))
		copy(blk[56:], target)
		_, err = f.WriteAt(blk, pos)
		require.NoError(t, err)
		require.NoError(t, f.Sync())
		testutil.Run(t, "xfs_db", "-x", "-c", "path "+name, "-c", "dblock 0", "-c", "type symlink", "-c", "crc -r", img)
		return nil
	})
	require.NoError(t, err)
}

func uuidBytes(t testing.TB, img string) []byte {
	t.Helper()
	u := strings.ReplaceAll(field(t, xfsDB(t, img, "sb 0", "print uuid"), "uuid"), "-", "")
	b, err := hex.DecodeString(u)
	require.NoError(t, err)
	return b
}

// xfsDB runs read-only xfs_db commands on img and returns their output.
func xfsDB(t testing.TB, img string, cmds ...string) string {
	t.Helper()
	testutil.RequireTool(t, "xfs_db")
	args := []string{"-r"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	return testutil.Run(t, "xfs_db", append(args, img)...)
}

// field returns the value xfs_db printed for "name = value".
func field(t testing.TB, out, name string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, " = "); ok && k == name {
			return v
		}
	}
	require.Failf(t, "xfs_db output lacks a field", "%s in %q", name, out)
	return ""
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

func write(t testing.TB, root, name string, data []byte) {
	t.Helper()
	p := filepath.Join(root, name)
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, data, 0o644))
}

func symlink(t testing.TB, root, name, target string) {
	t.Helper()
	p := filepath.Join(root, name)
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.Symlink(target, p))
}

// bootTree writes a /boot-like tree and directories of many sizes; big adds
// a file larger than one 16 MiB AG.
func bootTree(t testing.TB, big bool) string {
	t.Helper()
	root := t.TempDir()
	write(t, root, "boot/vmlinuz-5.14.0-362.el9.x86_64", random(t, 3<<20+123))
	write(t, root, "boot/initramfs-5.14.0-362.el9.x86_64.img", random(t, 5<<20+7))
	write(t, root, "boot/grub2/grub.cfg", []byte("set default=0\nblscfg\n"))
	write(t, root, "boot/grub2/grubenv", bytes.Repeat([]byte("#"), 1024))
	write(t, root, "boot/loader/entries/abc-5.14.0-362.el9.x86_64.conf",
		[]byte("title Rocky\nlinux /vmlinuz-5.14.0-362.el9.x86_64\ninitrd /initramfs-5.14.0-362.el9.x86_64.img\n"))
	write(t, root, "boot/empty", nil)
	symlink(t, root, "boot/vmlinuz", "vmlinuz-5.14.0-362.el9.x86_64")
	symlink(t, root, "boot/abs", "/boot/grub2/grub.cfg")
	// Targets longer than the inode's data fork: remote symlinks.
	symlink(t, root, "boot/long", strings.Repeat("./", 100)+"grub2/grub.cfg")
	symlink(t, root, "boot/longer", strings.Repeat("../boot/", 100)+"grub2/grub.cfg")
	symlink(t, root, "loop1", "loop2")
	symlink(t, root, "loop2", "loop1")
	require.NoError(t, os.MkdirAll(filepath.Join(root, "dirs/d0"), 0o755))
	for _, n := range []int{3, 40, 100, 2000, 20000} {
		for i := 0; i < n; i++ {
			name := fmt.Sprintf("dirs/d%d/entry-%d-with-a-longer-name", n, i)
			if i%500 == 0 {
				write(t, root, name, []byte(name))
			} else {
				write(t, root, name, nil)
			}
		}
	}
	if big {
		write(t, root, "big", random(t, 40<<20+1))
	}
	return root
}

// compareTree asserts that every file, directory listing and symlink under
// the host tree root reads back the same from f. Entries are reached through
// their directory's listing (one directory read each); paths are looked up
// too where a directory is small, since a lookup reads the whole directory.
func compareTree(t *testing.T, f *FS, root string) {
	t.Helper()
	var walk func(dir string, in *Inode)
	walk = func(dir string, in *Inode) {
		ents, err := os.ReadDir(filepath.Join(root, dir))
		require.NoError(t, err)
		list, err := f.readDir(in)
		require.NoError(t, err, dir)
		var want, got []string
		for _, e := range ents {
			want = append(want, e.Name())
		}
		byName := map[string]DirEntry{}
		for _, e := range list {
			got = append(got, e.Name)
			byName[e.Name] = e
		}
		sort.Strings(got)
		require.Equal(t, want, got, "listing of /%s", dir)
		for _, e := range ents {
			name := path.Join(dir, e.Name())
			child, err := f.ReadInode(byName[e.Name()].Inode)
			require.NoError(t, err, name)
			if len(ents) <= 100 && e.Type()&fs.ModeSymlink == 0 {
				size, isDir, err := f.Stat(name)
				require.NoError(t, err, name)
				assert.Equal(t, child.Size, size, name)
				assert.Equal(t, e.IsDir(), isDir, name)
			}
			switch {
			case e.Type()&fs.ModeSymlink != 0:
				wantT, err := os.Readlink(filepath.Join(root, name))
				require.NoError(t, err)
				gotT, err := f.readlink(child)
				require.NoError(t, err, name)
				assert.Equal(t, wantT, gotT, name)
				assert.True(t, child.IsSymlink(), name)
			case e.IsDir():
				assert.True(t, child.IsDir(), name)
				walk(name, child)
			default:
				wantB, err := os.ReadFile(filepath.Join(root, name))
				require.NoError(t, err)
				require.True(t, child.IsRegular(), name)
				gotB, err := f.readData(child, MaxFileSize)
				require.NoError(t, err, name)
				assert.True(t, bytes.Equal(wantB, gotB), "%s: content differs", name)
				if len(ents) <= 100 {
					gotB, err = f.ReadFile("/"+name, MaxFileSize)
					require.NoError(t, err, name)
					assert.True(t, bytes.Equal(wantB, gotB), "%s: content by path differs", name)
				}
			}
		}
	}
	rootIno, err := f.Lookup("/")
	require.NoError(t, err)
	walk("", rootIno)
}

// format returns the data fork format xfs_db reports for the inode at path.
func format(t testing.TB, img, path string) string {
	t.Helper()
	v := field(t, xfsDB(t, img, "path "+path, "print core.format"), "core.format")
	f, _, _ := strings.Cut(v, " ")
	return f
}

func inodeOf(t testing.TB, img, path string) uint64 {
	t.Helper()
	out := xfsDB(t, img, "path "+path, "inode")
	// "current inode number is N"
	fields := strings.Fields(out)
	require.NotEmpty(t, fields)
	n, err := strconv.ParseUint(fields[len(fields)-1], 10, 64)
	require.NoError(t, err, out)
	return n
}

// dirForm names a directory's form from its data fork, as xfs_db maps it:
// shortform in the inode, one block, or data blocks plus a leaf block (at
// 32 GiB) and, in node form, free-index blocks (at 64 GiB).
func dirForm(t testing.TB, img, path string, blockSize int64) string {
	t.Helper()
	fmtNum := format(t, img, path)
	if fmtNum == "1" {
		return "shortform"
	}
	out := xfsDB(t, img, "path "+path, "bmap")
	data, leaf, free := 0, false, false
	for _, l := range strings.Split(out, "\n") {
		var off, start, count, flag int64
		var agno, agbno int64
		if n, _ := fmt.Sscanf(l, "data offset %d startblock %d (%d/%d) count %d flag %d", &off, &start, &agno, &agbno, &count, &flag); n < 5 {
			continue
		}
		switch byteOff := off * blockSize; {
		case byteOff >= 64<<30:
			free = true
		case byteOff >= 32<<30:
			leaf = true
		default:
			data += int(count)
		}
	}
	switch {
	case free:
		return "node"
	case leaf:
		return "leaf"
	}
	return "block"
}

func extentCount(t testing.TB, img, path string) int {
	t.Helper()
	return strings.Count(xfsDB(t, img, "path "+path, "bmap"), "data offset")
}

// Every flavour of mkfs.xfs: the whole tree reads back byte for byte, each
// directory lists what the source held, in every directory form.
func TestReadVariants(t *testing.T) {
	tree := bootTree(t, false)
	seen := map[string]bool{}
	for _, tc := range []struct {
		name      string
		opts      []string
		blockSize int64
	}{
		{"v5 4k", []string{"-d", "agcount=4"}, 4096},
		{"v5 1k dir 8k", []string{"-b", "size=1024", "-n", "size=8192", "-d", "agcount=4"}, 1024},
		{"v5 nrext64 2 AGs", []string{"-i", "nrext64=1", "-d", "agcount=2"}, 4096},
		{"v4 4k 256-byte inodes", []string{"-m", "crc=0", "-i", "size=256", "-d", "agcount=4"}, 4096},
		{"v4 1k no ftype dir 4k", []string{"-m", "crc=0", "-n", "ftype=0,size=4096", "-b", "size=1024", "-i", "size=512"}, 1024},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := mkfs(t, tree, 64<<20, tc.opts...)
			f := open(t, img)
			assert.Equal(t, tc.blockSize, f.BlockSize())
			compareTree(t, f, tree)

			got, err := f.ReadFile("/boot/vmlinuz", MaxFileSize)
			require.NoError(t, err)
			want, err := os.ReadFile(filepath.Join(tree, "boot/vmlinuz-5.14.0-362.el9.x86_64"))
			require.NoError(t, err)
			assert.True(t, bytes.Equal(want, got), "vmlinuz through its symlink")
			for _, l := range []string{"/boot/abs", "/boot/long", "/boot/longer", "boot/../boot/./grub2/grub.cfg"} {
				got, err = f.ReadFile(l, MaxFileSize)
				require.NoError(t, err, l)
				assert.Equal(t, "set default=0\nblscfg\n", string(got), l)
			}
			assert.Equal(t, "2", format(t, img, "/boot/longer"), "a remote symlink")
			assert.Equal(t, "1", format(t, img, "/boot/vmlinuz"), "a local symlink")

			_, err = f.ReadFile("/loop1", MaxFileSize)
			assert.ErrorContains(t, err, "more than 40 symlinks")
			_, err = f.ReadFile("/boot/nope", MaxFileSize)
			assert.ErrorIs(t, err, fs.ErrNotExist)
			_, _, err = f.Stat("/dirs/d3/nope")
			assert.ErrorIs(t, err, fs.ErrNotExist)
			_, err = f.ReadFile("/boot/vmlinuz", 1000)
			assert.ErrorContains(t, err, "more than the 1000")
			_, err = f.ReadFile("/boot", MaxFileSize)
			assert.ErrorContains(t, err, "not a regular file")
			_, err = f.ReadDir("/boot/grub2/grub.cfg")
			assert.ErrorContains(t, err, "not a directory")
			_, err = f.Readlink("/boot/grub2")
			assert.ErrorContains(t, err, "not a symlink")

			for _, d := range []string{"d0", "d3", "d40", "d100", "d2000", "d20000"} {
				form := dirForm(t, img, "/dirs/"+d, tc.blockSize)
				fork := format(t, img, "/dirs/"+d)
				t.Logf("%s: %s form, data fork format %s", d, form, fork)
				seen[form] = true
				seen["fork "+fork] = true
			}
		})
	}
	// Across the variants mkfs made every form the reader knows.
	for _, form := range []string{"shortform", "block", "leaf", "node", "fork 1", "fork 2", "fork 3"} {
		assert.True(t, seen[form], "no directory of form %q was made", form)
	}
}
