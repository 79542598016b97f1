package qcow2

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/disk/disktest"
)

// TestWriteQemuReads writes images in every option combination and has
// qemu-img check them, compare them with the source both ways and report
// their sizes; our reader reads them back too.
func TestWriteQemuReads(t *testing.T) {
	tests := []struct {
		name string
		opt  Options
		size int64
	}{
		{"default", Options{}, 9<<20 + 3*512},
		{"unaligned size", Options{}, 1<<20 + 1000},
		{"512-byte clusters", Options{ClusterSize: 512}, 9 << 20},
		{"4 KiB clusters", Options{ClusterSize: 4096}, 9 << 20},
		{"2 MiB clusters", Options{ClusterSize: 2 << 20}, 9<<20 + 512},
		{"zlib compressed", Options{Compress: true}, 9<<20 + 3*512},
		{"zlib compressed, 512-byte clusters", Options{Compress: true, ClusterSize: 512}, 9 << 20},
		{"zstd compressed", Options{Compress: true, CompressionType: "zstd"}, 9<<20 + 3*512},
		{"zstd compressed level 9", Options{Compress: true, CompressionType: "zstd", CompressionLevel: 9}, 9 << 20},
		{"empty", Options{}, 5 << 20},
		{"compat 0.10", Options{Compat: "0.10"}, 9<<20 + 3*512},
		{"compat 0.10 compressed", Options{Compat: "0.10", Compress: true, ClusterSize: 4096}, 9 << 20},
		{"lazy refcounts", Options{LazyRefcounts: true}, 9 << 20},
		{"1-bit refcounts", Options{RefcountBits: 1}, 9 << 20},
		{"1-bit refcounts compressed", Options{RefcountBits: 1, Compress: true, ClusterSize: 4096}, 9 << 20},
		{"2-bit refcounts compressed, 512-byte clusters", Options{RefcountBits: 2, Compress: true, ClusterSize: 512}, 3 << 20},
		{"8-bit refcounts, 512-byte clusters", Options{RefcountBits: 8, ClusterSize: 512}, 3 << 20},
		{"64-bit refcounts compressed", Options{RefcountBits: 64, Compress: true, ClusterSize: 4096}, 9 << 20},
		{"extended L2", Options{ExtendedL2: true}, 9<<20 + 3*512},
		{"extended L2, 16 KiB clusters, compressed", Options{ExtendedL2: true, ClusterSize: 16 << 10, Compress: true}, 9 << 20},
		{"extended L2, 2 MiB clusters", Options{ExtendedL2: true, ClusterSize: 2 << 20}, 9<<20 + 512},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			want := disktest.Pattern(tc.size, tc.size)
			if tc.name == "empty" {
				want = make([]byte, tc.size)
			}
			raw := filepath.Join(dir, "src.raw")
			disktest.WriteSparse(t, raw, want)
			src, err := disk.OpenRaw(raw)
			require.NoError(t, err)
			defer src.Close()
			q := filepath.Join(dir, "out.qcow2")
			convertTo(t, src, q, tc.opt)

			assert.Contains(t, disktest.QemuImg(t, "check", q), "No errors were found")
			disktest.QemuImg(t, "compare", "-f", "qcow2", "-F", "raw", q, raw)
			disktest.QemuImg(t, "compare", "-f", "raw", "-F", "qcow2", raw, q)
			var info struct {
				VirtualSize int64 `json:"virtual-size"`
				ClusterSize int64 `json:"cluster-size"`
				Specific    struct {
					Data struct {
						Compat          string `json:"compat"`
						CompressionType string `json:"compression-type"`
						RefcountBits    int    `json:"refcount-bits"`
						LazyRefcounts   bool   `json:"lazy-refcounts"`
						ExtendedL2      bool   `json:"extended-l2"`
					} `json:"data"`
				} `json:"format-specific"`
			}
			require.NoError(t, json.Unmarshal([]byte(disktest.QemuImg(t, "info", "--output", "json", q)), &info))
			assert.Equal(t, (tc.size+511)&^511, info.VirtualSize)
			wantCompat, wantBits := "1.1", 16
			if tc.opt.Compat != "" {
				wantCompat = tc.opt.Compat
			}
			if tc.opt.RefcountBits != 0 {
				wantBits = tc.opt.RefcountBits
			}
			assert.Equal(t, wantCompat, info.Specific.Data.Compat)
			assert.Equal(t, wantBits, info.Specific.Data.RefcountBits)
			assert.Equal(t, tc.opt.LazyRefcounts, info.Specific.Data.LazyRefcounts)
			assert.Equal(t, tc.opt.ExtendedL2, info.Specific.Data.ExtendedL2)
			if tc.opt.CompressionType != "" {
				assert.Equal(t, tc.opt.CompressionType, info.Specific.Data.CompressionType)
			}

			img, err := Open(q)
			require.NoError(t, err)
			defer img.Close()
			got := disktest.ReadAll(t, img)
			require.True(t, string(got[:tc.size]) == string(want), "contents differ")
			disktest.RequireExtentsCover(t, img, append(want, make([]byte, img.Size()-tc.size)...))
			res, err := Check(q)
			require.NoError(t, err)
			assert.Empty(t, res.Problems)
			if tc.name == "empty" {
				fi, err := os.Stat(q)
				require.NoError(t, err)
				assert.Less(t, fi.Size(), int64(1<<20), "zero chunks are not written")
			}
		})
	}
}

// A disk larger than one refcount block's reach (2 GiB of file with 64 KiB
// clusters, 128 KiB with 512-byte ones) needs several refcount blocks,
// written as the file grows past each.
func TestWriteManyRefcountBlocks(t *testing.T) {
	for _, comp := range []bool{false, true} {
		dir := t.TempDir()
		const size = 3 << 20
		want := make([]byte, size)
		for i := range want {
			want[i] = byte(i*7/512 + 1)
		}
		q := filepath.Join(dir, "out.qcow2")
		convertTo(t, disk.FromReaderAt(bytesReaderAt(want), size), q, Options{ClusterSize: 512, Compress: comp})
		assert.Contains(t, disktest.QemuImg(t, "check", q), "No errors were found")
		require.True(t, string(disktest.RawOf(t, q, "")) == string(want))
	}
}

// A 1 TiB disk holding 64 KiB converts to a small file with small tables.
func TestWriteHugeSparse(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "big.raw")
	f, err := os.Create(raw)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte("far away"), 700<<30)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(1<<40))
	require.NoError(t, f.Close())
	src, err := disk.OpenRaw(raw)
	require.NoError(t, err)
	defer src.Close()
	q := filepath.Join(dir, "big.qcow2")
	convertTo(t, src, q, Options{})
	fi, err := os.Stat(q)
	require.NoError(t, err)
	assert.Less(t, fi.Size(), int64(1<<20))
	assert.Contains(t, disktest.QemuImg(t, "check", q), "No errors were found")
}

func TestCreateRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, path string
		size       int64
		opt        Options
		want       string
	}{
		{"stdout", "-", 1 << 20, Options{}, "standard output"},
		{"bad cluster size", "x.qcow2", 1 << 20, Options{ClusterSize: 3000}, "cluster size"},
		{"compressed 2 MiB clusters", "x.qcow2", 1 << 20, Options{ClusterSize: 2 << 20, Compress: true}, "compression needs"},
		{"L1 too large", "x.qcow2", 1 << 50, Options{ClusterSize: 512}, "L1 table"},
		{"extended L2, 4 KiB clusters", "x.qcow2", 1 << 20, Options{ClusterSize: 4096, ExtendedL2: true}, "at least 16 KiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := disk.NewOutput(false)
			defer out.Abort()
			_, err := Create(out, filepath.Join(t.TempDir(), tc.path), tc.size, tc.opt)
			if tc.path == "-" {
				_, err = Create(out, "-", tc.size, tc.opt)
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestParseOptions(t *testing.T) {
	o, err := ParseOptions(map[string]string{"compress": "on", "compression_type": "ZSTD", "cluster_size": "128k", "compat": "1.1", "refcount_bits": "16"})
	require.NoError(t, err)
	assert.Equal(t, Options{Compress: true, CompressionType: "zstd", ClusterSize: 128 << 10, Compat: "1.1", RefcountBits: 16}, o)
	for _, tc := range []struct{ k, v, want string }{
		{"compat", "0.9", "compat"},
		{"refcount_bits", "12", "refcount_bits"},
		{"refcount_bits", "128", "refcount_bits"},
		{"cluster_size", "1000", "cluster_size"},
		{"cluster_size", "4M", "cluster_size"},
		{"compression_type", "lz4", "compression_type"},
		{"compress", "maybe", "compress"},
		{"extended_l2", "maybe", "extended_l2"},
		{"backing_file", "x", "backing_file"},
		{"frobnicate", "1", `"frobnicate"`},
	} {
		_, err := ParseOptions(map[string]string{tc.k: tc.v})
		require.Error(t, err, tc.k)
		assert.Contains(t, err.Error(), tc.want)
	}
	// Of several bad settings the first by name is reported, every time.
	for i := 0; i < 20; i++ {
		_, err := ParseOptions(map[string]string{"zz": "1", "compat": "0.9", "cluster_size": "3k"})
		require.ErrorContains(t, err, "cluster_size")
	}
	o, err = ParseOptions(map[string]string{"cluster_size": "0.5M", "compress": "yes", "lazy_refcounts": "n"})
	require.NoError(t, err)
	assert.Equal(t, Options{Compress: true, ClusterSize: 512 << 10}, o)
	o, err = ParseOptions(map[string]string{"compat": "v2", "refcount_bits": "16"})
	require.NoError(t, err)
	assert.Equal(t, Options{Compat: "0.10", RefcountBits: 16}, o)
	o, err = ParseOptions(map[string]string{"compat": "v3", "refcount_bits": "1", "lazy_refcounts": "on"})
	require.NoError(t, err)
	assert.Equal(t, Options{Compat: "1.1", RefcountBits: 1, LazyRefcounts: true}, o)
	// What version 2 cannot hold is refused, as qemu-img refuses it.
	for _, kv := range []map[string]string{
		{"compat": "0.10", "compression_type": "zstd"},
		{"compat": "0.10", "refcount_bits": "8"},
		{"compat": "0.10", "lazy_refcounts": "on"},
		{"compat": "0.10", "extended_l2": "on"},
	} {
		_, err := ParseOptions(kv)
		require.ErrorContains(t, err, "compat=1.1", kv)
	}
}

// With extended L2 entries only the subclusters holding data are
// allocated, as qemu-img map then reports them: 4 KiB and 1 KiB written
// into two 64 KiB clusters map as 4 KiB and one 2 KiB subcluster of data.
func TestWriteExtendedL2Subclusters(t *testing.T) {
	dir := t.TempDir()
	const size = 4 << 20
	want := make([]byte, size)
	for i := 100 << 10; i < 104<<10; i++ {
		want[i] = 1
	}
	for i := 1 << 20; i < 1<<20+1024; i++ {
		want[i] = 2
	}
	q := filepath.Join(dir, "sub.qcow2")
	convertTo(t, disk.FromReaderAt(bytesReaderAt(want), size), q, Options{ExtendedL2: true})
	assert.Contains(t, disktest.QemuImg(t, "check", q), "No errors were found")
	var m []struct {
		Start, Length int64
		Data          bool
	}
	require.NoError(t, json.Unmarshal([]byte(disktest.QemuImg(t, "map", "--output=json", q)), &m))
	var data []int64
	for _, e := range m {
		if e.Data {
			data = append(data, e.Start, e.Length)
		}
	}
	assert.Equal(t, []int64{100 << 10, 4 << 10, 1 << 20, 2 << 10}, data)
	require.True(t, string(disktest.RawOf(t, q, "")) == string(want))
}

// preallocation=metadata|falloc|full allocate every cluster, as qemu-img
// does: qemu-img map then reports all of the disk as data, the file is as
// large as a full image, and only falloc and full take its blocks.
func TestWritePreallocation(t *testing.T) {
	const size = 8 << 20
	want := disktest.Runs(size, 1, [2]int64{100 << 10, 4 << 10}, [2]int64{5 << 20, 300 << 10})
	for _, tc := range []struct {
		mode     string
		cs       int64
		extended bool
	}{
		{"metadata", 0, false}, {"falloc", 0, false}, {"full", 0, false},
		{"metadata", 2 << 20, false}, {"full", 16 << 10, true},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			dir := t.TempDir()
			raw := filepath.Join(dir, "src.raw")
			disktest.WriteSparse(t, raw, want)
			src, err := disk.OpenRaw(raw)
			require.NoError(t, err)
			defer src.Close()
			q := filepath.Join(dir, "pre.qcow2")
			convertTo(t, src, q, Options{Preallocation: tc.mode, ClusterSize: tc.cs, ExtendedL2: tc.extended})
			assert.Contains(t, disktest.QemuImg(t, "check", q), "No errors were found")
			require.True(t, string(disktest.RawOf(t, q, "")) == string(want), "contents differ")
			var m []struct {
				Start, Length int64
				Data          bool
			}
			require.NoError(t, json.Unmarshal([]byte(disktest.QemuImg(t, "map", "--output=json", q)), &m))
			var data int64
			for _, e := range m {
				if e.Data {
					data += e.Length
				}
			}
			assert.Equal(t, int64(size), data, "every cluster allocated")
			opt := Options{Preallocation: tc.mode, ClusterSize: tc.cs, ExtendedL2: tc.extended}
			meas, err := Measure(size, disk.AllData(size), opt)
			require.NoError(t, err)
			fi, err := os.Stat(q)
			require.NoError(t, err)
			assert.Equal(t, meas.FullyAllocated, fi.Size(), "the size Measure says")
			if tc.mode != "metadata" {
				assert.Equal(t, meas.Required, fi.Size(), "the space Measure says")
			}
			// Required counts space, which metadata's holes do not take,
			// as qemu-img measure counts it.
			var qm disk.Measurement
			qopt := "preallocation=" + tc.mode + ",cluster_size=" + strconv.FormatInt(max(tc.cs, defaultClusterSize), 10)
			if tc.extended {
				qopt += ",extended_l2=on"
			}
			require.NoError(t, json.Unmarshal([]byte(disktest.QemuImg(t, "measure", "--output=json", "-O", "qcow2", "-o", qopt, raw)), &qm))
			var extErr error
			dm, err := Measure(size, disk.DataExtents(src, &extErr), opt)
			require.NoError(t, err)
			require.NoError(t, extErr)
			if tc.cs == 0 { // qemu-img's estimate differs for other cluster sizes (see TestMeasure)
				assert.Equal(t, qm.FullyAllocated, dm.FullyAllocated, "qemu-img's fully allocated")
				assert.Equal(t, qm.Required, dm.Required, "qemu-img's required")
			}
			st := fi.Sys().(*syscall.Stat_t)
			switch {
			case tc.mode == "metadata" && tc.cs == 0:
				assert.Less(t, st.Blocks*512, int64(size)/4, "zero clusters are holes")
			case tc.mode != "metadata":
				assert.GreaterOrEqual(t, st.Blocks*512, int64(size), "every block taken")
			}
			img, err := Open(q)
			require.NoError(t, err)
			defer img.Close()
			require.True(t, string(disktest.ReadAll(t, img)) == string(want))
		})
	}
	out := disk.NewOutput(false)
	defer out.Abort()
	_, err := Create(out, filepath.Join(t.TempDir(), "x.qcow2"), 1<<20, Options{Preallocation: "full", Compress: true})
	require.ErrorContains(t, err, "exclude each other")
}
