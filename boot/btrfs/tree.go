package btrfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Tree ids and well-known object ids.
const (
	rootTreeID     = 1
	chunkTreeID    = 3
	fsTreeID       = 5
	rootTreeDirID  = 6
	firstFreeID    = 256 // first subvolume id, and every fs tree's top directory
	lastFreeID     = 1<<64 - 256
	firstChunkTree = 256
)

// Item types.
const (
	typeInodeItem   = 1
	typeInodeRef    = 12
	typeDirItem     = 84
	typeDirIndex    = 96
	typeExtentData  = 108
	typeRootItem    = 132
	typeRootBackref = 144
	typeRootRef     = 156
	typeChunkItem   = 228
)

// key is a B-tree key (btrfs_disk_key).
type key struct {
	objectid uint64
	typ      uint8
	offset   uint64
}

func parseKey(b []byte) key {
	le := binary.LittleEndian
	return key{objectid: le.Uint64(b), typ: b[8], offset: le.Uint64(b[9:])}
}

func (k key) less(o key) bool {
	if k.objectid != o.objectid {
		return k.objectid < o.objectid
	}
	if k.typ != o.typ {
		return k.typ < o.typ
	}
	return k.offset < o.offset
}

func (k key) String() string { return fmt.Sprintf("(%d %d %d)", k.objectid, k.typ, k.offset) }

// treeRoot is where a tree starts.
type treeRoot struct {
	bytenr uint64
	level  uint8
	owner  uint64 // tree id, for messages
}

// node is a B-tree node or leaf read from disk.
type node struct {
	b       []byte
	bytenr  uint64
	level   uint8
	nritems int
}

// errStop ends a scan early without an error.
var errStop = errors.New("stop")

// readNode reads the node at logical address bytenr, which its parent says
// has the given level.
func (v *volume) readNode(bytenr uint64, level uint8) (*node, error) {
	ns := uint64(v.sb.NodeSize)
	v.mu.Lock()
	b, ok := v.cache[bytenr]
	v.mu.Unlock()
	if !ok {
		b = make([]byte, ns)
		if err := v.readLogical(b, bytenr); err != nil {
			return nil, fmt.Errorf("node at %#x: %w", bytenr, err)
		}
		if err := v.checkNode(b, bytenr); err != nil {
			return nil, err
		}
		v.mu.Lock()
		if len(v.cache) >= nodeCacheSize {
			clear(v.cache)
		}
		v.cache[bytenr] = b
		v.mu.Unlock()
	}
	le := binary.LittleEndian
	n := &node{b: b, bytenr: bytenr, level: b[0x64], nritems: int(le.Uint32(b[0x60:]))}
	if n.level != level {
		return nil, fmt.Errorf("node at %#x: level %d, want %d (one below its parent's)", bytenr, n.level, level)
	}
	per := leafItemLen
	if level > 0 {
		per = keyPtrLen
	}
	if n.nritems == 0 && level > 0 || nodeHeaderLen+n.nritems*per > len(b) {
		return nil, fmt.Errorf("node at %#x: %d items of %d bytes do not fit a %d-byte level-%d node", bytenr, n.nritems, per, len(b), level)
	}
	return n, nil
}

// checkNode verifies the header of a freshly read node.
func (v *volume) checkNode(b []byte, bytenr uint64) error {
	le := binary.LittleEndian
	if v.verify {
		if err := checksum(v.sb.CsumType, b); err != nil {
			return fmt.Errorf("node at %#x: %w", bytenr, err)
		}
	}
	if got := le.Uint64(b[0x30:]); got != bytenr {
		return fmt.Errorf("node at %#x: header says it is at %#x", bytenr, got)
	}
	fsid := v.sb.FSID
	if v.sb.IncompatFlags&incompatMetadataUUID != 0 {
		fsid = v.sb.MetadataUUID
	}
	if !bytes.Equal(b[0x20:0x30], fsid[:]) {
		return fmt.Errorf("node at %#x: fsid %x, want %x", bytenr, b[0x20:0x30], fsid)
	}
	return nil
}

// item returns the key and data of leaf item i.
func (n *node) item(i int) (key, []byte, error) {
	le := binary.LittleEndian
	p := nodeHeaderLen + i*leafItemLen
	k := parseKey(n.b[p:])
	off, size := int64(le.Uint32(n.b[p+keyLen:])), int64(le.Uint32(n.b[p+keyLen+4:]))
	start := nodeHeaderLen + off
	if start+size > int64(len(n.b)) || start < int64(nodeHeaderLen+n.nritems*leafItemLen) && size > 0 {
		return k, nil, fmt.Errorf("leaf at %#x: item %d %v: data at offset %d, %d bytes, past the leaf's %d bytes or into its item headers", n.bytenr, i, k, off, size, len(n.b))
	}
	return k, n.b[start : start+size], nil
}

// ptr returns the key and child address of internal-node slot i.
func (n *node) ptr(i int) (key, uint64) {
	p := nodeHeaderLen + i*keyPtrLen
	return parseKey(n.b[p:]), binary.LittleEndian.Uint64(n.b[p+keyLen:])
}

// scan calls fn for every item of the tree at root whose key is at least
// start, in key order, until fn returns true or an error. One scan reads at
// most maxNodeVisits nodes, and the keys it meets must increase strictly: a
// node reached twice (a loop or a shared subtree in a corrupt tree) is an
// error, not a second visit.
func (v *volume) scan(root treeRoot, start key, fn func(k key, data []byte) (bool, error)) error {
	s := &scanState{start: start, fn: fn}
	err := v.scanNode(s, root.bytenr, root.level, true)
	if err == errStop {
		return nil
	}
	if err != nil {
		return fmt.Errorf("tree %d: %w", root.owner, err)
	}
	return nil
}

type scanState struct {
	start   key
	fn      func(key, []byte) (bool, error)
	visits  int
	last    key
	started bool
}

func (v *volume) scanNode(s *scanState, bytenr uint64, level uint8, isRoot bool) error {
	if s.visits++; s.visits > maxNodeVisits {
		return fmt.Errorf("more than %d nodes read in one search", maxNodeVisits)
	}
	n, err := v.readNode(bytenr, level)
	if err != nil {
		return err
	}
	if level > 0 {
		return v.scanChildren(s, n)
	}
	if n.nritems == 0 && !isRoot {
		return fmt.Errorf("leaf at %#x: empty, below a node", bytenr)
	}
	for i := 0; i < n.nritems; i++ {
		k, data, err := n.item(i)
		if err != nil {
			return err
		}
		if s.started && !s.last.less(k) {
			return fmt.Errorf("leaf at %#x: item %d key %v not above the key before it %v", bytenr, i, k, s.last)
		}
		s.last, s.started = k, true
		if k.less(s.start) {
			continue
		}
		if stop, err := s.fn(k, data); err != nil || stop {
			if err == nil {
				err = errStop
			}
			return err
		}
	}
	return nil
}

// scanChildren visits the children of internal node n from the last one
// whose first key is not above the scan's start.
func (v *volume) scanChildren(s *scanState, n *node) error {
	first := 0
	for i := 1; i < n.nritems; i++ {
		if k, _ := n.ptr(i); s.start.less(k) {
			break
		}
		first = i
	}
	for i := first; i < n.nritems; i++ {
		_, child := n.ptr(i)
		if err := v.scanNode(s, child, n.level-1, false); err != nil {
			return err
		}
	}
	return nil
}

// lookupItem returns the data of the item with exactly key k, or nil.
func (v *volume) lookupItem(root treeRoot, k key) ([]byte, error) {
	var out []byte
	err := v.scan(root, k, func(got key, data []byte) (bool, error) {
		if got == k {
			out = data
		}
		return true, nil
	})
	return out, err
}

// rootItem returns the tree root recorded in the root tree for tree id.
func (v *volume) rootItem(id uint64) (treeRoot, error) {
	rt := treeRoot{bytenr: v.sb.Root, level: v.sb.RootLevel, owner: rootTreeID}
	var found []byte
	err := v.scan(rt, key{objectid: id, typ: typeRootItem}, func(k key, data []byte) (bool, error) {
		if k.objectid == id && k.typ == typeRootItem {
			found = data
		}
		return true, nil
	})
	if err != nil {
		return treeRoot{}, err
	}
	if found == nil {
		return treeRoot{}, fmt.Errorf("tree %d: no ROOT_ITEM", id)
	}
	if len(found) < 239 {
		return treeRoot{}, fmt.Errorf("tree %d: ROOT_ITEM of %d bytes, want at least 239", id, len(found))
	}
	r := treeRoot{bytenr: binary.LittleEndian.Uint64(found[176:]), level: found[238], owner: id}
	if r.level >= maxLevel {
		return treeRoot{}, fmt.Errorf("tree %d: root level %d, want below %d", id, r.level, maxLevel)
	}
	return r, nil
}
