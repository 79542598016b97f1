package lvm

import (
	"cmp"
	"fmt"
	"math/bits"
	"slices"
	"strings"
)

// Bounds on what one VG's metadata may describe.
const (
	maxPVs      = 4096
	maxLVs      = 1 << 14
	maxSegments = 1 << 16 // over all LVs
	maxStripes  = 128     // LVM's own limit per segment
	maxBytes    = 1 << 62 // any PV, LV or offset, in bytes
)

// VG is a volume group as one copy of its text metadata describes it. VGs
// returned by Assemble also know the devices of their PVs.
type VG struct {
	Name       string
	ID         string
	Seqno      uint64
	ExtentSize uint64 // sectors
	Status     []string
	PVs        []PVInfo
	lvs        []LV

	devs map[string]*PV // by UUID without dashes; set by Assemble
}

// PVInfo is one entry of the metadata's physical_volumes section.
type PVInfo struct {
	Name    string // the metadata's own name for it: "pv0"
	ID      string // UUID as the metadata writes it, with dashes
	Device  string // the device path when the metadata was written: a hint
	DevSize uint64 // sectors
	PEStart uint64 // sectors from the device's start to extent 0
	PECount uint64
}

// LV is a logical volume.
type LV struct {
	Name     string
	ID       string
	Status   []string
	Segments []Segment
	Extents  uint64 // the sum of its segments' extent counts
	Size     int64  // bytes
	// Role is why an LV of striped segments still cannot be read as one:
	// "snapshot" for a snapshot's copy-on-write store. Empty otherwise.
	Role string
}

// Segment is one run of an LV's extents.
type Segment struct {
	StartExtent uint64
	ExtentCount uint64
	Type        string // "striped" (linear is striped over 1), "thin", "raid1", ...
	StripeSize  uint64 // sectors; 0 for linear
	Stripes     []Stripe

	cowStore string // of a "snapshot" segment: the LV holding its exceptions
}

// Stripe is one area of a striped segment: where on which PV it begins.
type Stripe struct {
	PV string // the metadata's PV name ("pv0")
	PE uint64 // first physical extent
}

// Visible reports whether the LV is one users see (not a pool's or raid's
// hidden sub-volume).
func (lv LV) Visible() bool { return slices.Contains(lv.Status, "VISIBLE") }

// SegmentTypes lists the LV's distinct segment types in order.
func (lv LV) SegmentTypes() []string {
	var out []string
	for _, s := range lv.Segments {
		if !slices.Contains(out, s.Type) {
			out = append(out, s.Type)
		}
	}
	return out
}

// ParseMetadata parses one LVM2 text metadata (as stored in a metadata
// area, or as vgcfgbackup writes it) into a VG.
func ParseMetadata(text []byte) (*VG, error) {
	if len(text) > MaxMetadataSize {
		return nil, fmt.Errorf("lvm metadata: %d bytes, more than %d", len(text), MaxMetadataSize)
	}
	root, err := parseConfig(string(text))
	if err != nil {
		return nil, err
	}
	if len(root.children) != 1 {
		return nil, fmt.Errorf("lvm metadata: %d top-level sections, want one VG", len(root.children))
	}
	s := root.children[0]
	where := fmt.Sprintf("lvm metadata: VG %q", s.name)
	vg := &VG{Name: s.name}
	var errs fieldErrs
	vg.ID = errs.str(s, "id")
	vg.Seqno = errs.uint(s, "seqno", 1<<63)
	vg.ExtentSize = errs.uint(s, "extent_size", 1<<32)
	vg.Status = errs.strs(s, "status")
	if errs.err != nil {
		return nil, fmt.Errorf("%s: %w", where, errs.err)
	}
	if vg.ExtentSize == 0 {
		return nil, fmt.Errorf("%s: extent_size is 0", where)
	}
	if err := vg.parsePVs(s.child("physical_volumes")); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if err := vg.parseLVs(s.child("logical_volumes")); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if err := vg.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return vg, nil
}

func (vg *VG) parsePVs(s *section) error {
	if s == nil {
		return fmt.Errorf("no physical_volumes section")
	}
	if len(s.children) > maxPVs {
		return fmt.Errorf("%d PVs, more than %d", len(s.children), maxPVs)
	}
	for _, c := range s.children {
		var errs fieldErrs
		pv := PVInfo{Name: c.name}
		pv.ID = errs.str(c, "id")
		pv.PEStart = errs.uint(c, "pe_start", maxBytes/sectorSize)
		pv.PECount = errs.uint(c, "pe_count", 1<<32)
		if _, ok := c.keys["device"]; ok {
			pv.Device = errs.str(c, "device")
		}
		if _, ok := c.keys["dev_size"]; ok {
			pv.DevSize = errs.uint(c, "dev_size", maxBytes/sectorSize)
		}
		if errs.err != nil {
			return fmt.Errorf("PV %q (line %d): %w", c.name, c.line, errs.err)
		}
		hi, lo := bits.Mul64(pv.PECount, vg.ExtentSize)
		if hi != 0 || lo > maxBytes/sectorSize-pv.PEStart {
			return fmt.Errorf("PV %q: pe_start %d + pe_count %d extents of %d sectors overflows", c.name, pv.PEStart, pv.PECount, vg.ExtentSize)
		}
		vg.PVs = append(vg.PVs, pv)
	}
	return nil
}

func (vg *VG) parseLVs(s *section) error {
	if s == nil {
		return nil // a VG with no LVs has no section
	}
	if len(s.children) > maxLVs {
		return fmt.Errorf("%d LVs, more than %d", len(s.children), maxLVs)
	}
	nseg := 0
	for _, c := range s.children {
		lv, err := vg.parseLV(c, &nseg)
		if err != nil {
			return fmt.Errorf("LV %q (line %d): %w", c.name, c.line, err)
		}
		vg.lvs = append(vg.lvs, lv)
	}
	return nil
}

func (vg *VG) parseLV(s *section, nseg *int) (LV, error) {
	lv := LV{Name: s.name}
	var errs fieldErrs
	lv.ID = errs.str(s, "id")
	lv.Status = errs.strs(s, "status")
	if errs.err != nil {
		return lv, errs.err
	}
	for _, c := range s.children {
		if !strings.HasPrefix(c.name, "segment") {
			continue
		}
		if *nseg++; *nseg > maxSegments {
			return lv, fmt.Errorf("more than %d segments in the VG", maxSegments)
		}
		seg, err := parseSegment(c)
		if err != nil {
			return lv, fmt.Errorf("%s (line %d): %w", c.name, c.line, err)
		}
		lv.Segments = append(lv.Segments, seg)
	}
	if len(lv.Segments) == 0 {
		return lv, fmt.Errorf("no segments")
	}
	slices.SortFunc(lv.Segments, func(a, b Segment) int { return cmp.Compare(a.StartExtent, b.StartExtent) })
	for i, seg := range lv.Segments {
		if seg.StartExtent != lv.Extents {
			return lv, fmt.Errorf("segment %d starts at extent %d, not at %d where the one before ends", i+1, seg.StartExtent, lv.Extents)
		}
		lv.Extents += seg.ExtentCount
	}
	hi, lo := bits.Mul64(lv.Extents, vg.ExtentSize)
	if hi != 0 || lo > maxBytes/sectorSize {
		return lv, fmt.Errorf("%d extents of %d sectors overflows", lv.Extents, vg.ExtentSize)
	}
	lv.Size = int64(lo) * sectorSize
	return lv, nil
}

func parseSegment(s *section) (Segment, error) {
	var errs fieldErrs
	seg := Segment{}
	seg.StartExtent = errs.uint(s, "start_extent", 1<<40)
	seg.ExtentCount = errs.uint(s, "extent_count", 1<<40)
	seg.Type = errs.str(s, "type")
	if errs.err != nil {
		return seg, errs.err
	}
	if seg.ExtentCount == 0 {
		return seg, fmt.Errorf("extent_count is 0")
	}
	if seg.Type == "snapshot" {
		if _, ok := s.keys["cow_store"]; ok {
			seg.cowStore = errs.str(s, "cow_store")
		}
		return seg, errs.err
	}
	if seg.Type != "striped" {
		return seg, nil // kept as listed; Open refuses it
	}
	n := errs.uint(s, "stripe_count", maxStripes)
	if n > 1 {
		seg.StripeSize = errs.uint(s, "stripe_size", 1<<32)
	}
	arr := errs.array(s, "stripes")
	if errs.err != nil {
		return seg, errs.err
	}
	switch {
	case n == 0:
		return seg, fmt.Errorf("stripe_count is 0")
	case uint64(len(arr)) != 2*n:
		return seg, fmt.Errorf("stripes has %d entries, want %d for stripe_count %d", len(arr), 2*n, n)
	case seg.ExtentCount%n != 0:
		return seg, fmt.Errorf("extent_count %d is not a multiple of stripe_count %d", seg.ExtentCount, n)
	case n > 1 && seg.StripeSize == 0:
		return seg, fmt.Errorf("stripe_size is 0 for %d stripes", n)
	}
	for i := 0; i < len(arr); i += 2 {
		if arr[i].kind != kindString || arr[i+1].kind != kindInt || arr[i+1].num < 0 {
			return seg, fmt.Errorf("stripes entry %d is not a PV name and an extent", i/2)
		}
		seg.Stripes = append(seg.Stripes, Stripe{PV: arr[i].str, PE: uint64(arr[i+1].num)})
	}
	return seg, nil
}

// check cross-checks the parsed VG: every stripe names a PV of the VG and
// lies within its extents, and a snapshot's COW store is marked as such.
func (vg *VG) check() error {
	pvs := map[string]*PVInfo{}
	for i := range vg.PVs {
		pvs[vg.PVs[i].Name] = &vg.PVs[i]
	}
	for _, lv := range vg.lvs {
		for si, seg := range lv.Segments {
			if seg.Type != "striped" {
				continue
			}
			per := seg.ExtentCount / uint64(len(seg.Stripes))
			for _, st := range seg.Stripes {
				pv := pvs[st.PV]
				if pv == nil {
					return fmt.Errorf("LV %q segment %d: stripe on unknown PV %q", lv.Name, si+1, st.PV)
				}
				if st.PE > pv.PECount || per > pv.PECount-st.PE {
					return fmt.Errorf("LV %q segment %d: extents %d..%d on %s are past its pe_count %d",
						lv.Name, si+1, st.PE, st.PE+per-1, st.PV, pv.PECount)
				}
			}
		}
	}
	return vg.markSnapshots()
}

// markSnapshots finds the snapshot segments (in hidden "snapshotN" LVs) and
// marks the LV each names as its cow_store: reading that LV's extents would
// give the exception store, not the snapshot's contents.
func (vg *VG) markSnapshots() error {
	byName := map[string]*LV{}
	for i := range vg.lvs {
		byName[vg.lvs[i].Name] = &vg.lvs[i]
	}
	for _, lv := range vg.lvs {
		for _, seg := range lv.Segments {
			if seg.Type != "snapshot" || seg.cowStore == "" {
				continue
			}
			cow := byName[seg.cowStore]
			if cow == nil {
				return fmt.Errorf("LV %q: snapshot cow_store %q is no LV of the VG", lv.Name, seg.cowStore)
			}
			cow.Role = "snapshot"
		}
	}
	return nil
}

// fieldErrs reads typed fields from a section and keeps the first error.
type fieldErrs struct{ err error }

func (e *fieldErrs) get(s *section, key string, kind valueKind) (value, bool) {
	if e.err != nil {
		return value{}, false
	}
	v, ok := s.keys[key]
	switch {
	case !ok:
		e.err = fmt.Errorf("no %s", key)
	case v.kind != kind:
		e.err = fmt.Errorf("%s has the wrong type", key)
	default:
		return v, true
	}
	return value{}, false
}

func (e *fieldErrs) str(s *section, key string) string {
	v, _ := e.get(s, key, kindString)
	return v.str
}

func (e *fieldErrs) uint(s *section, key string, limit uint64) uint64 {
	v, ok := e.get(s, key, kindInt)
	if ok && (v.num < 0 || uint64(v.num) > limit) {
		e.err = fmt.Errorf("%s = %d is not in 0..%d", key, v.num, limit)
		return 0
	}
	return uint64(v.num)
}

func (e *fieldErrs) array(s *section, key string) []value {
	v, _ := e.get(s, key, kindArray)
	return v.arr
}

func (e *fieldErrs) strs(s *section, key string) []string {
	var out []string
	for i, v := range e.array(s, key) {
		if v.kind != kindString {
			e.err = fmt.Errorf("%s element %d is not a string", key, i)
			return nil
		}
		out = append(out, v.str)
	}
	return out
}
