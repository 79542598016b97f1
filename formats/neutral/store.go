package neutral

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// The chunk store is a directory of zstd frames named by the SHA-256 of their
// uncompressed bytes: <store>/<first two hex digits>/<64 hex digits>. A chunk
// file is written under a temporary name and renamed, so a reader (or another
// writer sharing the store) never sees a partial one, and a chunk already
// present is never rewritten.

// maxChunkFile bounds a chunk file: zstd's worst case for 1 MiB is a few
// hundred bytes over it.
const maxChunkFile = ChunkSize + 64<<10

// chunkPath returns the store-relative path of the chunk with the given hash.
func chunkPath(store string, sum *[32]byte) string {
	h := hex.EncodeToString(sum[:])
	return filepath.Join(store, h[:2], h)
}

// chunkSink receives the compressed chunks of a bundle being written: a
// store directory, a blob store (store_blob.go), or a tar stream.
type chunkSink interface {
	// has reports whether the chunk is already stored (any goroutine).
	has(sum *[32]byte) bool
	// put stores a chunk unless it is already present (writer's goroutine),
	// or starts doing so; payload is the caller's again when put returns.
	put(sum *[32]byte, payload []byte) error
	// noteReused counts a chunk found already stored.
	noteReused()
	// flush returns once every chunk put so far is stored.
	flush() error
}

// storeSink is a chunk store a bundle directory's chunks go to.
type storeSink interface {
	chunkSink
	// close flushes and lets go of the store.
	close() error
}

// compressor compresses chunks on many goroutines, reusing one encoder per
// concurrent caller and the output buffers.
type compressor struct {
	level    zstd.EncoderLevel
	encoders sync.Pool // *zstd.Encoder
	buffers  sync.Pool // *[]byte compressed payloads
}

func newCompressor(level zstd.EncoderLevel) (*compressor, error) {
	if level == 0 {
		level = zstd.SpeedFastest
	}
	c := &compressor{level: level}
	// Check the level once so workers cannot fail on it.
	enc, err := c.newEncoder()
	if err != nil {
		return nil, err
	}
	c.encoders.Put(enc)
	return c, nil
}

func (c *compressor) newEncoder() (*zstd.Encoder, error) {
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(c.level),
		zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(ChunkSize),
		zstd.WithLowerEncoderMem(true),
		// Readers check the SHA-256 of every chunk; a frame checksum
		// would only cost time.
		zstd.WithEncoderCRC(false))
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	return enc, nil
}

// compress returns p compressed into a pooled buffer; release it with
// putBuffer.
func (c *compressor) compress(p []byte) (*[]byte, error) {
	enc, _ := c.encoders.Get().(*zstd.Encoder)
	if enc == nil {
		var err error
		if enc, err = c.newEncoder(); err != nil {
			return nil, err
		}
	}
	bp, _ := c.buffers.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, 0, len(p)+len(p)/128+1024)
		bp = &b
	}
	*bp = enc.EncodeAll(p, (*bp)[:0])
	c.encoders.Put(enc)
	return bp, nil
}

func (c *compressor) putBuffer(bp *[]byte) {
	if bp != nil && cap(*bp) <= maxChunkFile {
		c.buffers.Put(bp)
	}
}

// chunkStore writes chunks into one store directory.
type chunkStore struct {
	dir   string
	fresh bool // created by this writer: only what it wrote is there

	mu      sync.Mutex
	subdirs map[string]bool
	present map[[32]byte]bool // chunks known to be in the store

	// Statistics: chunk files written, and chunks found already present.
	written, reused int64
	writtenBytes    int64
	flushed         int64 // written as of the last flush
}

func newChunkStore(dir string, fresh bool) (*chunkStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("chunk store: %w", err)
	}
	return &chunkStore{dir: dir, fresh: fresh, subdirs: map[string]bool{}, present: map[[32]byte]bool{}}, nil
}

// has reports whether the chunk is already in the store (safe on any
// goroutine; it may look at the file system).
func (s *chunkStore) has(sum *[32]byte) bool {
	s.mu.Lock()
	ok := s.present[*sum]
	s.mu.Unlock()
	if ok || s.fresh {
		return ok
	}
	if fi, err := os.Lstat(chunkPath(s.dir, sum)); err == nil && fi.Mode().IsRegular() {
		s.mu.Lock()
		s.present[*sum] = true
		s.mu.Unlock()
		return true
	}
	return false
}

// flush makes the chunks written since the last flush durable before the
// chunk list that names them is written: a bundle that exists after a
// power loss has every chunk it names (put itself does not fsync).
func (s *chunkStore) flush() error {
	s.mu.Lock()
	dirty := s.written != s.flushed
	s.flushed = s.written
	s.mu.Unlock()
	if !dirty {
		return nil
	}
	return syncStoreDir(s.dir)
}
func (s *chunkStore) close() error { return nil }

func (s *chunkStore) noteReused() {
	s.mu.Lock()
	s.reused++
	s.mu.Unlock()
}

// put stores a compressed chunk unless this writer already did. (Prepare
// has looked in the store; should another writer add the same chunk in
// between, the rename replaces it with identical bytes.)
func (s *chunkStore) put(sum *[32]byte, payload []byte) error {
	s.mu.Lock()
	ok := s.present[*sum]
	s.mu.Unlock()
	if ok {
		s.noteReused()
		return nil
	}
	path := chunkPath(s.dir, sum)
	sub := filepath.Dir(path)
	s.mu.Lock()
	made := s.subdirs[sub]
	s.mu.Unlock()
	if !made {
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return fmt.Errorf("chunk store: %w", err)
		}
		s.mu.Lock()
		s.subdirs[sub] = true
		s.mu.Unlock()
	}
	f, err := os.CreateTemp(sub, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("chunk store: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(payload)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("chunk store: write %s: %w", path, err)
	}
	s.mu.Lock()
	s.present[*sum] = true
	s.written++
	s.writtenBytes += int64(len(payload))
	s.mu.Unlock()
	return nil
}

// Reading.

var (
	decoderOnce sync.Once
	decoder     *zstd.Decoder
	decoderErr  error
)

// chunkDecoder is shared by every open bundle: DecodeAll is safe for
// concurrent use and keeps one block decoder per concurrent call. Output is
// limited to one chunk, so a hostile frame cannot make it allocate more.
func chunkDecoder() (*zstd.Decoder, error) {
	decoderOnce.Do(func() {
		decoder, decoderErr = zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(0),
			zstd.WithDecoderMaxMemory(ChunkSize),
			zstd.WithDecoderMaxWindow(ChunkSize),
			zstd.WithDecodeAllCapLimit(true),
			// The SHA-256 of the result is checked instead.
			zstd.IgnoreChecksum(true))
	})
	return decoder, decoderErr
}

var readBuffers = sync.Pool{New: func() any { b := make([]byte, 0, maxChunkFile); return &b }}

// errChunkCorrupt marks chunks whose content does not match their name.
var errChunkCorrupt = errors.New("chunk is corrupt")

// chunkSource is where an open bundle's compressed chunks come from: a store
// directory, or the members of a bundle tar file.
type chunkSource interface {
	// fetch reads the chunk's payload into buf (capacity maxChunkFile).
	fetch(sum *[32]byte, buf []byte) ([]byte, error)
	// name is the chunk's file, for errors.
	name(sum *[32]byte) string
	// release drops one user of the source.
	release() error
}

// dirSource reads chunks from a store directory.
type dirSource string

func (d dirSource) name(sum *[32]byte) string { return chunkPath(string(d), sum) }
func (d dirSource) release() error            { return nil }

func (d dirSource) fetch(sum *[32]byte, buf []byte) ([]byte, error) {
	f, err := os.Open(d.name(sum))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errors.New("chunk file is missing")
		}
		return nil, err
	}
	defer f.Close()
	n, err := io.ReadFull(f, buf[:maxChunkFile])
	switch {
	case err == nil:
		return nil, fmt.Errorf("%w: chunk file is larger than %d bytes", errChunkCorrupt, maxChunkFile)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return buf[:n], nil
	}
	return nil, err
}

// loadChunk fetches the chunk for sum, decodes it into dst (whose length is
// the chunk's expected length) and verifies the result against sum.
func loadChunk(src chunkSource, sum *[32]byte, dst []byte) error {
	bp := readBuffers.Get().(*[]byte)
	defer readBuffers.Put(bp)
	payload, err := src.fetch(sum, (*bp)[:maxChunkFile])
	if err != nil {
		return err
	}
	return decodeChunk(payload, sum, dst)
}

func decodeChunk(payload []byte, sum *[32]byte, dst []byte) error {
	dec, err := chunkDecoder()
	if err != nil {
		return err
	}
	out, err := dec.DecodeAll(payload, dst[:0:len(dst)])
	if err != nil {
		return fmt.Errorf("%w: zstd: %v", errChunkCorrupt, err)
	}
	if len(out) != len(dst) {
		return fmt.Errorf("%w: decodes to %d bytes, expected %d", errChunkCorrupt, len(out), len(dst))
	}
	if len(dst) > 0 && &out[0] != &dst[0] {
		copy(dst, out)
	}
	if got := sha256.Sum256(dst); got != *sum {
		return fmt.Errorf("%w: its content has SHA-256 %x", errChunkCorrupt, got)
	}
	return nil
}
