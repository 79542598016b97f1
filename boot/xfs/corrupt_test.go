package xfs

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vmconv/vmconv/internal/testutil"
)

// Damage done to a real image, through xfs_db's writes of named fields or
// by bytes: each read fails with an error naming what is wrong.
func TestCorrupt(t *testing.T) {
	tr := tree{}
	tr.file("boot/grub2/grub.cfg", []byte("set default=0\n"))
	tr.file("boot/x", []byte("kernel\n"))
	for i := 0; i < 40; i++ {
		tr.file(fmt.Sprintf("blk/entry-%d-with-a-longer-name", i), nil) // a block-form directory
	}
	for i := 0; i < 20000; i++ {
		tr.file(fmt.Sprintf("big/entry-%d-with-a-longer-name", i), nil) // a B+tree one, level 1
	}
	// 4 KiB blocks, 512-byte inodes, 4 AGs of 4096 blocks: AG 4 would start
	// at inode 4<<(12+3).
	good := mkfs(t, tr, 64<<20, "-d", "agcount=4")
	f := open(t, good)
	got, err := f.ReadFile("/boot/grub2/grub.cfg", 100)
	require.NoError(t, err)
	require.Equal(t, "set default=0\n", string(got))
	require.Equal(t, "\"grub2\"", field(t, xfsDB(t, good, "path /boot", "print u3.sfdir3.list[0].name"), "u3.sfdir3.list[0].name"))

	for _, tc := range []struct {
		name  string
		db    []string // xfs_db commands
		poke  func(b []byte)
		read  string
		want  string
		open_ bool // the error comes from Open
		short bool // the device is cut to half the image
	}{
		{name: "superblock magic", poke: func(b []byte) { copy(b, "XFSC") }, want: "sb_magicnum", open_: true},
		{name: "AG geometry", poke: func(b []byte) { b[0x7c] = 40 }, want: "sb_agblklog", open_: true},
		{name: "version", poke: func(b []byte) { b[0x65] = 0xa6 }, want: "sb_versionnum", open_: true},
		{name: "dblocks past the device", short: true, want: "device holds", open_: true},
		{name: "inode past the AGs", db: []string{"path /boot", "write u3.sfdir3.list[0].inumber.i4 131077"}, read: "/boot/grub2/grub.cfg", want: "inode 131077 outside the filesystem's 4 AGs"},
		{name: "directory loop", db: []string{"path /boot", "write u3.sfdir3.list[0].inumber.i4 128"}, read: "/boot/grub2/grub.cfg", want: "directory loop: boot/grub2 is inode 128"},
		{name: "extent past its AG", db: []string{"path /boot/x", "write u3.bmx[0].blockcount 5000"}, read: "/boot/x", want: "extent of 5000 blocks"},
		{name: "extent outside the AGs", db: []string{"path /boot/x", "write u3.bmx[0].startblock 16384"}, read: "/boot/x", want: "(AG 4 block 0) outside 4 AGs"},
		{name: "inode magic", db: []string{"path /boot/x", "write -d core.magic 0"}, read: "/boot/x", want: "di_magic 0x0000"},
		{name: "inode number", db: []string{"path /boot/x", "write v3.inumber 5"}, read: "/boot/x", want: "di_ino says 5"},
		{name: "extent count", db: []string{"path /boot/x", "write core.nextents 1000"}, read: "/boot/x", want: "1000 extents do not fit"},
		{name: "shortform count", db: []string{"path /boot", "write u3.sfdir3.hdr.count 50"}, read: "/boot/x", want: "shortform entry 2"},
		{name: "B+tree depth", db: []string{"path /big", "write -d u3.bmbt.level 12"}, read: "/big/x", want: "B+tree root level 12"},
		{name: "B+tree levels", db: []string{"path /big", "write -d u3.bmbt.level 2"}, read: "/big/x", want: "bb_level 0, bb_numrecs"},
		{name: "directory block magic", db: []string{"path /blk", "dblock 0", "write -d bhdr.hdr.magic 0x58444434"}, read: "/blk/x", want: "data block magic 0x58444434, want a v5 one (directory block 0)"},
		{name: "data fork format", db: []string{"path /boot/x", "write core.format 0"}, read: "/boot/x", want: "format 0 has no block map"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "bad.img")
			out, err := exec.Command("cp", "--sparse=always", good, img).CombinedOutput()
			require.NoError(t, err, "%s", out)
			if tc.db != nil {
				args := []string{"-x"}
				for _, c := range tc.db {
					args = append(args, "-c", c)
				}
				out := testutil.Run(t, "xfs_db", append(args, img)...)
				require.NotContains(t, out, "error", "xfs_db wrote the damage")
			}
			b, err := os.ReadFile(img)
			require.NoError(t, err)
			if tc.poke != nil {
				tc.poke(b)
			}
			size := int64(len(b))
			if tc.short {
				size /= 2
			}
			fsys, err := Open(bytes.NewReader(b), size)
			if tc.open_ {
				require.ErrorContains(t, err, tc.want)
				return
			}
			require.NoError(t, err)
			_, err = fsys.ReadFile(tc.read, 100)
			require.ErrorContains(t, err, tc.want)
		})
	}
}
