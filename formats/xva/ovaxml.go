package xva

import (
	"bytes"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// MaxOvaXMLSize caps ova.xml: real exports of one VM are a few hundred KiB
// (UEFI NVRAM and recommendations included).
const MaxOvaXMLSize = 16 << 20

// NullRef is the reference xapi writes for "no object".
const NullRef = "OpaqueRef:NULL"

// Document is a parsed ova.xml: the version block and the object records.
type Document struct {
	Version Value    // struct
	Objects []Object // in document order
	Extra   []Member // other top-level members, kept verbatim
}

// Object is one exported database record.
type Object struct {
	Class    string
	ID       string
	Snapshot Value // struct of the record's fields
}

// ParseOvaXML decodes ova.xml. It checks the XML-RPC structure and the
// export version; references between objects are checked by the layout.
func ParseOvaXML(data []byte) (*Document, error) {
	if len(data) > MaxOvaXMLSize {
		return nil, fmt.Errorf("ova.xml: %d bytes, more than the %d allowed", len(data), MaxOvaXMLSize)
	}
	if i := bytes.Index(data, []byte("<appliance")); i >= 0 && bytes.Index(data, []byte("<value")) < 0 {
		return nil, fmt.Errorf("ova.xml: legacy XVA format version 1 (<appliance> at byte %d) is not supported", i)
	}
	root, err := parseValue(data)
	if err != nil {
		return nil, fmt.Errorf("ova.xml: %w", err)
	}
	if root.Kind != Struct {
		return nil, fmt.Errorf("ova.xml: root value is %s, want struct", root.Kind)
	}
	doc := &Document{}
	var haveVersion, haveObjects bool
	for _, m := range root.Members {
		switch m.Name {
		case "version":
			if m.Value.Kind != Struct {
				return nil, fmt.Errorf("ova.xml: version is %s, want struct", m.Value.Kind)
			}
			doc.Version, haveVersion = m.Value, true
		case "objects":
			if m.Value.Kind != Array {
				return nil, fmt.Errorf("ova.xml: objects is %s, want array", m.Value.Kind)
			}
			haveObjects = true
			for i := range m.Value.Items {
				o, err := parseObject(&m.Value.Items[i])
				if err != nil {
					return nil, fmt.Errorf("ova.xml: objects[%d]: %w", i, err)
				}
				doc.Objects = append(doc.Objects, o)
			}
		default:
			doc.Extra = append(doc.Extra, m)
		}
	}
	if !haveVersion {
		return nil, fmt.Errorf("ova.xml: no version member")
	}
	if !haveObjects {
		return nil, fmt.Errorf("ova.xml: no objects member")
	}
	vsn, ok := doc.Version.Get("export_vsn")
	if !ok {
		return nil, fmt.Errorf("ova.xml: version.export_vsn missing (export format 0, before XenServer 4.1, is not supported)")
	}
	if n, err := strconv.Atoi(strings.TrimSpace(vsn.Text)); err != nil || n != 2 {
		return nil, fmt.Errorf("ova.xml: version.export_vsn %q, want 2 (formats 0 and 1 are not supported)", clip(vsn.Text))
	}
	seen := make(map[string]int, len(doc.Objects))
	for i, o := range doc.Objects {
		if j, dup := seen[o.ID]; dup {
			return nil, fmt.Errorf("ova.xml: objects[%d] and objects[%d] both have id %q", j, i, o.ID)
		}
		seen[o.ID] = i
	}
	return doc, nil
}

func parseObject(v *Value) (Object, error) {
	if v.Kind != Struct {
		return Object{}, fmt.Errorf("is %s, want struct", v.Kind)
	}
	var o Object
	var haveSnap bool
	for _, m := range v.Members {
		switch m.Name {
		case "class":
			if m.Value.Kind != String {
				return Object{}, fmt.Errorf("class is %s, want string", m.Value.Kind)
			}
			o.Class = m.Value.Text
		case "id":
			if m.Value.Kind != String {
				return Object{}, fmt.Errorf("id is %s, want string", m.Value.Kind)
			}
			o.ID = m.Value.Text
		case "snapshot":
			if m.Value.Kind != Struct {
				return Object{}, fmt.Errorf("snapshot is %s, want struct", m.Value.Kind)
			}
			o.Snapshot, haveSnap = m.Value, true
		default:
			return Object{}, fmt.Errorf("unexpected member %q", clip(m.Name))
		}
	}
	switch {
	case o.Class == "":
		return Object{}, fmt.Errorf("no class")
	case o.ID == "":
		return Object{}, fmt.Errorf("%s without id", o.Class)
	case !haveSnap:
		return Object{}, fmt.Errorf("%s %s without snapshot", o.Class, o.ID)
	case strings.Contains(o.ID, "/") || strings.Contains(o.ID, "\x00"):
		// The id names the chunk directory.
		return Object{}, fmt.Errorf("%s id %q contains '/' or NUL", o.Class, clip(o.ID))
	}
	return o, nil
}

// Marshal renders the document as XML-RPC, the way xapi's importer reads it.
func (d *Document) Marshal() []byte {
	root := Value{Kind: Struct}
	root.Members = append(root.Members, Member{Name: "version", Value: d.Version})
	objs := Value{Kind: Array, Items: make([]Value, 0, len(d.Objects))}
	for _, o := range d.Objects {
		objs.Items = append(objs.Items, Value{Kind: Struct, Members: []Member{
			{Name: "class", Value: Str(o.Class)},
			{Name: "id", Value: Str(o.ID)},
			{Name: "snapshot", Value: o.Snapshot},
		}})
	}
	root.Members = append(root.Members, Member{Name: "objects", Value: objs})
	root.Members = append(root.Members, d.Extra...)
	var b bytes.Buffer
	appendXML(&b, &root)
	return b.Bytes()
}

// record is a typed view of one object's fields; every accessor error names
// the class, the id and the field.
type record struct{ o *Object }

func (r record) errf(field, format string, args ...any) error {
	return fmt.Errorf("ova.xml: %s %s: %s: %s", r.o.Class, r.o.ID, field, fmt.Sprintf(format, args...))
}

func (r record) has(field string) bool { _, ok := r.o.Snapshot.Get(field); return ok }

func (r record) str(field string) (string, error) {
	v, ok := r.o.Snapshot.Get(field)
	if !ok {
		return "", nil
	}
	if v.Kind != String {
		return "", r.errf(field, "is %s, want string", v.Kind)
	}
	return v.Text, nil
}

func (r record) boolean(field string) (bool, error) {
	v, ok := r.o.Snapshot.Get(field)
	if !ok {
		return false, nil
	}
	switch {
	case v.Kind == Bool:
		return v.Text == "1", nil
	case v.Kind == String && (v.Text == "true" || v.Text == "false"):
		return v.Text == "true", nil
	}
	return false, r.errf(field, "is %s %q, want boolean", v.Kind, clip(v.Text))
}

// integer reads an int64 field written untyped (xapi) or typed.
func (r record) integer(field string, lo, hi int64) (int64, bool, error) {
	v, ok := r.o.Snapshot.Get(field)
	if !ok {
		return 0, false, nil
	}
	if v.Kind != String && v.Kind != Int {
		return 0, false, r.errf(field, "is %s, want integer", v.Kind)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v.Text), 10, 64)
	if err != nil {
		return 0, false, r.errf(field, "%q is not an integer", clip(v.Text))
	}
	if n < lo || n > hi {
		return 0, false, r.errf(field, "%d out of range [%d, %d]", n, lo, hi)
	}
	return n, true, nil
}

func (r record) mapStr(field, key string) (string, bool) {
	m, ok := r.o.Snapshot.Get(field)
	if !ok {
		return "", false
	}
	v, ok := m.Get(key)
	if !ok || v.Kind != String {
		return "", false
	}
	return v.Text, true
}

// refList reads a set of references.
func (r record) refList(field string) ([]string, error) {
	v, ok := r.o.Snapshot.Get(field)
	if !ok {
		return nil, nil
	}
	if v.Kind != Array {
		return nil, r.errf(field, "is %s, want array", v.Kind)
	}
	out := make([]string, 0, len(v.Items))
	for i, it := range v.Items {
		if it.Kind != String {
			return nil, r.errf(field, "item %d is %s, want ref", i, it.Kind)
		}
		out = append(out, it.Text)
	}
	return out, nil
}

// Limits on values from ova.xml that size something.
const (
	maxVirtualSize = 1 << 50 // 1 PiB; xapi's largest SR back ends stop far below
	maxMemory      = 1 << 46 // 64 TiB
	maxVCPUs       = 4096
)

// layout is what the disk stream and the neutral mapping need from a document.
type layout struct {
	doc      *Document
	byID     map[string]int // object index by record id
	vm       int            // index of the VM object
	disks    []vdisk        // the VM's drives in userdevice order
	nics     []int          // VIF object indexes in device order
	streamed []svdi         // every VDI whose chunks the archive carries, in id string order
}

type vdisk struct {
	id       string // neutral disk id
	vbd      int    // VBD object index
	vdi      int    // VDI object index, -1 when empty or not exported
	unit     int
	cd       bool
	bootable bool
	readOnly bool
	size     int64
}

type svdi struct {
	ref  string
	name string
	size int64
	obj  int
	disk int // index into layout.disks, -1 when the VDI belongs to no drive of the VM
}

func (d *Document) index() map[string]int {
	m := make(map[string]int, len(d.Objects))
	for i, o := range d.Objects {
		m[o.ID] = i
	}
	return m
}

// buildLayout picks the VM (X12: the one that is neither template, snapshot
// nor control domain), orders its drives and NICs, and lists the VDIs the
// archive streams.
func buildLayout(doc *Document) (*layout, error) {
	L := &layout{doc: doc, byID: doc.index(), vm: -1}
	var err error
	if L.vm, err = exportedVM(doc); err != nil {
		return nil, err
	}
	vmID := doc.Objects[L.vm].ID
	if L.disks, err = layoutDrives(doc, L.byID, vmID); err != nil {
		return nil, err
	}
	if L.nics, err = layoutNICs(doc, L.byID, vmID); err != nil {
		return nil, err
	}
	if L.streamed, err = streamedVDIs(doc, L.byID, vmID, L.disks); err != nil {
		return nil, err
	}
	return L, nil
}

// exportedVM is the index of the one VM record that is neither template,
// snapshot nor control domain.
func exportedVM(doc *Document) (int, error) {
	vm := -1
	var vms []string
	for i := range doc.Objects {
		o := &doc.Objects[i]
		if o.Class != "VM" {
			continue
		}
		r := record{o}
		tmpl, err := r.boolean("is_a_template")
		if err != nil {
			return -1, err
		}
		snap, err := r.boolean("is_a_snapshot")
		if err != nil {
			return -1, err
		}
		dom0, err := r.boolean("is_control_domain")
		if err != nil {
			return -1, err
		}
		if tmpl || snap || dom0 {
			continue
		}
		name, _ := r.str("name_label")
		vms = append(vms, fmt.Sprintf("%s (%q)", o.ID, name))
		vm = i
	}
	switch len(vms) {
	case 0:
		return -1, fmt.Errorf("ova.xml: no VM record that is not a template or snapshot")
	case 1:
		return vm, nil
	default:
		return -1, fmt.Errorf("ova.xml: %d VMs (%s); an export of one VM is expected", len(vms), strings.Join(vms, ", "))
	}
}

// layoutDrives reads the VM's drives from the child side, as xapi's
// importer creates them, in userdevice order, each with a disk ID.
func layoutDrives(doc *Document, byID map[string]int, vmID string) ([]vdisk, error) {
	vbds, err := childrenOf(doc, "VBD", vmID)
	if err != nil {
		return nil, err
	}
	drives := make([]vdisk, 0, len(vbds))
	for _, i := range vbds {
		d, err := readDrive(doc, byID, i)
		if err != nil {
			return nil, err
		}
		drives = append(drives, d)
	}
	// Stable: drives without a slot keep their order, after the others.
	sort.SliceStable(drives, func(a, b int) bool {
		ua, ub := drives[a].unit, drives[b].unit
		if ua < 0 {
			ua = math.MaxInt
		}
		if ub < 0 {
			ub = math.MaxInt
		}
		return ua < ub
	})
	used := map[string]bool{}
	for i := range drives {
		d := &drives[i]
		d.id = diskID(d.unit)
		if d.unit < 0 || used[d.id] {
			d.id = fmt.Sprintf("disk%d", i)
		}
		for used[d.id] {
			d.id += "_"
		}
		used[d.id] = true
	}
	return drives, nil
}

// readDrive reads VBD record i and the VDI behind it.
func readDrive(doc *Document, byID map[string]int, i int) (vdisk, error) {
	r := record{&doc.Objects[i]}
	typ, err := r.str("type")
	if err != nil {
		return vdisk{}, err
	}
	mode, err := r.str("mode")
	if err != nil {
		return vdisk{}, err
	}
	boot, err := r.boolean("bootable")
	if err != nil {
		return vdisk{}, err
	}
	empty, err := r.boolean("empty")
	if err != nil {
		return vdisk{}, err
	}
	d := vdisk{vbd: i, vdi: -1, unit: -1, cd: typ == "CD", bootable: boot, readOnly: mode == "RO"}
	if ud, err := r.str("userdevice"); err == nil {
		if n, err := strconv.Atoi(ud); err == nil && n >= 0 && n < 1024 {
			d.unit = n
		}
	}
	vdiRef, err := r.str("VDI")
	if err != nil {
		return vdisk{}, err
	}
	if !empty && vdiRef != "" && vdiRef != NullRef {
		j, ok := byID[vdiRef]
		switch {
		case ok && doc.Objects[j].Class == "VDI":
			d.vdi = j
			size, _, err := record{&doc.Objects[j]}.integer("virtual_size", 0, maxVirtualSize)
			if err != nil {
				return vdisk{}, err
			}
			d.size = size
		case ok:
			return vdisk{}, r.errf("VDI", "%s is a %s, not a VDI", vdiRef, doc.Objects[j].Class)
		case !d.cd:
			return vdisk{}, r.errf("VDI", "%s is not in ova.xml", vdiRef)
		}
	}
	if !d.cd && d.vdi < 0 {
		return vdisk{}, r.errf("VDI", "disk drive without a VDI")
	}
	return d, nil
}

// layoutNICs lists the VM's VIF records, child side too (Xen Orchestra
// leaves VM.VIFs empty), in device order.
func layoutNICs(doc *Document, byID map[string]int, vmID string) ([]int, error) {
	type nic struct{ obj, dev int }
	var nics []nic
	vifs, err := childrenOf(doc, "VIF", vmID)
	if err != nil {
		return nil, err
	}
	for _, i := range vifs {
		r := record{&doc.Objects[i]}
		n := nic{obj: i, dev: math.MaxInt}
		if dev, _, err := r.integer("device", 0, 1<<16); err == nil {
			if r.has("device") {
				n.dev = int(dev)
			}
		}
		if net, err := r.str("network"); err != nil {
			return nil, err
		} else if net != "" && net != NullRef {
			if j, ok := byID[net]; !ok || doc.Objects[j].Class != "network" {
				return nil, r.errf("network", "%s is not a network in ova.xml", net)
			}
		}
		nics = append(nics, n)
	}
	sort.SliceStable(nics, func(a, b int) bool { return nics[a].dev < nics[b].dev })
	out := make([]int, 0, len(nics))
	for _, n := range nics {
		out = append(out, n.obj)
	}
	return out, nil
}

// streamedVDIs lists the VDIs the archive streams: those behind a non-CD
// VBD of any VM in the file, on a non-ISO SR, plus a suspend image; each
// names the drive of disks it belongs to, if any.
func streamedVDIs(doc *Document, byID map[string]int, vmID string, disks []vdisk) ([]svdi, error) {
	stream := map[int]bool{}
	for i := range doc.Objects {
		o := &doc.Objects[i]
		r := record{o}
		switch o.Class {
		case "VBD":
			typ, _ := r.str("type")
			ref, _ := r.str("VDI")
			if typ == "CD" || ref == "" || ref == NullRef {
				continue
			}
			j, ok := byID[ref]
			if !ok || doc.Objects[j].Class != "VDI" {
				owner, _ := r.str("VM")
				if owner == vmID {
					return nil, r.errf("VDI", "%s is not in ova.xml", ref)
				}
				continue
			}
			if !isoVDI(doc, byID, j) {
				stream[j] = true
			}
		case "VM":
			ref, _ := r.str("suspend_VDI")
			if j, ok := byID[ref]; ok && doc.Objects[j].Class == "VDI" {
				stream[j] = true
			}
		}
	}
	var streamed []svdi
	for j := range stream {
		o := &doc.Objects[j]
		r := record{o}
		size, ok, err := r.integer("virtual_size", 0, maxVirtualSize)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, r.errf("virtual_size", "missing")
		}
		name, _ := r.str("name_label")
		s := svdi{ref: o.ID, name: name, size: size, obj: j, disk: -1}
		for k := range disks {
			if disks[k].vdi == j {
				s.disk = k
				break
			}
		}
		streamed = append(streamed, s)
	}
	sort.Slice(streamed, func(a, b int) bool { return streamed[a].ref < streamed[b].ref })
	return streamed, nil
}

func isoVDI(doc *Document, byID map[string]int, vdi int) bool {
	sr, _ := record{&doc.Objects[vdi]}.str("SR")
	j, ok := byID[sr]
	if !ok || doc.Objects[j].Class != "SR" {
		return false
	}
	r := record{&doc.Objects[j]}
	ct, _ := r.str("content_type")
	typ, _ := r.str("type")
	return ct == "iso" || typ == "iso"
}

// diskID names a drive after the Xen device its slot gives a Linux guest:
// userdevice 0 → xvda, 3 → xvdd, 26 → xvdaa. Stable across a round trip
// because the slot is kept.
func diskID(unit int) string {
	if unit < 0 {
		return ""
	}
	var s []byte
	for n := unit; ; n = n/26 - 1 {
		s = append([]byte{byte('a' + n%26)}, s...)
		if n < 26 {
			break
		}
	}
	return "xvd" + string(s)
}

// unitFromID inverts diskID; -1 when id is not of that form.
func unitFromID(id string) int {
	s, ok := strings.CutPrefix(id, "xvd")
	if !ok || s == "" || len(s) > 3 {
		return -1
	}
	n := 0
	for _, c := range s {
		if c < 'a' || c > 'z' {
			return -1
		}
		n = n*26 + int(c-'a') + 1
	}
	return n - 1
}

// childrenOf lists, in document order, the objects of a class whose VM field
// names vmID: drives and NICs are found from the child side, as xapi's
// importer does (Xen Orchestra leaves VM.VBDs and VM.VIFs empty).
func childrenOf(doc *Document, class, vmID string) ([]int, error) {
	var out []int
	for i := range doc.Objects {
		o := &doc.Objects[i]
		if o.Class != class {
			continue
		}
		owner, err := record{o}.str("VM")
		if err != nil {
			return nil, err
		}
		if owner == vmID {
			out = append(out, i)
		}
	}
	return out, nil
}
