package qcow2

import (
	"encoding/json"
	"iter"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/disk/disktest"
)

// Measure gives the size of the file the writer then writes, for the
// content measured and for a disk full of data, and agrees with qemu-img
// measure where the layouts are the same.
func TestMeasure(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  Options
		size int64
	}{
		{"default", Options{}, 9<<20 + 3*512},
		{"unaligned size", Options{}, 1<<20 + 1000},
		{"512-byte clusters, many refcount blocks", Options{ClusterSize: 512}, 48 << 20},
		{"2 MiB clusters", Options{ClusterSize: 2 << 20}, 9<<20 + 512},
		{"empty", Options{}, 0},
		{"compat 0.10", Options{Compat: "0.10"}, 9 << 20},
		{"1-bit refcounts", Options{RefcountBits: 1}, 9 << 20},
		{"64-bit refcounts, 512-byte clusters", Options{RefcountBits: 64, ClusterSize: 512}, 16 << 20},
		{"extended L2", Options{ExtendedL2: true}, 9 << 20},
		{"preallocation=full", Options{Preallocation: "full"}, 9 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := disktest.RequireMeasure(t, tc.size,
				func(size int64, data iter.Seq[disk.Extent]) (disk.Measurement, error) {
					return Measure(size, data, tc.opt)
				},
				func(out *disk.Output, path string, size int64) (disk.Writer, error) {
					return Create(out, path, size, tc.opt)
				},
				func(path string) []string { return []string{path} })

			cs := tc.opt.ClusterSize
			if cs == 0 {
				cs = defaultClusterSize
			}
			raw := filepath.Join(t.TempDir(), "src.raw")
			disktest.WriteSparse(t, raw, disktest.Runs(tc.size, 1, disktest.MeasureRuns...))
			var qm disk.Measurement
			qopt := "cluster_size=" + strconv.FormatInt(cs, 10)
			if tc.opt.Compat != "" {
				qopt += ",compat=" + tc.opt.Compat
			}
			if tc.opt.Preallocation != "" {
				qopt += ",preallocation=" + tc.opt.Preallocation
			}
			if tc.opt.ExtendedL2 {
				qopt += ",extended_l2=on"
			}
			if tc.opt.RefcountBits != 0 {
				qopt += ",refcount_bits=" + strconv.Itoa(tc.opt.RefcountBits)
			}
			out := disktest.QemuImg(t, "measure", "--output=json", "-O", "qcow2", "-o", qopt, raw)
			require.NoError(t, json.Unmarshal([]byte(out), &qm))
			assert.Equal(t, qm.FullyAllocated, m.FullyAllocated, "qemu-img's fully allocated")
			if cs >= 64<<10 {
				// With smaller clusters qemu-img counts an L2 table for
				// every part of the disk; the writer makes only those the
				// data needs.
				assert.Equal(t, qm.Required, m.Required, "qemu-img's required")
			}
		})
	}
}

func TestMeasureRefusesCompression(t *testing.T) {
	_, err := Measure(1<<20, disk.AllData(1<<20), Options{Compress: true})
	require.ErrorContains(t, err, "compressed")
	_, err = Measure(1<<20, disk.AllData(1<<20), Options{ClusterSize: 3000})
	require.ErrorContains(t, err, "cluster size")
}
