package lvm

import (
	"fmt"
	"strings"
)

// Mapping is an LV as device-mapper maps it when LVM activates it: the
// name /dev/mapper shows, the UUID LVM's tools recognise as theirs, and
// one target per segment.
type Mapping struct {
	Name    string // "vg-lv", hyphens inside either name doubled
	UUID    string // "LVM-" + the VG's and the LV's IDs without dashes
	Targets []Target
}

// Target is one line of the table: Length sectors of the LV from Start,
// laid over its areas (one for linear; round-robin in StripeSize-sector
// chunks for striped).
type Target struct {
	Start, Length uint64 // sectors
	StripeSize    uint64 // sectors; 0 when linear
	Areas         []Area
}

// Area is where a target's data begins on one PV.
type Area struct {
	PV     string // the PV's UUID, without dashes (PV.UUID)
	Offset uint64 // sectors from the start of the PV's device
}

// Mapping returns the device-mapper table of the named LV. The LV must be
// one Open can read, with all its PVs present.
func (vg *VG) Mapping(name string) (*Mapping, error) {
	var lv *LV
	for i := range vg.lvs {
		if vg.lvs[i].Name == name {
			lv = &vg.lvs[i]
		}
	}
	if lv == nil {
		return nil, fmt.Errorf("lvm: VG %s has no LV %q", vg.Name, name)
	}
	if _, err := vg.mapLV(lv); err != nil { // types, PVs and bounds checked there
		return nil, err
	}
	m := &Mapping{
		Name: dmName(vg.Name) + "-" + dmName(lv.Name),
		UUID: "LVM-" + strings.ReplaceAll(vg.ID, "-", "") + strings.ReplaceAll(lv.ID, "-", ""),
	}
	for _, seg := range lv.Segments {
		t := Target{Start: seg.StartExtent * vg.ExtentSize, Length: seg.ExtentCount * vg.ExtentSize}
		if len(seg.Stripes) > 1 {
			t.StripeSize = seg.StripeSize
		}
		for _, st := range seg.Stripes {
			info := vg.pvInfo(st.PV)
			t.Areas = append(t.Areas, Area{PV: vg.devs[st.PV].UUID, Offset: info.PEStart + st.PE*vg.ExtentSize})
		}
		m.Targets = append(m.Targets, t)
	}
	return m, nil
}

// pvInfo is the metadata's record of the PV it calls name; mapLV has
// checked that there is one.
func (vg *VG) pvInfo(name string) *PVInfo {
	for i := range vg.PVs {
		if vg.PVs[i].Name == name {
			return &vg.PVs[i]
		}
	}
	return nil
}

// dmName doubles hyphens, as LVM does so that the one between VG and LV
// names stays unambiguous.
func dmName(s string) string { return strings.ReplaceAll(s, "-", "--") }

// Params is the target's type and its parameter string for the
// device-mapper table, each area's device given by dev (as "MAJ:MIN").
func (t Target) Params(dev func(pvUUID string) string) (typ, params string) {
	if len(t.Areas) == 1 {
		return "linear", fmt.Sprintf("%s %d", dev(t.Areas[0].PV), t.Areas[0].Offset)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d %d", len(t.Areas), t.StripeSize)
	for _, a := range t.Areas {
		fmt.Fprintf(&b, " %s %d", dev(a.PV), a.Offset)
	}
	return "striped", b.String()
}
