package disk

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// writebackEvery is how often a file being written has its new pages handed
// to the disk: at 1 GB/s of page-cache writes, ~25 MB at a time.
const writebackEvery = 25 * time.Millisecond

// writebackLag keeps the file's last bytes out of writeback: they are
// probably being written, and a page under writeback that is written again
// may have to wait for the disk.
const writebackLag = 1 << 20

// flushEvery is how many bytes of the file handed to the disk call for a flush
// (fdatasync) while the file is still being written. Pages written back sit
// in the disk's volatile cache (a virtual disk's: the host's page cache)
// until a flush, and one flush at the end then waits for all of them: on a
// virtual disk, the final fsync of a 471 MiB image took 0.4 s after
// writeback had left nothing dirty (README, performance).
var flushEvery int64 = 64 << 20

// flushFile makes a file's writes so far durable (a variable for tests).
var flushFile = unix.Fdatasync

// writeback starts the kernel writing a file's dirty pages while the file is
// still being written, and flushes the disk's cache every flushEvery bytes.
// With much memory the kernel's own background writeback starts only past
// gigabytes of dirty data, so without this the disk idles during the copy
// and the fsync before rename then waits for all of it. Durability still
// comes from the fsync in Commit; a flush that fails here is reported there
// (the kernel reports a write error to one fsync of a file description only).
type writeback struct {
	stop chan struct{}
	done chan struct{}
	err  error // a failed flush; set before done is closed
}

func startWriteback(f *os.File) *writeback {
	w := &writeback{stop: make(chan struct{}), done: make(chan struct{})}
	go w.run(f)
	return w
}

func (w *writeback) run(f *os.File) {
	defer close(w.done)
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	t := time.NewTicker(writebackEvery)
	defer t.Stop()
	var flushed int64 // bytes [0, flushed) already handed to the disk once
	var durable int64 // bytes [0, durable) flushed out of the disk's cache
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		fi, err := f.Stat()
		if err != nil {
			return
		}
		end := fi.Size() - writebackLag
		if end <= flushed {
			continue
		}
		var serr error
		rc.Control(func(fd uintptr) {
			serr = unix.SyncFileRange(int(fd), flushed, end-flushed, unix.SYNC_FILE_RANGE_WRITE)
		})
		if serr != nil {
			return // not supported here: Commit's fsync does it all
		}
		flushed = end
		if flushed-durable >= flushEvery {
			rc.Control(func(fd uintptr) { serr = flushFile(int(fd)) })
			if serr != nil {
				w.err = fmt.Errorf("flush at %d bytes: %w", flushed, serr)
				return
			}
			durable = flushed
		}
	}
}

// Stop ends the writeback and waits for it; the file may be closed after.
// It returns the error of a failed flush.
func (w *writeback) Stop() error {
	if w == nil {
		return nil
	}
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	return w.err
}
