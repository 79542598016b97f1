package vhd

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCorruptInput damages a small dynamic VHD field by field; each is
// refused with an error naming the file and what is wrong, and the
// checksums are recomputed where the damage is to a value, not the sum.
func TestCorruptInput(t *testing.T) {
	orig := smallDynamic()
	be := binary.BigEndian
	end := len(orig) - 512
	refoot := func(b []byte) { be.PutUint32(b[end+64:], 0); be.PutUint32(b[end+64:], checksum(b[end:end+512], 64)) }
	rehead := func(b []byte) { be.PutUint32(b[512+36:], checksum(b[512:1536], 36)) }
	tests := []struct {
		name   string
		mutate func(b []byte) []byte
		want   string
	}{
		{"too short", func(b []byte) []byte { return b[:100] }, "too short for a footer"},
		{"footer checksum, no usable copy", func(b []byte) []byte { b[end+40]++; b[40]++; return b }, "checksum"},
		{"no cookie", func(b []byte) []byte { copy(b[end:], "xxxxxxxx"); copy(b, "xxxxxxxx"); return b }, "cookie"},
		{"disk type 7", func(b []byte) []byte { be.PutUint32(b[end+60:], 7); refoot(b); return b }, "disk type 7"},
		{"header past end", func(b []byte) []byte { be.PutUint64(b[end+16:], 1<<40); refoot(b); return b }, "dynamic header at 0x10000000000"},
		{"header checksum", func(b []byte) []byte { b[512+40]++; return b }, "dynamic header at 0x200: checksum"},
		{"block size 3", func(b []byte) []byte { be.PutUint32(b[512+32:], 3); rehead(b); return b }, "block size 3"},
		{"too few BAT entries", func(b []byte) []byte { be.PutUint32(b[512+28:], 2); rehead(b); return b }, "2 BAT entries"},
		{"BAT past end", func(b []byte) []byte { be.PutUint64(b[512+16:], 1<<30); rehead(b); return b }, "BAT at 0x40000000"},
		{"BAT entry past end", func(b []byte) []byte { be.PutUint32(b[1536:], 1<<20); return b }, "BAT entry 0 at 0x600"},
		{"fixed larger than file", func(b []byte) []byte {
			be.PutUint32(b[end+60:], typeFixed)
			be.PutUint64(b[end+16:], noOffset)
			be.PutUint64(b[end+48:], 1<<30)
			refoot(b)
			return b
		}, "fixed disk of 1073741824 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "bad.vhd")
			require.NoError(t, os.WriteFile(p, tc.mutate(append([]byte(nil), orig...)), 0o644))
			_, err := Open(p)
			require.Error(t, err)
			require.ErrorContains(t, err, p)
			require.ErrorContains(t, err, tc.want)
		})
	}
	// A damaged footer with a good copy at the start opens with a warning
	// that Check reports.
	b := append([]byte(nil), orig...)
	b[end+40]++
	p := filepath.Join(t.TempDir(), "copy.vhd")
	require.NoError(t, os.WriteFile(p, b, 0o644))
	probs, err := Check(p)
	require.NoError(t, err)
	require.NotEmpty(t, probs)
	require.Contains(t, probs[0].String(), "copy at offset 0 was used")
}
