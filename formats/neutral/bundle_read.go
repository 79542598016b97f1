package neutral

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/vmconv/vmconv/disk"
)

// OpenBundle reads the bundle at path, a directory or a bundle tar file:
// vm.json, and for every disk its chunk list, checked against vm.json (id,
// capacity, digest). Each Disk.Image reads and verifies chunks on demand;
// close them with VM.Close.
func OpenBundle(path string) (*VM, error) { return OpenBundleStore(path, "") }

// OpenBundleStore is OpenBundle reading the chunks from store (a directory or
// a store URL, as --store takes) instead of the store the chunk lists name;
// "" keeps theirs. A bundle tar holds its own chunks and takes no store.
func OpenBundleStore(path, store string) (*VM, error) {
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		if store != "" {
			return nil, fmt.Errorf("bundle %s: a bundle tar holds its own chunks; --store applies to bundle directories", path)
		}
		return openBundleTar(path)
	}
	vm, err := ReadVMFile(filepath.Join(path, "vm.json"))
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", path, err)
	}
	for i := range vm.Disks {
		d := &vm.Disks[i]
		img, err := openBundleDisk(path, d, store)
		if err != nil {
			vm.Close()
			return nil, fmt.Errorf("bundle %s: disks[%d] (%s): %w", path, i, d.ID, err)
		}
		if img != nil {
			d.Image = img
		}
	}
	return vm, nil
}

// maxListSize bounds a chunk list file for a disk of the given size: the
// head, plus one line per chunk as written, with room to spare for
// reformatting.
func maxListSize(size int64) int64 { return 64<<10 + 128*chunkCount(size) }

func openBundleDisk(bundle string, d *Disk, storeOverride string) (disk.Image, error) {
	name := filepath.Join(bundle, "disks", d.ID+".json")
	f, err := os.Open(name)
	if errors.Is(err, os.ErrNotExist) && d.Device == "cdrom" {
		return nil, nil // an empty drive
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if limit := maxListSize(d.CapacityBytes); fi.Size() > limit {
		return nil, fmt.Errorf("%s: %d bytes, more than a chunk list for %d bytes needs (%d)", name, fi.Size(), d.CapacityBytes, limit)
	}
	l, err := parseChunkList(io.LimitReader(f, maxListSize(d.CapacityBytes)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := checkList(name, l, d); err != nil {
		return nil, err
	}
	src, err := openSource(bundle, l.Store, storeOverride)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return newBundleImage(bundle, d.ID, l, src), nil
}

// openSource opens the chunk store a chunk list names (ref: a directory
// relative to the bundle unless absolute, or a store URL), or override
// when one is given.
func openSource(bundle, ref, override string) (chunkSource, error) {
	if override != "" {
		ref = override
	}
	if isStoreURL(ref) {
		return openBlobSource(ref)
	}
	store := filepath.FromSlash(ref)
	if !filepath.IsAbs(store) && override == "" {
		store = filepath.Join(bundle, store)
	}
	return dirSource(store), nil
}

// checkList checks a chunk list against its disk in vm.json and records the
// digest there.
func checkList(name string, l *chunkList, d *Disk) error {
	switch {
	case l.ID != d.ID:
		return fmt.Errorf("%s: id %q does not match vm.json's %q", name, l.ID, d.ID)
	case l.VirtualSize != d.CapacityBytes:
		return fmt.Errorf("%s: virtual_size %d does not match vm.json's capacity_bytes %d", name, l.VirtualSize, d.CapacityBytes)
	case d.Digest != "" && d.Digest != l.Digest:
		return fmt.Errorf("%s: digest %s does not match vm.json's %s", name, l.Digest, d.Digest)
	}
	d.Digest = l.Digest
	return nil
}

// cacheChunks is how many decoded chunks an open disk keeps: enough for
// a few sequential readers, 8 MiB at most.
const cacheChunks = 8

// bundleImage is a disk of a bundle read at random through its chunk list.
type bundleImage struct {
	bundle, id string
	src        chunkSource
	list       *chunkList

	mu    sync.Mutex
	cache map[int64]*cachedChunk
	tick  uint64
}

type cachedChunk struct {
	done chan struct{} // closed once data/err are set
	data []byte
	err  error
	used uint64
}

func newBundleImage(bundle, id string, l *chunkList, src chunkSource) *bundleImage {
	return &bundleImage{bundle: bundle, id: id, src: src, list: l, cache: map[int64]*cachedChunk{}}
}

func (b *bundleImage) Size() int64 { return b.list.VirtualSize }

func (b *bundleImage) Close() error {
	b.mu.Lock()
	src := b.src
	b.src = nil
	b.mu.Unlock()
	if src == nil {
		return nil
	}
	return src.release()
}

// Extents reports chunks with content as Data and the rest as Unallocated.
func (b *bundleImage) Extents(off, length int64) ([]disk.Extent, error) {
	size := b.list.VirtualSize
	if off < 0 || length < 0 {
		return nil, fmt.Errorf("extents %d+%d: %w", off, length, disk.ErrOutOfRange)
	}
	end := min(size, off+length)
	if off >= end {
		return nil, nil
	}
	var out []disk.Extent
	add := func(s, e int64, k disk.Kind) {
		s, e = max(s, off), min(e, end)
		if s >= e {
			return
		}
		if n := len(out); n > 0 && out[n-1].Kind == k && out[n-1].End() == s {
			out[n-1].Length += e - s
			return
		}
		out = append(out, disk.Extent{Offset: s, Length: e - s, Kind: k})
	}
	first := off / ChunkSize
	j, _ := b.search(first)
	pos := off
	for ; j < len(b.list.data) && pos < end; j++ {
		cs := b.list.data[j].index * ChunkSize
		if cs >= end {
			break
		}
		add(pos, cs, disk.Unallocated)
		add(cs, cs+ChunkSize, disk.Data)
		pos = max(pos, min(cs+ChunkSize, end))
	}
	add(pos, end, disk.Unallocated)
	return out, nil
}

// search returns the position of the first data chunk with index ≥ i.
func (b *bundleImage) search(i int64) (int, bool) {
	lo, hi := 0, len(b.list.data)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if b.list.data[m].index < i {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(b.list.data) && b.list.data[lo].index == i
}

// ReadAt is safe for concurrent use. A read covering a whole chunk decodes
// straight into p; smaller reads go through a small cache of decoded chunks.
func (b *bundleImage) ReadAt(p []byte, off int64) (int, error) {
	size := b.list.VirtualSize
	if off < 0 {
		return 0, fmt.Errorf("read at %d: %w", off, disk.ErrOutOfRange)
	}
	if off >= size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > size-off {
		p = p[:size-off]
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		idx := pos / ChunkSize
		in := int(pos - idx*ChunkSize)
		clen := chunkLen(size, idx)
		m := min(len(p)-n, clen-in)
		dst := p[n : n+m]
		j, ok := b.search(idx)
		switch {
		case !ok:
			clear(dst)
		case in == 0 && m == clen:
			if err := b.load(idx, &b.list.data[j], dst); err != nil {
				return n, err
			}
		default:
			data, err := b.cached(idx, &b.list.data[j])
			if err != nil {
				return n, err
			}
			copy(dst, data[in:])
		}
		n += m
	}
	if n < want {
		return n, io.EOF
	}
	return n, nil
}

// load reads chunk idx into dst (its full length), verified.
func (b *bundleImage) load(idx int64, d *dataChunk, dst []byte) error {
	b.mu.Lock()
	src := b.src
	b.mu.Unlock()
	if src == nil {
		return fmt.Errorf("bundle %s: disk %s: read after close", b.bundle, b.id)
	}
	if err := loadChunk(src, &d.sum, dst); err != nil {
		return fmt.Errorf("bundle %s: disk %s: chunk %d (%s): %w", b.bundle, b.id, idx, src.name(&d.sum), err)
	}
	return nil
}

func (b *bundleImage) cached(idx int64, d *dataChunk) ([]byte, error) {
	b.mu.Lock()
	b.tick++
	if c := b.cache[idx]; c != nil {
		c.used = b.tick
		b.mu.Unlock()
		<-c.done
		return c.data, c.err
	}
	c := &cachedChunk{done: make(chan struct{}), used: b.tick}
	if len(b.cache) >= cacheChunks {
		var oldest int64 = -1
		for k, v := range b.cache {
			if oldest < 0 || v.used < b.cache[oldest].used {
				oldest = k
			}
		}
		delete(b.cache, oldest)
	}
	b.cache[idx] = c
	b.mu.Unlock()

	buf := make([]byte, chunkLen(b.list.VirtualSize, idx))
	c.err = b.load(idx, d, buf)
	if c.err == nil {
		c.data = buf
	}
	close(c.done)
	if c.err != nil {
		// Do not keep failures: the next read tries again.
		b.mu.Lock()
		if b.cache[idx] == c {
			delete(b.cache, idx)
		}
		b.mu.Unlock()
	}
	return c.data, c.err
}
