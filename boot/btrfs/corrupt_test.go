package btrfs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// smallTree writes a tree whose fs tree has more than one level with 4 KiB
// nodes, and a nested /boot subvolume to find through the default one.
func smallTree(t testing.TB, dir string) {
	write(t, filepath.Join(dir, "@", "boot", "vmlinuz-1"), bytes.Repeat([]byte("kernel image "), 2000))
	write(t, filepath.Join(dir, "@", "boot", "grub2", "grub.cfg"), []byte("set default=0\n"))
	require.NoError(t, os.Symlink("vmlinuz-1", filepath.Join(dir, "@", "boot", "vmlinuz")))
	write(t, filepath.Join(dir, "@", "etc", "hostname"), []byte("guest\n"))
	for i := 0; i < 120; i++ {
		write(t, filepath.Join(dir, "@", "many", fmt.Sprintf("entry-%03d", i)), []byte(fmt.Sprint(i)))
	}
}

// leafFor returns the address of the leaf a search for k starts in.
func leafFor(t testing.TB, v *volume, root treeRoot, k key) uint64 {
	bytenr, level := root.bytenr, root.level
	for level > 0 {
		n, err := v.readNode(bytenr, level)
		require.NoError(t, err)
		_, bytenr = n.ptr(0)
		for i := 1; i < n.nritems; i++ {
			if first, c := n.ptr(i); !k.less(first) {
				bytenr = c
			}
		}
		level--
	}
	return bytenr
}

// resum rewrites the crc32c of the superblock or node at off (n bytes).
func resum(b []byte, off, n int) {
	binary.LittleEndian.PutUint32(b[off:], crc32.Checksum(b[off+0x20:off+n], castagnoli))
}

func TestCorrupt(t *testing.T) {
	requireMkfsFeatures(t)
	src := tempDir(t)
	smallTree(t, src)
	img := mkfs(t, src, "-n", "4096", "-m", "dup", "-u", "default:@", "-u", "@/boot")
	good, err := os.ReadFile(img)
	require.NoError(t, err)
	f, err := Open(bytes.NewReader(good), int64(len(good)))
	require.NoError(t, err)
	v := f.v
	ns := int(v.sb.NodeSize)
	phys := func(logical uint64) int {
		p, _, err := v.physical(logical)
		require.NoError(t, err)
		return int(p)
	}
	require.NotZero(t, f.root.level, "the subvolume's tree has nodes above its leaves")
	// The root tree leaf Open reads to find the default subvolume.
	rootTree := phys(leafFor(t, v, v.rootTree(), key{objectid: rootTreeDirID, typ: typeDirItem, offset: nameHash("default")}))
	fsRoot := phys(f.root.bytenr)
	rootNode, err := v.readNode(f.root.bytenr, f.root.level)
	require.NoError(t, err)
	_, child := rootNode.ptr(0)
	fsChild := phys(child)

	const sb = superblockOff
	sys := sb + 0x32b + keyLen // the first chunk item of sys_chunk_array
	le := binary.LittleEndian
	for _, tc := range []struct {
		name string
		mut  func(b []byte)
		err  string
	}{
		{"bad magic", func(b []byte) { b[sb+0x40] = 'X'; resum(b, sb, superblockLen) }, `magic "XBHRfS_M"`},
		{"superblock checksum", func(b []byte) { b[sb+0x100] ^= 1 }, "superblock at 0x10000: crc32c"},
		{"sector size", func(b []byte) { le.PutUint32(b[sb+0x90:], 1000); resum(b, sb, superblockLen) }, "sector size 1000"},
		{"node size", func(b []byte) { le.PutUint32(b[sb+0x94:], 3<<12); resum(b, sb, superblockLen) }, "node size 12288"},
		{"incompat feature", func(b []byte) { b[sb+0xbd] |= 0x20; resum(b, sb, superblockLen) }, "unsupported incompatible features 0x2000"},
		{"sys_chunk_array size", func(b []byte) { le.PutUint32(b[sb+0xa0:], 5000); resum(b, sb, superblockLen) }, "sys_chunk_array_size 5000"},
		{"root tree outside the chunk map", func(b []byte) { le.PutUint64(b[sb+0x50:], 1<<50); resum(b, sb, superblockLen) }, "logical address 0x4000000000000 is in no chunk"},
		{"chunk tree outside the sys chunks", func(b []byte) { le.PutUint64(b[sb+0x58:], 1<<50); resum(b, sb, superblockLen) }, "chunk tree: tree 3: node at 0x4000000000000: logical address 0x4000000000000 is in no chunk"},
		{"RAID1 profile", func(b []byte) { b[sys+0x18] |= bgRAID1; resum(b, sb, superblockLen) }, "profile RAID1 spans devices"},
		{"second device missing", func(b []byte) { le.PutUint64(b[sys+chunkItemLen:], 2); resum(b, sb, superblockLen) }, "is on device 2, which is missing (this is device 1 of 1)"},
		{"chunk past the device", func(b []byte) { le.PutUint64(b[sys+chunkItemLen+8:], 1<<40); resum(b, sb, superblockLen) }, "do not fit the"},
		{"node checksum", func(b []byte) { b[rootTree+0x200] ^= 1 }, "crc32c"},
		{"node at the wrong address", func(b []byte) { le.PutUint64(b[rootTree+0x30:], 4096); resum(b, rootTree, ns) }, "header says it is at 0x1000"},
		{"item offset past the leaf", func(b []byte) { le.PutUint32(b[rootTree+nodeHeaderLen+keyLen:], uint32(ns)); resum(b, rootTree, ns) }, "past the leaf"},
		{"leaf items past the node", func(b []byte) { le.PutUint32(b[rootTree+0x60:], 1000); resum(b, rootTree, ns) }, "1000 items of 25 bytes do not fit"},
		{"keys out of order", func(b []byte) { le.PutUint64(b[rootTree+nodeHeaderLen+leafItemLen:], 0); resum(b, rootTree, ns) }, "not above the key before it"},
		{"level does not decrease", func(b []byte) { b[fsChild+0x64] = f.root.level; resum(b, fsChild, ns) }, fmt.Sprintf("level %d, want %d (one below its parent's)", f.root.level, f.root.level-1)},
		{"child pointer loops to its parent", func(b []byte) {
			le.PutUint64(b[fsRoot+nodeHeaderLen+keyLen:], f.root.bytenr)
			resum(b, fsRoot, ns)
		}, "level"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := append([]byte(nil), good...)
			tc.mut(b)
			fsys, err := Open(bytes.NewReader(b), int64(len(b)))
			if err == nil {
				_, err = fsys.ReadDir("/many")
			}
			require.Error(t, err)
			assert.ErrorContains(t, err, tc.err)
		})
	}
	_, err = Open(bytes.NewReader(good[:0x10800]), 0x10800)
	assert.ErrorContains(t, err, "past end of device")
}

// Every checksum type mkfs.btrfs offers reads; those verified catch a
// flipped bit in a node.
func TestChecksumTypes(t *testing.T) {
	requireMkfsFeatures(t)
	src := tempDir(t)
	smallTree(t, src)
	for _, tc := range []struct {
		csum string
		err  string // from a damaged node; "" when not verified
	}{
		{"crc32c", "crc32c"},
		{"xxhash", "xxhash64"},
		{"sha256", "sha256"},
		{"blake2", ""},
	} {
		t.Run(tc.csum, func(t *testing.T) {
			img, err := os.ReadFile(mkfs(t, src, "-n", "4096", "--csum", tc.csum, "-u", "default:@", "-u", "@/boot"))
			require.NoError(t, err)
			f, err := Open(bytes.NewReader(img), int64(len(img)))
			require.NoError(t, err)
			got, err := f.ReadFile("/boot/vmlinuz", 1<<20)
			require.NoError(t, err)
			assert.Equal(t, bytes.Repeat([]byte("kernel image "), 2000), got)

			p, _, err := f.v.physical(leafFor(t, f.v, f.root, key{objectid: firstFreeID + 1}))
			require.NoError(t, err)
			img[p+0x300] ^= 0x40
			f, err = Open(bytes.NewReader(img), int64(len(img)))
			require.NoError(t, err)
			_, err = f.ReadDir("/many")
			if tc.err == "" {
				return // the damaged byte may be unused space: nothing to assert
			}
			assert.ErrorContains(t, err, tc.err)
		})
	}
}

// No tool here writes a prealloc extent without mounting (fallocate needs
// the kernel), so a real regular extent is turned into one: the file then
// reads as zeros, its length kept.
func TestPreallocReadsZeros(t *testing.T) {
	requireMkfsFeatures(t)
	src := tempDir(t)
	smallTree(t, src)
	img, err := os.ReadFile(mkfs(t, src, "-n", "4096", "-u", "default:@"))
	require.NoError(t, err)
	f, err := Open(bytes.NewReader(img), int64(len(img)))
	require.NoError(t, err)
	in, err := f.Lookup("/boot/vmlinuz-1")
	require.NoError(t, err)
	k := key{objectid: in.Num, typ: typeExtentData}
	leaf := leafFor(t, f.v, f.root, k)
	n, err := f.v.readNode(leaf, 0)
	require.NoError(t, err)
	found := false
	for i := 0; i < n.nritems; i++ {
		got, data, err := n.item(i)
		require.NoError(t, err)
		if got == k {
			require.EqualValues(t, extentRegular, data[20], "mkfs wrote a regular extent")
			p, _, err := f.v.physical(leaf)
			require.NoError(t, err)
			off := p + uint64(len(n.b)-cap(data)) // data is a slice of the node's bytes
			img[off+20] = extentPrealloc
			resum(img, int(p), len(n.b))
			found = true
		}
	}
	require.True(t, found, "the file's extent item")
	f, err = Open(bytes.NewReader(img), int64(len(img)))
	require.NoError(t, err)
	got, err := f.ReadFile("/boot/vmlinuz-1", 1<<20)
	require.NoError(t, err)
	assert.Equal(t, make([]byte, 26000), got)
}
