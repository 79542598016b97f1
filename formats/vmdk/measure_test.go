package vmdk

import (
	"iter"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/disk/disktest"
)

// files are the image at path and its extent files.
func files(path string) []string {
	m, _ := filepath.Glob(path + "*")
	return m
}

func TestMeasure(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  Options
		size int64
	}{
		{"monolithicSparse", Options{Subformat: MonolithicSparse}, 48 << 20},
		{"monolithicSparse, unaligned", Options{Subformat: MonolithicSparse, ZeroedGrain: true}, 45<<20 + 512},
		{"twoGbMaxExtentSparse", Options{Subformat: TwoGbMaxExtentSparse}, 48 << 20},
		{"monolithicFlat", Options{Subformat: MonolithicFlat}, 20 << 20},
		{"twoGbMaxExtentFlat", Options{Subformat: TwoGbMaxExtentFlat}, 9<<20 + 512},
	} {
		t.Run(tc.name, func(t *testing.T) {
			disktest.RequireMeasure(t, tc.size,
				func(size int64, data iter.Seq[disk.Extent]) (disk.Measurement, error) {
					return Measure("out", size, data, tc.opt)
				},
				func(out *disk.Output, path string, size int64) (disk.Writer, error) {
					return Create(out, path, size, tc.opt)
				},
				files)
		})
	}
}

// A disk over 2 GiB split into sparse extents: each extent counts its own
// tables and the grains that fall into it.
func TestMeasureSplitExtents(t *testing.T) {
	const size = 4<<30 + 3<<20 // three extents
	runs := [][2]int64{{0, 64 << 10}, {2<<30 - 64<<10, 192 << 10}, {size - 1<<20, 1 << 20}}
	src := disktest.OpenRawOf(t, disktest.Runs(size, 1, runs...))
	opt := Options{Subformat: TwoGbMaxExtentSparse}
	path := filepath.Join(t.TempDir(), "big.vmdk")
	var extErr error
	m, err := Measure(path, size, disk.DataExtents(src, &extErr), opt)
	require.NoError(t, err)
	require.NoError(t, extErr)
	disktest.Write(t, src, path, func(out *disk.Output, path string, size int64) (disk.Writer, error) {
		return Create(out, path, size, opt)
	})
	got := files(filepath.Join(filepath.Dir(path), "big"))
	require.Len(t, got, 4, "descriptor and three extents")
	assert.Equal(t, disktest.FileSizes(t, got...), m.Required)
	assert.Greater(t, m.FullyAllocated, int64(size))
}

func TestMeasureRefusesStreamOptimized(t *testing.T) {
	_, err := Measure("x.vmdk", 1<<20, disk.AllData(1<<20), Options{Subformat: StreamOptimized})
	require.ErrorContains(t, err, "compressed")
}
