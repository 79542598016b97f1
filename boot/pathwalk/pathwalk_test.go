package pathwalk

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// node is an inode of memFS: a directory (entries), a symlink (target) or
// a file.
type node struct {
	num     int
	dir     map[string]int
	symlink string
	isLink  bool
}

func (n *node) IsDir() bool     { return n.dir != nil }
func (n *node) IsSymlink() bool { return n.isLink }

// memFS is a filesystem of numbered nodes, 1 the root; it may hold what a
// corrupt image holds (a directory listed below itself).
type memFS struct {
	nodes map[int]*node
	reads int
}

func (m *memFS) Root() (*node, error) { return m.nodes[1], nil }
func (m *memFS) ID(n *node) string    { return fmt.Sprintf("inode %d", n.num) }

func (m *memFS) Readlink(n *node) (string, error) {
	if n.symlink == "" {
		return "", errors.New("empty symlink")
	}
	return n.symlink, nil
}

func (m *memFS) Child(dir *node, name string) (*node, bool, error) {
	m.reads++
	num, ok := dir.dir[name]
	if !ok {
		return nil, false, nil
	}
	if num < 0 {
		return nil, false, fmt.Errorf("inode %d: unreadable", -num)
	}
	return m.nodes[num], true, nil
}

// tree:
//
//	/boot/            2
//	/boot/grub/       3   grub.cfg 4
//	/boot/vmlinuz     5 -> vmlinuz-6.1
//	/boot/vmlinuz-6.1 6
//	/abs              7 -> /boot/grub
//	/up               8 -> ../boot//./grub/grub.cfg (relative, from /)
//	/loop             9 -> loop
//	/bad             10 -> "" (unreadable target)
//	/boot/again      -> 2 (the directory /boot listed below itself)
//	/broken          -> entry whose inode cannot be read
func tree() *memFS {
	m := &memFS{nodes: map[int]*node{
		1:  {num: 1, dir: map[string]int{"boot": 2, "abs": 7, "up": 8, "loop": 9, "bad": 10, "broken": -11}},
		2:  {num: 2, dir: map[string]int{"grub": 3, "vmlinuz": 5, "vmlinuz-6.1": 6, "again": 2}},
		3:  {num: 3, dir: map[string]int{"grub.cfg": 4}},
		4:  {num: 4},
		5:  {num: 5, isLink: true, symlink: "vmlinuz-6.1"},
		6:  {num: 6},
		7:  {num: 7, isLink: true, symlink: "/boot/grub"},
		8:  {num: 8, isLink: true, symlink: "../boot//./grub/grub.cfg"},
		9:  {num: 9, isLink: true, symlink: "loop"},
		10: {num: 10, isLink: true},
	}}
	return m
}

func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		path   string
		follow bool
		want   int    // inode, when no error
		err    string // error text, when one
		notExt bool   // the error wraps fs.ErrNotExist
	}{
		{path: "/", follow: true, want: 1},
		{path: "", follow: true, want: 1},
		{path: "/boot/grub/grub.cfg", follow: true, want: 4},
		{path: "boot/grub/grub.cfg", follow: true, want: 4},
		{path: "/boot/./grub/../grub//grub.cfg", follow: true, want: 4},
		{path: "/../../boot", follow: true, want: 2},
		{path: "/boot/vmlinuz", follow: true, want: 6},
		{path: "/boot/vmlinuz", follow: false, want: 5},
		{path: "/abs/grub.cfg", follow: false, want: 4},
		{path: "/abs", follow: false, want: 7},
		{path: "/abs", follow: true, want: 3},
		{path: "/up", follow: true, want: 4},
		{path: "/boot/nope", follow: true, err: "ext4: /boot/nope: file does not exist", notExt: true},
		{path: "/boot/vmlinuz-6.1/x", follow: true, err: "ext4: /boot/vmlinuz-6.1/x: boot/vmlinuz-6.1 is not a directory"},
		{path: "/loop", follow: true, err: "ext4: /loop: more than 40 symlinks"},
		{path: "/loop/x", follow: false, err: "more than 40 symlinks"},
		{path: "/bad", follow: true, err: "empty symlink"},
		{path: "/broken", follow: true, err: "inode 11: unreadable"},
		{path: "/boot/again/grub", follow: true, err: "ext4: /boot/again/grub: directory loop: boot/again is inode 2, also its own ancestor"},
		{path: strings.Repeat("./", MaxSteps+1), follow: true, err: "more than 4096 path components"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			got, err := Resolve[*node](tree(), "ext4", tc.path, tc.follow)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				assert.Equal(t, tc.notExt, errors.Is(err, fs.ErrNotExist))
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got.num)
		})
	}
}

// FuzzResolve: any path on a tree with loops ends, in bounded work.
func FuzzResolve(f *testing.F) {
	for _, s := range []string{"/boot/grub/grub.cfg", "/up", "/loop", "/boot/again/again/grub", "../abs/../up", "/abs/../../boot/vmlinuz"} {
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, path string, follow bool) {
		m := tree()
		n, err := Resolve[*node](m, "ext4", path, follow)
		if err == nil {
			require.NotNil(t, n)
		}
		require.LessOrEqual(t, m.reads, MaxSteps)
	})
}
