package xfs

import (
	"bytes"
	"io/fs"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

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
		{"v5 1k inodes dir 64k", []string{"-i", "size=1024,maxpct=60", "-n", "size=65536"}, 4096},
		// A 32 MiB log at least, in one AG.
		{"v5 64k blocks", []string{"-b", "size=65536", "-d", "agcount=1"}, 65536},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := mkfs(t, tree, 64<<20*(1+tc.blockSize/65536), tc.opts...)
			f := open(t, img)
			assert.Equal(t, tc.blockSize, f.BlockSize())
			compareTree(t, f, tree)

			got, err := f.ReadFile("/boot/vmlinuz", MaxFileSize)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(tree["boot/vmlinuz-5.14.0-362.el9.x86_64"].data, got), "vmlinuz through its symlink")
			for _, l := range []string{"/boot/abs", "/boot/long", "/boot/longer", "boot/../boot/./grub2/grub.cfg"} {
				got, err = f.ReadFile(l, MaxFileSize)
				require.NoError(t, err, l)
				assert.Equal(t, "set default=0\nblscfg\n", string(got), l)
			}
			core := map[bool]int{true: 176, false: 100}[f.v5]
			if len(tree["boot/longer"].link) > int(f.inodeSize)-core {
				assert.Equal(t, "2", format(t, img, "/boot/longer"), "a remote symlink")
			} else {
				assert.Equal(t, "1", format(t, img, "/boot/longer"), "a local symlink in a large inode")
			}
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
