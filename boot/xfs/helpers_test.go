package xfs

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
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

// node is one entry of a test tree: a directory, a symlink or a file.
type node struct {
	dir  bool
	link string
	data []byte
}

// tree maps slash-separated paths (no leading slash) to entries; parent
// directories are implied.
type tree map[string]node

func (tr tree) file(name string, data []byte) { tr[name] = node{data: data} }
func (tr tree) symlink(name, target string)   { tr[name] = node{link: target} }
func (tr tree) dir(name string)               { tr[name] = node{dir: true} }

// children returns each directory's entry names, sorted, "" being the root.
func (tr tree) children() map[string][]string {
	parent := func(p string) string {
		if d := path.Dir(p); d != "." {
			return d
		}
		return ""
	}
	kids := map[string][]string{"": nil}
	for name, n := range tr {
		if _, ok := kids[name]; n.dir && !ok {
			kids[name] = nil
		}
		for p := name; p != ""; p = parent(p) {
			kids[parent(p)] = append(kids[parent(p)], path.Base(p))
		}
	}
	for d, k := range kids {
		sort.Strings(k)
		kids[d] = slices.Compact(k)
	}
	return kids
}

// protofile writes an mkfs.xfs(8) prototype file for tr; file contents go
// to host files, one per distinct content, which mkfs copies in.
func protofile(t testing.TB, tr tree) string {
	t.Helper()
	tmp := t.TempDir()
	sources := map[string]string{}
	source := func(data []byte) string {
		if p, ok := sources[string(data)]; ok {
			return p
		}
		p := filepath.Join(tmp, fmt.Sprintf("src%d", len(sources)))
		require.NoError(t, os.WriteFile(p, data, 0o644))
		sources[string(data)] = p
		return p
	}
	kids := tr.children()
	var b strings.Builder
	b.WriteString("/dev/null\n0 0\nd--755 0 0\n")
	var walk func(d string)
	walk = func(d string) {
		for _, k := range kids[d] {
			name := path.Join(d, k)
			require.NotContains(t, k, " ", "protofile names are whitespace-separated")
			n, ok := tr[name]
			switch {
			case ok && n.link != "":
				fmt.Fprintf(&b, "%s l--777 0 0 %s\n", k, n.link)
			case !ok || n.dir:
				fmt.Fprintf(&b, "%s d--755 0 0\n", k)
				walk(name)
				b.WriteString("$\n")
			default:
				fmt.Fprintf(&b, "%s ---644 0 0 %s\n", k, source(n.data))
			}
		}
	}
	walk("")
	b.WriteString("$\n")
	proto := filepath.Join(tmp, "proto")
	require.NoError(t, os.WriteFile(proto, []byte(b.String()), 0o644))
	return proto
}

// mkfs builds an XFS image of size bytes holding tr.
func mkfs(t testing.TB, tr tree, size int64, opts ...string) string {
	t.Helper()
	mkfsXFS := testutil.RequireTool(t, "mkfs.xfs")
	img := filepath.Join(t.TempDir(), "xfs.img")
	require.NoError(t, os.WriteFile(img, nil, 0o644))
	require.NoError(t, os.Truncate(img, size))
	args := append([]string{"-q", "-f", "-p", protofile(t, tr)}, opts...)
	cmd := exec.Command(mkfsXFS, append(args, img)...)
	// mkfs.xfs refuses filesystems under 300 MB unless run by xfstests,
	// which it recognises by these variables; small images keep tests fast.
	cmd.Env = append(os.Environ(), "TEST_DIR=1", "TEST_DEV=1", "QA_CHECK_FS=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "mkfs.xfs %v: %s", args, out)
	if !slices.Contains(opts, "crc=0") {
		fixRemoteSymlinks(t, img, tr)
	}
	return img
}

// fixRemoteSymlinks rewrites the v5 remote symlinks mkfs.xfs 6.1 made from
// the prototype file as the kernel writes them. That mkfs copies the target
// into the block without the XSLM header, so xfs_repair would junk the
// link and the kernel refuse it. Each target must fit one block.
func fixRemoteSymlinks(t testing.TB, img string, tr tree) {
	t.Helper()
	sb := xfsDB(t, img, "sb 0", "print blocksize agblocks")
	bs, err := strconv.ParseInt(field(t, sb, "blocksize"), 10, 64)
	require.NoError(t, err)
	agblocks, err := strconv.ParseInt(field(t, sb, "agblocks"), 10, 64)
	require.NoError(t, err)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	for name, n := range tr {
		// Targets this short always fit the inode (mkfs adds no attributes).
		if len(n.link) < 100 || format(t, img, "/"+name) != "2" {
			continue
		}
		require.LessOrEqual(t, int64(len(n.link)), bs-56, "%s: target longer than one remote block", name)
		var off, start, agno, agbno, count, flag int64
		_, err = fmt.Sscanf(xfsDB(t, img, "path /"+name, "bmap"), "data offset %d startblock %d (%d/%d) count %d flag %d", &off, &start, &agno, &agbno, &count, &flag)
		require.NoError(t, err)
		pos := (agno*agblocks + agbno) * bs
		blk := make([]byte, bs)
		be := binary.BigEndian
		be.PutUint32(blk[0:], 0x58534c4d)
		be.PutUint32(blk[8:], uint32(len(n.link)))
		copy(blk[16:32], uuidBytes(t, img))
		be.PutUint64(blk[32:], inodeOf(t, img, "/"+name))
		be.PutUint64(blk[40:], uint64(pos/512))
		copy(blk[56:], n.link)
		_, err = f.WriteAt(blk, pos)
		require.NoError(t, err)
		testutil.Run(t, "xfs_db", "-x", "-c", "path /"+name, "-c", "dblock 0", "-c", "type symlink", "-c", "crc -r", img)
	}
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
	leaf, free := false, false
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

// bootTree is a /boot-like tree plus directories of many sizes; big adds a
// file larger than one 16 MiB AG.
func bootTree(t testing.TB, big bool) tree {
	t.Helper()
	tr := tree{}
	tr.file("boot/vmlinuz-5.14.0-362.el9.x86_64", random(t, 3<<20+123))
	tr.file("boot/initramfs-5.14.0-362.el9.x86_64.img", random(t, 5<<20+7))
	tr.file("boot/grub2/grub.cfg", []byte("set default=0\nblscfg\n"))
	tr.file("boot/grub2/grubenv", bytes.Repeat([]byte("#"), 1024))
	tr.file("boot/loader/entries/abc-5.14.0-362.el9.x86_64.conf",
		[]byte("title Rocky\nlinux /vmlinuz-5.14.0-362.el9.x86_64\ninitrd /initramfs-5.14.0-362.el9.x86_64.img\n"))
	tr.file("boot/empty", nil)
	tr.symlink("boot/vmlinuz", "vmlinuz-5.14.0-362.el9.x86_64")
	tr.symlink("boot/abs", "/boot/grub2/grub.cfg")
	// Targets longer than the inode's data fork: remote symlinks.
	tr.symlink("boot/long", strings.Repeat("./", 100)+"grub2/grub.cfg")
	tr.symlink("boot/longer", strings.Repeat("../boot/", 100)+"grub2/grub.cfg")
	tr.symlink("loop1", "loop2")
	tr.symlink("loop2", "loop1")
	tr.dir("dirs/d0")
	for _, n := range []int{3, 40, 100, 2000, 20000} {
		for i := 0; i < n; i++ {
			name := fmt.Sprintf("dirs/d%d/entry-%d-with-a-longer-name", n, i)
			switch {
			case i%500 == 0:
				tr.file(name, []byte(name))
			case i%500 == 1:
				tr.symlink(name, "../d3")
			default:
				tr.file(name, nil)
			}
		}
	}
	if big {
		tr.file("big", random(t, 40<<20+1))
	}
	return tr
}

// compareTree asserts that every file, directory listing and symlink of tr
// reads back the same from f. Entries are reached through their directory's
// listing (one directory read each); paths are looked up too where a
// directory is small, since a lookup reads the whole directory.
func compareTree(t *testing.T, f *FS, tr tree) {
	t.Helper()
	kids := tr.children()
	var walk func(dir string, in *Inode)
	walk = func(dir string, in *Inode) {
		list, err := f.readDir(in)
		require.NoError(t, err, dir)
		var got []string
		byName := map[string]DirEntry{}
		for _, e := range list {
			got = append(got, e.Name)
			byName[e.Name] = e
		}
		sort.Strings(got)
		require.Equal(t, kids[dir], got, "listing of /%s", dir)
		for _, k := range kids[dir] {
			name := path.Join(dir, k)
			n, ok := tr[name]
			child, err := f.ReadInode(byName[k].Inode)
			require.NoError(t, err, name)
			if f.ftype {
				want := map[bool]uint8{true: 2, false: 1}[!ok || n.dir]
				if n.link != "" {
					want = 7
				}
				assert.Equal(t, want, byName[k].Type, "%s: file type in the directory entry", name)
			}
			if len(kids[dir]) <= 100 && n.link == "" {
				size, isDir, err := f.Stat(name)
				require.NoError(t, err, name)
				assert.Equal(t, child.Size, size, name)
				assert.Equal(t, !ok || n.dir, isDir, name)
			}
			switch {
			case ok && n.link != "":
				require.True(t, child.IsSymlink(), name)
				got, err := f.readlink(child)
				require.NoError(t, err, name)
				assert.Equal(t, n.link, got, name)
			case !ok || n.dir:
				require.True(t, child.IsDir(), name)
				walk(name, child)
			default:
				require.True(t, child.IsRegular(), name)
				got, err := f.readData(child, MaxFileSize)
				require.NoError(t, err, name)
				assert.True(t, bytes.Equal(n.data, got), "%s: content differs", name)
				if len(kids[dir]) <= 100 {
					got, err = f.ReadFile("/"+name, MaxFileSize)
					require.NoError(t, err, name)
					assert.True(t, bytes.Equal(n.data, got), "%s: content by path differs", name)
				}
			}
		}
	}
	root, err := f.Lookup("/")
	require.NoError(t, err)
	walk("", root)
}
