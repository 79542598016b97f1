package qcow2

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmconv/vmconv/internal/testutil"
)

// seedFiles are images qemu-img and qemu-io wrote (testdata/qemu/README.md
// says how): the small ones, with 512-byte clusters, let the fuzzer reach
// every table in a few kilobytes.
var seedFiles = []string{"v3.qcow2", "v2.qcow2", "zlib.qcow2", "zstd.qcow2", "extl2.qcow2", "child.qcow2",
	"small-512.qcow2", "small-zstd.qcow2", "small-zlib.qcow2", "small-v2.qcow2", "small-child.qcow2", "small-snap.qcow2"}

func seed(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "qemu", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzOpen opens arbitrary bytes as an image (header, extensions, L1 and
// L2 tables, compressed clusters), maps and reads what it accepts and runs
// the checker: errors only, no panic, no hang, and allocations bounded by
// the input's size, not by the sizes its fields claim.
func FuzzOpen(f *testing.F) {
	for _, n := range seedFiles {
		f.Add(seed(f, n))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// The reader's own bounds: the L2 cache (32 MiB), a cluster buffer
		// per read (2 MiB clusters at most), tables no larger than the file.
		testutil.Bounded(t, 160<<20+32*uint64(len(data)), func() { fuzzBody(t, data) })
	})
}

func fuzzBody(t *testing.T, data []byte) {
	{
		r := bytes.NewReader(data)
		img, err := newImage("fuzz.qcow2", r, int64(len(data)))
		if err != nil {
			return
		}
		// Map a bounded window at each end: a crafted L1 may point every
		// entry at one table, which makes a whole walk as long as a real
		// disk of that size.
		const window = 64 << 20
		for _, start := range []int64{0, max(0, img.Size()-window)} {
			testutil.WalkWindow(t, img, start, window) // an Extents error is an answer here
		}
		if img.Size() <= window {
			check("fuzz.qcow2", r, int64(len(data)))
		}
		// Read as its first snapshot too: another L1 table, the same bounds.
		if sn := img.Snapshots(); len(sn) > 0 && img.useSnapshot("snapshot.id="+sn[0].ID) == nil {
			testutil.WalkWindow(t, img, 0, window)
		}
	}
}
