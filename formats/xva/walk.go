package xva

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// ChunkSize is the XVA disk chunk: 1 MiB.
const ChunkSize = 1 << 20

// Checksum kinds, named after their file extension.
const (
	ChecksumSHA1   = "checksum" // .checksum: SHA-1, 40 lowercase hex digits
	ChecksumXXHash = "xxhash"   // .xxhash: XXH64 seed 0, 16 uppercase hex digits
)

// maxChecksumFile bounds a checksum entry (40 hex digits plus slack).
const maxChecksumFile = 256

// ErrChecksum is wrapped by every checksum mismatch.
var ErrChecksum = errors.New("checksum mismatch")

// ErrTruncated is wrapped when the archive ends before every disk is complete.
var ErrTruncated = errors.New("archive truncated")

// checksumText renders a chunk's checksum exactly as xapi compares it.
func checksumText(kind string, p []byte) string {
	if kind == ChecksumXXHash {
		return fmt.Sprintf("%016X", xxhash.Sum64(p))
	}
	s := sha1.Sum(p)
	return hex.EncodeToString(s[:])
}

// checkName refuses names that could escape a directory if anyone ever
// extracted the archive.
func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("empty entry name")
	case strings.HasPrefix(name, "/"):
		return fmt.Errorf("entry %q: absolute name", clip(name))
	case strings.ContainsRune(name, 0):
		return fmt.Errorf("entry %q: NUL in name", clip(name))
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return fmt.Errorf("entry %q: '..' in name", clip(name))
		}
	}
	return nil
}

// entryName is a parsed disk-stream entry name: DIR/NUMBER[.EXT].
type entryName struct {
	dir string
	n   int64
	ext string // "" for chunk data, else ChecksumSHA1 or ChecksumXXHash
}

func parseEntryName(name string) (entryName, error) {
	i := strings.LastIndexByte(name, '/')
	if i <= 0 || i == len(name)-1 {
		return entryName{}, fmt.Errorf("entry %q: not a disk chunk (want Ref:N/NUMBER)", clip(name))
	}
	e := entryName{dir: name[:i]}
	base := name[i+1:]
	if j := strings.IndexByte(base, '.'); j >= 0 {
		e.ext = base[j+1:]
		base = base[:j]
		if e.ext != ChecksumSHA1 && e.ext != ChecksumXXHash {
			return entryName{}, fmt.Errorf("entry %q: unknown checksum file type %q", clip(name), clip(e.ext))
		}
	}
	if base == "" || len(base) > 20 || strings.TrimLeft(base, "0123456789") != "" {
		return entryName{}, fmt.Errorf("entry %q: chunk name is not a decimal number", clip(name))
	}
	n, err := strconv.ParseInt(base, 10, 64)
	if err != nil || n > 1<<40 {
		return entryName{}, fmt.Errorf("entry %q: chunk number out of range", clip(name))
	}
	e.n = n
	return e, nil
}

// chunkPlan places one chunk entry of the archive in its VDI.
type chunkPlan struct {
	vdi      int    // index into layout.streamed
	name     string // tar entry name
	n        int64  // chunk number
	off      int64  // disk offset of the first byte
	length   int64  // bytes of the entry that fall inside the disk
	entryLen int64  // bytes of the entry (the checksum covers them all)
}

// walker replays xapi's importer over the sequence of tar entries: VDIs in
// id string order, chunk numbers strictly increasing, a checksum file after
// each chunk, chunk n placed by the cumulative rule (xva.md §1.2), never by
// n × 1 MiB, so keep-alive entries of 0 bytes are handled.
type walker struct {
	L       *layout
	cur     int // index into L.streamed of the VDI being read, -1 before the first
	pos     int64
	prev    int64
	unit    int64
	pending *chunkPlan
	done    []bool // per streamed VDI: complete
}

func newWalker(L *layout) *walker {
	return &walker{L: L, cur: -1, done: make([]bool, len(L.streamed))}
}

func (w *walker) vdiName(i int) string {
	s := &w.L.streamed[i]
	return fmt.Sprintf("VDI %s (%q)", s.ref, s.name)
}

// chunk accepts a data entry of size bytes.
func (w *walker) chunk(name string, e entryName, size int64) (*chunkPlan, error) {
	if w.pending != nil {
		return nil, fmt.Errorf("%s chunk %d (%s): no checksum file follows it", w.vdiName(w.pending.vdi), w.pending.n, w.pending.name)
	}
	if size < 0 || size > ChunkSize {
		return nil, fmt.Errorf("entry %q: %d bytes, a chunk holds at most %d", clip(name), size, ChunkSize)
	}
	if w.cur < 0 || e.dir != w.L.streamed[w.cur].ref {
		next := -1
		for i := w.cur + 1; i < len(w.L.streamed); i++ {
			if w.L.streamed[i].ref == e.dir {
				next = i
				break
			}
		}
		if next < 0 {
			for i := 0; i <= w.cur; i++ {
				if w.L.streamed[i].ref == e.dir {
					return nil, fmt.Errorf("entry %q: %s out of order: its chunks must all come before those of %s", clip(name), w.vdiName(i), w.vdiName(w.cur))
				}
			}
			return nil, fmt.Errorf("entry %q: directory %q is not a VDI exported in ova.xml", clip(name), clip(e.dir))
		}
		if err := w.endVDI(); err != nil {
			return nil, err
		}
		for i := w.cur + 1; i < next; i++ {
			if w.L.streamed[i].size > 0 {
				return nil, fmt.Errorf("%s: no chunks in the archive (its first chunk is required before %q)", w.vdiName(i), clip(name))
			}
			w.done[i] = true
		}
		w.cur, w.pos, w.prev, w.unit = next, 0, -1, -1
	}
	s := &w.L.streamed[w.cur]
	if e.n <= w.prev {
		return nil, fmt.Errorf("%s: chunk %d after chunk %d: chunk names must increase", w.vdiName(w.cur), e.n, w.prev)
	}
	if w.unit < 0 {
		w.unit = size
		if size == 0 && s.size > 0 {
			return nil, fmt.Errorf("%s: first chunk %d is empty", w.vdiName(w.cur), e.n)
		}
	}
	skip := e.n - w.prev - 1
	if w.unit > 0 && skip > (s.size-w.pos)/w.unit+1 {
		return nil, fmt.Errorf("%s: chunk %d lies beyond the VDI size %d", w.vdiName(w.cur), e.n, s.size)
	}
	start := w.pos + skip*w.unit
	if start > s.size || (start == s.size && size > 0) {
		return nil, fmt.Errorf("%s: chunk %d at offset %d lies beyond the VDI size %d", w.vdiName(w.cur), e.n, start, s.size)
	}
	p := &chunkPlan{vdi: w.cur, name: name, n: e.n, off: start, length: min(size, s.size-start), entryLen: size}
	w.pos = start + size
	w.prev = e.n
	w.pending = p
	return p, nil
}

// checksum accepts a checksum entry and returns the chunk it covers.
func (w *walker) checksum(name string, e entryName, size int64) (*chunkPlan, error) {
	p := w.pending
	if p == nil || w.L.streamed[p.vdi].ref != e.dir || p.n != e.n {
		return nil, fmt.Errorf("entry %q: checksum file without its chunk just before it", clip(name))
	}
	if size > maxChecksumFile {
		return nil, fmt.Errorf("entry %q: checksum file of %d bytes", clip(name), size)
	}
	w.pending = nil
	if w.pos >= w.L.streamed[p.vdi].size {
		w.done[p.vdi] = true
	}
	return p, nil
}

// verify compares a chunk's bytes with its checksum file's text.
func (w *walker) verify(p *chunkPlan, kind string, want []byte, data []byte) error {
	got := checksumText(kind, data)
	if !strings.EqualFold(strings.TrimSpace(string(want)), got) {
		return fmt.Errorf("%s chunk %d (%s): %w: .%s file says %q, data hashes to %s",
			w.vdiName(p.vdi), p.n, p.name, ErrChecksum, kind, clip(strings.TrimSpace(string(want))), got)
	}
	return nil
}

func (w *walker) endVDI() error {
	if w.pending != nil {
		return fmt.Errorf("%s chunk %d (%s): no checksum file follows it", w.vdiName(w.pending.vdi), w.pending.n, w.pending.name)
	}
	if w.cur >= 0 && w.pos < w.L.streamed[w.cur].size {
		return fmt.Errorf("%s: %w: chunks end at byte %d of %d", w.vdiName(w.cur), ErrTruncated, w.pos, w.L.streamed[w.cur].size)
	}
	return nil
}

// finish is called at the end of the archive.
func (w *walker) finish() error {
	if err := w.endVDI(); err != nil {
		return err
	}
	for i := w.cur + 1; i < len(w.L.streamed); i++ {
		if w.L.streamed[i].size > 0 {
			return fmt.Errorf("%s: %w: none of its chunks are in the archive", w.vdiName(i), ErrTruncated)
		}
	}
	return nil
}
