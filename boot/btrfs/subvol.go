package btrfs

import (
	"encoding/binary"
	"fmt"
	"path"
	"sort"
)

// INODE_REF hops from directories up to their subvolume's top, for all the
// subvolumes of one Subvolumes call.
const maxRefSteps = 1 << 16

// Subvolume is one subvolume of the filesystem.
type Subvolume struct {
	ID     uint64
	Parent uint64 // the subvolume holding it (5 for the top level's children)
	Path   string // from the top level, as "btrfs subvolume list" prints it: "@/boot"
}

// backref is a subvolume's ROOT_BACKREF: where its entry sits in its parent.
type backref struct {
	parent, dir uint64
	name        string
}

func (v *volume) rootTree() treeRoot {
	return treeRoot{bytenr: v.sb.Root, level: v.sb.RootLevel, owner: rootTreeID}
}

// defaultSubvolume returns the id the root tree's "default" entry names, or
// the top level when there is none.
func (f *FS) defaultSubvolume() (uint64, error) {
	e, err := f.v.findEntry(f.v.rootTree(), rootTreeDirID, "default")
	if err != nil {
		return 0, fmt.Errorf("btrfs: default subvolume: %w", err)
	}
	if e == nil {
		return fsTreeID, nil
	}
	return e.location.objectid, nil
}

// SubvolumeID returns the filesystem seen from subvolume id (5 is the top level).
func (f *FS) SubvolumeID(id uint64) (*FS, error) {
	if id != fsTreeID && (id < firstFreeID || id > lastFreeID) {
		return nil, fmt.Errorf("btrfs: subvolume id %d, want 5 or %d..%d", id, firstFreeID, uint64(lastFreeID))
	}
	root, err := f.v.rootItem(id)
	if err != nil {
		return nil, fmt.Errorf("btrfs: subvolume %d: %w", id, err)
	}
	return &FS{v: f.v, tree: id, root: root, rootDir: firstFreeID}, nil
}

// Subvolume returns the filesystem seen from the subvolume at name, a path
// from the top level ("@", "/@/boot"; "/" is the top level itself).
func (f *FS) Subvolume(name string) (*FS, error) {
	top, err := f.SubvolumeID(fsTreeID)
	if err != nil {
		return nil, err
	}
	in, err := top.Lookup(name)
	if err != nil {
		return nil, err
	}
	if !in.IsDir() || in.Num != firstFreeID {
		return nil, fmt.Errorf("btrfs: %s is not a subvolume", name)
	}
	return f.SubvolumeID(in.Tree)
}

// Subvolumes lists the subvolumes below the top level, by id.
func (f *FS) Subvolumes() ([]Subvolume, error) {
	refs := map[uint64]backref{}
	err := f.v.scan(f.v.rootTree(), key{objectid: firstFreeID}, func(k key, data []byte) (bool, error) {
		if k.objectid > lastFreeID {
			return true, nil
		}
		if k.typ != typeRootBackref {
			return false, nil
		}
		le := binary.LittleEndian
		if len(data) < 18 || 18+int(le.Uint16(data[16:])) > len(data) {
			return true, fmt.Errorf("ROOT_BACKREF %v: %d bytes do not hold its name", k, len(data))
		}
		if len(refs) >= maxSubvolumes {
			return true, fmt.Errorf("more than %d subvolumes", maxSubvolumes)
		}
		refs[k.objectid] = backref{parent: k.offset, dir: le.Uint64(data), name: string(data[18 : 18+le.Uint16(data[16:])])}
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("btrfs: root tree: %w", err)
	}
	paths := map[uint64]string{fsTreeID: ""}
	var out []Subvolume
	steps := 0
	for id, r := range refs {
		p, err := f.subvolPath(id, refs, paths, 0, &steps)
		if err != nil {
			return nil, err
		}
		out = append(out, Subvolume{ID: id, Parent: r.parent, Path: p})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// subvolPath returns subvolume id's path from the top level, memoised in paths.
func (f *FS) subvolPath(id uint64, refs map[uint64]backref, paths map[uint64]string, depth int, steps *int) (string, error) {
	if p, ok := paths[id]; ok {
		return p, nil
	}
	if depth > maxSubvolDepth {
		return "", fmt.Errorf("btrfs: subvolume %d: nested more than %d deep (a loop?)", id, maxSubvolDepth)
	}
	r, ok := refs[id]
	if !ok {
		return "", fmt.Errorf("btrfs: subvolume %d: no ROOT_BACKREF", id)
	}
	parent, err := f.subvolPath(r.parent, refs, paths, depth+1, steps)
	if err != nil {
		return "", err
	}
	root, err := f.v.rootItem(r.parent)
	if err != nil {
		return "", fmt.Errorf("btrfs: subvolume %d: %w", r.parent, err)
	}
	dir, err := f.v.dirPath(root, r.dir, steps)
	if err != nil {
		return "", fmt.Errorf("btrfs: subvolume %d: %w", r.parent, err)
	}
	p := path.Join(parent, dir, r.name)
	paths[id] = p
	return p, nil
}

// dirPath returns directory ino's path from the top of its tree, following
// INODE_REF items (a directory has exactly one), counting them in steps.
func (v *volume) dirPath(root treeRoot, ino uint64, steps *int) (string, error) {
	p := ""
	for ; ino != firstFreeID; *steps++ {
		if *steps >= maxRefSteps {
			return "", fmt.Errorf("directory %d: more than %d parent directories walked (a loop?)", ino, maxRefSteps)
		}
		var parent uint64
		var name string
		err := v.scan(root, key{objectid: ino, typ: typeInodeRef}, func(k key, data []byte) (bool, error) {
			if k.objectid != ino || k.typ != typeInodeRef {
				return true, fmt.Errorf("directory %d has no INODE_REF", ino)
			}
			n := 0
			if len(data) >= 10 {
				n = int(binary.LittleEndian.Uint16(data[8:]))
			}
			if len(data) < 10 || 10+n > len(data) {
				return true, fmt.Errorf("INODE_REF %v: %d bytes do not hold its name", k, len(data))
			}
			parent, name = k.offset, string(data[10:10+n])
			return true, nil
		})
		if err != nil {
			return "", err
		}
		if name == "" {
			return "", fmt.Errorf("directory %d has no INODE_REF", ino)
		}
		p = path.Join(name, p)
		ino = parent
	}
	return p, nil
}
