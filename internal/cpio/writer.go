// Package cpio writes cpio archives in the "newc" (SVR4, no CRC) format, the
// one the Linux kernel unpacks as an initramfs.
//
// It is written by hand: the format is a 110-byte ASCII header per member
// and the kernel needs nothing else, so a dependency would be larger than
// this file.
package cpio

import (
	"fmt"
	"io"
	"io/fs"
)

// Mode bits of a newc header (the file type lives in the mode, as in stat).
const (
	TypeDir     = 0o040000
	TypeRegular = 0o100000
	TypeSymlink = 0o120000
	TypeChar    = 0o020000
)

// Header describes one member.
type Header struct {
	Name string
	Mode uint32 // type bits | permission bits
	// Major and minor device numbers of a device node.
	RDevMajor, RDevMinor uint32
}

// Writer writes members in order; Close writes the trailer. An error is
// sticky.
type Writer struct {
	w    io.Writer
	ino  uint32
	off  int64
	err  error
	done bool
}

// NewWriter writes an archive to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w, ino: 1} }

// Dir adds a directory.
func (w *Writer) Dir(name string, perm fs.FileMode) error {
	return w.member(Header{Name: name, Mode: TypeDir | uint32(perm.Perm())}, nil)
}

// File adds a regular file with its contents.
func (w *Writer) File(name string, perm fs.FileMode, data []byte) error {
	return w.member(Header{Name: name, Mode: TypeRegular | uint32(perm.Perm())}, data)
}

// Symlink adds a symbolic link to target.
func (w *Writer) Symlink(name, target string) error {
	return w.member(Header{Name: name, Mode: TypeSymlink | 0o777}, []byte(target))
}

// CharDevice adds a character device node.
func (w *Writer) CharDevice(name string, perm fs.FileMode, major, minor uint32) error {
	return w.member(Header{Name: name, Mode: TypeChar | uint32(perm.Perm()), RDevMajor: major, RDevMinor: minor}, nil)
}

func (w *Writer) member(h Header, data []byte) error {
	if w.err != nil {
		return w.err
	}
	if w.done {
		return fmt.Errorf("cpio: member %s after the trailer", h.Name)
	}
	w.ino++
	w.write(header(h, w.ino, len(data)))
	w.write([]byte(h.Name + "\x00"))
	w.pad()
	w.write(data)
	w.pad()
	return w.err
}

// header is the 110-byte newc header: magic and 13 eight-digit hex fields.
func header(h Header, ino uint32, size int) []byte {
	nlink := 1
	if h.Mode&0o170000 == TypeDir {
		nlink = 2
	}
	return fmt.Appendf(nil, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, h.Mode, 0, 0, nlink, 0, size, 0, 0, h.RDevMajor, h.RDevMinor, len(h.Name)+1, 0)
}

func (w *Writer) write(p []byte) {
	if w.err != nil {
		return
	}
	n, err := w.w.Write(p)
	w.off += int64(n)
	w.err = err
}

// pad aligns the stream to 4 bytes, as newc requires after names and data.
func (w *Writer) pad() {
	if r := w.off % 4; r != 0 {
		w.write(make([]byte, 4-r))
	}
}

// Close writes the trailer member; it does not close the underlying writer.
func (w *Writer) Close() error {
	if w.done {
		return w.err
	}
	w.write(header(Header{Name: "TRAILER!!!"}, 0, 0))
	w.write([]byte("TRAILER!!!\x00"))
	w.pad()
	w.done = true
	return w.err
}
