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

// remoteSymlink reads a v5 symlink's blocks: each holds an xfs_dsymlink_hdr
// (magic "XSLM", the offset and length of its piece of the target, crc,
// owner, block number, lsn) and then that piece.
func (f *FS) remoteSymlink(in *Inode) (string, error) {
	const hdr = 56
	maps, err := f.blockMap(in)
	if err != nil {
		return "", err
	}
	be := binary.BigEndian
	buf := make([]byte, f.blockSize)
	out := make([]byte, 0, in.Size)
	for blk := int64(0); int64(len(out)) < in.Size; blk++ {
		if err := f.readLogical(in, maps, blk*f.blockSize, buf); err != nil {
			return "", err
		}
		if m := be.Uint32(buf); m != 0x58534c4d {
			return "", fmt.Errorf("xfs: symlink inode %d: block %d: sl_magic %#08x, want 0x58534c4d (XSLM)", in.Num, blk, m)
		}
		off, n := int64(be.Uint32(buf[4:])), int64(be.Uint32(buf[8:]))
		if off != int64(len(out)) || n == 0 || n > f.blockSize-hdr || off+n > in.Size {
			return "", fmt.Errorf("xfs: symlink inode %d: block %d: sl_offset %d, sl_bytes %d, want offset %d and 1..%d bytes", in.Num, blk, off, n, len(out), min(f.blockSize-hdr, in.Size-off))
		}
		out = append(out, buf[hdr:hdr+n]...)
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
