package vmm

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/vmm/internal/probe"
	"github.com/vmconv/vmconv/vmm/loader"
)

func TestLoadKernelCache(t *testing.T) {
	// The probe is built (and cached for the other tests) before the cache
	// directory moves to a temporary one for this test.
	e, err := os.ReadFile(probe.ELF(t))
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	require.NoError(t, err)
	want, err := loader.LoadELF(bytes.NewReader(e), int64(len(e)))
	require.NoError(t, err)
	bz := probe.BzImage(probe.Compress(t, "xz", e))
	k, err := loadKernel(bz)
	require.NoError(t, err)
	assert.Equal(t, want.Segments, k.Segments)
	assert.Equal(t, "xz", k.Compression)
	cached, _ := filepath.Glob(filepath.Join(os.Getenv("XDG_CACHE_HOME"), "vmconv", "vmlinux", "*"))
	require.Len(t, cached, 1)
	c, err := os.ReadFile(cached[0])
	require.NoError(t, err)
	assert.Equal(t, e, c, "the cache holds the unpacked ELF")
	// Second load comes from the cache.
	k2, err := loadKernel(bz)
	require.NoError(t, err)
	assert.Equal(t, want.Segments, k2.Segments)
	assert.Empty(t, k2.Compression)
	// A damaged entry is replaced by a fresh unpacking.
	require.NoError(t, os.WriteFile(cached[0], []byte("junk"), 0o644))
	k3, err := loadKernel(bz)
	require.NoError(t, err)
	assert.Equal(t, want.Segments, k3.Segments)
	c, err = os.ReadFile(cached[0])
	require.NoError(t, err)
	assert.Equal(t, e, c)
}
