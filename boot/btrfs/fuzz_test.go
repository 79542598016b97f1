package btrfs

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmconv/vmconv/internal/testutil"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite testdata/*.sparse from mkfs.btrfs")

// A fuzz input is an image with its zeros left out: the device size (8
// bytes, little-endian), then runs of a 4-byte offset, a 2-byte length and
// that many bytes. A real image of a hundred MiB is then some KiB the fuzzer
// can mutate (and minimize) quickly; everything else reads as zeros.
type sparseImage struct {
	runs []sparseRun
	size int64
}

type sparseRun struct {
	off  int64
	data []byte
}

// fuzzAllocBound is what one fuzz input may allocate: both opens and walks.
const fuzzAllocBound = 256 << 20

func decodeSparse(b []byte) *sparseImage {
	le := binary.LittleEndian
	s := &sparseImage{}
	if len(b) < 8 {
		return s
	}
	s.size = int64(le.Uint64(b) & (1<<32 - 1))
	for b = b[8:]; len(b) >= 6; {
		off, n := int64(le.Uint32(b)), int(le.Uint16(b[4:]))
		n = min(n, len(b)-6)
		s.runs = append(s.runs, sparseRun{off: off, data: b[6 : 6+n]})
		b = b[6+n:]
	}
	return s
}

func (s *sparseImage) ReadAt(p []byte, off int64) (int, error) {
	if off >= s.size {
		return 0, io.EOF
	}
	n := min(int64(len(p)), s.size-off)
	clear(p[:n])
	for _, r := range s.runs {
		lo, hi := max(r.off, off), min(r.off+int64(len(r.data)), off+n)
		if lo < hi {
			copy(p[lo-off:hi-off], r.data[lo-r.off:hi-r.off])
		}
	}
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

func encodeSparse(img []byte) []byte {
	le := binary.LittleEndian
	out := le.AppendUint64(nil, uint64(len(img)))
	for i := 0; i < len(img); {
		if img[i] == 0 {
			i++
			continue
		}
		// A run ends at 16 zero bytes in a row, or at 64 KiB.
		j, zeros := i, 0
		for j < len(img) && zeros < 16 && j-i < 0xffff {
			if img[j] == 0 {
				zeros++
			} else {
				zeros = 0
			}
			j++
		}
		end := j - zeros
		out = le.AppendUint32(out, uint32(i))
		out = le.AppendUint16(out, uint16(end-i))
		out = append(out, img[i:end]...)
		i = j
	}
	return out
}

var seeds = []struct {
	name string
	opts []string
}{
	{"subvol-zstd", []string{"-n", "4096", "-m", "single", "-u", "default:@", "-u", "@/boot", "--compress", "zstd"}},
	{"lzo", []string{"-n", "4096", "-m", "single", "--compress", "lzo"}},
	{"zlib", []string{"-n", "4096", "-m", "single", "--compress", "zlib"}},
}

// seedTree is smallTree cut down to a few nodes.
func seedTree(t testing.TB, dir string) {
	write(t, filepath.Join(dir, "@", "boot", "vmlinuz-1"), bytes.Repeat([]byte("kernel image "), 2000))
	write(t, filepath.Join(dir, "@", "boot", "grub2", "grub.cfg"), []byte("set default=0\n"))
	require.NoError(t, os.Symlink("vmlinuz-1", filepath.Join(dir, "@", "boot", "vmlinuz")))
	for i := 0; i < 5; i++ {
		write(t, filepath.Join(dir, "@", "many", fmt.Sprintf("entry-%03d", i)), []byte(fmt.Sprint(i)))
	}
}

// TestFuzzSeeds checks the seed images read correctly (and rewrites them
// from mkfs.btrfs with -update-seeds).
func TestFuzzSeeds(t *testing.T) {
	if *updateSeeds {
		requireMkfsFeatures(t)
		src := tempDir(t)
		seedTree(t, src)
		for _, s := range seeds {
			img, err := os.ReadFile(mkfs(t, src, s.opts...))
			require.NoError(t, err)
			enc := encodeSparse(img)
			require.NoError(t, os.WriteFile(filepath.Join("testdata", s.name+".sparse"), enc, 0o644))
			dec := make([]byte, len(img))
			_, err = decodeSparse(enc).ReadAt(dec, 0)
			require.NoError(t, err)
			require.True(t, bytes.Equal(img, dec), "the sparse encoding round-trips")
		}
	}
	for _, s := range seeds {
		t.Run(s.name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", s.name+".sparse"))
			require.NoError(t, err)
			img := decodeSparse(b)
			f, err := Open(img, img.size)
			require.NoError(t, err)
			prefix := "/@"
			if f.ID() != fsTreeID {
				prefix = ""
			}
			got, err := f.ReadFile(prefix+"/boot/vmlinuz", 1<<20)
			require.NoError(t, err)
			assert.Equal(t, bytes.Repeat([]byte("kernel image "), 2000), got)
			ents, err := f.ReadDir(prefix + "/many")
			require.NoError(t, err)
			assert.Len(t, ents, 5)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			n := walk(f, 3)
			runtime.ReadMemStats(&after)
			allocs := after.TotalAlloc - before.TotalAlloc
			assert.Less(t, allocs, uint64(fuzzAllocBound/4), "a real image stays well inside the fuzz bound")
			assert.Greater(t, n, 10)
			t.Logf("%s: %d bytes, %d names walked, %d bytes allocated", s.name, len(b), n, allocs)
		})
	}
}

// walk reads what is under the subvolume's top and in every subvolume, at
// most depth directories down and 300 names, and counts the names it met.
func walk(f *FS, depth int) int {
	n := 0
	var rec func(fsys *FS, dir string, d int)
	rec = func(fsys *FS, dir string, d int) {
		ents, err := fsys.ReadDir(dir)
		if err != nil {
			return
		}
		for _, e := range ents {
			if n >= 300 {
				return // bounds the harness, not the reader
			}
			n++
			p := dir + "/" + e.Name
			_, isDir, err := fsys.Stat(p)
			if err != nil {
				continue
			}
			_, _ = fsys.Readlink(p)
			if !isDir {
				_, _ = fsys.ReadFile(p, 64<<10)
			} else if d > 0 {
				rec(fsys, p, d-1)
			}
		}
	}
	rec(f, "", depth)
	subs, _ := f.Subvolumes()
	for i, s := range subs {
		if i >= 8 {
			break
		}
		if sv, err := f.SubvolumeID(s.ID); err == nil {
			rec(sv, "", 0)
		}
	}
	_, _ = f.Subvolume("/@/boot")
	_, _ = f.ReadFile("/boot/vmlinuz", 64<<10)
	return n
}

// FuzzOpen opens mutated real images (checksums not verified, so that
// mutations reach the trees) and walks them: no panic, no hang, no
// allocation sized by a damaged field.
func FuzzOpen(f *testing.F) {
	for _, s := range seeds {
		b, err := os.ReadFile(filepath.Join("testdata", s.name+".sparse"))
		if err != nil {
			f.Fatalf("seed %s: %v (make it with go test -run TestFuzzSeeds -update-seeds)", s.name, err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		img := decodeSparse(b)
		testutil.Bounded(t, fuzzAllocBound, func() {
			for _, verify := range []bool{false, true} {
				if fsys, err := open(img, img.size, verify); err == nil {
					walk(fsys, 3)
				}
			}
		})
	})
}
