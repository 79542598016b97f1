package vmdk

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk/disktest"
)

// grainInflater is what every grain decoder offers.
type grainInflater interface {
	inflate(out, data []byte) (int, error)
}

// decoders lists every grain decoder compiled into this test binary: the
// pure-Go one always, libdeflate's with -tags libdeflate
// (inflate_libdeflate_test.go).
var decoders = []struct {
	name string
	new  func() grainInflater
}{
	{"klauspost", func() grainInflater { return new(goDecoder) }},
}

// qemuGrains returns the compressed grains of a streamOptimized VMDK made by
// qemu-img from src, with the offset of each grain's data in src.
func qemuGrains(t *testing.T, src []byte) (grains [][]byte, offs []int64, grainBytes int64) {
	t.Helper()
	dir := t.TempDir()
	disktest.WriteSparse(t, filepath.Join(dir, "src.raw"), src)
	disktest.QemuImg(t, "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized",
		filepath.Join(dir, "src.raw"), filepath.Join(dir, "s.vmdk"))
	f, err := os.Open(filepath.Join(dir, "s.vmdk"))
	require.NoError(t, err)
	defer f.Close()
	st, err := OpenStream(f)
	require.NoError(t, err)
	s := st.(*streamReader)
	for {
		g, err := s.nextRecord(0)
		require.NoError(t, err)
		if g == nil {
			return grains, offs, s.grainBytes
		}
		grains = append(grains, bytes.Clone(g.rec[:g.cmp]))
		offs = append(offs, int64(g.lba)*sectorSize)
	}
}

// TestDecodersInflateQemuGrains inflates every grain qemu-img wrote (zlib,
// its default level) with each decoder, one decoder state reused for all
// grains, and compares with the source; the last grain is short.
func TestDecodersInflateQemuGrains(t *testing.T) {
	src := disktest.Pattern(9<<20+4096, 7)
	grains, offs, gb := qemuGrains(t, src)
	require.NotEmpty(t, grains)
	for _, dc := range decoders {
		t.Run(dc.name, func(t *testing.T) {
			dec := dc.new()
			out := make([]byte, gb)
			for i, g := range grains {
				n, err := dec.inflate(out, g)
				require.NoError(t, err, "grain %d at %#x", i, offs[i])
				want := src[offs[i]:min(offs[i]+gb, int64(len(src)))]
				require.Equal(t, len(want), n, "grain %d at %#x", i, offs[i])
				require.True(t, bytes.Equal(want, out[:n]), "grain %d at %#x differs", i, offs[i])
			}
		})
	}
}

// TestDecodersAgreeOnBadGrains gives each decoder the same damaged streams:
// all refuse them, and all accept bytes after the end of a stream.
func TestDecodersAgreeOnBadGrains(t *testing.T) {
	var grain []byte // 64 KiB of text: literals and matches
	for i := 0; len(grain) < 64<<10; i++ {
		grain = fmt.Appendf(grain, "line %d of a vmconv grain\n", i*i)
	}
	grain = grain[:64<<10]
	good := zlibOf(grain)
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x40
	badSum := bytes.Clone(good)
	badSum[len(badSum)-1] ^= 1
	for _, tc := range []struct {
		name string
		data []byte
		want string // error text; "" for success
		n    int
	}{
		{name: "whole grain", data: good, n: len(grain)},
		{name: "short grain", data: zlibOf(grain[:1000]), n: 1000},
		{name: "trailing bytes", data: append(bytes.Clone(good), 1, 2, 3), n: len(grain)},
		{name: "inflates past the grain", data: zlibOf(append(bytes.Clone(grain), 0)), want: "inflates past the grain size"},
		{name: "truncated", data: good[:len(good)/2], want: "zlib"},
		{name: "flipped bit", data: flipped, want: "zlib"},
		{name: "bad checksum", data: badSum, want: "zlib"},
		{name: "not zlib", data: []byte("not a zlib stream at all"), want: "zlib"},
		{name: "empty", data: nil, want: "zlib"},
	} {
		for _, dc := range decoders {
			t.Run(tc.name+"/"+dc.name, func(t *testing.T) {
				out := make([]byte, len(grain))
				n, err := dc.new().inflate(out, tc.data)
				if tc.want != "" {
					require.Error(t, err)
					assert.Contains(t, err.Error(), tc.want)
					return
				}
				require.NoError(t, err)
				require.Equal(t, tc.n, n)
				assert.True(t, bytes.Equal(grain[:n], out[:n]))
			})
		}
	}
}

// FuzzDecoders gives every decoder the same stream: none may panic or write
// past the grain, and where two succeed they agree byte for byte. (They may
// disagree on whether a damaged stream is an error: libdeflate accepts some
// invalid codes that still inflate to data matching the checksum.)
func FuzzDecoders(f *testing.F) {
	f.Add(zlibOf([]byte("vmconv")))
	f.Add(zlibOf(bytes.Repeat([]byte("grain "), 11000)))
	f.Add(zlibOf(disktest.Pattern(64<<10, 3)))
	f.Fuzz(func(t *testing.T, data []byte) {
		const grain = 64 << 10
		var first []byte
		for _, dc := range decoders {
			out := make([]byte, grain+1)
			n, err := dc.new().inflate(out[:grain], data)
			require.Zero(t, out[grain], "%s wrote past the grain", dc.name)
			if err != nil {
				continue
			}
			require.LessOrEqual(t, n, grain)
			if first == nil {
				first = out[:n]
				continue
			}
			require.True(t, bytes.Equal(first, out[:n]), "%s inflates to other bytes", dc.name)
		}
	})
}
