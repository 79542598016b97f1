package qcow2

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"strings"
)

// Limits qemu puts on the snapshot table (QCOW_MAX_SNAPSHOTS and friends),
// which bound what a crafted header can make the reader allocate.
const (
	maxSnapshots      = 65536
	maxSnapshotTable  = 64 << 20
	maxSnapshotExtra  = 1024
	snapshotEntrySize = 40 // the fixed part of an entry
)

// Snapshot is an internal snapshot, as qemu-img info lists it (same JSON
// names), plus the disk size it recorded.
type Snapshot struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	DateSec     uint32 `json:"date-sec"`
	DateNsec    uint32 `json:"date-nsec"`
	VMClockSec  uint64 `json:"vm-clock-sec"`
	VMClockNsec uint64 `json:"vm-clock-nsec"`
	VMStateSize uint64 `json:"vm-state-size"`
	ICount      int64  `json:"icount"`
	// DiskSize is the virtual size when the snapshot was taken (0 when the
	// entry predates the field).
	DiskSize uint64 `json:"disk-size,omitempty"`

	l1Offset uint64
	l1Size   uint32
}

// snapshotHeader is the fixed part of a snapshot table entry.
type snapshotHeader struct {
	L1Offset    uint64
	L1Size      uint32
	IDSize      uint16
	NameSize    uint16
	DateSec     uint32
	DateNsec    uint32
	VMClockNsec uint64
	VMStateSize uint32
	ExtraSize   uint32
}

// readSnapshots reads the snapshot table the header points at: entries one
// after another, each padded to 8 bytes, inside the file and inside qemu's
// limits.
func (img *Image) readSnapshots() error {
	h := &img.hdr
	if h.NbSnapshots == 0 {
		// qemu refuses even an empty table's offset when it is unaligned
		// or past INT64_MAX: the header is damaged.
		if h.SnapshotsOffset%uint64(img.clusterSize) != 0 || h.SnapshotsOffset > math.MaxInt64 {
			return fmt.Errorf("qcow2 %s: header: snapshot table at %#x (no snapshots) is unaligned or past 2^63", img.path, h.SnapshotsOffset)
		}
		return nil
	}
	off := int64(h.SnapshotsOffset)
	if h.NbSnapshots > maxSnapshots {
		return fmt.Errorf("qcow2 %s: header: %d snapshots, more than qemu's %d", img.path, h.NbSnapshots, maxSnapshots)
	}
	if off%img.clusterSize != 0 || off <= 0 || off >= img.fileSize {
		return fmt.Errorf("qcow2 %s: header: snapshot table at %#x is unaligned or outside the file (%#x)", img.path, off, img.fileSize)
	}
	limit := min(img.fileSize-off, maxSnapshotTable)
	br := bufio.NewReader(io.NewSectionReader(img.r, off, limit))
	pos := off
	for i := range int(h.NbSnapshots) {
		// Each entry starts 8-aligned; qemu writes the padding between
		// entries, not after the last, which may end the file.
		pad := (8 - (pos-off)%8) % 8
		_, err := br.Discard(int(pad))
		pos += pad
		var sn Snapshot
		var n int64
		if err == nil {
			sn, n, err = img.readSnapshot(br)
		}
		if err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				err = fmt.Errorf("runs past the end of the file or qemu's %d-byte table", maxSnapshotTable)
			}
			return fmt.Errorf("qcow2 %s: snapshot %d at %#x: %w", img.path, i, pos, err)
		}
		img.snapshots = append(img.snapshots, sn)
		pos += n
	}
	return nil
}

// readSnapshot reads one entry, returning its size without padding.
func (img *Image) readSnapshot(r io.Reader) (Snapshot, int64, error) {
	var sh snapshotHeader
	if err := binary.Read(r, binary.BigEndian, &sh); err != nil {
		return Snapshot{}, 0, err
	}
	if sh.ExtraSize > maxSnapshotExtra {
		return Snapshot{}, 0, fmt.Errorf("%d bytes of extra data, more than qemu's %d", sh.ExtraSize, maxSnapshotExtra)
	}
	n := int64(snapshotEntrySize) + int64(sh.ExtraSize) + int64(sh.IDSize) + int64(sh.NameSize)
	rest := make([]byte, n-snapshotEntrySize)
	if _, err := io.ReadFull(r, rest); err != nil {
		return Snapshot{}, 0, err
	}
	extra := rest[:sh.ExtraSize]
	sn := Snapshot{
		DateSec: sh.DateSec, DateNsec: sh.DateNsec,
		VMClockSec: sh.VMClockNsec / 1e9, VMClockNsec: sh.VMClockNsec % 1e9,
		VMStateSize: uint64(sh.VMStateSize), ICount: -1,
		ID:       string(rest[sh.ExtraSize : sh.ExtraSize+uint32(sh.IDSize)]),
		Name:     string(rest[sh.ExtraSize+uint32(sh.IDSize) : n-snapshotEntrySize]),
		l1Offset: sh.L1Offset, l1Size: sh.L1Size,
	}
	if len(extra) >= 8 {
		sn.VMStateSize = binary.BigEndian.Uint64(extra)
	}
	if len(extra) >= 16 {
		sn.DiskSize = binary.BigEndian.Uint64(extra[8:])
	}
	if len(extra) >= 24 {
		sn.ICount = int64(binary.BigEndian.Uint64(extra[16:]))
	}
	if l1Bytes := uint64(sh.L1Size) * 8; sh.L1Offset%uint64(img.clusterSize) != 0 || l1Bytes > maxL1Bytes ||
		sh.L1Offset > uint64(img.fileSize) || l1Bytes > uint64(img.fileSize)-sh.L1Offset {
		return Snapshot{}, 0, fmt.Errorf("snapshot %q: L1 table at %#x (%d entries) is unaligned, too large or past the end of the file", sn.Name, sh.L1Offset, sh.L1Size)
	}
	return sn, n, nil
}

// Snapshots lists the image's internal snapshots.
func (img *Image) Snapshots() []Snapshot { return img.snapshots }

// findSnapshot picks a snapshot as qemu-img convert -l does: "snapshot.id=ID"
// and/or "snapshot.name=NAME", or a bare ID or name (the ID is tried first).
func (img *Image) findSnapshot(param string) (Snapshot, error) {
	var id, name string
	bare := !strings.Contains(param, "=")
	if !bare {
		for _, kv := range strings.Split(param, ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "snapshot.id":
				id = v
			case "snapshot.name":
				name = v
			default:
				return Snapshot{}, fmt.Errorf("qcow2 %s: snapshot %q: want snapshot.id=ID, snapshot.name=NAME or an ID or name", img.path, param)
			}
		}
	}
	for _, sn := range img.snapshots {
		if bare && sn.ID == param || !bare && (id == "" || sn.ID == id) && (name == "" || sn.Name == name) {
			return sn, nil
		}
	}
	for _, sn := range img.snapshots {
		if bare && sn.Name == param {
			return sn, nil
		}
	}
	var have []string
	for _, sn := range img.snapshots {
		have = append(have, fmt.Sprintf("%s (%s)", sn.ID, sn.Name))
	}
	if len(have) == 0 {
		have = []string{"none"}
	}
	return Snapshot{}, fmt.Errorf("qcow2 %s: no snapshot %q; the image has: %s", img.path, param, strings.Join(have, ", "))
}

// useSnapshot makes the image read as the snapshot param names: its L1
// table replaces the active one. The virtual size stays the image's, as
// qemu-img convert -l reads it; past the snapshot's table the disk reads
// as unallocated.
func (img *Image) useSnapshot(param string) error {
	sn, err := img.findSnapshot(param)
	if err != nil {
		return err
	}
	l1, err := img.readL1At(sn.l1Offset, sn.l1Size)
	if err != nil {
		return fmt.Errorf("snapshot %q: %w", sn.Name, err)
	}
	if need := len(img.l1); len(l1) < need {
		l1 = append(l1, make([]uint64, need-len(l1))...)
	}
	img.l1 = l1
	img.cache = newL2Cache(img.clusterSize)
	return nil
}
