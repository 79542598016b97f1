package disk

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// OpenFile opens path for reading an image from it: a regular file or a
// block device. Anything else is refused at once: opening a named pipe
// waits for a writer, so a pipe named inside another file (a VMDK extent,
// a qcow2 backing or data file, a .vmx's disk) would hang the reader, and a
// character device or socket is no disk. Streams come in as "-" instead.
func OpenFile(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	if kind := st.Mode & unix.S_IFMT; kind != unix.S_IFREG && kind != unix.S_IFBLK {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "open", Path: path, Err: fmt.Errorf("%s, not a regular file or block device", fileKind(kind))}
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

func fileKind(kind uint32) string {
	switch kind {
	case unix.S_IFIFO:
		return "a named pipe"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFSOCK:
		return "a socket"
	}
	return fmt.Sprintf("a file of type %#o", kind)
}

// MissingFileError is a file an image names (a VMDK extent, a snapshot's
// or differencing disk's parent) that is in none of the places looked at.
// It unwraps to an *fs.PathError for the first of them (the name as
// written), so errors.Is(err, fs.ErrNotExist) holds and MissingFile finds
// the path.
type MissingFileError struct {
	Looked []string // candidate paths, at least one
}

func (e *MissingFileError) Error() string {
	return "not found (looked for " + strings.Join(e.Looked, ", ") + ")"
}

func (e *MissingFileError) Unwrap() error {
	return &fs.PathError{Op: "open", Path: e.Looked[0], Err: fs.ErrNotExist}
}

// MissingFile is the path of the absent file behind an opener's error, when
// that is what failed: an *fs.PathError for a file that does not exist. The
// file may be the one opened or one it names (a VMDK extent, a qcow2 or VHD
// backing file); `info` marks such a VM disk missing instead of failing.
func MissingFile(err error) (string, bool) {
	var pe *fs.PathError
	if errors.As(err, &pe) && errors.Is(pe.Err, fs.ErrNotExist) {
		return pe.Path, true
	}
	return "", false
}
