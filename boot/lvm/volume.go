package lvm

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
)

// AssembleAll groups pvs (from all the disks of a machine, in any order) by
// the VG their metadata names, and returns one VG per group, by name. Each
// VG takes the newest metadata (highest seqno) among its PVs and finds its
// PVs by UUID, whichever disk they are on; PVs without metadata join any VG
// that names them.
func AssembleAll(pvs []*PV) ([]*VG, error) {
	byUUID := map[string]*PV{}
	newest := map[string]*VG{}
	for _, pv := range pvs {
		if other := byUUID[pv.UUID]; other != nil {
			return nil, fmt.Errorf("lvm: PV UUID %s is on two of the devices given (a cloned disk?)", pv.UUID)
		}
		byUUID[pv.UUID] = pv
		if pv.VG == nil {
			continue
		}
		if cur := newest[pv.VG.ID]; cur == nil || pv.VG.Seqno > cur.Seqno {
			newest[pv.VG.ID] = pv.VG
		}
	}
	var out []*VG
	for _, md := range newest {
		vg := *md
		vg.devs = map[string]*PV{}
		for _, info := range vg.PVs {
			if pv := byUUID[strings.ReplaceAll(info.ID, "-", "")]; pv != nil {
				vg.devs[info.Name] = pv
			}
		}
		out = append(out, &vg)
	}
	slices.SortFunc(out, func(a, b *VG) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// Assemble is AssembleAll for PVs that must all belong to one VG.
func Assemble(pvs []*PV) (*VG, error) {
	vgs, err := AssembleAll(pvs)
	if err != nil {
		return nil, err
	}
	switch len(vgs) {
	case 0:
		return nil, fmt.Errorf("lvm: none of the %d PVs holds VG metadata", len(pvs))
	case 1:
		return vgs[0], nil
	}
	names := make([]string, len(vgs))
	for i, vg := range vgs {
		names[i] = vg.Name
	}
	return nil, fmt.Errorf("lvm: the PVs belong to %d VGs (%s), not one", len(vgs), strings.Join(names, ", "))
}

// LVInfo is an LV as LVs lists it.
type LVInfo struct {
	LV
	// Err is why Open would fail (ErrUnsupported, ErrMissingPV, ...); nil
	// when the LV can be read.
	Err error
}

// LVs lists the VG's logical volumes, hidden ones included, in metadata
// order, each with whether it can be opened.
func (vg *VG) LVs() []LVInfo {
	out := make([]LVInfo, len(vg.lvs))
	for i, lv := range vg.lvs {
		_, err := vg.mapLV(&lv)
		out[i] = LVInfo{LV: lv, Err: err}
	}
	return out
}

// Open returns a reader of the named LV's bytes and its size.
func (vg *VG) Open(name string) (io.ReaderAt, int64, error) {
	for i := range vg.lvs {
		if vg.lvs[i].Name == name {
			r, err := vg.mapLV(&vg.lvs[i])
			if err != nil {
				return nil, 0, err
			}
			return r, r.size, nil
		}
	}
	return nil, 0, fmt.Errorf("lvm: VG %s has no LV %q", vg.Name, name)
}

// mapLV builds the reader of lv, or says why it cannot.
func (vg *VG) mapLV(lv *LV) (*lvReader, error) {
	where := fmt.Sprintf("lvm: LV %s/%s", vg.Name, lv.Name)
	if lv.Role == "snapshot" {
		return nil, fmt.Errorf("%s is a snapshot's copy-on-write store: %w", where, ErrUnsupported)
	}
	for _, seg := range lv.Segments {
		if seg.Type != "striped" {
			return nil, fmt.Errorf("%s: segment type %q at extent %d: %w", where, seg.Type, seg.StartExtent, ErrUnsupported)
		}
	}
	extent := int64(vg.ExtentSize) * sectorSize
	r := &lvReader{size: lv.Size}
	for _, seg := range lv.Segments {
		m := segMap{start: int64(seg.StartExtent) * extent, length: int64(seg.ExtentCount) * extent}
		m.chunk = m.length
		if len(seg.Stripes) > 1 {
			m.chunk = int64(seg.StripeSize) * sectorSize
		}
		for _, st := range seg.Stripes {
			a, err := vg.area(st, seg.ExtentCount/uint64(len(seg.Stripes)))
			if err != nil {
				return nil, fmt.Errorf("%s segment at extent %d: %w", where, seg.StartExtent, err)
			}
			m.areas = append(m.areas, a)
		}
		r.segs = append(r.segs, m)
	}
	return r, nil
}

// area locates n extents from st on its PV's device.
func (vg *VG) area(st Stripe, n uint64) (area, error) {
	var info *PVInfo
	for i := range vg.PVs {
		if vg.PVs[i].Name == st.PV {
			info = &vg.PVs[i]
		}
	}
	pv := vg.devs[st.PV]
	if info == nil || pv == nil {
		id, dev := "", ""
		if info != nil {
			id, dev = info.ID, info.Device
		}
		return area{}, fmt.Errorf("%s (UUID %s, last seen as %s) was not among the devices given: %w", st.PV, id, dev, ErrMissingPV)
	}
	// ParseMetadata bounded these products to maxBytes.
	off := int64(info.PEStart+st.PE*vg.ExtentSize) * sectorSize
	end := off + int64(n*vg.ExtentSize)*sectorSize
	if end > pv.size {
		return area{}, fmt.Errorf("extents %d..%d of %s end at byte %d, past its %d-byte device", st.PE, st.PE+n-1, st.PV, end, pv.size)
	}
	return area{r: pv.r, off: off}, nil
}

type area struct {
	r   io.ReaderAt
	off int64 // bytes from the device's start to the area's first extent
}

// segMap is one segment in bytes: chunk-sized pieces go round-robin to its
// areas (one area and one chunk of the whole length when linear).
type segMap struct {
	start, length int64
	chunk         int64
	areas         []area
}

type lvReader struct {
	size int64
	segs []segMap
}

func (r *lvReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("lvm: read at negative offset %d", off)
	}
	done := 0
	for done < len(p) {
		if off >= r.size {
			return done, io.EOF
		}
		i := sort.Search(len(r.segs), func(i int) bool { return r.segs[i].start+r.segs[i].length > off })
		s := &r.segs[i]
		o := off - s.start
		k, within := o/s.chunk, o%s.chunk
		a := s.areas[k%int64(len(s.areas))]
		n := min(int64(len(p)-done), s.chunk-within, s.start+s.length-off)
		phys := a.off + (k/int64(len(s.areas)))*s.chunk + within
		m, err := a.r.ReadAt(p[done:done+int(n)], phys)
		done += m
		off += int64(m)
		if m < int(n) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return done, fmt.Errorf("lvm: reading %d bytes at device offset %d: %w", n, phys, err)
		}
	}
	return done, nil
}
