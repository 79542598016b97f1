package vhd

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/disk/disktest"
)

// TestDifferencingChains reads chains of differencing disks, and names
// loops and chains deeper than MaxChainDepth. qemu-img cannot make one
// (7.2: "Backing file not supported for file format 'vpc'"), so the
// children are laid out as Hyper-V lays them (makeChild, whose reading
// libvhdi confirms in TestReadDifferencing), each naming its parent by a
// relative W2ru locator.
func TestDifferencingChains(t *testing.T) {
	dir := t.TempDir()
	const size = 4 << 20
	want := chainBase(t, dir, size)
	// Every link has the same unique id as the base, so any link is a
	// valid parent of any other: only the locators make the chain.
	makeChild(t, filepath.Join(dir, "l01.vhd"), filepath.Join(dir, "l00.vhd"), chainID, size)
	first, err := os.ReadFile(filepath.Join(dir, "l01.vhd"))
	require.NoError(t, err)
	link := func(name, parent string) {
		b := bytes.Replace(first, utf16le(`.\l00.vhd`), utf16le(`.\`+parent), 1)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), b, 0o644))
	}
	for i := 2; i <= MaxChainDepth+1; i++ {
		link(fmt.Sprintf("l%02d.vhd", i), fmt.Sprintf("l%02d.vhd", i-1))
	}
	link("la.vhd", "lb.vhd")
	link("lb.vhd", "la.vhd")
	link("ls.vhd", "ls.vhd")
	link("lc.vhd", "la.vhd")

	tests := []struct {
		name  string
		leaf  string
		chain int
		err   string
	}{
		{"one child", "l01.vhd", 1, ""},
		{"a chain of three", "l03.vhd", 3, ""},
		{"as deep as allowed", fmt.Sprintf("l%02d.vhd", MaxChainDepth-1), MaxChainDepth - 1, ""},
		{"one too deep", fmt.Sprintf("l%02d.vhd", MaxChainDepth+1), 0, "deeper than 64"},
		{"two disks naming each other", "la.vhd", 0, "parent loop"},
		{"a disk naming itself", "ls.vhd", 0, "parent loop"},
		{"a chain ending in a loop", "lc.vhd", 0, "parent loop"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.leaf)
			img, err := Open(p)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				require.ErrorContains(t, err, dir)
				return
			}
			require.NoError(t, err)
			defer img.Close()
			assert.Len(t, img.Info().Chain, tc.chain)
			assert.Equal(t, filepath.Join(dir, "l00.vhd"), img.Info().Chain[tc.chain-1])
			require.True(t, bytes.Equal(want, disktest.ReadAll(t, img)), "the chain reads as its first child")
			disktest.RequireExtentsCover(t, img, want)
		})
	}
}

// chainID is the unique id makeChild gives its children.
var chainID = [16]byte{0x42}

// chainBase writes l00.vhd, a dynamic disk with the children's unique id,
// and returns what its first child reads as.
func chainBase(t *testing.T, dir string, size int64) []byte {
	raw := filepath.Join(dir, "base.raw")
	disktest.WriteSparse(t, raw, disktest.Pattern(size, 5))
	src, err := disk.OpenRaw(raw)
	require.NoError(t, err)
	base := filepath.Join(dir, "l00.vhd")
	convertTo(t, src, base, Options{ForceSize: true})
	src.Close()
	b, err := os.ReadFile(base)
	require.NoError(t, err)
	ft, err := decodeFooter(b[len(b)-footerSize:])
	require.NoError(t, err)
	ft.UniqueID = chainID
	enc := ft.encode()
	copy(b, enc)
	copy(b[len(b)-footerSize:], enc)
	require.NoError(t, os.WriteFile(base, b, 0o644))
	// What makeChild's child reads as: the base with the child's sectors.
	tmp := filepath.Join(t.TempDir(), "probe.vhd")
	return makeChild(t, tmp, base, chainID, size)
}

// A differencing disk whose parent stayed behind cannot be opened, and the
// error is an *fs.PathError naming the parent as its locator does, each
// place looked at once; its size is still its own footer's.
func TestCapacityWithoutParent(t *testing.T) {
	dir := t.TempDir()
	const size = 4 << 20
	chainBase(t, dir, size)
	child := filepath.Join(dir, "l01.vhd")
	makeChild(t, child, filepath.Join(dir, "l00.vhd"), chainID, size)
	require.NoError(t, os.Remove(filepath.Join(dir, "l00.vhd")))

	_, err := Open(child)
	var pe *fs.PathError
	require.ErrorAs(t, err, &pe)
	assert.ErrorIs(t, err, fs.ErrNotExist)
	assert.Equal(t, filepath.Join(dir, "l00.vhd"), pe.Path)
	assert.Equal(t, 1, strings.Count(err.Error(), filepath.Join(dir, "l00.vhd")), "each place looked at once: %v", err)

	got, err := Capacity(child)
	require.NoError(t, err)
	assert.Equal(t, int64(size), got)

	// What is not a VHD has no size.
	bad := filepath.Join(dir, "bad.vhd")
	require.NoError(t, os.WriteFile(bad, make([]byte, 1024), 0o644))
	_, err = Capacity(bad)
	require.ErrorContains(t, err, bad)
}
