package disk

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"sync"
)

// ChunkHash is the SHA-256 of one chunk's bytes.
func ChunkHash(p []byte) [32]byte { return sha256.Sum256(p) }

var (
	zeroHashOnce sync.Once
	zeroHashFull [32]byte
)

// ZeroChunkHash is the hash of n zero bytes; the full-size one is computed once.
func ZeroChunkHash(n int) [32]byte {
	if n == ChunkSize {
		zeroHashOnce.Do(func() { zeroHashFull = sha256.Sum256(zeros) })
		return zeroHashFull
	}
	return sha256.Sum256(zeros[:n])
}

// DigestHasher builds a content digest from chunk hashes given in order:
// SHA-256 over the sequence of per-chunk SHA-256s, every ChunkSize chunk of
// the virtual disk counted, zero chunks by their constant hash. Formats that
// already hash their chunks (bundles) use it to avoid a second read.
type DigestHasher struct {
	size int64
	next int64 // offset of the next chunk expected
	h    hash.Hash
}

// NewDigestHasher starts a digest of an image of the given size.
func NewDigestHasher(size int64) *DigestHasher {
	return &DigestHasher{size: size, h: sha256.New()}
}

// Add records the hash of the chunk at off; chunks skipped since the last
// call are zero.
func (d *DigestHasher) Add(off int64, sum [32]byte) {
	d.zerosUpTo(off)
	d.h.Write(sum[:])
	d.next = off + ChunkSize
}

func (d *DigestHasher) zerosUpTo(off int64) {
	for ; d.next < off; d.next += ChunkSize {
		z := ZeroChunkHash(int(min(int64(ChunkSize), d.size-d.next)))
		d.h.Write(z[:])
	}
}

// Sum returns the digest as 64 lower-case hex digits.
func (d *DigestHasher) Sum() string {
	d.zerosUpTo(d.size)
	return hex.EncodeToString(d.h.Sum(nil))
}

// digestWriter hashes chunks on the engine's workers.
type digestWriter struct{ d *DigestHasher }

func (w digestWriter) Prepare(c *Chunk) error {
	c.Prepared = ChunkHash(c.Data)
	return nil
}

func (w digestWriter) WriteChunk(c *Chunk) error {
	w.d.Add(c.Offset, c.Prepared.([32]byte))
	return nil
}

func (w digestWriter) Close() error { return nil }

// Digest computes an image's content digest (see DigestHasher) reading only
// its allocated data, on all cores. Same bytes, same digest, whatever the
// format.
func Digest(ctx context.Context, img Image, opt CopyOptions) (string, error) {
	d := NewDigestHasher(img.Size())
	if err := Copy(ctx, img, digestWriter{d}, opt); err != nil {
		return "", err
	}
	return d.Sum(), nil
}
