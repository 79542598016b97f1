package xfs

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
)

// Lookup resolves name (absolute, or relative to "/") to an inode, following
// symlinks within the filesystem (absolute targets from its root) up to a
// fixed number of hops. The final component is followed too.
func (f *FS) Lookup(name string) (*Inode, error) {
	hops := 0
	return f.lookup(name, true, &hops)
}

func (f *FS) lookup(name string, follow bool, hops *int) (*Inode, error) {
	root, err := f.ReadInode(f.sb.RootIno)
	if err != nil {
		return nil, fmt.Errorf("xfs: root directory: %w", err)
	}
	cur := root
	var stack []*Inode // ancestors, for ".." and to catch directory loops
	parts := splitPath(name)
	steps := 0
	for i := 0; i < len(parts); i++ {
		if steps++; steps > maxLookupStep {
			return nil, fmt.Errorf("xfs: %s: more than %d path components to walk", name, maxLookupStep)
		}
		p := parts[i]
		if p == "." {
			continue
		}
		if p == ".." {
			if len(stack) > 0 {
				cur, stack = stack[len(stack)-1], stack[:len(stack)-1]
			}
			continue
		}
		if !cur.IsDir() {
			return nil, fmt.Errorf("xfs: %s: %s is not a directory", name, strings.Join(parts[:i], "/"))
		}
		in, err := f.child(cur, p)
		if err != nil {
			return nil, err
		}
		if in == nil {
			return nil, fmt.Errorf("xfs: %s: %w", name, fs.ErrNotExist)
		}
		last := i == len(parts)-1
		if in.IsSymlink() && (!last || follow) {
			if *hops++; *hops > maxSymlinks {
				return nil, fmt.Errorf("xfs: %s: more than %d symlinks", name, maxSymlinks)
			}
			target, err := f.readlink(in)
			if err != nil {
				return nil, err
			}
			var base []string
			if !strings.HasPrefix(target, "/") {
				base = append(base, parts[:i]...)
			}
			parts = append(append(base, splitPath(target)...), parts[i+1:]...)
			cur, stack, i = root, nil, -1
			continue
		}
		stack = append(stack, cur)
		if in.IsDir() && slices.ContainsFunc(stack, func(a *Inode) bool { return a.Num == in.Num }) {
			// A directory has one parent: meeting it again on the way down is corruption.
			return nil, fmt.Errorf("xfs: %s: directory loop: %s is inode %d, also its own ancestor", name, strings.Join(parts[:i+1], "/"), in.Num)
		}
		cur = in
	}
	return cur, nil
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

func splitPath(p string) []string {
	var out []string
	for _, s := range strings.Split(p, "/") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
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
	hops := 0
	in, err := f.lookup(name, false, &hops)
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
