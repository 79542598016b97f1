package xfs

import (
	"encoding/binary"
	"fmt"
)

// Directory data block magics: block form (one block holding entries and
// their hash index) and data blocks of leaf and node forms, v4 and v5.
const (
	magicBlock2 = 0x58443242 // "XD2B"
	magicData2  = 0x58443244 // "XD2D"
	magicBlock3 = 0x58444233 // "XDB3"
	magicData3  = 0x58444433 // "XDD3"
)

// DirEntry is one directory entry.
type DirEntry struct {
	Name  string
	Inode uint64
	Type  uint8 // XFS file type when the filesystem records it: 1 regular, 2 directory, 7 symlink; else 0
}

// readDir returns the entries of directory inode in, "." and ".." left out.
func (f *FS) readDir(in *Inode) ([]DirEntry, error) {
	if !in.IsDir() {
		return nil, fmt.Errorf("xfs: inode %d is not a directory", in.Num)
	}
	if in.Format == fmtLocal {
		return f.shortformDir(in)
	}
	maps, err := f.blockMap(in)
	if err != nil {
		return nil, err
	}
	per := uint64(f.dirBlk / f.blockSize)
	buf := make([]byte, f.dirBlk)
	var out []DirEntry
	read, next := int64(0), uint64(0) // bytes read; first directory block not yet read
	for _, m := range maps {
		for db := max(next, m.logical/per); db*per < m.logical+m.length; db++ {
			if db*uint64(f.dirBlk) >= dirLeafOffset {
				return out, nil // the hash index and free space, not needed to list
			}
			if read += f.dirBlk; read > maxDirSize {
				return nil, fmt.Errorf("xfs: directory inode %d: more than %d bytes of directory blocks", in.Num, maxDirSize)
			}
			if err := f.readLogical(in, maps, int64(db)*f.dirBlk, buf); err != nil {
				return nil, err
			}
			if out, err = f.dataBlock(in, buf, out); err != nil {
				return nil, fmt.Errorf("%w (directory block %d)", err, db)
			}
			next = db + 1
		}
	}
	return out, nil
}

// shortformDir reads a directory stored in the inode (xfs_dir2_sf_hdr and
// its entries): a count, the parent's number, then name, offset tag, file
// type and inode number per entry, numbers 8 bytes wide when i8count says so.
func (f *FS) shortformDir(in *Inode) ([]DirEntry, error) {
	b := in.fork
	if in.Size < 6 || in.Size > int64(len(b)) {
		return nil, fmt.Errorf("xfs: directory inode %d: shortform size %d, want 6..%d", in.Num, in.Size, len(b))
	}
	b = b[:in.Size]
	count, i8 := int(b[0]), b[1] != 0
	ino := func(p []byte) uint64 {
		if i8 {
			return binary.BigEndian.Uint64(p)
		}
		return uint64(binary.BigEndian.Uint32(p))
	}
	width := 4
	if i8 {
		width = 8
	}
	p := 2 + width
	out := make([]DirEntry, 0, count)
	for i := 0; i < count; i++ {
		if p >= len(b) {
			return nil, fmt.Errorf("xfs: directory inode %d: shortform entry %d at %d past its %d bytes", in.Num, i, p, len(b))
		}
		n := int(b[p])
		e := DirEntry{}
		end := p + 3 + n + width
		if f.ftype {
			end++
		}
		if n == 0 || end > len(b) {
			return nil, fmt.Errorf("xfs: directory inode %d: shortform entry %d at %d: name length %d does not fit %d bytes", in.Num, i, p, n, len(b))
		}
		e.Name = string(b[p+3 : p+3+n])
		if f.ftype {
			e.Type = b[p+3+n]
		}
		e.Inode = ino(b[end-width:])
		out = append(out, e)
		p = end
	}
	return out, nil
}

// dataBlock appends the entries of one directory data block.
func (f *FS) dataBlock(in *Inode, b []byte, out []DirEntry) ([]DirEntry, error) {
	be := binary.BigEndian
	hdr, end := 16, len(b) // xfs_dir2_data_hdr: magic and three best-free slots
	if f.v5 {
		hdr = 64 // xfs_dir3_data_hdr: block header, best-free, pad
	}
	switch m := be.Uint32(b); {
	case m == magicBlock2 && !f.v5, m == magicBlock3 && f.v5:
		// A single-block directory ends with its hash index: count
		// eight-byte leaf entries, then the tail (count, stale).
		count := int64(be.Uint32(b[len(b)-8:]))
		if count > int64(len(b)-hdr-8)/8 {
			return nil, fmt.Errorf("xfs: directory inode %d: block tail count %d does not fit the block", in.Num, count)
		}
		end = len(b) - 8 - int(count)*8
	case m == magicData2 && !f.v5, m == magicData3 && f.v5:
	default:
		return nil, fmt.Errorf("xfs: directory inode %d: data block magic %#08x, want a %s one", in.Num, m, map[bool]string{false: "v4", true: "v5"}[f.v5])
	}
	for p := hdr; p < end; {
		if be.Uint16(b[p:]) == 0xffff { // unused space: freetag, length
			n := int(be.Uint16(b[p+2:]))
			if n < 8 || n%8 != 0 || p+n > end {
				return nil, fmt.Errorf("xfs: directory inode %d: free space at %d: length %d does not fit", in.Num, p, n)
			}
			p += n
			continue
		}
		// inumber, namelen, name, [ftype], tag, padded to 8 bytes.
		if p+12 > end {
			return nil, fmt.Errorf("xfs: directory inode %d: entry at %d runs past the entries' end %d", in.Num, p, end)
		}
		n := int(b[p+8])
		size := 8 + 1 + n + 2
		if f.ftype {
			size++
		}
		size = (size + 7) &^ 7
		if n == 0 || p+size > end {
			return nil, fmt.Errorf("xfs: directory inode %d: entry at %d: name length %d does not fit", in.Num, p, n)
		}
		e := DirEntry{Name: string(b[p+9 : p+9+n]), Inode: be.Uint64(b[p:])}
		if f.ftype {
			e.Type = b[p+9+n]
		}
		if e.Name != "." && e.Name != ".." {
			out = append(out, e)
		}
		p += size
	}
	return out, nil
}
