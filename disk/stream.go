package disk

// Stream is an image read once, front to back, as from a pipe: streamOptimized
// VMDK or XVA on stdin. Runs come in increasing offset order; every byte not
// returned by a run is zero.
type Stream interface {
	// Size is the virtual size in bytes.
	Size() int64
	// Next returns the next run of data starting at off. The slice is valid
	// until the following call. It returns io.EOF after the last run.
	Next() (off int64, p []byte, err error)
}
