package btrfs

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmconv/vmconv/boot/ext4"
	"github.com/vmconv/vmconv/internal/testutil"
)

// tempDir is a fresh directory in memory where /dev/shm is (mkfs.btrfs
// syncs its image; trees of thousands of files are written), else t.TempDir.
func tempDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("/dev/shm", "btrfs-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// mkfs makes a btrfs image of dir with mkfs.btrfs --rootdir.
func mkfs(t testing.TB, dir string, opts ...string) string {
	t.Helper()
	testutil.RequireTool(t, "mkfs.btrfs")
	img := filepath.Join(tempDir(t), "fs.img")
	require.NoError(t, os.WriteFile(img, nil, 0o644)) // mkfs stats the target first
	testutil.Run(t, "mkfs.btrfs", append(append([]string{"-q", "-f", "-r", dir, "--shrink"}, opts...), img)...)
	return img
}

// requireMkfsFeatures skips (fails in CI) when mkfs.btrfs cannot make
// subvolumes and compressed files (--subvol and --compress came in
// btrfs-progs 6.8 and 6.13; Debian 12's is 6.2, bookworm-backports has 6.14).
func requireMkfsFeatures(t testing.TB) {
	t.Helper()
	testutil.RequireTool(t, "mkfs.btrfs")
	out, _ := exec.Command("mkfs.btrfs", "--help").CombinedOutput()
	if !bytes.Contains(out, []byte("--subvol")) || !bytes.Contains(out, []byte("--compress")) {
		testutil.Unavailable(t, "mkfs.btrfs has no --subvol or --compress (btrfs-progs >= 6.13 needed, bookworm-backports has it)")
	}
}

func openImage(t testing.TB, img string) *FS {
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

func write(t testing.TB, name string, data []byte) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(name), 0o755))
	require.NoError(t, os.WriteFile(name, data, 0o644))
}

// bootTree writes a /boot-like tree under dir: a kernel (incompressible)
// and an initramfs (compressible) of a few MiB, BLS entries, grub.cfg,
// symlinks, inline-sized files, a large and a sparse file, and directories of
// 0, 5 and many entries.
func bootTree(t testing.TB, dir string, many int) {
	const kver = "6.5.6-300.fc39.x86_64"
	write(t, filepath.Join(dir, "boot", "vmlinuz-"+kver), random(t, 3<<20+17))
	var initrd bytes.Buffer
	for i := 0; initrd.Len() < 4<<20; i++ {
		fmt.Fprintf(&initrd, "initramfs line %d of %s %x\n", i, kver, random(t, 4))
	}
	write(t, filepath.Join(dir, "boot", "initramfs-"+kver+".img"), initrd.Bytes())
	write(t, filepath.Join(dir, "boot", "loader", "entries", "0123abcd-"+kver+".conf"),
		[]byte("title Fedora Linux ("+kver+")\nversion "+kver+"\nlinux /vmlinuz-"+kver+"\ninitrd /initramfs-"+kver+".img\noptions root=UUID=x ro rootflags=subvol=root\n"))
	write(t, filepath.Join(dir, "boot", "grub2", "grub.cfg"), []byte("set default=0\nblscfg\n"))
	require.NoError(t, os.Symlink("vmlinuz-"+kver, filepath.Join(dir, "boot", "vmlinuz")))
	write(t, filepath.Join(dir, "etc", "hostname"), []byte("guest\n"))
	write(t, filepath.Join(dir, "etc", "empty"), nil)
	require.NoError(t, os.Symlink("/boot/grub2/grub.cfg", filepath.Join(dir, "etc", "abs-link")))
	write(t, filepath.Join(dir, "large.bin"), random(t, 2<<20+4095))

	sparse, err := os.Create(filepath.Join(dir, "sparse.img"))
	require.NoError(t, err)
	for _, off := range []int64{0, 1 << 20, 4<<20 - 1000} {
		_, err := sparse.WriteAt(random(t, 1000), off)
		require.NoError(t, err)
	}
	require.NoError(t, sparse.Close())

	require.NoError(t, os.MkdirAll(filepath.Join(dir, "empty"), 0o755))
	for i := 0; i < 5; i++ {
		write(t, filepath.Join(dir, "five", fmt.Sprintf("f%d", i)), []byte(strings.Repeat("five", i*300)))
	}
	require.NoError(t, os.Symlink("../boot/vmlinuz", filepath.Join(dir, "five", "rel-up")))
	for i := 0; i < many; i++ {
		write(t, filepath.Join(dir, "many", fmt.Sprintf("entry-with-a-longer-name-%05d", i)), []byte(fmt.Sprint(i)))
	}
}

// assertSame checks that every file, symlink and directory listing under
// src reads the same through fsys at prefix. Names in ignore are left out
// of the comparison of the top directory's listing.
func assertSame(t *testing.T, fsys *FS, prefix, src string, ignore ...string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		rel, err := filepath.Rel(src, p)
		require.NoError(t, err)
		name := prefix + "/" + filepath.ToSlash(rel)
		if rel == "." {
			name = prefix + "/"
		}
		n++
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			want, err := os.Readlink(p)
			require.NoError(t, err)
			got, err := fsys.Readlink(name)
			require.NoError(t, err, name)
			assert.Equal(t, want, got, name)
		case d.IsDir():
			osEnts, err := os.ReadDir(p)
			require.NoError(t, err)
			var want, got []string
			for _, e := range osEnts {
				typ := uint8(1)
				if e.IsDir() {
					typ = 2
				} else if e.Type()&fs.ModeSymlink != 0 {
					typ = 7
				}
				want = append(want, fmt.Sprintf("%s/%d", e.Name(), typ))
			}
			ents, err := fsys.ReadDir(name)
			require.NoError(t, err, name)
			for _, e := range ents {
				if rel == "." && slices.Contains(ignore, e.Name) {
					continue
				}
				got = append(got, fmt.Sprintf("%s/%d", e.Name, e.Type))
			}
			slices.Sort(want)
			slices.Sort(got)
			assert.Equal(t, want, got, "listing of %s", name)
			_, dir, err := fsys.Stat(name)
			require.NoError(t, err, name)
			assert.True(t, dir, name)
		default:
			want, err := os.ReadFile(p)
			require.NoError(t, err)
			got, err := fsys.ReadFile(name, MaxFileSize)
			require.NoError(t, err, name)
			assert.True(t, bytes.Equal(want, got), "%s: %d bytes read, %d in the source, contents differ", name, len(got), len(want))
			size, dir, err := fsys.Stat(name)
			require.NoError(t, err, name)
			assert.Equal(t, int64(len(want)), size, name)
			assert.False(t, dir, name)
		}
		return nil
	})
	require.NoError(t, err)
	require.Greater(t, n, 1, "nothing compared under %s", src)
}

// stats counts what a tree holds, walking every node: its height, its
// leaves, and its file extents by kind.
type stats struct {
	levels, leaves            int
	inline, regular, holes    int
	compressed, compressedInl map[uint8]int
}

func treeStats(t testing.TB, v *volume, root treeRoot) stats {
	s := stats{levels: int(root.level) + 1, compressed: map[uint8]int{}, compressedInl: map[uint8]int{}}
	var walk func(bytenr uint64, level uint8)
	walk = func(bytenr uint64, level uint8) {
		n, err := v.readNode(bytenr, level)
		require.NoError(t, err)
		if level > 0 {
			for i := 0; i < n.nritems; i++ {
				_, c := n.ptr(i)
				walk(c, level-1)
			}
			return
		}
		s.leaves++
		for i := 0; i < n.nritems; i++ {
			k, d, err := n.item(i)
			require.NoError(t, err)
			if k.typ != typeExtentData {
				continue
			}
			switch comp := d[16]; {
			case d[20] == extentInline && comp != 0:
				s.compressedInl[comp]++
			case d[20] == extentInline:
				s.inline++
			case binary.LittleEndian.Uint64(d[21:]) == 0:
				s.holes++
			case comp != 0:
				s.compressed[comp]++
			default:
				s.regular++
			}
		}
	}
	walk(root.bytenr, root.level)
	return s
}

// extentBytes sums the bytes of a file's extents that have data on disk.
func extentBytes(t testing.TB, f *FS, name string) int64 {
	in, err := f.Lookup(name)
	require.NoError(t, err)
	var sum int64
	err = f.v.scan(in.root, key{objectid: in.Num, typ: typeExtentData}, func(k key, d []byte) (bool, error) {
		if k.objectid != in.Num || k.typ != typeExtentData {
			return true, nil
		}
		if d[20] == extentInline {
			sum += int64(len(d) - extentHeader)
		} else if binary.LittleEndian.Uint64(d[21:]) != 0 {
			sum += int64(binary.LittleEndian.Uint64(d[45:]))
		}
		return false, nil
	})
	require.NoError(t, err)
	return sum
}

var dirIndexKey = regexp.MustCompile(`^\s+item \d+ key \((\d+) DIR_INDEX \d+\)`)

// dumpDirIndex returns the names in directory dir of the top-level fs tree
// in the order btrfs inspect-internal dump-tree prints its DIR_INDEX items.
func dumpDirIndex(t testing.TB, img string, dir uint64) []string {
	out := testutil.Run(t, "btrfs", "inspect-internal", "dump-tree", "-t", "5", img)
	var names []string
	in := false
	for _, line := range strings.Split(out, "\n") {
		if m := dirIndexKey.FindStringSubmatch(line); m != nil {
			in = m[1] == fmt.Sprint(dir)
			continue
		}
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "name: "); ok && in {
			names = append(names, name)
			in = false
		}
	}
	require.NotEmpty(t, names)
	return names
}

// Every flavour mkfs.btrfs makes: the same tree reads back byte for byte.
func TestReadVariants(t *testing.T) {
	requireMkfsFeatures(t)
	src := tempDir(t)
	bootTree(t, src, 5000)
	for _, tc := range []struct {
		name string
		opts []string
		comp uint8 // compression the data extents must use
	}{
		{"nodesize 4096 metadata single", []string{"-n", "4096", "-m", "single"}, 0},
		{"nodesize 16384 metadata dup", []string{"-n", "16384", "-m", "dup"}, 0},
		{"mixed block groups", []string{"-M", "-n", "4096"}, 0},
		{"zlib", []string{"-n", "4096", "--compress", "zlib"}, compressZlib},
		{"lzo", []string{"-n", "4096", "--compress", "lzo"}, compressLZO},
		{"zstd", []string{"-n", "16384", "--compress", "zstd:9"}, compressZstd},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := mkfs(t, src, tc.opts...)
			f := openImage(t, img)
			assert.EqualValues(t, fsTreeID, f.ID())
			assertSame(t, f, "", src)

			st := treeStats(t, f.v, f.root)
			assert.Greater(t, st.leaves, 3, "the 5000-entry directory spans several leaves")
			assert.GreaterOrEqual(t, st.levels, 2)
			assert.Greater(t, st.inline, 0, "inline extents")
			if tc.comp != 0 {
				assert.Greater(t, st.compressed[tc.comp], 0, "regular extents compressed with %s", compressNames[tc.comp])
				assert.Greater(t, st.compressedInl[tc.comp], 0, "inline extents compressed with %s", compressNames[tc.comp])
			} else {
				assert.Greater(t, st.regular, 0, "regular extents")
			}

			got, err := f.ReadFile("/boot/vmlinuz", MaxFileSize)
			require.NoError(t, err)
			want, err := os.ReadFile(filepath.Join(src, "boot", "vmlinuz"))
			require.NoError(t, err)
			assert.True(t, bytes.Equal(want, got), "kernel through its symlink")
			got, err = f.ReadFile("/etc/abs-link", 100)
			require.NoError(t, err)
			assert.Equal(t, "set default=0\nblscfg\n", string(got))
			got, err = f.ReadFile("/five/../five/rel-up", MaxFileSize)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(want, got), "kernel through ../")

			ents, err := f.ReadDir("/many")
			require.NoError(t, err)
			require.Len(t, ents, 5000)
			in, err := f.Lookup("/many")
			require.NoError(t, err)
			var names []string
			for _, e := range ents {
				names = append(names, e.Name)
			}
			assert.Equal(t, dumpDirIndex(t, img, in.Num), names, "listing in btrfs inspect-internal dump-tree's DIR_INDEX order")

			_, err = f.ReadFile("/nope", MaxFileSize)
			assert.ErrorIs(t, err, fs.ErrNotExist)
			_, err = f.ReadFile("/boot/nope/x", MaxFileSize)
			assert.ErrorIs(t, err, fs.ErrNotExist)
			_, err = f.ReadFile("/large.bin", 1000)
			assert.ErrorContains(t, err, "more than the 1000")
			_, err = f.ReadFile("/boot", MaxFileSize)
			assert.ErrorContains(t, err, "not a regular file")
			_, err = f.ReadDir("/etc/hostname")
			assert.ErrorContains(t, err, "not a directory")
			_, err = f.Readlink("/etc/hostname")
			assert.ErrorContains(t, err, "not a symlink")
		})
	}
}

func subvolPaths(t testing.TB, f *FS) map[string]Subvolume {
	t.Helper()
	list, err := f.Subvolumes()
	require.NoError(t, err)
	out := map[string]Subvolume{}
	for _, s := range list {
		out[s.Path] = s
	}
	return out
}

// An openSUSE-like layout: "@" is the default subvolume, /boot and a
// deeper directory are nested subvolumes inside it, "@home" beside it.
func TestSubvolumesOpenSUSE(t *testing.T) {
	requireMkfsFeatures(t)
	src := tempDir(t)
	bootTree(t, filepath.Join(src, "@"), 5)
	write(t, filepath.Join(src, "@", "srv", "www", "nested", "index.html"), []byte("<p>nested</p>\n"))
	write(t, filepath.Join(src, "@home", "user", ".profile"), []byte("PATH=$PATH\n"))
	img := mkfs(t, src, "-n", "16384", "-u", "default:@", "-u", "@/boot", "-u", "@home", "-u", "@/srv/www/nested")
	f := openImage(t, img)

	subs := subvolPaths(t, f)
	require.Len(t, subs, 4, "%v", subs)
	root, boot, home, nested := subs["@"], subs["@/boot"], subs["@home"], subs["@/srv/www/nested"]
	assert.EqualValues(t, fsTreeID, root.Parent)
	assert.EqualValues(t, fsTreeID, home.Parent)
	assert.Equal(t, root.ID, boot.Parent)
	assert.Equal(t, root.ID, nested.Parent)
	assert.Equal(t, root.ID, f.ID(), "Open sees the default subvolume")

	// Lookups from the default subvolume cross into the nested ones.
	assertSame(t, f, "", filepath.Join(src, "@"))
	in, err := f.Lookup("/boot/grub2/grub.cfg")
	require.NoError(t, err)
	assert.Equal(t, boot.ID, in.Tree)
	in, err = f.Lookup("/srv/www/nested/index.html")
	require.NoError(t, err)
	assert.Equal(t, nested.ID, in.Tree)

	for _, tc := range []struct {
		path string
		id   uint64
		src  string
	}{
		{"/", fsTreeID, ""},
		{"@", root.ID, "@"},
		{"/@/boot", boot.ID, "@/boot"},
		{"@home", home.ID, "@home"},
		{"/@/srv/www/nested/", nested.ID, "@/srv/www/nested"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			sv, err := f.Subvolume(tc.path)
			require.NoError(t, err)
			assert.Equal(t, tc.id, sv.ID())
			assertSame(t, sv, "", filepath.Join(src, tc.src))
			byID, err := f.SubvolumeID(tc.id)
			require.NoError(t, err)
			assert.Equal(t, tc.id, byID.ID())
		})
	}
	top, err := f.SubvolumeID(fsTreeID)
	require.NoError(t, err)
	ents, err := top.ReadDir("/")
	require.NoError(t, err)
	assert.ElementsMatch(t, []DirEntry{{"@home", home.ID, 2}, {"@", root.ID, 2}}, ents)
	_, dir, err := top.Stat("/@/boot")
	require.NoError(t, err)
	assert.True(t, dir)

	_, err = f.Subvolume("/@/etc")
	assert.ErrorContains(t, err, "not a subvolume")
	_, err = f.Subvolume("/@/nope")
	assert.ErrorIs(t, err, fs.ErrNotExist)
	_, err = f.SubvolumeID(nested.ID + 100)
	assert.ErrorContains(t, err, "no ROOT_ITEM")
	_, err = f.SubvolumeID(7)
	assert.ErrorContains(t, err, "subvolume id 7")
	assert.Equal(t, f.UUID(), top.UUID())
}

// A Fedora-like layout: "root" and "home" subvolumes, no default set, so
// the filesystem opens at the top level.
func TestSubvolumesFedora(t *testing.T) {
	requireMkfsFeatures(t)
	src := tempDir(t)
	bootTree(t, filepath.Join(src, "root"), 5)
	write(t, filepath.Join(src, "home", "user", "notes"), []byte("notes\n"))
	img := mkfs(t, src, "-n", "4096", "-L", "fedora_fedora", "-u", "root", "-u", "home", "--compress", "zstd")
	f := openImage(t, img)
	assert.EqualValues(t, fsTreeID, f.ID())
	assert.Equal(t, "fedora_fedora", f.Label())
	assertSame(t, f, "", src)
	subs := subvolPaths(t, f)
	assert.Len(t, subs, 2)
	root, err := f.Subvolume("root")
	require.NoError(t, err)
	assert.Equal(t, subs["root"].ID, root.ID())
	assertSame(t, root, "", filepath.Join(src, "root"))

	out := testutil.Run(t, "btrfs", "inspect-internal", "dump-super", img)
	assert.Contains(t, out, "fsid\t\t\t"+f.UUID())
}

// btrfs-convert turns an ext4 filesystem into btrfs in place: its files keep
// their ext4 block layout (holes stay holes), and the ext4 image is kept in
// the "ext2_saved" subvolume.
func TestConvertedFromExt4(t *testing.T) {
	testutil.RequireTool(t, "mkfs.ext4")
	testutil.RequireTool(t, "btrfs-convert")
	src := tempDir(t)
	bootTree(t, src, 300)
	// A sparse file: mke2fs -d keeps its holes, and btrfs-convert too.
	img := filepath.Join(tempDir(t), "fs.img")
	testutil.Run(t, "mkfs.ext4", "-q", "-F", "-b", "4096", "-d", src, img, "128M")
	orig, err := os.ReadFile(img)
	require.NoError(t, err)
	testutil.Run(t, "btrfs-convert", img)

	f := openImage(t, img)
	assertSame(t, f, "", src, "lost+found", "ext2_saved")
	assert.Less(t, extentBytes(t, f, "/sparse.img"), int64(4<<20), "the sparse file keeps holes")
	subs := subvolPaths(t, f)
	require.Contains(t, subs, "ext2_saved")
	saved, err := f.Subvolume("ext2_saved")
	require.NoError(t, err)
	image, err := saved.ReadFile("/image", MaxFileSize)
	require.NoError(t, err)
	require.Len(t, image, len(orig))
	// The saved image is the ext4 filesystem as it was, except the blocks
	// btrfs-convert moved aside to make room for its superblocks.
	same := 0
	for i := 0; i < len(orig); i += 4096 {
		if bytes.Equal(orig[i:i+4096], image[i:i+4096]) {
			same++
		}
	}
	assert.Greater(t, same, len(orig)/4096*9/10, "blocks of the saved ext4 image equal to the original")
	assert.Equal(t, orig[1024:2048], image[1024:2048], "the ext4 superblock")
	e, err := ext4.Open(bytes.NewReader(image), int64(len(image)))
	require.NoError(t, err)
	got, err := e.ReadFile("/boot/grub2/grub.cfg", 100)
	require.NoError(t, err)
	assert.Equal(t, "set default=0\nblscfg\n", string(got), "grub.cfg in the saved ext4 image")
}

// BenchmarkReadFile reads a 16 MiB half-compressible file (a kernel and
// initramfs mix) from images mkfs.btrfs wrote with each compression.
func BenchmarkReadFile(b *testing.B) {
	requireMkfsFeatures(b)
	src := tempDir(b)
	var data bytes.Buffer
	for data.Len() < 16<<20 {
		data.Write(random(b, 64<<10))
		data.Write(sample(64 << 10))
	}
	write(b, filepath.Join(src, "boot", "kernel"), data.Bytes())
	for _, comp := range []string{"no", "zlib", "lzo", "zstd"} {
		b.Run(comp, func(b *testing.B) {
			f := openImage(b, mkfs(b, src, "--compress", comp))
			b.SetBytes(int64(data.Len()))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				got, err := f.ReadFile("/boot/kernel", MaxFileSize)
				require.NoError(b, err)
				require.Equal(b, data.Len(), len(got))
			}
		})
	}
}

// openSUSE with snapper: the default subvolume is a snapshot nested two
// subvolumes down, under a plain directory ("1") of "@/.snapshots"; /boot is
// a directory of it, /boot/grub2/x86_64-efi a subvolume of its own beside it.
func TestSubvolumesSnapper(t *testing.T) {
	requireMkfsFeatures(t)
	src := tempDir(t)
	snap := filepath.Join(src, "@", ".snapshots", "1", "snapshot")
	bootTree(t, snap, 5)
	write(t, filepath.Join(src, "@", ".snapshots", "1", "info.xml"), []byte("<snapshot/>\n"))
	write(t, filepath.Join(src, "@", "boot", "grub2", "x86_64-efi", "grub.efi"), []byte("MZ efi"))
	img := mkfs(t, src, "-u", "@", "-u", "@/.snapshots", "-u", "default:@/.snapshots/1/snapshot", "-u", "@/boot/grub2/x86_64-efi")
	f := openImage(t, img)
	subs := subvolPaths(t, f)
	require.Len(t, subs, 4, "%v", subs)
	def := subs["@/.snapshots/1/snapshot"]
	assert.Equal(t, def.ID, f.ID())
	assert.Equal(t, subs["@/.snapshots"].ID, def.Parent)
	assert.Equal(t, subs["@"].ID, subs["@/.snapshots"].Parent)
	assert.Equal(t, subs["@"].ID, subs["@/boot/grub2/x86_64-efi"].Parent)
	assertSame(t, f, "", snap)
	efi, err := f.Subvolume("/@/boot/grub2/x86_64-efi")
	require.NoError(t, err)
	got, err := efi.ReadFile("grub.efi", 100)
	require.NoError(t, err)
	assert.Equal(t, "MZ efi", string(got))
}
