package xfs

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fill repeats s to n bytes, as `yes | head -c` wrote it.
func fill(s string, n int) []byte {
	return bytes.Repeat([]byte(s), n/len(s)+1)[:n]
}

// An image whose files the Linux kernel wrote (testdata/kernel-image.sh;
// xfs_db showed the forms named below when it was made): a file in a
// two-leaf B+tree of 60 one-block extents, a file with a hole and an
// unwritten extent, one- and two-block remote symlinks, a leaf-form
// directory with half its entries removed.
func TestKernelImage(t *testing.T) {
	img, ok := decodeSparse(readSeed(t, kernelImage))
	require.True(t, ok)
	f, err := Open(img, img.size)
	require.NoError(t, err)
	assert.Equal(t, "kernel", f.Label())

	var frag, other []byte
	for j := 0; j < 60; j++ {
		frag = append(frag, fill(fmt.Sprintf("frag %d\n", j), 1024)...)
		other = append(other, fill(fmt.Sprintf("other %d\n", j), 1024)...)
	}
	sparse := make([]byte, 77824)
	copy(sparse, fill("sparse\n", 4096))
	copy(sparse[65536:], fill("tail\n", 4096))
	kernel := fill("kernel\n", 7000)
	for _, tc := range []struct {
		path string
		want []byte
	}{
		{"/boot/grub2/grub.cfg", []byte("set default=0\n")},
		{"/boot/loader/entries/a-6.0.conf", []byte("title Alma\nlinux /vmlinuz-6.0\n")},
		{"/boot/vmlinuz-6.0", kernel},
		{"/boot/vmlinuz", kernel},
		{"/boot/remote1", kernel},
		{"/boot/remote2", kernel},
		{"/frag", frag},
		{"/other", other},
		{"/sparse", sparse},
	} {
		got, err := f.ReadFile(tc.path, MaxFileSize)
		require.NoError(t, err, tc.path)
		assert.True(t, bytes.Equal(tc.want, got), "%s differs", tc.path)
	}
	in, err := f.Lookup("/frag")
	require.NoError(t, err)
	assert.Equal(t, uint8(fmtBtree), in.Format, "frag's data fork")
	maps, err := f.blockMap(in)
	require.NoError(t, err)
	assert.Len(t, maps, 60)

	for name, n := range map[string]int{"/boot/remote1": 500, "/boot/remote2": 990} {
		target, err := f.Readlink(name)
		require.NoError(t, err)
		assert.Equal(t, strings.Repeat("/", n)+"boot/vmlinuz-6.0", target)
	}

	ents, err := f.ReadDir("/dir")
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name)
		b, err := f.ReadFile("/dir/"+e.Name, 100)
		require.NoError(t, err)
		assert.Equal(t, "entry "+strings.TrimPrefix(e.Name, "entry-")+"\n", string(b))
	}
	var want []string
	for i := 1; i < 300; i += 2 {
		want = append(want, fmt.Sprintf("entry-%d", i))
	}
	assert.ElementsMatch(t, want, names)
}
