package xfs

import (
	"encoding/binary"
	"fmt"
	"path"

	"github.com/vmconv/vmconv/boot/pathwalk"
)

// Lookup resolves name (absolute, or relative to "/") to an inode, following
// symlinks within the filesystem (absolute targets from its root) up to a
// fixed number of hops. The final component is followed too.
func (f *FS) Lookup(name string) (*Inode, error) {
	return pathwalk.Resolve[*Inode](walker{f}, "xfs", name, true)
}

// walker is the filesystem as pathwalk sees it.
type walker struct{ f *FS }

func (w walker) Root() (*Inode, error)              { return w.f.ReadInode(w.f.sb.RootIno) }
func (w walker) Readlink(in *Inode) (string, error) { return w.f.readlink(in) }
func (w walker) ID(in *Inode) string                { return fmt.Sprintf("inode %d", in.Num) }

func (w walker) Child(dir *Inode, name string) (*Inode, bool, error) {
	in, err := w.f.child(dir, name)
	return in, in != nil, err
}

// child returns the inode named p in directory dir, nil if there is none.
func (f *FS) child(dir *Inode, p string) (*Inode, error) {
	ents, err := f.readDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if e.Name == p {
			return f.ReadInode(e.Inode)
		}
	}
	return nil, nil
}

// readlink returns a symlink's target: in the inode (local format) when
// short, else in blocks, each of which starts with a header on v5.
func (f *FS) readlink(in *Inode) (string, error) {
	if in.Size == 0 || in.Size > maxSymlinkLen {
		return "", fmt.Errorf("xfs: symlink inode %d: target length %d, want 1..%d", in.Num, in.Size, maxSymlinkLen)
	}
	if in.Format == fmtLocal || !f.v5 {
		b, err := f.readData(in, maxSymlinkLen)
		return string(b), err
	}
	return f.remoteSymlink(in)
}

// remoteSymlink reads a v5 symlink's extents: each starts with an
// xfs_dsymlink_hdr (magic "XSLM", the offset and length of its piece of the
// target, crc, owner, block number, lsn) followed by that piece, as the
// kernel's xfs_readlink_bmap reads them: one header per extent, not per block.
func (f *FS) remoteSymlink(in *Inode) (string, error) {
	const hdr = 56
	maps, err := f.blockMap(in)
	if err != nil {
		return "", err
	}
	be := binary.BigEndian
	out := make([]byte, 0, in.Size)
	next := uint64(0) // file block the next extent must start at
	for i, m := range maps {
		if int64(len(out)) == in.Size {
			break
		}
		if m.logical != next {
			return "", fmt.Errorf("xfs: symlink inode %d: extent %d starts at block %d, want %d", in.Num, i, m.logical, next)
		}
		next += m.length
		want := min(int64(m.length)*f.blockSize-hdr, in.Size-int64(len(out)))
		buf := make([]byte, hdr+max(want, 0))
		if err := f.readLogical(in, maps, int64(m.logical)*f.blockSize, buf); err != nil {
			return "", err
		}
		if mg := be.Uint32(buf); mg != 0x58534c4d {
			return "", fmt.Errorf("xfs: symlink inode %d: extent %d: sl_magic %#08x, want 0x58534c4d (XSLM)", in.Num, i, mg)
		}
		off, n := int64(be.Uint32(buf[4:])), int64(be.Uint32(buf[8:]))
		if off != int64(len(out)) || n != want || want <= 0 {
			return "", fmt.Errorf("xfs: symlink inode %d: extent %d: sl_offset %d, sl_bytes %d, want %d and %d", in.Num, i, off, n, len(out), want)
		}
		out = append(out, buf[hdr:]...)
	}
	if int64(len(out)) != in.Size {
		return "", fmt.Errorf("xfs: symlink inode %d: extents hold %d of its %d bytes", in.Num, len(out), in.Size)
	}
	return string(out), nil
}

// Readlink returns the target of the symlink at name (not followed).
func (f *FS) Readlink(name string) (string, error) {
	in, err := pathwalk.Resolve[*Inode](walker{f}, "xfs", name, false)
	if err != nil {
		return "", err
	}
	if !in.IsSymlink() {
		return "", fmt.Errorf("xfs: %s is not a symlink", name)
	}
	return f.readlink(in)
}

// ReadFile returns the contents of the regular file at name, following
// symlinks, refusing files larger than max (and than MaxFileSize).
func (f *FS) ReadFile(name string, max int64) ([]byte, error) {
	in, err := f.Lookup(name)
	if err != nil {
		return nil, err
	}
	if !in.IsRegular() {
		return nil, fmt.Errorf("xfs: %s is not a regular file (mode %#o)", name, in.Mode)
	}
	b, err := f.readData(in, min(max, MaxFileSize))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return b, nil
}

// ReadDir returns the entries of directory name ("." and ".." left out), in
// on-disk order.
func (f *FS) ReadDir(name string) ([]DirEntry, error) {
	in, err := f.Lookup(name)
	if err != nil {
		return nil, err
	}
	return f.readDir(in)
}

// Stat returns the size of name (symlinks followed) and whether it is a directory.
func (f *FS) Stat(name string) (size int64, dir bool, err error) {
	in, err := f.Lookup(path.Clean("/" + name))
	if err != nil {
		return 0, false, err
	}
	return in.Size, in.IsDir(), nil
}
