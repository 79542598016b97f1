package vhd

import (
	"iter"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/disk/disktest"
)

func TestMeasure(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  Options
		size int64
	}{
		{"dynamic", Options{}, 48 << 20},
		{"dynamic, exact size", Options{ForceSize: true}, 45<<20 + 512},
		{"fixed", Options{Subformat: "fixed"}, 20 << 20},
		{"dynamic, smaller than most runs", Options{ForceSize: true}, 512 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A disk full of data fills the size rounded up to a CHS
			// geometry, which a fully allocated disk counts.
			size, _, _, _, err := sizeFor(tc.size, tc.opt.ForceSize)
			require.NoError(t, err)
			disktest.RequireMeasure(t, size,
				func(size int64, data iter.Seq[disk.Extent]) (disk.Measurement, error) {
					return Measure(size, data, tc.opt)
				},
				func(out *disk.Output, path string, size int64) (disk.Writer, error) {
					return Create(out, path, size, tc.opt)
				},
				func(path string) []string { return []string{path} })
		})
	}
}
