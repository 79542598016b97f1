package xfs

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmconv/vmconv/internal/testutil"
)

// A fuzz input is a sparse image: the device size in 512-byte sectors
// (uint32), then records of a sector number (uint32) and that sector's 512
// bytes; the rest of the device reads as zeros. Real images are mostly
// zeros, so their seeds stay small, and the fuzzer can move sectors around.
const sector = 512

type sparseImage struct {
	size    int64
	sectors map[int64][]byte
}

func decodeSparse(b []byte) (*sparseImage, bool) {
	if len(b) < 4 {
		return nil, false
	}
	img := &sparseImage{size: int64(binary.BigEndian.Uint32(b)) * sector, sectors: map[int64][]byte{}}
	if img.size > 1<<30 {
		return nil, false
	}
	for b = b[4:]; len(b) >= 4+sector; b = b[4+sector:] {
		img.sectors[int64(binary.BigEndian.Uint32(b))] = b[4 : 4+sector]
	}
	return img, true
}

func (s *sparseImage) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= s.size {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && off < s.size {
		sec, in := off/sector, off%sector
		m := min(int64(len(p)-n), sector-in, s.size-off)
		if d, ok := s.sectors[sec]; ok {
			copy(p[n:n+int(m)], d[in:])
		} else {
			clear(p[n : n+int(m)])
		}
		n += int(m)
		off += m
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func encodeSparse(img []byte) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(img)/sector))
	for s := 0; s+sector <= len(img); s += sector {
		if d := img[s : s+sector]; bytes.ContainsFunc(d, func(r rune) bool { return r != 0 }) {
			out = binary.BigEndian.AppendUint32(out, uint32(s/sector))
			out = append(out, d...)
		}
	}
	return out
}

// seedTree is what the seed images hold: a /boot with a local and a remote
// symlink and a block-form directory.
func seedTree() tree {
	tr := tree{}
	tr.file("boot/grub2/grub.cfg", []byte("set default=0\n"))
	tr.file("boot/vmlinuz-1", []byte("kernel\n"))
	tr.symlink("boot/vmlinuz", "vmlinuz-1")
	tr.symlink("boot/long", strings.Repeat("./", 195)+"vmlinuz-1") // remote
	for i := 0; i < 30; i++ {
		tr.file(fmt.Sprintf("d/f%02d-with-a-name", i), []byte{byte(i)})
	}
	return tr
}

var seeds = map[string][]string{
	"seed-v5.bin.gz": {"-b", "size=1024", "-d", "agcount=1"},
	"seed-v4.bin.gz": {"-m", "crc=0", "-b", "size=1024", "-d", "agcount=1"},
}

// kernelImage is an image the Linux kernel wrote (testdata/kernel-image.sh).
const kernelImage = "kernel-v5.bin.gz"

func readSeed(t testing.TB, name string) []byte {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		testutil.Unavailable(t, err.Error())
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	b, err := io.ReadAll(zr)
	require.NoError(t, err)
	return b
}

// The seeds are real mkfs.xfs images that read correctly.
func TestFuzzSeedsRead(t *testing.T) {
	for name := range seeds {
		t.Run(name, func(t *testing.T) {
			img, ok := decodeSparse(readSeed(t, name))
			require.True(t, ok)
			f, err := Open(img, img.size)
			require.NoError(t, err)
			tr := seedTree()
			for _, p := range []string{"/boot/vmlinuz", "/boot/long", "/boot/vmlinuz-1"} {
				b, err := f.ReadFile(p, 100)
				require.NoError(t, err, p)
				assert.Equal(t, "kernel\n", string(b), p)
			}
			ents, err := f.ReadDir("/d")
			require.NoError(t, err)
			assert.Len(t, ents, 30)
			for _, e := range ents {
				b, err := f.ReadFile("/d/"+e.Name, 100)
				require.NoError(t, err, e.Name)
				assert.Equal(t, tr["d/"+e.Name].data, b, e.Name)
			}
		})
	}
}

// FuzzOpen opens a mutated sparse image and walks it: every directory
// listed, every file read with a small bound. No panic, no hang, no
// allocation sized by the input.
func FuzzOpen(f *testing.F) {
	for name := range seeds {
		f.Add(readSeed(f, name))
	}
	f.Add(readSeed(f, kernelImage))
	f.Fuzz(func(t *testing.T, in []byte) {
		img, ok := decodeSparse(in)
		if !ok {
			return
		}
		testutil.Bounded(t, 96<<20+16*uint64(len(in)), func() { walk(img) })
	})
}

func walk(img *sparseImage) {
	fsys, err := Open(img, img.size)
	if err != nil {
		return
	}
	_ = fsys.UUID() + fsys.Label()
	visits := 0
	var rec func(dir string, depth int)
	rec = func(dir string, depth int) {
		ents, err := fsys.ReadDir(dir)
		if err != nil || depth > 6 {
			return
		}
		for _, e := range ents {
			if visits++; visits > 500 {
				return
			}
			p := path.Join(dir, e.Name)
			if _, isDir, err := fsys.Stat(p); err == nil && isDir {
				rec(p, depth+1)
				continue
			}
			_, _ = fsys.ReadFile(p, 64<<10)
			_, _ = fsys.Readlink(p)
		}
	}
	rec("/", 0)
}
