package initramfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

const (
	headerLen  = 110
	maxNameLen = 4096 // PATH_MAX: the kernel refuses longer names too
	trailer    = "TRAILER!!!"
)

// parser collects entries over all archives of one image.
type parser struct {
	lim   Limits
	im    *Image
	total int64 // decompressed bytes read so far
	kept  int64
}

// counted reads decompressed bytes, failing once the image's MaxBytes bound
// is passed: the bound on a decompression bomb.
type counted struct {
	r    io.Reader
	left int64
	p    *parser
	off  int64 // offset within this archive's stream, for padding and errors
}

// errBound is the error of an image that unpacks to more than MaxBytes.
var errBound = errors.New("decompressed bytes (the bound)")

func (c *counted) Read(b []byte) (int, error) {
	if c.left <= 0 {
		return 0, fmt.Errorf("more than %d %w", c.p.lim.MaxBytes, errBound)
	}
	if int64(len(b)) > c.left {
		b = b[:c.left]
	}
	n, err := c.r.Read(b)
	c.left -= int64(n)
	c.off += int64(n)
	c.p.total += int64(n)
	return n, err
}

func (c *counted) full(b []byte) error {
	_, err := io.ReadFull(c, b)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// pad skips to the next multiple of 4 in the stream.
func (c *counted) pad() error {
	var z [3]byte
	return c.full(z[:(4-c.off%4)%4])
}

// skipZeros skips zero bytes between archives; io.EOF at the stream's end.
func (c *counted) skipZeros() error {
	var b [1]byte
	for {
		n, err := c.Read(b[:])
		if n == 1 && b[0] != 0 {
			c.r = io.MultiReader(bytes.NewReader(b[:]), c.r)
			c.off--
			c.left++
			c.p.total--
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// cpio reads one newc archive up to and including its trailer and the
// padding after it.
func (p *parser) cpio(c *counted) error {
	var hdr [headerLen]byte
	for {
		start := c.off
		if err := c.full(hdr[:]); err != nil {
			return fmt.Errorf("header at %#x: %w", start, err)
		}
		if !bytes.HasPrefix(hdr[:], []byte("070701")) && !bytes.HasPrefix(hdr[:], []byte("070702")) {
			return fmt.Errorf("header at %#x: bad magic %q", start, hdr[:6])
		}
		var f [13]uint32 // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
		for i := range f {
			v, err := strconv.ParseUint(string(hdr[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				return fmt.Errorf("header at %#x: field %d: %q is not hex", start, i, hdr[6+8*i:14+8*i])
			}
			f[i] = uint32(v)
		}
		mode, size, nameLen := f[1], int64(f[6]), f[11]
		if nameLen == 0 || nameLen > maxNameLen {
			return fmt.Errorf("header at %#x: name length %d (want 1..%d)", start, nameLen, maxNameLen)
		}
		name := make([]byte, nameLen)
		if err := c.full(name); err != nil {
			return fmt.Errorf("name at %#x: %w", start+headerLen, err)
		}
		name = bytes.TrimRight(name, "\x00")
		if err := c.pad(); err != nil {
			return err
		}
		if string(name) == trailer {
			return nil
		}
		if len(p.im.Entries) >= p.lim.MaxEntries {
			return fmt.Errorf("more than %d entries (the bound)", p.lim.MaxEntries)
		}
		e := Entry{Name: clean(string(name)), Mode: mode, Size: size, Archive: len(p.im.Archives) - 1,
			Format: p.im.Archives[len(p.im.Archives)-1]}
		p.im.Entries = append(p.im.Entries, e)
		if err := p.body(c, e); err != nil {
			return fmt.Errorf("%s at %#x: %w", e.Name, start, err)
		}
		if err := c.pad(); err != nil {
			return err
		}
	}
}

// body reads an entry's data, keeping it when it is a small regular file.
// A later entry of the same name replaces an earlier one, as it does when
// the kernel unpacks.
func (p *parser) body(c *counted, e Entry) error {
	delete(p.im.kept, e.Name)
	delete(p.im.big, e.Name)
	if e.IsRegular() && e.Size <= p.lim.MaxKeep && p.kept+e.Size <= p.lim.MaxKept {
		b := make([]byte, e.Size) // bounded by MaxKeep
		if err := c.full(b); err != nil {
			return err
		}
		p.im.kept[e.Name] = b
		p.kept += e.Size
		return nil
	}
	if e.IsRegular() {
		p.im.big[e.Name] = true
	}
	n, err := io.CopyN(io.Discard, c, e.Size)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return fmt.Errorf("data (%d of %d bytes): %w", n, e.Size, err)
	}
	return nil
}
