package vdi

import (
	"iter"
	"testing"

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
		{"dynamic, a size no multiple of a block", Options{}, 45<<20 + 512},
		{"static", Options{Static: true}, 20 << 20},
		{"dynamic, smaller than most runs", Options{}, 512 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			disktest.RequireMeasure(t, tc.size,
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
