package ovf

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/vmconv/vmconv/disk"
)

// A File with ovf:chunkSize is stored split (ovftool --chunkSize, vSphere's
// OvfManager): HREF.000000000, HREF.000000001, … each of chunkSize bytes but
// the last, which together are the file (compressed first, when it is).
// ovf:size is the whole file's size. The manifest lists the chunk files.

// maxChunks bounds how many chunk files one file may have (a 1 MiB chunk
// size then covers 1 TiB).
const maxChunks = 1 << 20

// chunkSize reads ovf:chunkSize: 0 when absent.
func chunkSize(f *FileRef) (int64, error) {
	s := strings.TrimSpace(f.ChunkSize)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("ovf:chunkSize=%q: want a positive number of bytes", clip(f.ChunkSize))
	}
	return n, nil
}

// chunkName is the name of chunk i of the file href.
func chunkName(href string, i int64) string { return fmt.Sprintf("%s.%09d", href, i) }

// chunkSet finds the chunks of a split file through size, which gives a
// chunk's size or reports it absent (ok false), and checks them: every
// chunk but the last of exactly c.ChunkSize bytes, the last of at most
// that, all together ovf:size when the descriptor gives it. It returns the
// number of chunks (0 when the first is absent).
func chunkSet(c Content, size func(name string) (int64, bool)) (int64, error) {
	want := int64(-1) // chunks ovf:size implies
	if c.Size >= 0 {
		want = (c.Size + c.ChunkSize - 1) / c.ChunkSize
		if want > maxChunks {
			return 0, fmt.Errorf("ovf:size=%d in chunks of %d bytes is more than %d chunks", c.Size, c.ChunkSize, maxChunks)
		}
	}
	var n, total int64
	for ; want < 0 || n < want; n++ {
		name := chunkName(c.Href, n)
		s, ok := size(name)
		if !ok {
			if want < 0 && n > 0 {
				break // without ovf:size the chunks run until one is absent
			}
			if n == 0 {
				return 0, nil
			}
			return 0, fmt.Errorf("chunk %q is missing (ovf:size=%d in chunks of %d bytes makes %d)", clip(name), c.Size, c.ChunkSize, want)
		}
		if s > c.ChunkSize || s == 0 {
			return 0, fmt.Errorf("chunk %q is %d bytes, want 1 to ovf:chunkSize=%d", clip(name), s, c.ChunkSize)
		}
		if n > 0 && total != n*c.ChunkSize {
			return 0, fmt.Errorf("chunk %q follows a chunk shorter than ovf:chunkSize=%d", clip(name), c.ChunkSize)
		}
		if n == maxChunks {
			return 0, fmt.Errorf("more than %d chunks", maxChunks)
		}
		total += s
	}
	if c.Size >= 0 && total != c.Size {
		return 0, fmt.Errorf("its %d chunks hold %d bytes, ovf:size=%d", n, total, c.Size)
	}
	return n, nil
}

// dirChunks opens the chunks of a split file beside the descriptor as one
// reader, each chunk first checked against the manifest when it lists it.
// close closes the chunk files. n is 0 when the first chunk is absent.
func dirChunks(c Content, dir string, mf *Manifest) (r io.Reader, n int64, close func(), err error) {
	n, err = chunkSet(c, func(name string) (int64, bool) {
		p, err := hrefPath(dir, name)
		if err != nil {
			return 0, false
		}
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() {
			return 0, false
		}
		return fi.Size(), true
	})
	if err != nil || n == 0 {
		return nil, n, nil, err
	}
	var files []*os.File
	close = func() {
		for _, f := range files {
			f.Close()
		}
	}
	readers := make([]io.Reader, 0, n)
	for i := range n {
		name := chunkName(c.Href, i)
		p, _ := hrefPath(dir, name)
		if err := verifyFile(mf, name, p); err != nil {
			close()
			return nil, 0, nil, err
		}
		f, err := disk.OpenFile(p)
		if err != nil {
			close()
			return nil, 0, nil, err
		}
		files = append(files, f)
		readers = append(readers, f)
	}
	return io.MultiReader(readers...), n, close, nil
}
