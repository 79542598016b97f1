package disk

import "context"

// CopyOptions tunes the copy engine. The zero value is ready to use.
type CopyOptions struct {
	// Workers reading, zero-checking and preparing chunks; 0 means one per core.
	Workers int
	// Window is the number of chunks in flight; 0 means 4 per worker. Memory
	// use is Window × ChunkSize whatever the size of the disk.
	Window int
	// Progress, when set, is called from one goroutine with the bytes of the
	// virtual disk done so far and the total.
	Progress func(done, total int64)
}

var _ = context.Background
