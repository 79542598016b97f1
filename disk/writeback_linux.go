package disk

import (
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

// writeback starts the kernel writing a file's dirty pages while the file is
// still being written. With much memory the kernel's own background writeback
// starts only past gigabytes of dirty data, so without this the disk idles
// during the copy and the fsync before rename then waits for all of it. It
// only initiates writes (SYNC_FILE_RANGE_WRITE, no wait and no metadata):
// durability still comes from the fsync in Commit.
type writeback struct {
	stop chan struct{}
	done chan struct{}
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
	}
}

// Stop ends the writeback and waits for it; the file may be closed after.
func (w *writeback) Stop() {
	if w == nil {
		return
	}
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}
