// Package part reads MBR and GPT partition tables from an io.ReaderAt.
//
// It is a small read-only parser of its own rather than go-diskfs's partition
// packages: those take a seekable file, not a ReaderAt, and do not follow MBR
// extended partitions to their logical ones.
package part

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
)

// SectorSize is the logical sector size assumed for MBR disks and tried first
// for GPT; GPT is also looked for with 4096-byte sectors.
const SectorSize = 512

// Limits on what an untrusted table may make us walk.
const (
	maxLogical    = 128  // logical partitions in one extended chain
	maxGPTEntries = 1024 // GPT partition entries read
)

// Partition is one partition. Start and Size are in bytes.
type Partition struct {
	// Index is the number Linux gives it: MBR primaries 1–4, logicals from 5,
	// GPT entries by their slot (1-based).
	Index    int
	Start    int64
	Size     int64
	Type     string // MBR: "0x83"; GPT: the type GUID, lower case
	Bootable bool   // MBR active flag; GPT legacy-BIOS-bootable attribute
	Name     string // GPT partition name
	UUID     string // GPT unique partition GUID; MBR: "<disk id>-<NN>" as PARTUUID
}

// Table is a disk's partitioning.
type Table struct {
	Kind       string // "mbr" or "gpt"
	DiskID     string // MBR disk signature (8 hex digits) or GPT disk GUID
	SectorSize int
	Partitions []Partition
}

// ErrNoTable is returned when the disk has no partition table.
var ErrNoTable = errors.New("no partition table")

// Well-known types.
const (
	GPTTypeEFISystem = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
	GPTTypeBIOSBoot  = "21686148-6449-6e6f-744e-656564454649"
	GPTTypeLVM       = "e6d6d379-f507-44c2-a23c-238f2a3df928"
)

type mbrEntry struct {
	Status   uint8
	CHSFirst [3]byte
	Type     uint8
	CHSLast  [3]byte
	LBA      uint32
	Sectors  uint32
}

// Read returns the partition table of a disk of the given size, or ErrNoTable.
func Read(r io.ReaderAt, size int64) (*Table, error) {
	var s0 [SectorSize]byte
	if err := readFull(r, s0[:], 0); err != nil {
		return nil, fmt.Errorf("partition table: reading sector 0: %w", err)
	}
	if s0[510] != 0x55 || s0[511] != 0xaa {
		return nil, ErrNoTable
	}
	if looksLikeVBR(s0[:]) {
		// A filesystem boot sector (FAT, NTFS) on the whole disk also ends in 55 AA.
		return nil, ErrNoTable
	}
	var ents [4]mbrEntry
	if err := binary.Read(bytes.NewReader(s0[446:510]), binary.LittleEndian, &ents); err != nil {
		return nil, err
	}
	for i, e := range ents {
		if e.Status != 0 && e.Status != 0x80 {
			return nil, fmt.Errorf("mbr: entry %d: status %#x, want 0x00 or 0x80: %w", i+1, e.Status, ErrNoTable)
		}
	}
	for _, e := range ents {
		if e.Type == 0xee {
			t, err := readGPT(r, size)
			if err != nil {
				return nil, err
			}
			return t, nil
		}
	}
	diskID := binary.LittleEndian.Uint32(s0[440:])
	t := &Table{Kind: "mbr", DiskID: fmt.Sprintf("%08x", diskID), SectorSize: SectorSize}
	sectors := size / SectorSize
	for i, e := range ents {
		if e.Type == 0 || e.Sectors == 0 {
			continue
		}
		if int64(e.LBA)+int64(e.Sectors) > sectors {
			return nil, fmt.Errorf("mbr: partition %d: sectors %d+%d past end of disk (%d sectors)", i+1, e.LBA, e.Sectors, sectors)
		}
		if isExtended(e.Type) {
			logical, err := readExtended(r, int64(e.LBA), int64(e.Sectors), sectors, diskID)
			if err != nil {
				return nil, err
			}
			t.Partitions = append(t.Partitions, logical...)
			continue
		}
		t.Partitions = append(t.Partitions, Partition{
			Index: i + 1, Start: int64(e.LBA) * SectorSize, Size: int64(e.Sectors) * SectorSize,
			Type: fmt.Sprintf("%#02x", e.Type), Bootable: e.Status == 0x80,
			UUID: fmt.Sprintf("%08x-%02x", diskID, i+1),
		})
	}
	sortByIndex(t.Partitions)
	return t, nil
}

func isExtended(t uint8) bool { return t == 0x05 || t == 0x0f || t == 0x85 }

// readExtended walks the chain of extended boot records. Each EBR's first
// entry is a logical partition relative to that EBR; the second points to the
// next EBR relative to the start of the extended partition.
func readExtended(r io.ReaderAt, extStart, extLen, diskSectors int64, diskID uint32) ([]Partition, error) {
	var out []Partition
	seen := map[int64]bool{}
	ebr := extStart
	for n := 0; ; n++ {
		if n >= maxLogical {
			return nil, fmt.Errorf("mbr: extended partition at sector %d: more than %d logical partitions", extStart, maxLogical)
		}
		if seen[ebr] {
			return nil, fmt.Errorf("mbr: extended partition chain loops back to sector %d", ebr)
		}
		seen[ebr] = true
		var s [SectorSize]byte
		if err := readFull(r, s[:], ebr*SectorSize); err != nil {
			return nil, fmt.Errorf("mbr: EBR at sector %d: %w", ebr, err)
		}
		if s[510] != 0x55 || s[511] != 0xaa {
			return nil, fmt.Errorf("mbr: EBR at sector %d: no 55 AA signature", ebr)
		}
		var e [2]mbrEntry
		if err := binary.Read(bytes.NewReader(s[446:478]), binary.LittleEndian, &e); err != nil {
			return nil, err
		}
		if e[0].Type != 0 && e[0].Sectors != 0 {
			start := ebr + int64(e[0].LBA)
			if start+int64(e[0].Sectors) > diskSectors {
				return nil, fmt.Errorf("mbr: logical partition %d (EBR at sector %d): sectors %d+%d past end of disk", 5+len(out), ebr, start, e[0].Sectors)
			}
			idx := 5 + len(out)
			out = append(out, Partition{
				Index: idx, Start: start * SectorSize, Size: int64(e[0].Sectors) * SectorSize,
				Type: fmt.Sprintf("%#02x", e[0].Type), Bootable: e[0].Status == 0x80,
				UUID: fmt.Sprintf("%08x-%02x", diskID, idx),
			})
		}
		if e[1].Type == 0 || e[1].LBA == 0 || !isExtended(e[1].Type) {
			return out, nil
		}
		next := extStart + int64(e[1].LBA)
		if next >= extStart+extLen || next >= diskSectors {
			return nil, fmt.Errorf("mbr: EBR at sector %d: next EBR at sector %d outside the extended partition", ebr, next)
		}
		ebr = next
	}
}

type gptHeader struct {
	Signature      [8]byte
	Revision       uint32
	HeaderSize     uint32
	HeaderCRC      uint32
	Reserved       uint32
	MyLBA          uint64
	AlternateLBA   uint64
	FirstUsableLBA uint64
	LastUsableLBA  uint64
	DiskGUID       [16]byte
	EntriesLBA     uint64
	NumEntries     uint32
	EntrySize      uint32
	EntriesCRC     uint32
}

type gptEntry struct {
	TypeGUID   [16]byte
	UniqueGUID [16]byte
	FirstLBA   uint64
	LastLBA    uint64
	Attributes uint64
	Name       [72]byte
}

func readGPT(r io.ReaderAt, size int64) (*Table, error) {
	var errs []string
	for _, ss := range []int64{512, 4096} {
		sectors := size / ss
		if sectors < 3 {
			continue
		}
		// Primary header at LBA 1, then the backup in the last sector.
		for _, lba := range []int64{1, sectors - 1} {
			t, err := readGPTAt(r, ss, lba, sectors)
			if err == nil {
				return t, nil
			}
			errs = append(errs, err.Error())
		}
	}
	return nil, fmt.Errorf("gpt: protective MBR but no valid GPT header: %s", strings.Join(errs, "; "))
}

func readGPTAt(r io.ReaderAt, ss, lba, sectors int64) (*Table, error) {
	buf := make([]byte, ss)
	if err := readFull(r, buf, lba*ss); err != nil {
		return nil, fmt.Errorf("header at LBA %d (%d-byte sectors): %w", lba, ss, err)
	}
	var h gptHeader
	_ = binary.Read(bytes.NewReader(buf), binary.LittleEndian, &h)
	if string(h.Signature[:]) != "EFI PART" {
		return nil, fmt.Errorf("header at LBA %d (%d-byte sectors): no \"EFI PART\" signature", lba, ss)
	}
	if h.HeaderSize < 92 || int64(h.HeaderSize) > ss {
		return nil, fmt.Errorf("header at LBA %d: header size %d, want 92..%d", lba, h.HeaderSize, ss)
	}
	hb := append([]byte(nil), buf[:h.HeaderSize]...)
	binary.LittleEndian.PutUint32(hb[16:], 0)
	if crc32.ChecksumIEEE(hb) != h.HeaderCRC {
		return nil, fmt.Errorf("header at LBA %d: header CRC mismatch", lba)
	}
	if h.EntrySize < 128 || h.EntrySize > 4096 || h.EntrySize%8 != 0 {
		return nil, fmt.Errorf("header at LBA %d: entry size %d, want a multiple of 8 in 128..4096", lba, h.EntrySize)
	}
	if h.NumEntries > maxGPTEntries {
		return nil, fmt.Errorf("header at LBA %d: %d partition entries, more than %d", lba, h.NumEntries, maxGPTEntries)
	}
	n := int64(h.NumEntries) * int64(h.EntrySize)
	if h.EntriesLBA >= uint64(sectors) || int64(h.EntriesLBA)*ss+n > sectors*ss {
		return nil, fmt.Errorf("header at LBA %d: entry array at LBA %d (%d bytes) past end of disk", lba, h.EntriesLBA, n)
	}
	arr := make([]byte, n)
	if err := readFull(r, arr, int64(h.EntriesLBA)*ss); err != nil {
		return nil, fmt.Errorf("entry array at LBA %d: %w", h.EntriesLBA, err)
	}
	if crc32.ChecksumIEEE(arr) != h.EntriesCRC {
		return nil, fmt.Errorf("header at LBA %d: entry array CRC mismatch", lba)
	}
	t := &Table{Kind: "gpt", DiskID: guidString(h.DiskGUID), SectorSize: int(ss)}
	for i := 0; i < int(h.NumEntries); i++ {
		var e gptEntry
		_ = binary.Read(bytes.NewReader(arr[i*int(h.EntrySize):]), binary.LittleEndian, &e)
		if e.TypeGUID == [16]byte{} {
			continue
		}
		if e.LastLBA < e.FirstLBA || e.LastLBA >= uint64(sectors) {
			return nil, fmt.Errorf("entry %d: LBAs %d..%d outside the disk (%d sectors)", i+1, e.FirstLBA, e.LastLBA, sectors)
		}
		t.Partitions = append(t.Partitions, Partition{
			Index: i + 1, Start: int64(e.FirstLBA) * ss, Size: int64(e.LastLBA-e.FirstLBA+1) * ss,
			Type: guidString(e.TypeGUID), UUID: guidString(e.UniqueGUID),
			Bootable: e.Attributes&(1<<2) != 0, Name: utf16Name(e.Name[:]),
		})
	}
	return t, nil
}

// guidString formats a GUID stored in the mixed-endian on-disk layout.
func guidString(g [16]byte) string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x",
		binary.LittleEndian.Uint32(g[0:]), binary.LittleEndian.Uint16(g[4:]),
		binary.LittleEndian.Uint16(g[6:]), g[8:10], g[10:16])
}

func utf16Name(b []byte) string {
	var rs []rune
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		rs = append(rs, rune(c))
	}
	return string(rs)
}

// looksLikeVBR reports whether sector 0 is a filesystem boot sector rather
// than an MBR: a jump instruction and a FAT or NTFS BIOS parameter block.
func looksLikeVBR(s []byte) bool {
	if s[0] != 0xeb && s[0] != 0xe9 {
		return false
	}
	if string(s[3:11]) == "NTFS    " || string(s[3:11]) == "EXFAT   " {
		return true
	}
	bps := binary.LittleEndian.Uint16(s[11:])
	return (bps == 512 || bps == 1024 || bps == 2048 || bps == 4096) &&
		(string(s[54:59]) == "FAT12" || string(s[54:59]) == "FAT16" || string(s[54:57]) == "FAT" || string(s[82:87]) == "FAT32")
}

func sortByIndex(p []Partition) {
	for i := 1; i < len(p); i++ {
		for j := i; j > 0 && p[j].Index < p[j-1].Index; j-- {
			p[j], p[j-1] = p[j-1], p[j]
		}
	}
}

func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}
