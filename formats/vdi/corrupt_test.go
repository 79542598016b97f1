package vdi

import (
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk/disktest"
)

// qemuVDI is a VDI qemu-img wrote of a 3 MiB disk with data in its first
// and last blocks: map [0, unallocated, 1], data at 0x400, the file 0x400
// + 2 MiB long; static, every block allocated in order.
func qemuVDI(t *testing.T, static bool) []byte {
	t.Helper()
	dir := t.TempDir()
	raw := filepath.Join(dir, "src.raw")
	disktest.WriteSparse(t, raw, disktest.Runs(3<<20, 1, [2]int64{0, 4096}, [2]int64{2<<20 + 100, 5000}))
	p := filepath.Join(dir, "q.vdi")
	o := map[bool]string{false: "static=off", true: "static=on"}[static]
	disktest.QemuImg(t, "convert", "-f", "raw", "-O", "vdi", "-o", o, raw, p)
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return b
}

func put32(b []byte, off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }

// TestCorruptInput damages a qemu-written VDI field by field; each is
// refused with an error naming the file, the field and its offset.
func TestCorruptInput(t *testing.T) {
	orig := qemuVDI(t, false)
	set := func(off int, v uint32) func([]byte) []byte {
		return func(b []byte) []byte { put32(b, off, v); return b }
	}
	tests := []struct {
		name   string
		mutate func(b []byte) []byte
		want   string
	}{
		{"too short", func(b []byte) []byte { return b[:0x100] }, "file of 256 bytes is too short for a header"},
		{"signature", set(offSignature, 0x12345678), "header: signature at 0x40: 0x12345678"},
		{"version 2.0", set(offVersion, 0x00020000), "header: version at 0x44: 2.0, want 1.x"},
		{"header size", set(offHeaderSize, 0x100), "header: header size at 0x48: 0x100"},
		{"image type 9", set(offImageType, 9), "header: image type at 0x4c: 9, want 1 (dynamic) or 2 (static)"},
		{"differencing", set(offImageType, typeDiff), "image type at 0x4c: 4, a differencing image: its parent is named only by VirtualBox's .vbox file"},
		{"undo", set(offImageType, typeUndo), "image type at 0x4c: 3, an undo image"},
		{"link UUID", set(offUUIDLink, 7), "header: link UUID at 0x1a8: 00000007-0000-0000-0000-000000000000 names a parent"},
		{"parent UUID", set(offUUIDParent+12, 1), "header: parent UUID at 0x1b8"},
		{"map inside the header", set(offOffsetBmap, 0x100), "header: block map offset at 0x154: 0x100 lies inside the header, which ends at 0x1c8"},
		{"map past the end", set(offOffsetBmap, 0x7FFFFE00), "block map offset at 0x154: map at 0x7ffffe00 of 3 entries ends at 0x7ffffe0c, past the end of the file"},
		{"block size 3", set(offBlockSize, 3), "header: block size at 0x178: 3, want a power of two"},
		{"block size 0", set(offBlockSize, 0), "header: block size at 0x178: 0"},
		{"block size 256", set(offBlockSize, 256), "header: block size at 0x178: 256"},
		{"block size not a power of two", set(offBlockSize, 3<<20), "header: block size at 0x178: 3145728"},
		{"block extra 3", set(offBlockExtra, 3), "header: block extra size at 0x17c: 3"},
		{"too many blocks", set(offBlocksInImage, 0x40000000), "header: blocks in image at 0x180: 1073741824"},
		{"disk size past the blocks", func(b []byte) []byte {
			binary.LittleEndian.PutUint64(b[offDiskSize:], 1<<40)
			return b
		}, "header: disk size at 0x170: 1099511627776 needs 1048576 blocks of 1048576 bytes, the header has 3"},
		{"huge disk size", func(b []byte) []byte {
			binary.LittleEndian.PutUint64(b[offDiskSize:], 1<<63+5)
			return b
		}, "header: disk size at 0x170"},
		{"data inside the map", set(offOffsetData, 0x200), "header: data offset at 0x158: 0x200 lies inside the block map, which ends at 0x20c"},
		{"entry past the blocks", set(0x200, 7), "block map entry 0 at 0x200: data block 7, past the image's 3 blocks"},
		{"entry past the file", set(0x204, 2), "block map entry 1 at 0x204: data block 2 at 0x200400 ends at 0x300400, past the end of the file (0x200400)"},
		{"two entries, one block", set(0x208, 0), "block map entry 2 at 0x208: data block 0 is also entry 0's"},
		{"file cut short", func(b []byte) []byte { return b[:len(b)-1] }, "block map entry 2 at 0x208: data block 1 at 0x100400 ends at 0x200400, past the end of the file (0x2003ff)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "bad.vdi")
			require.NoError(t, os.WriteFile(p, tc.mutate(append([]byte(nil), orig...)), 0o644))
			_, err := Open(p)
			require.Error(t, err)
			require.ErrorContains(t, err, "vdi "+p+": ")
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// TestCheckProblems damages qemu-written VDIs in ways a reader survives:
// Check names each problem with its offset, lists every bad map entry
// (Open stops at the first), and qemu-img check agrees that the images
// qemu can open are corrupt.
func TestCheckProblems(t *testing.T) {
	dynamic, static := qemuVDI(t, false), qemuVDI(t, true)
	tests := []struct {
		name   string
		orig   []byte
		mutate func(b []byte)
		want   []string // problems, as " at OFFSET: WHAT"
		qemu   bool     // qemu-img check finds it corrupt
	}{
		{"allocated count", dynamic, func(b []byte) { put32(b, offBlocksAlloc, 1) }, []string{
			" at 0x208: block map entry 2: data block 1 is not below the header's 1 allocated blocks: the next block written would reuse it",
			" at 0x184: header: blocks allocated 1, the block map has 2",
		}, true},
		{"every entry one block", dynamic, func(b []byte) { put32(b, 0x204, 0); put32(b, 0x208, 0) }, []string{
			" at 0x204: block map entry 1: data block 0 is also entry 0's",
			" at 0x208: block map entry 2: data block 0 is also entry 0's",
			" at 0x184: header: blocks allocated 2, the block map has 3",
		}, true},
		{"static with a hole", static, func(b []byte) { put32(b, 0x204, unallocated) }, []string{
			" at 0x204: block map entry 1: block 1 is not allocated in a static image",
			" at 0x184: header: blocks allocated 3, the block map has 2",
		}, true},
		{"what qemu and VirtualBox refuse", dynamic, func(b []byte) {
			put32(b, offVersion, 0x00010002)
			put32(b, offSectorSize, 4096)
			copy(b[offUUIDImage:offUUIDImage+32], make([]byte, 32))
		}, []string{
			" at 0x44: header: version 1.2: qemu reads only 1.1",
			" at 0x168: header: sector size 4096: qemu reads only 512",
			" at 0x188: header: the image UUID is zero, which VirtualBox refuses",
			" at 0x198: header: the modification UUID is zero, which VirtualBox refuses",
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := append([]byte(nil), tc.orig...)
			tc.mutate(b)
			p := filepath.Join(t.TempDir(), "bad.vdi")
			require.NoError(t, os.WriteFile(p, b, 0o644))
			probs, err := Check(p)
			require.NoError(t, err)
			var got []string
			for _, pr := range probs {
				got = append(got, pr.String())
			}
			want := make([]string, len(tc.want))
			for i, w := range tc.want {
				want[i] = p + w
			}
			assert.Equal(t, want, got)
			if tc.qemu {
				out, err := exec.Command("qemu-img", "check", "-f", "vdi", p).CombinedOutput()
				var exit *exec.ExitError
				require.True(t, errors.As(err, &exit), "qemu-img check: %v\n%s", err, out)
				assert.Equal(t, 2, exit.ExitCode(), "qemu-img check finds corruption:\n%s", out)
			}
		})
	}
}
