package qcow2

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmconv/vmconv/internal/testutil"
)

// TestCorruptInput damages a real image field by field: each is refused
// at open or at the read that needs it, with an error naming the file and
// the field or offset.
func TestCorruptInput(t *testing.T) {
	orig := seed(t, "v3.qcow2")
	be := binary.BigEndian
	h := decodeHeader(orig)
	l1 := int(h.L1TableOffset)
	l2 := int(be.Uint64(orig[l1:]) & offsetMask)
	tests := []struct {
		name   string
		mutate func(b []byte) []byte
		want   string
		atRead bool
	}{
		{"truncated header", func(b []byte) []byte { return b[:40] }, "truncated header", false},
		{"bad magic", func(b []byte) []byte { b[0] = 'X'; return b }, "magic", false},
		{"version 4", func(b []byte) []byte { be.PutUint32(b[4:], 4); return b }, "version 4", false},
		{"cluster_bits 30", func(b []byte) []byte { be.PutUint32(b[20:], 30); return b }, "cluster_bits 30", false},
		{"encrypted", func(b []byte) []byte { be.PutUint32(b[32:], 1); return b }, "crypt_method", false},
		{"L1 past end of file", func(b []byte) []byte { be.PutUint64(b[40:], 1<<40); return b }, "L1 table at 0x10000000000", false},
		{"l1_size too small", func(b []byte) []byte { be.PutUint32(b[36:], 0); return b }, "l1_size 0", false},
		{"l1_size huge", func(b []byte) []byte { be.PutUint32(b[36:], 1<<30); return b }, "l1_size", false},
		{"unknown incompatible feature", func(b []byte) []byte { be.PutUint64(b[72:], 1<<20); return b }, "unknown incompatible features 0x100000", false},
		{"external data file", func(b []byte) []byte { be.PutUint64(b[72:], incDataFile); return b }, "external data file", false},
		{"zstd type without feature bit", func(b []byte) []byte { b[104] = 1; return b }, "compression_type 1", false},
		{"header_length odd", func(b []byte) []byte { be.PutUint32(b[100:], 107); return b }, "header_length 107", false},
		{"size 2^63", func(b []byte) []byte { be.PutUint64(b[24:], 1<<63); return b }, "size", false},
		{"backing name 2000 bytes", func(b []byte) []byte { be.PutUint64(b[8:], 512); be.PutUint32(b[16:], 2000); return b }, "backing file name of 2000 bytes", false},
		{"backing name offset past the first cluster", func(b []byte) []byte { be.PutUint64(b[8:], 0xffffffff00000000); return b }, "backing_file_offset 0xffffffff00000000 is past the first cluster", false},
		{"extension runs past area", func(b []byte) []byte {
			be.PutUint32(b[112:], 0x1234)
			be.PutUint32(b[116:], 1<<20)
			return b
		}, "header extension 0x1234", false},
		{"L2 table past end of file", func(b []byte) []byte { be.PutUint64(b[l1:], 1<<40|oflagCopied); return b }, "L1 entry 0", false},
		{"L2 table unaligned", func(b []byte) []byte { be.PutUint64(b[l1:], uint64(l2+512)|oflagCopied); return b }, "unaligned", false},
		{"data cluster past end of file", func(b []byte) []byte { be.PutUint64(b[l2:], 1<<40|oflagCopied); return b }, "L2 table 0 entry 0", true},
		{"reserved L2 bits", func(b []byte) []byte { b[l2+7] |= 0x2; return b }, "reserved bits", true},
		{"snapshot count past qemu's limit", func(b []byte) []byte { be.PutUint32(b[60:], 1<<20); be.PutUint64(b[64:], uint64(l2)); return b }, "1048576 snapshots", false},
		{"empty snapshot table's offset unaligned", func(b []byte) []byte { be.PutUint64(b[64:], 100); return b }, "snapshot table at 0x64 (no snapshots)", false},
		{"empty snapshot table's offset past 2^63", func(b []byte) []byte { be.PutUint64(b[64:], 0xffffffff00000000); return b }, "snapshot table at 0xffffffff00000000 (no snapshots)", false},
		{"snapshot table unaligned", func(b []byte) []byte { be.PutUint32(b[60:], 1); be.PutUint64(b[64:], 100); return b }, "snapshot table at 0x64", false},
		{"snapshot table past end of file", func(b []byte) []byte { be.PutUint32(b[60:], 1); be.PutUint64(b[64:], 1<<40); return b }, "snapshot table at 0x10000000000", false},
		{"snapshot extra data huge", func(b []byte) []byte {
			be.PutUint32(b[60:], 1)
			be.PutUint64(b[64:], uint64(l2))
			be.PutUint32(b[l2+36:], 5000)
			return b
		}, "snapshot 0 at", false},
		{"snapshot L1 past end of file", func(b []byte) []byte {
			be.PutUint32(b[60:], 1)
			be.PutUint64(b[64:], uint64(l2))
			be.PutUint64(b[l2:], 1<<40)
			be.PutUint32(b[l2+8:], 1)
			clear(b[l2+12 : l2+40])
			return b
		}, "L1 table at 0x10000000000 (1 entries)", false},
		{"snapshots run past the end of the file", func(b []byte) []byte {
			be.PutUint32(b[60:], 60000)
			be.PutUint64(b[64:], uint64(len(b)/4096-1)*4096)
			clear(b[len(b)/4096*4096-4096:])
			return b
		}, "runs past the end of the file", false},
		{"compressed cluster of garbage", func(b []byte) []byte {
			be.PutUint64(b[l2:], oflagCompressed|uint64(3)<<(62-(12-8))|uint64(l2))
			return b
		}, "compressed cluster for guest offset 0x0", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "bad.qcow2")
			require.NoError(t, os.WriteFile(p, tc.mutate(append([]byte(nil), orig...)), 0o644))
			img, err := Open(p)
			if tc.atRead {
				require.NoError(t, err)
				defer img.Close()
				_, err = img.ReadAt(make([]byte, 4096), 0)
			}
			require.Error(t, err)
			require.ErrorContains(t, err, p)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// A backing file name of 0 bytes at a valid offset is no backing file, as
// qemu reads it (qemu-img info shows none and convert reads the image alone).
func TestEmptyBackingNameIsNoBacking(t *testing.T) {
	b := seed(t, "v3.qcow2")
	binary.BigEndian.PutUint64(b[8:], 512)
	binary.BigEndian.PutUint32(b[16:], 0)
	p := filepath.Join(t.TempDir(), "empty-backing.qcow2")
	require.NoError(t, os.WriteFile(p, b, 0o644))
	img, err := Open(p)
	require.NoError(t, err)
	defer img.Close()
	assert.Empty(t, img.Info().BackingFile)
	testutil.RequireTool(t, "qemu-img")
	out, err := exec.Command("qemu-img", "info", "--output=json", p).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.NotContains(t, string(out), "backing-filename")
}

// Check finds what qemu-img check finds: leaked clusters, refcounts too
// small, a missing copied flag.
func TestCheckFindsRefcountErrors(t *testing.T) {
	orig := seed(t, "v3.qcow2")
	be := binary.BigEndian
	h := decodeHeader(orig)
	rb := int(be.Uint64(orig[h.RefcountTableOffset:]))
	l1 := int(h.L1TableOffset)
	tests := []struct {
		name   string
		mutate func(b []byte)
		want   string
	}{
		{"leak", func(b []byte) { be.PutUint16(b[rb+2*1:], 2) }, "leaked cluster 1"},
		{"refcount zero", func(b []byte) { be.PutUint16(b[rb:], 0) }, "cluster 0 has refcount 0 but 1 references"},
		{"copied flag missing", func(b []byte) { b[l1] &^= 0x80 }, "copied flag false"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "bad.qcow2")
			b := append([]byte(nil), orig...)
			tc.mutate(b)
			require.NoError(t, os.WriteFile(p, b, 0o644))
			res, err := Check(p)
			require.NoError(t, err)
			require.NotEmpty(t, res.Problems)
			require.Contains(t, res.Problems[0].String(), tc.want)
		})
	}
}
