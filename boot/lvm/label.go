// Package lvm is a read-only reader of LVM2 physical volumes, enough to find
// a guest's /boot or root filesystem inside a logical volume.
//
// It reads the PV label (LABELONE in one of the first four sectors), the
// pv_header with its data, metadata and bootloader area lists, every
// metadata area header and the committed text metadata it points at
// (following the circular buffer's wrap), checking the label, area header
// and metadata checksums. The text metadata is parsed into a volume group;
// Assemble matches the PVs of several disks by UUID, and VG.Open serves a
// logical volume's bytes for linear and striped segments.
//
// Not read: thin pools and thin volumes, raid*, mirror, snapshots (the COW
// store), cache, vdo, integrity and any other segment type. Such volumes are
// listed, but opening one is an ErrUnsupported error naming the type. The
// old LVM1 and pool formats, lvmlockd state and the PV's bootloader area
// contents are not read either. Every on-disk number is checked before it
// sizes an allocation or a read.
package lvm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

const (
	sectorSize    = 512
	labelScan     = 4 // LVM looks for the label in the first four sectors
	labelID       = "LABELONE"
	labelType     = "LVM2 001"
	mdaMagic      = "\x20LVM2\x20x[5A%r0N*>"
	mdaHeaderSize = 512
	initialCRC    = 0xf597a6cf

	// MaxMetadataSize bounds the text metadata read from one area: LVM's
	// default area holds about 1 MiB, and the biggest real VGs stay far
	// below this.
	MaxMetadataSize = 16 << 20
	maxAreas        = 16 // entries in one disk_locn or raw_locn list
)

var (
	// ErrNoLabel says the device carries no LVM2 label: it is not a PV.
	ErrNoLabel = errors.New("lvm: no LVM2 label in the first 4 sectors")
	// ErrUnsupported says a logical volume uses a segment type (or role)
	// this package cannot read.
	ErrUnsupported = errors.New("lvm: not supported")
	// ErrMissingPV says a logical volume needs a PV that was not given.
	ErrMissingPV = errors.New("lvm: physical volume missing")
)

// LabelHeader is the label sector's header, as on disk (little-endian).
type LabelHeader struct {
	ID       [8]byte // "LABELONE"
	SectorXL uint64  // the sector this label is in
	CRCXL    uint32  // of the sector from OffsetXL's field to its end
	OffsetXL uint32  // where the pv_header starts, from the label's start
	Type     [8]byte // "LVM2 001"
}

// DiskLocn is one entry of the pv_header's area lists, as on disk.
type DiskLocn struct {
	Offset uint64 // bytes from the device's start
	Size   uint64 // bytes; 0 for the data area means "to the end"
}

// MDAHeader is a metadata area's first 40 bytes, as on disk; RawLocn
// entries follow it.
type MDAHeader struct {
	Checksum uint32 // of the header sector from Magic on
	Magic    [16]byte
	Version  uint32
	Start    uint64 // absolute byte offset of this area
	Size     uint64 // bytes, header included
}

// RawLocn says where in its area a metadata text is, as on disk.
type RawLocn struct {
	Offset   uint64 // from the area's start
	Size     uint64
	Checksum uint32 // of the text
	Flags    uint32
}

const rawLocnIgnored = 1 // the area is kept but not used (pvchange --metadataignore)

// PV is one physical volume: its label and what its metadata says.
type PV struct {
	UUID            string // 32 characters, without LVM's dashes
	DeviceSize      uint64 // bytes, as the header records it
	DataAreas       []DiskLocn
	MetadataAreas   []DiskLocn
	BootloaderAreas []DiskLocn
	// VG is the newest metadata read from this PV's areas; nil for a PV
	// with no metadata area in use, or an orphan PV.
	VG *VG

	r    io.ReaderAt
	size int64
}

// lvmCRC is LVM's checksum: CRC-32 (IEEE) seeded with 0xf597a6cf and not
// inverted at the end, so crc32.Update does it with the inversions undone.
func lvmCRC(b []byte) uint32 {
	return ^crc32.Update(^uint32(initialCRC), crc32.IEEETable, b)
}

// ReadPV reads the LVM2 label and metadata of the device r of size bytes.
// It returns ErrNoLabel (cheaply: four sectors read) when there is none.
func ReadPV(r io.ReaderAt, size int64) (*PV, error) {
	if size < 0 {
		return nil, fmt.Errorf("lvm: device size %d", size)
	}
	head := make([]byte, min(size, labelScan*sectorSize))
	n, err := r.ReadAt(head, 0)
	if n < len(head) && err != nil && err != io.EOF {
		return nil, fmt.Errorf("lvm: reading label sectors: %w", err)
	}
	head = head[:n]
	for s := 0; (s+1)*sectorSize <= len(head); s++ {
		sec := head[s*sectorSize : (s+1)*sectorSize]
		if string(sec[:8]) != labelID {
			continue
		}
		pv, err := parseLabel(sec, s)
		if err != nil {
			return nil, err
		}
		pv.r, pv.size = r, size
		if err := pv.readMetadata(); err != nil {
			return nil, err
		}
		return pv, nil
	}
	return nil, ErrNoLabel
}

// parseLabel decodes the label sector found at sector s.
func parseLabel(sec []byte, s int) (*PV, error) {
	var lh LabelHeader
	_ = binary.Read(bytes.NewReader(sec), binary.LittleEndian, &lh)
	where := fmt.Sprintf("lvm: label at sector %d", s)
	if lh.SectorXL != uint64(s) {
		return nil, fmt.Errorf("%s: sector_xl is %d", where, lh.SectorXL)
	}
	if got := lvmCRC(sec[20:]); got != lh.CRCXL {
		return nil, fmt.Errorf("%s: crc_xl %#x does not match the sector's %#x", where, lh.CRCXL, got)
	}
	if string(lh.Type[:]) != labelType {
		return nil, fmt.Errorf("%s: type %q is not %q", where, lh.Type[:], labelType)
	}
	// The pv_header: UUID, size, then two zero-terminated lists.
	const pvHeaderMin = 32 + 8 + 2*16
	if lh.OffsetXL < 32 || int(lh.OffsetXL)+pvHeaderMin > sectorSize {
		return nil, fmt.Errorf("%s: offset_xl %d leaves no room for the pv_header", where, lh.OffsetXL)
	}
	b := sec[lh.OffsetXL:]
	pv := &PV{UUID: string(b[:32]), DeviceSize: binary.LittleEndian.Uint64(b[32:40])}
	if !validUUID(pv.UUID) {
		return nil, fmt.Errorf("%s: pv_header UUID %q is not 32 letters and digits", where, pv.UUID)
	}
	off := int(lh.OffsetXL) + 40
	var err error
	if pv.DataAreas, off, err = locnList(sec, off, where, "data area"); err != nil {
		return nil, err
	}
	if pv.MetadataAreas, off, err = locnList(sec, off, where, "metadata area"); err != nil {
		return nil, err
	}
	// The extension (LVM 2.02.110 on): version, flags, bootloader areas.
	if off+8 <= len(sec) {
		if ver := binary.LittleEndian.Uint32(sec[off:]); ver != 0 {
			if pv.BootloaderAreas, _, err = locnList(sec, off+8, where, "bootloader area"); err != nil {
				return nil, err
			}
		}
	}
	return pv, nil
}

// locnList reads a zero-terminated disk_locn list at off in sec.
func locnList(sec []byte, off int, where, what string) ([]DiskLocn, int, error) {
	var out []DiskLocn
	for {
		if off+16 > len(sec) {
			return nil, 0, fmt.Errorf("%s: %s list runs past the sector at byte %d", where, what, off)
		}
		d := DiskLocn{binary.LittleEndian.Uint64(sec[off:]), binary.LittleEndian.Uint64(sec[off+8:])}
		off += 16
		if d.Offset == 0 {
			return out, off, nil
		}
		if len(out) == maxAreas {
			return nil, 0, fmt.Errorf("%s: more than %d %ss", where, maxAreas, what)
		}
		out = append(out, d)
	}
}

func validUUID(s string) bool {
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return len(s) == 32
}

// readMetadata reads every metadata area and keeps the newest VG among
// those that read; an area that fails is an error only when none reads.
func (pv *PV) readMetadata() error {
	var errs []error
	for i, a := range pv.MetadataAreas {
		vg, err := pv.readArea(a)
		if err != nil {
			errs = append(errs, fmt.Errorf("lvm: PV %s metadata area %d at %#x: %w", pv.UUID, i+1, a.Offset, err))
			continue
		}
		if vg != nil && (pv.VG == nil || vg.Seqno > pv.VG.Seqno) {
			pv.VG = vg
		}
	}
	if pv.VG == nil && len(errs) > 0 {
		return errors.Join(errs...)
	}
	return nil
}

// readArea reads one metadata area: nil, nil when it holds no metadata.
func (pv *PV) readArea(a DiskLocn) (*VG, error) {
	if a.Size < mdaHeaderSize || a.Offset > uint64(pv.size) || a.Size > uint64(pv.size)-a.Offset {
		return nil, fmt.Errorf("area of %d bytes does not fit the %d-byte device", a.Size, pv.size)
	}
	hdr := make([]byte, mdaHeaderSize)
	if _, err := pv.r.ReadAt(hdr, int64(a.Offset)); err != nil {
		return nil, fmt.Errorf("reading its header: %w", err)
	}
	var h MDAHeader
	_ = binary.Read(bytes.NewReader(hdr), binary.LittleEndian, &h)
	switch {
	case string(h.Magic[:]) != mdaMagic:
		return nil, fmt.Errorf("header magic %q is wrong", h.Magic[:])
	case lvmCRC(hdr[4:]) != h.Checksum:
		return nil, fmt.Errorf("header checksum %#x does not match its %#x", h.Checksum, lvmCRC(hdr[4:]))
	case h.Version != 1:
		return nil, fmt.Errorf("header version %d is not 1", h.Version)
	case h.Start != a.Offset || h.Size != a.Size:
		return nil, fmt.Errorf("header says start %#x size %d, the label %#x size %d", h.Start, h.Size, a.Offset, a.Size)
	}
	// The first raw_locn is the committed metadata; a second one, when
	// there, is a precommitted update that never completed.
	var rl RawLocn
	_ = binary.Read(bytes.NewReader(hdr[40:]), binary.LittleEndian, &rl)
	if rl.Offset == 0 || rl.Flags&rawLocnIgnored != 0 {
		return nil, nil
	}
	text, err := pv.readText(h, rl)
	if err != nil {
		return nil, err
	}
	return ParseMetadata(text)
}

// readText reads the text rl points at in the area h, wrapping past the
// area's end to just after its header as LVM's circular buffer does.
func (pv *PV) readText(h MDAHeader, rl RawLocn) ([]byte, error) {
	ring := h.Size - mdaHeaderSize
	switch {
	case rl.Offset < mdaHeaderSize || rl.Offset >= h.Size:
		return nil, fmt.Errorf("raw_locn offset %#x is outside the area's %d bytes", rl.Offset, h.Size)
	case rl.Size == 0 || rl.Size > MaxMetadataSize || rl.Size > ring:
		return nil, fmt.Errorf("raw_locn size %d is not in 1..%d", rl.Size, min(MaxMetadataSize, ring))
	}
	text := make([]byte, rl.Size)
	first := min(rl.Size, h.Size-rl.Offset)
	if _, err := pv.r.ReadAt(text[:first], int64(h.Start+rl.Offset)); err != nil {
		return nil, fmt.Errorf("reading metadata at %#x: %w", h.Start+rl.Offset, err)
	}
	if first < rl.Size {
		if _, err := pv.r.ReadAt(text[first:], int64(h.Start+mdaHeaderSize)); err != nil {
			return nil, fmt.Errorf("reading wrapped metadata at %#x: %w", h.Start+mdaHeaderSize, err)
		}
	}
	if got := lvmCRC(text); got != rl.Checksum {
		return nil, fmt.Errorf("metadata at offset %#x: checksum %#x does not match its %#x", rl.Offset, rl.Checksum, got)
	}
	return bytes.TrimRight(text, "\x00"), nil
}
