package btrfs

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"path"

	"github.com/vmconv/vmconv/boot/pathwalk"
)

const dirItemHeader = 30

// DirEntry is one directory entry.
type DirEntry struct {
	Name  string
	Inode uint64 // the inode, or the subvolume id of a subvolume's entry
	Type  uint8  // btrfs file type, as ext4's: 1 regular, 2 directory, 7 symlink
}

// dirItem is one entry of a DIR_ITEM or DIR_INDEX item.
type dirItem struct {
	location key // (inode, INODE_ITEM, 0), or (subvolume, ROOT_ITEM, ...)
	typ      uint8
	name     string
}

// parseDirItems splits a DIR_ITEM's data (several entries when names'
// hashes collide; DIR_INDEX holds one).
func parseDirItems(b []byte) ([]dirItem, error) {
	le := binary.LittleEndian
	var out []dirItem
	for off := 0; off < len(b); {
		if off+dirItemHeader > len(b) {
			return nil, fmt.Errorf("directory entry at %d: truncated header in %d bytes", off, len(b))
		}
		dataLen, nameLen := int(le.Uint16(b[off+25:])), int(le.Uint16(b[off+27:]))
		end := off + dirItemHeader + nameLen + dataLen
		if end > len(b) {
			return nil, fmt.Errorf("directory entry at %d: name of %d and data of %d bytes past the %d-byte item", off, nameLen, dataLen, len(b))
		}
		out = append(out, dirItem{
			location: parseKey(b[off:]),
			typ:      b[off+29],
			name:     string(b[off+dirItemHeader : off+dirItemHeader+nameLen]),
		})
		off = end
	}
	return out, nil
}

// nameHash is the DIR_ITEM key offset of name: the kernel's crc32c with
// seed ~1 and no final inversion.
func nameHash(name string) uint64 {
	return uint64(^crc32.Update(1, castagnoli, []byte(name)))
}

// findEntry returns the entry called name in directory dir of the tree at root.
func (v *volume) findEntry(root treeRoot, dir uint64, name string) (*dirItem, error) {
	b, err := v.lookupItem(root, key{objectid: dir, typ: typeDirItem, offset: nameHash(name)})
	if err != nil || b == nil {
		return nil, err
	}
	items, err := parseDirItems(b)
	if err != nil {
		return nil, fmt.Errorf("directory %d: %w", dir, err)
	}
	for i := range items {
		if items[i].name == name {
			return &items[i], nil
		}
	}
	return nil, nil
}

// readDir lists directory in in DIR_INDEX (creation) order.
func (v *volume) readDir(in *Inode) ([]DirEntry, error) {
	if !in.IsDir() {
		return nil, fmt.Errorf("btrfs: subvolume %d: inode %d is not a directory", in.Tree, in.Num)
	}
	var out []DirEntry
	err := v.scan(in.root, key{objectid: in.Num, typ: typeDirIndex}, func(k key, data []byte) (bool, error) {
		if k.objectid != in.Num || k.typ != typeDirIndex {
			return true, nil
		}
		items, err := parseDirItems(data)
		if err != nil {
			return true, fmt.Errorf("DIR_INDEX %d: %w", k.offset, err)
		}
		if len(out)+len(items) > maxDirEntries {
			return true, fmt.Errorf("more than %d entries", maxDirEntries)
		}
		for _, it := range items {
			out = append(out, DirEntry{Name: it.name, Inode: it.location.objectid, Type: it.typ})
		}
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("btrfs: subvolume %d: directory %d: %w", in.Tree, in.Num, err)
	}
	return out, nil
}

// enter returns the inode an entry points to, crossing into a subvolume
// when the entry is one.
func (v *volume) enter(cur *Inode, e *dirItem) (*Inode, error) {
	if e.location.typ != typeRootItem {
		return v.readInode(cur.Tree, cur.root, e.location.objectid)
	}
	id := e.location.objectid
	root, err := v.rootItem(id)
	if err != nil {
		return nil, fmt.Errorf("btrfs: subvolume %d: %w", id, err)
	}
	return v.readInode(id, root, firstFreeID)
}

// Lookup resolves name (absolute, or relative to the subvolume's top) to an
// inode, following symlinks within the subvolume (absolute targets from its
// top) up to a fixed number of hops, the final component too.
func (f *FS) Lookup(name string) (*Inode, error) {
	return pathwalk.Resolve[*Inode](walker{f}, "btrfs", name, true)
}

// walker is the filesystem as pathwalk sees it; entries may cross into
// other subvolumes, so an inode is named by both numbers.
type walker struct{ f *FS }

func (w walker) Root() (*Inode, error)              { return w.f.v.readInode(w.f.tree, w.f.root, w.f.rootDir) }
func (w walker) Readlink(in *Inode) (string, error) { return w.f.v.readlink(in) }
func (w walker) ID(in *Inode) string                { return fmt.Sprintf("inode %d of subvolume %d", in.Num, in.Tree) }

func (w walker) Child(dir *Inode, name string) (*Inode, bool, error) {
	e, err := w.f.v.findEntry(dir.root, dir.Num, name)
	if err != nil {
		return nil, false, fmt.Errorf("btrfs: subvolume %d: directory inode %d: entry %q: %w", dir.Tree, dir.Num, name, err)
	}
	if e == nil {
		return nil, false, nil
	}
	in, err := w.f.v.enter(dir, e)
	return in, err == nil, err
}

// readlink returns a symlink's target, stored as an inline extent.
func (v *volume) readlink(in *Inode) (string, error) {
	if in.Size == 0 || in.Size > 4096 {
		return "", fmt.Errorf("btrfs: subvolume %d: symlink inode %d: target length %d, want 1..4096", in.Tree, in.Num, in.Size)
	}
	b, err := v.readData(in, 4096)
	return string(b), err
}

// Readlink returns the target of the symlink at name (not followed).
func (f *FS) Readlink(name string) (string, error) {
	in, err := pathwalk.Resolve[*Inode](walker{f}, "btrfs", name, false)
	if err != nil {
		return "", err
	}
	if !in.IsSymlink() {
		return "", fmt.Errorf("btrfs: %s is not a symlink", name)
	}
	return f.v.readlink(in)
}

// ReadFile returns the contents of the regular file at name, following
// symlinks, refusing files larger than max (and than MaxFileSize).
func (f *FS) ReadFile(name string, max int64) ([]byte, error) {
	in, err := f.Lookup(name)
	if err != nil {
		return nil, err
	}
	if !in.IsRegular() {
		return nil, fmt.Errorf("btrfs: %s is not a regular file (mode %#o)", name, in.Mode)
	}
	b, err := f.v.readData(in, min(max, MaxFileSize))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return b, nil
}

// ReadDir returns the entries of directory name in creation order ("." and
// ".." are not stored by btrfs). A nested subvolume appears as a directory.
func (f *FS) ReadDir(name string) ([]DirEntry, error) {
	in, err := f.Lookup(name)
	if err != nil {
		return nil, err
	}
	return f.v.readDir(in)
}

// Stat returns the size of name (symlinks followed) and whether it is a directory.
func (f *FS) Stat(name string) (size int64, dir bool, err error) {
	in, err := f.Lookup(path.Clean("/" + name))
	if err != nil {
		return 0, false, err
	}
	return in.Size, in.IsDir(), nil
}
