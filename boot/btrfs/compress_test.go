package btrfs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmconv/vmconv/internal/testutil"
)

// The decoders on streams from the codecs' own tools, in btrfs's framing
// as the kernel writes it (fs/btrfs/zlib.c, zstd.c, lzo.c). mkfs.btrfs
// --compress (TestReadVariants) checks them on extents btrfs itself wrote.

func pipe(t testing.TB, in []byte, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.Output()
	require.NoError(t, err, "%s %v", name, args)
	return out
}

func padSector(b []byte) []byte {
	return append(b, make([]byte, (4096-len(b)%4096)%4096)...)
}

// lzopBlocks returns the LZO1X streams of an lzop file's blocks (lzop's
// header and checksums stripped; see lzop's doc/lzop.txt).
func lzopBlocks(t testing.TB, f []byte) [][]byte {
	be := binary.BigEndian
	require.True(t, bytes.HasPrefix(f, []byte("\x89LZO\x00\r\n\x1a\n")), "lzop magic")
	p := 9
	version := be.Uint16(f[p:])
	p += 6 // version, library version, version needed
	require.GreaterOrEqual(t, version, uint16(0x0940))
	p += 2 // method, level
	flags := be.Uint32(f[p:])
	p += 4
	require.Zero(t, flags&(0x40|0x800), "no extra field or filter")
	p += 12 // mode, mtime low and high
	p += 1 + int(f[p]) + 4
	var out [][]byte
	for {
		dst := be.Uint32(f[p:])
		if dst == 0 {
			return out
		}
		src := be.Uint32(f[p+4:])
		p += 8
		for _, bit := range []uint32{0x1, 0x100} { // adler32, crc32 of the data
			if flags&bit != 0 {
				p += 4
			}
		}
		if src < dst {
			for _, bit := range []uint32{0x2, 0x200} { // of the compressed block
				if flags&bit != 0 {
					p += 4
				}
			}
		}
		require.Less(t, src, dst, "a block lzop stored uncompressed")
		out = append(out, f[p:p+int(src)])
		p += int(src)
	}
}

// btrfsLZO frames data as fs/btrfs/lzo.c does: each sector compressed on its
// own (here by lzop), a segment header never straddling a sector.
func btrfsLZO(t testing.TB, data []byte) []byte {
	out := make([]byte, 4)
	for off := 0; off < len(data); off += 4096 {
		seg := lzopBlocks(t, pipe(t, data[off:min(off+4096, len(data))], "lzop", "-c", "-1"))
		require.Len(t, seg, 1)
		if left := 4096 - len(out)%4096; left < 4 {
			out = append(out, make([]byte, left)...)
		}
		out = binary.LittleEndian.AppendUint32(out, uint32(len(seg[0])))
		out = append(out, seg[0]...)
	}
	binary.LittleEndian.PutUint32(out, uint32(len(out)))
	return out
}

func sample(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "line %d: %x\n", i, i*i*2654435761)
	}
	return b.Bytes()[:n]
}

func TestDecompressCodecs(t *testing.T) {
	testutil.RequireTool(t, "zstd")
	testutil.RequireTool(t, "lzop")
	testutil.RequireTool(t, "python3")
	data := sample(128 << 10)
	short := data[:50000]
	deflate := func(b []byte) []byte {
		return pipe(t, b, "python3", "-c", "import sys, zlib; sys.stdout.buffer.write(zlib.compress(sys.stdin.buffer.read(), 6))")
	}
	for _, tc := range []struct {
		name string
		comp uint8
		src  []byte
		ram  int
		want []byte
	}{
		{"zlib", compressZlib, padSector(deflate(data)), len(data), data},
		{"zlib, stream shorter than ram_bytes", compressZlib, padSector(deflate(short)), 53248, append(append([]byte(nil), short...), make([]byte, 53248-len(short))...)},
		{"zstd", compressZstd, padSector(pipe(t, data, "zstd", "-c", "-3", "--no-check", "--zstd=wlog=17")), len(data), data},
		{"zstd with checksum, shorter than ram_bytes", compressZstd, padSector(pipe(t, short, "zstd", "-c", "-19", "--zstd=wlog=17")), 53248, append(append([]byte(nil), short...), make([]byte, 53248-len(short))...)},
		{"lzo", compressLZO, padSector(btrfsLZO(t, data)), len(data), data},
		{"lzo, last sector partial", compressLZO, padSector(btrfsLZO(t, short)), len(short), short},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.LessOrEqual(t, len(tc.src), maxCompressed+4096)
			out := bytes.Repeat([]byte{0xee}, tc.ram)
			clear(out)
			require.NoError(t, decompress(tc.comp, tc.src, out, 4096))
			assert.True(t, bytes.Equal(tc.want, out), "decompressed bytes differ")
		})
	}
	if *updateSeeds {
		small := data[:16<<10]
		for name, src := range map[uint8][]byte{
			compressZlib: padSector(deflate(small)),
			compressZstd: padSector(pipe(t, small, "zstd", "-c", "-3", "--no-check", "--zstd=wlog=17")),
			compressLZO:  padSector(btrfsLZO(t, small)),
		} {
			seed := binary.LittleEndian.AppendUint16([]byte{name - 1}, uint16(len(small)/2))
			require.NoError(t, os.WriteFile(filepath.Join("testdata", "codec-"+compressNames[name]+".bin"), append(seed, src...), 0o644))
		}
	}
	for _, tc := range []struct {
		name string
		comp uint8
		src  []byte
		err  string
	}{
		{"unknown method", 4, []byte{1, 2, 3}, "compression type 4"},
		{"zlib garbage", compressZlib, []byte("not zlib"), "zlib:"},
		{"zstd garbage", compressZstd, []byte("not a zstd frame"), "zstd:"},
		// btrfs writes windows of at most 128 KiB (ZSTD_BTRFS_MAX_WINDOWLOG).
		{"zstd window of 8 MiB", compressZstd, pipe(t, data, "zstd", "-c", "-3", "--zstd=wlog=23"), "zstd: window size exceeded"},
		{"lzo total past the extent", compressLZO, []byte{0xff, 0, 0, 0, 1, 0, 0, 0}, "lzo: total length 255"},
		{"lzo segment past the total", compressLZO, []byte{12, 0, 0, 0, 200, 0, 0, 0, 0, 0, 0, 0}, "segment at 4: length 200"},
		{"lzo bad stream", compressLZO, []byte{11, 0, 0, 0, 3, 0, 0, 0, 0xff, 0xff, 0xff}, "lzo: segment at 4:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := decompress(tc.comp, tc.src, make([]byte, 4096), 4096)
			assert.ErrorContains(t, err, tc.err)
		})
	}
}

// FuzzDecompress feeds the three decoders mutated streams: no panic, no
// hang, no allocation beyond the extent's bound. An input is the method
// (1 + its first byte mod 3), ram_bytes/2 (2 bytes), then the extent.
func FuzzDecompress(f *testing.F) {
	for _, name := range []string{"zlib.bin", "zstd.bin", "lzo.bin"} {
		b, err := os.ReadFile(filepath.Join("testdata", "codec-"+name))
		if err != nil {
			f.Fatalf("seed %s: %v", name, err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 3 || len(b) > maxCompressed {
			return
		}
		comp := b[0]%3 + 1
		ram := int(binary.LittleEndian.Uint16(b[1:])) * 2
		testutil.Bounded(t, 64<<20, func() {
			_ = decompress(comp, b[3:], make([]byte, ram), 4096)
		})
	})
}
