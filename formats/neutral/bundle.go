package neutral

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/vmconv/vmconv/disk"
)

// A bundle is a directory NAME.vmb/ holding
//
//	vm.json                 the VM (ParseVM)
//	disks/<id>.json         one chunk list per disk with content (chunklist.go)
//	chunks/<hh>/<sha256>    the chunk store (store.go), unless the chunk lists
//	                        point to a shared store elsewhere
//
// A disk without a chunk list is an empty CD-ROM drive.

// BundleExt is the extension of bundle directories.
const BundleExt = ".vmb"

// Detect reports whether path is a bundle: a directory holding vm.json, or a
// name ending in .vmb or .vmb.tar (an output yet to be written).
func Detect(path string) bool {
	if strings.HasSuffix(filepath.Clean(path), BundleExt) || strings.HasSuffix(path, TarExt) {
		return true
	}
	fi, err := os.Stat(path)
	if err != nil || !fi.IsDir() {
		return false
	}
	fi, err = os.Stat(filepath.Join(path, "vm.json"))
	return err == nil && fi.Mode().IsRegular()
}

// BundleOptions tunes WriteBundle. The zero value writes a self-contained
// bundle at zstd's fastest level.
type BundleOptions struct {
	// Store is a chunk store shared between bundles (--store): chunks go
	// there instead of NAME.vmb/chunks, and a chunk already present is not
	// written again. A directory is recorded in the chunk lists relative to
	// the bundle when the two share a parent directory, absolute otherwise;
	// an s3:// or file:// URL (store_blob.go) is recorded as given.
	Store string
	// Copy tunes the copy engine that reads the disks.
	Copy disk.CopyOptions
	// Level is the zstd level; 0 means zstd.SpeedFastest.
	Level zstd.EncoderLevel
}

// WriteBundle writes vm and the contents of its disks' Images as the bundle
// path, through out: the directory appears when the caller commits out. A
// path ending in .vmb.tar, or "-" for standard output, gets a bundle tar. It
// sets each disk's Digest (and a zero CapacityBytes) from its image. Chunks
// written to a shared store stay there if the output is aborted: they are
// complete, named by their content, and may serve the next run.
func WriteBundle(ctx context.Context, out *disk.Output, path string, vm *VM, opt BundleOptions) error {
	if err := prepareVM(path, vm); err != nil {
		return err
	}
	if IsTar(path) {
		f, err := out.Create(path)
		if err != nil {
			return err
		}
		return writeBundleTar(ctx, f, path, vm, opt)
	}
	dir, err := out.Mkdir(path)
	if err != nil {
		return err
	}
	// The temporary directory is private; the bundle is an ordinary one.
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("bundle %s: %w", path, err)
	}
	store, storeRef, storeDir, err := openSink(ctx, path, dir, opt.Store)
	if err != nil {
		return err
	}
	defer store.close()
	comp, err := newCompressor(opt.Level)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", path, err)
	}
	if err := os.Mkdir(filepath.Join(dir, "disks"), 0o755); err != nil {
		return fmt.Errorf("bundle %s: %w", path, err)
	}
	for i := range vm.Disks {
		d := &vm.Disks[i]
		if d.Image == nil {
			continue
		}
		listPath := filepath.Join(dir, "disks", d.ID+".json")
		w, err := newChunkWriter(comp, store, d.ID, storeRef, d.Image.Size(), func(l *chunkList) error {
			return writeListFile(listPath, l)
		})
		if err != nil {
			return fmt.Errorf("bundle %s: disk %s: %w", path, d.ID, err)
		}
		if err := disk.Copy(ctx, d.Image, w, opt.Copy); err != nil {
			w.abort()
			return fmt.Errorf("bundle %s: disk %s: %w", path, d.ID, err)
		}
		d.Digest = w.list.Digest
	}
	data, err := vm.MarshalIndent()
	if err != nil {
		return fmt.Errorf("bundle %s: vm.json: %w", path, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "vm.json"), data, 0o644); err != nil {
		return fmt.Errorf("bundle %s: %w", path, err)
	}
	// One sync per file system instead of one per chunk file: everything
	// must be on disk before the caller's Commit renames the bundle in. (A
	// blob store's chunks are stored once their puts return.)
	for _, p := range []string{storeDir, dir} {
		if p == "" {
			continue
		}
		if err := syncFS(p); err != nil {
			return fmt.Errorf("bundle %s: sync %s: %w", path, p, err)
		}
	}
	return nil
}

// openSink opens the chunk store a bundle directory's chunks go to: its own
// chunks/, a shared store directory, or a blob store URL. It returns the
// reference the chunk lists record, and the directory to sync ("" for a
// blob store).
func openSink(ctx context.Context, path, dir, store string) (sink storeSink, ref, syncDir string, err error) {
	switch {
	case store == "":
		s, err := newChunkStore(filepath.Join(dir, "chunks"), true)
		if err != nil {
			return nil, "", "", fmt.Errorf("bundle %s: %w", path, err)
		}
		return s, "chunks", s.dir, nil
	case isStoreURL(store):
		s, err := newBlobStore(ctx, store)
		if err != nil {
			return nil, "", "", fmt.Errorf("bundle %s: %w", path, err)
		}
		return s, store, "", nil
	}
	storeDir, ref, err := storeLocation(path, store)
	if err != nil {
		return nil, "", "", err
	}
	s, err := newChunkStore(storeDir, false)
	if err != nil {
		return nil, "", "", fmt.Errorf("bundle %s: %w", path, err)
	}
	return s, ref, storeDir, nil
}

// prepareVM checks vm before writing it and fills in disk capacities from
// the images.
func prepareVM(path string, vm *VM) error {
	for i := range vm.Disks {
		d := &vm.Disks[i]
		if d.Image == nil {
			if d.Device == "disk" {
				return fmt.Errorf("bundle %s: disks[%d] (%s): no content to write", path, i, d.ID)
			}
			continue
		}
		size := d.Image.Size()
		if d.CapacityBytes == 0 {
			d.CapacityBytes = size
		}
		if d.CapacityBytes != size {
			return fmt.Errorf("bundle %s: disks[%d] (%s): capacity_bytes %d differs from the image size %d", path, i, d.ID, d.CapacityBytes, size)
		}
	}
	if err := vm.Validate(); err != nil {
		return fmt.Errorf("bundle %s: vm.json: %w", path, err)
	}
	return nil
}

// storeLocation returns the directory to write chunks to and the reference to
// record in the chunk lists.
func storeLocation(bundle, store string) (dir, ref string, err error) {
	absStore, err := filepath.Abs(store)
	if err != nil {
		return "", "", err
	}
	absBundle, err := filepath.Abs(bundle)
	if err != nil {
		return "", "", err
	}
	parent := filepath.Dir(absBundle)
	// Relative when the store lives under the bundle's parent directory, so
	// moving that directory keeps the bundle whole; absolute otherwise.
	if rel, err := filepath.Rel(parent, absStore); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return absStore, filepath.ToSlash(filepath.Join("..", rel)), nil
	}
	return absStore, absStore, nil
}

func syncFS(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

// chunkWriter is the disk.Writer for one disk: it hashes and compresses
// chunks on the copy engine's workers (Prepare), then stores them and builds
// the chunk list in order (WriteChunk), and writes disks/<id>.json on Close.
type chunkWriter struct {
	comp  *compressor
	store chunkSink
	done  func(*chunkList) error // writes the finished list
	list  chunkList
	dig   *disk.DigestHasher
	next  int64 // next chunk index that may be written
	err   error
}

// prepared is what Prepare hands to WriteChunk.
type prepared struct {
	zero    bool
	sum     [32]byte
	payload *[]byte // nil when the chunk is already in the store
}

func newChunkWriter(comp *compressor, store chunkSink, id, storeRef string, size int64, done func(*chunkList) error) (*chunkWriter, error) {
	if size < 0 || size > MaxDiskSize {
		return nil, fmt.Errorf("size %d is outside 0..%d", size, int64(MaxDiskSize))
	}
	return &chunkWriter{
		comp:  comp,
		store: store,
		done:  done,
		list:  chunkList{ID: id, VirtualSize: size, Store: storeRef},
		dig:   disk.NewDigestHasher(size),
	}, nil
}

func (w *chunkWriter) Prepare(c *disk.Chunk) error {
	p := &prepared{}
	c.Prepared = p
	if c.Zero || c.Data == nil || disk.IsZero(c.Data) {
		p.zero = true
		return nil
	}
	p.sum = sha256.Sum256(c.Data)
	if w.store.has(&p.sum) {
		return nil
	}
	var err error
	p.payload, err = w.comp.compress(c.Data)
	return err
}

func (w *chunkWriter) WriteChunk(c *disk.Chunk) error {
	if w.err != nil {
		return w.err
	}
	p, _ := c.Prepared.(*prepared)
	c.Prepared = nil
	if p == nil {
		if err := w.Prepare(c); err != nil {
			w.err = err
			return err
		}
		p = c.Prepared.(*prepared)
		c.Prepared = nil
	}
	defer func() { w.comp.putBuffer(p.payload) }()
	idx := c.Offset / ChunkSize
	switch {
	case c.Offset%ChunkSize != 0 || idx < w.next:
		w.err = fmt.Errorf("chunk at %#x is out of order or misaligned", c.Offset)
	case c.Offset >= w.list.VirtualSize || c.Length != chunkLen(w.list.VirtualSize, idx):
		w.err = fmt.Errorf("chunk at %#x with length %d does not fit the size %d", c.Offset, c.Length, w.list.VirtualSize)
	}
	if w.err != nil {
		return w.err
	}
	w.next = idx + 1
	if p.zero {
		return nil
	}
	var err error
	if p.payload == nil && !w.store.has(&p.sum) {
		// Prepare saw it in the store, but it is gone now.
		p.payload, err = w.comp.compress(c.Data)
	}
	if err == nil {
		if p.payload == nil {
			w.store.noteReused()
		} else {
			err = w.store.put(&p.sum, *p.payload)
		}
	}
	if err != nil {
		w.err = err
		return err
	}
	w.list.data = append(w.list.data, dataChunk{index: idx, sum: p.sum})
	w.dig.Add(c.Offset, p.sum)
	return nil
}

func (w *chunkWriter) Close() error {
	if w.err != nil {
		return w.err
	}
	// The list is written only once all its chunks are stored.
	if err := w.store.flush(); err != nil {
		w.err = err
		return err
	}
	w.list.Digest = w.dig.Sum()
	if err := w.done(&w.list); err != nil {
		w.err = err
		return err
	}
	w.err = errors.New("chunk list already closed")
	return nil
}

func writeListFile(path string, l *chunkList) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	err = l.encode(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// abort drops a chunk writer whose copy failed.
func (w *chunkWriter) abort() {
	if w.err == nil {
		w.err = errors.New("chunk list aborted")
	}
}
