package disk

import "fmt"

// Chunk is one piece of an image handed from the copy engine to a Writer.
// Chunks are ChunkSize long and aligned to ChunkSize, except the last chunk of
// an image whose size is not a multiple of ChunkSize.
type Chunk struct {
	// Offset of the first byte in the image.
	Offset int64
	// Data holds the chunk's bytes; nil when Zero is set. The engine owns
	// the buffer: it is reused once WriteChunk returns.
	Data []byte
	// Length of the chunk (len(Data) when Data is set).
	Length int
	// Zero is set when the whole chunk reads as zeros.
	Zero bool
	// Prepared holds what a Preparer computed for this chunk (compressed
	// grains, checksums). The writer owns it.
	Prepared any
}

// Writer receives an image's chunks in strictly increasing offset order.
// Chunks it is never given are zero. Close writes trailing metadata (footer,
// grain directory, end-of-stream marker) and is the only call that does; after
// an error every later call returns the same error.
type Writer interface {
	WriteChunk(c *Chunk) error
	Close() error
}

// ChunkOrder checks what a Writer asks of its chunks: increasing offsets,
// none past the disk's size. The zero value expects the first chunk.
type ChunkOrder struct {
	next int64 // chunks start at or after this offset
}

// Take checks c against the disk's size and moves past it.
func (o *ChunkOrder) Take(c *Chunk, size int64) error {
	if c.Offset < o.next {
		return fmt.Errorf("chunk at %#x out of order (next expected at or after %#x)", c.Offset, o.next)
	}
	if c.Offset+int64(c.Length) > size {
		return fmt.Errorf("chunk at %#x runs past the disk size %d", c.Offset, size)
	}
	o.next = c.Offset + int64(c.Length)
	return nil
}

// Preparer is implemented by writers that have CPU work to do per chunk, such
// as compression or checksums. The engine calls Prepare on its workers, in
// parallel and in no particular order, before handing the chunk to WriteChunk
// in order. Prepare must not touch the writer's output.
type Preparer interface {
	Prepare(c *Chunk) error
}

// ZeroSkipper is implemented by writers that want every chunk, zero or not,
// delivered (for formats that must record zero chunks explicitly). Writers that
// do not implement it, or return false, are not given all-zero chunks.
type ZeroSkipper interface {
	WantsZeroChunks() bool
}
