package disk

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// Output is a set of files and directories created atomically: each is written
// under a temporary name beside its target and all are renamed into place by
// Commit. Abort (or an interrupt signal) removes them, so a failed or
// interrupted run leaves nothing half-written. Existing targets are refused
// unless Force is set.
type Output struct {
	Force bool

	mu      sync.Mutex
	entries []outEntry
	done    bool
}

type outEntry struct {
	target, temp string
	dir          bool
	nested       bool // inside a pending directory: placed by its rename
	device       bool // an existing block device written in place
	file         *os.File
	wb           *writeback
}

// insidePendingDir maps a target inside a directory this output creates to
// its path inside that directory's temporary name.
func (o *Output) insidePendingDir(target string) (string, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	clean := filepath.Clean(target)
	for _, e := range o.entries {
		if !e.dir {
			continue
		}
		rel, err := filepath.Rel(filepath.Clean(e.target), clean)
		if err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return filepath.Join(e.temp, rel), true
		}
	}
	return "", false
}

// MkdirAll makes sure dir exists when the output is committed: the topmost
// missing directory is created atomically, like Mkdir, with the rest of the
// path inside it; files created inside it later appear with it.
func (o *Output) MkdirAll(dir string) error {
	dir = filepath.Clean(dir)
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s: not a directory", dir)
		}
		return nil
	}
	if inside, ok := o.insidePendingDir(dir); ok {
		return os.MkdirAll(inside, 0o755)
	}
	top := dir
	for {
		parent := filepath.Dir(top)
		if _, err := os.Stat(parent); err == nil || parent == top {
			break
		}
		top = parent
	}
	tmp, err := o.Mkdir(top)
	if err != nil {
		return err
	}
	rel, _ := filepath.Rel(top, dir)
	return os.MkdirAll(filepath.Join(tmp, rel), 0o755)
}

// Stdout is the path that means standard output.
const Stdout = "-"

// NewOutput returns an empty output set and registers it for removal on
// SIGINT/SIGTERM until it is committed or aborted.
func NewOutput(force bool) *Output {
	o := &Output{Force: force}
	registerOutput(o)
	return o
}

func (o *Output) checkTarget(target string) error {
	fi, err := os.Stat(target)
	if err == nil && readByUs(fi) {
		return errReadByUs(target)
	}
	if err == nil && fi.Mode()&os.ModeDevice != 0 {
		// Renaming a file over a device node would put the image in /dev's
		// memory and take the node away.
		return fmt.Errorf("%s: is a device: only a raw image is written to a device (-O raw)", target)
	}
	if _, err := os.Lstat(target); err == nil && !o.Force {
		return fmt.Errorf("%s: already exists (use --force to replace it)", target)
	}
	return nil
}

// readByUs reports whether fi is a file this process holds open: an input
// of the conversion (the source, its backing file, an extent, a VM's disk),
// which no output may replace, --force or not.
func readByUs(fi os.FileInfo) bool {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return false
	}
	for _, fd := range fds {
		if st, err := os.Stat("/proc/self/fd/" + fd.Name()); err == nil && os.SameFile(st, fi) {
			return true
		}
	}
	return false
}

func errReadByUs(target string) error {
	return fmt.Errorf("%s: is read by this conversion (the source, or a backing file, extent or disk of it); inputs are never changed", target)
}

// CreateDisk is Create for a raw disk image, whose target may also be an
// existing block device (with Force): the device is opened for exclusive
// use (a mounted one is refused) and written in place. Commit syncs it;
// Abort cannot undo what was written.
func (o *Output) CreateDisk(target string) (*os.File, error) {
	fi, err := os.Stat(target)
	if target == Stdout || err != nil || fi.Mode()&os.ModeDevice == 0 {
		return o.Create(target)
	}
	if fi.Mode()&os.ModeCharDevice != 0 {
		return nil, fmt.Errorf("%s: is a character device, not a disk (write to standard output with -)", target)
	}
	if readByUs(fi) {
		return nil, errReadByUs(target)
	}
	if !o.Force {
		return nil, fmt.Errorf("%s: is a block device: use --force to write over it", target)
	}
	// O_EXCL without O_CREAT: the kernel refuses a device in use.
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_EXCL, 0)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", target, err)
	}
	o.mu.Lock()
	o.entries = append(o.entries, outEntry{target: target, file: f, device: true})
	o.mu.Unlock()
	return f, nil
}

// Create opens a new file that becomes target on Commit. For Stdout it returns
// os.Stdout, which nothing renames.
func (o *Output) Create(target string) (*os.File, error) {
	if target == Stdout {
		return os.Stdout, nil
	}
	if err := o.checkTarget(target); err != nil {
		return nil, err
	}
	// A file inside a directory this output creates is made there under its
	// final name: renaming the directory places it.
	if inside, ok := o.insidePendingDir(target); ok {
		f, err := os.OpenFile(inside, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return nil, fmt.Errorf("create %s: %w", target, err)
		}
		o.mu.Lock()
		o.entries = append(o.entries, outEntry{target: target, temp: inside, file: f, nested: true, wb: startWriteback(f)})
		o.mu.Unlock()
		return f, nil
	}
	dir, base := filepath.Split(target)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, createError(target, dir, err)
	}
	// Temporary files are private; the output gets the usual mode.
	if err := f.Chmod(0o666 &^ umask()); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("create %s: %w", target, err)
	}
	o.mu.Lock()
	o.entries = append(o.entries, outEntry{target: target, temp: f.Name(), file: f, wb: startWriteback(f)})
	o.mu.Unlock()
	return f, nil
}

// createError is the error of creating target's temporary file or
// directory in dir, said of target: the temporary name means nothing to
// the user, and a missing directory is named as such.
func createError(target, dir string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("create %s: directory %s does not exist: %w", target, filepath.Clean(dir), err)
	}
	return fmt.Errorf("create %s: %w", target, err)
}

// Mkdir creates a new directory that becomes target on Commit and returns the
// temporary path to fill it through.
func (o *Output) Mkdir(target string) (string, error) {
	if err := o.checkTarget(target); err != nil {
		return "", err
	}
	dir, base := filepath.Split(filepath.Clean(target))
	if dir == "" {
		dir = "."
	}
	tmp, err := os.MkdirTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return "", createError(target, dir, err)
	}
	if err := os.Chmod(tmp, 0o777&^umask()); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("create %s: %w", target, err)
	}
	o.mu.Lock()
	o.entries = append(o.entries, outEntry{target: target, temp: tmp, dir: true})
	o.mu.Unlock()
	return tmp, nil
}

// Commit syncs and closes every file and renames everything into place.
func (o *Output) Commit() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.done {
		return errors.New("output already finished")
	}
	for _, e := range o.entries {
		if e.file != nil {
			if err := e.wb.Stop(); err != nil {
				o.abortLocked()
				return fmt.Errorf("write %s: %w", e.target, err)
			}
			if err := e.file.Sync(); err != nil {
				o.abortLocked()
				return fmt.Errorf("write %s: %w", e.target, err)
			}
			if err := e.file.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
				o.abortLocked()
				return fmt.Errorf("write %s: %w", e.target, err)
			}
		}
	}
	for _, e := range o.entries {
		if e.nested || e.device {
			continue
		}
		if o.Force {
			if fi, err := os.Lstat(e.target); err == nil && fi.IsDir() && e.dir {
				if err := os.RemoveAll(e.target); err != nil {
					o.abortLocked()
					return fmt.Errorf("replace %s: %w", e.target, err)
				}
			}
		}
		if err := os.Rename(e.temp, e.target); err != nil {
			o.abortLocked()
			return fmt.Errorf("rename %s: %w", e.target, err)
		}
	}
	o.done = true
	unregisterOutput(o)
	return nil
}

// Abort removes every temporary file and directory. It is safe to call after
// Commit (it does nothing then) and more than once.
func (o *Output) Abort() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.abortLocked()
}

func (o *Output) abortLocked() {
	if o.done {
		return
	}
	for _, e := range o.entries {
		if e.file != nil {
			e.wb.Stop()
			e.file.Close()
		}
		if !e.nested && !e.device {
			os.RemoveAll(e.temp)
		}
	}
	o.done = true
	unregisterOutput(o)
}

// Open outputs, removed when the process is interrupted.
var (
	liveMu      sync.Mutex
	liveOutputs = map[*Output]struct{}{}
	signalOnce  sync.Once
)

func registerOutput(o *Output) {
	signalOnce.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
		go func() {
			sig := <-ch
			liveMu.Lock()
			outs := make([]*Output, 0, len(liveOutputs))
			for o := range liveOutputs {
				outs = append(outs, o)
			}
			liveMu.Unlock()
			for _, o := range outs {
				o.Abort()
			}
			fmt.Fprintf(os.Stderr, "vmconv: interrupted by %v; partial output removed\n", sig)
			os.Exit(130)
		}()
	})
	liveMu.Lock()
	liveOutputs[o] = struct{}{}
	liveMu.Unlock()
}

func unregisterOutput(o *Output) {
	liveMu.Lock()
	delete(liveOutputs, o)
	liveMu.Unlock()
}

var (
	umaskOnce  sync.Once
	umaskValue os.FileMode
)

// umask is the process's file mode creation mask (read once: reading it
// means setting it).
func umask() os.FileMode {
	umaskOnce.Do(func() {
		m := syscall.Umask(0)
		syscall.Umask(m)
		umaskValue = os.FileMode(m)
	})
	return umaskValue
}
