package btrfs

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
)

// Block group profile bits of a chunk's type.
const (
	bgRAID0   = 0x8
	bgRAID1   = 0x10
	bgDUP     = 0x20
	bgRAID10  = 0x40
	bgRAID5   = 0x80
	bgRAID6   = 0x100
	bgRAID1C3 = 0x200
	bgRAID1C4 = 0x400

	chunkItemLen = 48
	stripeLen    = 32
	maxChunks    = 1 << 20
)

var profileNames = []struct {
	bit  uint64
	name string
}{
	{bgRAID0, "RAID0"}, {bgRAID1, "RAID1"}, {bgRAID10, "RAID10"}, {bgRAID5, "RAID5"},
	{bgRAID6, "RAID6"}, {bgRAID1C3, "RAID1C3"}, {bgRAID1C4, "RAID1C4"},
}

// chunk maps logical [logical, logical+length) to the device at physical.
type chunk struct {
	logical, length, physical uint64
}

// parseChunk reads the chunk item in b (the chunk at logical) and returns
// its mapping and the item's length.
func (v *volume) parseChunk(logical uint64, b []byte) (chunk, int, error) {
	le := binary.LittleEndian
	if len(b) < chunkItemLen {
		return chunk{}, 0, fmt.Errorf("btrfs: chunk at %#x: item of %d bytes, want at least %d", logical, len(b), chunkItemLen)
	}
	length := le.Uint64(b)
	typ := le.Uint64(b[0x18:])
	n := int(le.Uint16(b[0x2c:]))
	size := chunkItemLen + n*stripeLen
	if n == 0 || size > len(b) {
		return chunk{}, 0, fmt.Errorf("btrfs: chunk at %#x: %d stripes do not fit its %d-byte item", logical, n, len(b))
	}
	var raid []string
	for _, p := range profileNames {
		if typ&p.bit != 0 {
			raid = append(raid, p.name)
		}
	}
	if len(raid) > 0 {
		return chunk{}, 0, fmt.Errorf("btrfs: chunk at %#x: profile %s spans devices; only SINGLE and DUP are read", logical, strings.Join(raid, "|"))
	}
	devid := le.Uint64(b[chunkItemLen:])
	phys := le.Uint64(b[chunkItemLen+8:])
	if devid != v.sb.DevID {
		return chunk{}, 0, fmt.Errorf("btrfs: chunk at %#x is on device %d, which is missing (this is device %d of %d)", logical, devid, v.sb.DevID, v.sb.NumDevices)
	}
	if length == 0 || logical+length < logical || phys+length < phys || phys+length > uint64(v.size) {
		return chunk{}, 0, fmt.Errorf("btrfs: chunk at %#x: %d bytes at physical %#x do not fit the %d-byte device", logical, length, phys, v.size)
	}
	return chunk{logical: logical, length: length, physical: phys}, size, nil
}

func (v *volume) addChunk(c chunk) error {
	i := sort.Search(len(v.chunks), func(i int) bool { return v.chunks[i].logical >= c.logical })
	if i < len(v.chunks) && v.chunks[i].logical == c.logical && v.chunks[i].length == c.length {
		return nil // the chunk tree repeats the bootstrap chunks
	}
	if i > 0 && v.chunks[i-1].logical+v.chunks[i-1].length > c.logical ||
		i < len(v.chunks) && c.logical+c.length > v.chunks[i].logical {
		return fmt.Errorf("btrfs: chunk at %#x+%#x overlaps another", c.logical, c.length)
	}
	if len(v.chunks) >= maxChunks {
		return fmt.Errorf("btrfs: more than %d chunks", maxChunks)
	}
	v.chunks = append(v.chunks, chunk{})
	copy(v.chunks[i+1:], v.chunks[i:])
	v.chunks[i] = c
	return nil
}

// loadSysChunks reads the superblock's sys_chunk_array: the chunks that
// hold the chunk tree.
func (v *volume) loadSysChunks() error {
	b := v.sb.SysChunkArray[:v.sb.SysChunkSize]
	for off := 0; off < len(b); {
		if off+keyLen > len(b) {
			return fmt.Errorf("btrfs: sys_chunk_array at %d: truncated key", off)
		}
		k := parseKey(b[off:])
		if k.typ != typeChunkItem {
			return fmt.Errorf("btrfs: sys_chunk_array at %d: key type %d, want CHUNK_ITEM (%d)", off, k.typ, typeChunkItem)
		}
		c, n, err := v.parseChunk(k.offset, b[off+keyLen:])
		if err != nil {
			return fmt.Errorf("%w (sys_chunk_array at %d)", err, off)
		}
		if err := v.addChunk(c); err != nil {
			return err
		}
		off += keyLen + n
	}
	if len(v.chunks) == 0 {
		return fmt.Errorf("btrfs: sys_chunk_array holds no chunk")
	}
	return nil
}

// loadChunkTree adds every chunk of the chunk tree to the map.
func (v *volume) loadChunkTree() error {
	root := treeRoot{bytenr: v.sb.ChunkRoot, level: v.sb.ChunkRootLevel, owner: chunkTreeID}
	err := v.scan(root, key{objectid: firstChunkTree, typ: typeChunkItem}, func(k key, data []byte) (bool, error) {
		if k.objectid != firstChunkTree || k.typ != typeChunkItem {
			return k.objectid > firstChunkTree, nil
		}
		c, _, err := v.parseChunk(k.offset, data)
		if err != nil {
			return true, err
		}
		return false, v.addChunk(c)
	})
	if err != nil {
		return fmt.Errorf("btrfs: chunk tree: %w", err)
	}
	return nil
}

// physical returns the device offset of logical and how many bytes from
// there stay in the same chunk.
func (v *volume) physical(logical uint64) (uint64, uint64, error) {
	i := sort.Search(len(v.chunks), func(i int) bool { return v.chunks[i].logical+v.chunks[i].length > logical })
	if i == len(v.chunks) || v.chunks[i].logical > logical {
		return 0, 0, fmt.Errorf("logical address %#x is in no chunk", logical)
	}
	c := v.chunks[i]
	d := logical - c.logical
	return c.physical + d, c.length - d, nil
}

// readLogical reads p at logical address logical.
func (v *volume) readLogical(p []byte, logical uint64) error {
	for len(p) > 0 {
		phys, n, err := v.physical(logical)
		if err != nil {
			return err
		}
		n = min(n, uint64(len(p)))
		if err := v.readPhys(p[:n], phys); err != nil {
			return fmt.Errorf("logical %#x: %w", logical, err)
		}
		p, logical = p[n:], logical+n
	}
	return nil
}
