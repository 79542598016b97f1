package xva

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/vmconv/vmconv/formats/neutral"
)

const mib = 1 << 20

// Keys of Extensions.Xen (see the package documentation).
const (
	extVersion = "version"
	extTop     = "top"
	extVM      = "vm"
	extAbsent  = "absent"
	extDisks   = "disks"
	extNICs    = "nics"
	extObjects = "objects"
)

// fieldMap is a record's fields as JSON, for the extensions: the modelled
// fields are deleted from it as they are mapped, and the fields the record
// lacked are listed in absent, so the writer leaves them out again.
type fieldMap struct {
	m      map[string]any
	absent []string
}

func newFieldMap(v *Value) *fieldMap {
	m, _ := toJSON(v).(map[string]any)
	if m == nil {
		m = map[string]any{}
	}
	return &fieldMap{m: m}
}

func (f *fieldMap) del(name string) { delete(f.m, name) }

func (f *fieldMap) markAbsent(name string) { f.absent = append(f.absent, name) }

func objEntry(o *Object, fields map[string]any) map[string]any {
	return map[string]any{"id": o.ID, "fields": fields}
}

// toNeutral maps the chosen VM of doc to a neutral.VM. Modelled fields are
// taken out of the records; everything else lands in Extensions.Xen.
func toNeutral(doc *Document, L *layout) (*neutral.VM, error) {
	vmObj := &doc.Objects[L.vm]
	r := record{vmObj}
	vm := &neutral.VM{Schema: neutral.Schema, Firmware: "bios", CoresPerSocket: 1, Disks: []neutral.Disk{}, NICs: []neutral.NIC{}}
	f := newFieldMap(&vmObj.Snapshot)
	for _, step := range []func(*neutral.VM, record, *fieldMap) error{
		vmIdentity, vmCPUs, vmMemory, vmPlatform, vmPVBoot,
	} {
		if err := step(vm, r, f); err != nil {
			return nil, err
		}
	}
	if s, ok := r.mapStr("other_config", "base_template_name"); ok {
		vm.GuestOS = s // a hint only; other_config keeps it
	}
	hint := takeHints(vm, f, L)

	ext := map[string]any{
		extVersion: toJSON(&doc.Version),
		extVM:      objEntry(vmObj, f.m),
	}
	if len(doc.Extra) > 0 {
		ext[extTop] = toJSON(&Value{Kind: Struct, Members: doc.Extra})
	}
	if len(f.absent) > 0 {
		ext[extAbsent] = toAnyList(f.absent)
	}

	taken := map[int]bool{L.vm: true}
	ext[extDisks] = neutralDisks(doc, L, vm, hint, taken)
	nics, err := neutralNICs(doc, L, vm, hint, taken)
	if err != nil {
		return nil, err
	}
	if len(nics) > 0 {
		ext[extNICs] = nics
	}
	if objs := untakenObjects(doc, taken); len(objs) > 0 {
		ext[extObjects] = objs
	}
	vm.Extensions.Xen = ext
	return vm, nil
}

// vmIdentity maps the VM's name and UUID.
func vmIdentity(vm *neutral.VM, r record, f *fieldMap) error {
	var err error
	if !r.has("name_label") {
		f.markAbsent("name_label")
	}
	if vm.Name, err = r.str("name_label"); err != nil {
		return err
	}
	f.del("name_label")
	if !r.has("uuid") {
		f.markAbsent("uuid")
	}
	if vm.UUID, err = r.str("uuid"); err != nil {
		return err
	}
	f.del("uuid")
	return nil
}

// vmCPUs maps VCPUs_max (else VCPUs_at_startup, else 1).
func vmCPUs(vm *neutral.VM, r record, f *fieldMap) error {
	cpus, haveMax, err := r.integer("VCPUs_max", 1, maxVCPUs)
	if err != nil {
		return err
	}
	start, haveStart, err := r.integer("VCPUs_at_startup", 1, maxVCPUs)
	if err != nil {
		return err
	}
	snap := &r.o.Snapshot
	switch {
	case haveMax:
		vm.CPUs = int(cpus)
		f.del("VCPUs_max")
		if haveStart && start == cpus {
			if v, _ := snap.Get("VCPUs_at_startup"); v.Kind == String {
				f.del("VCPUs_at_startup")
			}
		}
	case haveStart:
		vm.CPUs = int(start)
		f.markAbsent("VCPUs_max")
	default:
		vm.CPUs = 1
		f.markAbsent("VCPUs_max")
	}
	if v, ok := snap.Get("VCPUs_max"); ok && v.Kind != String {
		f.m["VCPUs_max"] = toJSON(v) // typed: keep the rendering
	}
	return nil
}

// vmMemory maps memory_static_max, rounded up to whole MiB.
func vmMemory(vm *neutral.VM, r record, f *fieldMap) error {
	mem, haveMem, err := r.integer("memory_static_max", 0, maxMemory)
	if err != nil {
		return err
	}
	if !haveMem {
		f.markAbsent("memory_static_max")
		return nil
	}
	vm.MemoryMiB = (mem + mib - 1) / mib
	if v, _ := r.o.Snapshot.Get("memory_static_max"); mem%mib == 0 && v.Kind == String {
		f.del("memory_static_max")
	}
	return nil
}

// vmPlatform maps platform:cores-per-socket and HVM_boot_params:firmware.
func vmPlatform(vm *neutral.VM, r record, f *fieldMap) error {
	if s, ok := r.mapStr("platform", "cores-per-socket"); ok {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxVCPUs {
			return r.errf("platform", "cores-per-socket %q is not a count of cores", clip(s))
		}
		vm.CoresPerSocket = n
		if p, ok := f.m["platform"].(map[string]any); ok {
			delete(p, "cores-per-socket")
		}
	} else {
		f.markAbsent("platform.cores-per-socket")
	}
	if s, ok := r.mapStr("HVM_boot_params", "firmware"); ok && (s == "bios" || s == "uefi") {
		vm.Firmware = s
		if p, ok := f.m["HVM_boot_params"].(map[string]any); ok {
			delete(p, "firmware")
		}
	} else if !ok {
		f.markAbsent("HVM_boot_params.firmware")
	}
	return nil
}

// vmPVBoot maps a PV guest's kernel, ramdisk and arguments.
func vmPVBoot(vm *neutral.VM, r record, f *fieldMap) error {
	var boot neutral.Boot
	for _, pv := range []struct {
		name string
		dst  *string
	}{{"PV_kernel", &boot.Kernel}, {"PV_ramdisk", &boot.Initrd}, {"PV_args", &boot.Cmdline}} {
		if !r.has(pv.name) {
			f.markAbsent(pv.name)
			continue
		}
		var err error
		if *pv.dst, err = r.str(pv.name); err != nil {
			return err
		}
		f.del(pv.name)
	}
	if boot != (neutral.Boot{}) {
		vm.Boot = &boot
	}
	return nil
}

// neutralDisks maps each VBD (and its VDI) to a disk of vm and returns
// their records as the extension keeps them, by disk ID.
func neutralDisks(doc *Document, L *layout, vm *neutral.VM, hint *neutralHint, taken map[int]bool) map[string]any {
	disks := map[string]any{}
	for i := range L.disks {
		nd, entry := neutralDisk(doc, L, i, hint, taken)
		disks[nd.ID] = entry
		vm.Disks = append(vm.Disks, nd)
	}
	return disks
}

// neutralDisk maps disk i of the layout.
func neutralDisk(doc *Document, L *layout, i int, hint *neutralHint, taken map[int]bool) (neutral.Disk, map[string]any) {
	d := L.disks[i]
	vbd := &doc.Objects[d.vbd]
	rb := record{vbd}
	fb := newFieldMap(&vbd.Snapshot)
	nd := neutral.Disk{ID: d.id, Device: "disk", Bus: "xen", Unit: d.unit, CapacityBytes: d.size, Bootable: d.bootable, ReadOnly: d.readOnly}
	if hint != nil {
		h := hint.Disks[i]
		nd.ID, nd.Bus, nd.Unit = h.ID, h.Bus, h.Unit
		L.disks[i].id = h.ID // the stream reader names disks by it too
	}
	if d.cd {
		nd.Device = "cdrom"
	}
	fb.del("VM")
	if d.unit >= 0 {
		if v, _ := vbd.Snapshot.Get("userdevice"); v.Text == strconv.Itoa(d.unit) {
			fb.del("userdevice")
		}
	} else {
		nd.Unit = i
	}
	for _, name := range []string{"bootable", "mode", "type", "empty"} {
		if !rb.has(name) {
			fb.markAbsent(name)
		}
	}
	if v, _ := vbd.Snapshot.Get("bootable"); v != nil && v.Kind == Bool {
		fb.del("bootable")
	}
	if m, _ := rb.str("mode"); m == "RO" || m == "RW" {
		fb.del("mode")
	}
	if t, _ := rb.str("type"); t == "CD" || t == "Disk" {
		fb.del("type")
	}
	if v, _ := vbd.Snapshot.Get("empty"); v != nil && v.Kind == Bool {
		fb.del("empty")
	}
	if d.vdi >= 0 || !d.cd {
		fb.del("VDI") // regenerated from the VDI kept beside it
	} else if ref, _ := rb.str("VDI"); ref == NullRef {
		fb.del("VDI")
	}
	entry := map[string]any{"vbd": objEntry(vbd, fb.m)}
	if len(fb.absent) > 0 {
		entry[extAbsent] = toAnyList(fb.absent)
	}
	taken[d.vbd] = true
	if d.vdi >= 0 {
		vdi := &doc.Objects[d.vdi]
		fv := newFieldMap(&vdi.Snapshot)
		if v, _ := vdi.Snapshot.Get("virtual_size"); v != nil && v.Kind == String {
			fv.del("virtual_size")
		}
		entry["vdi"] = objEntry(vdi, fv.m)
		taken[d.vdi] = true
	}
	return nd, entry
}

// neutralNICs maps each VIF to a NIC of vm and returns their records as
// the extension keeps them.
func neutralNICs(doc *Document, L *layout, vm *neutral.VM, hint *neutralHint, taken map[int]bool) ([]any, error) {
	var nics []any
	for _, i := range L.nics {
		vif := &doc.Objects[i]
		rv := record{vif}
		fv := newFieldMap(&vif.Snapshot)
		mac, err := rv.str("MAC")
		if err != nil {
			return nil, err
		}
		if !rv.has("MAC") {
			fv.markAbsent("MAC")
		}
		fv.del("MAC")
		fv.del("VM")
		n := neutral.NIC{MAC: mac}
		if hint != nil && len(hint.NICs) == len(L.nics) {
			n.Model = hint.NICs[len(vm.NICs)].Model
		}
		entry := objEntry(vif, fv.m)
		if net, _ := rv.str("network"); net != "" && net != NullRef {
			n.Network, _ = record{&doc.Objects[L.byID[net]]}.str("name_label")
			fv.del("network")
			entry["network_id"] = net
		}
		if len(fv.absent) > 0 {
			entry[extAbsent] = toAnyList(fv.absent)
		}
		nics = append(nics, entry)
		vm.NICs = append(vm.NICs, n)
		taken[i] = true
	}
	return nics, nil
}

// untakenObjects keeps the records no VM field came from (networks, SRs,
// …) as they are.
func untakenObjects(doc *Document, taken map[int]bool) []any {
	var objs []any
	for i := range doc.Objects {
		if taken[i] {
			continue
		}
		o := &doc.Objects[i]
		objs = append(objs, map[string]any{"class": o.Class, "id": o.ID, "fields": toJSON(&o.Snapshot)})
	}
	return objs
}

// absentSet reads a kept "absent" list (the fields a record lacked) as a
// set; anything but a list of strings is an empty set.
func absentSet(x any) map[string]bool {
	set := map[string]bool{}
	a, _ := x.([]any)
	for _, s := range a {
		if s, ok := s.(string); ok {
			set[s] = true
		}
	}
	return set
}

func toAnyList(s []string) []any {
	out := make([]any, len(s))
	for i, x := range s {
		out[i] = x
	}
	return out
}

// extObj is an object record kept in Extensions.Xen.
type extObj struct {
	class  string
	id     string
	fields Value
	absent map[string]bool
	extra  map[string]any // other members of the entry (network_id, …)
}

func parseExtObj(x any, path string) (*extObj, error) {
	if x == nil {
		return nil, nil
	}
	m, ok := x.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("extensions.xen.%s: %T, want an object", path, x)
	}
	e := &extObj{extra: m}
	e.id, _ = m["id"].(string)
	e.class, _ = m["class"].(string)
	var err error
	if e.fields, err = structFromJSON(m["fields"], "extensions.xen."+path+".fields"); err != nil {
		return nil, err
	}
	e.absent = absentSet(m[extAbsent])
	return e, nil
}

// streamedDisk is one VDI the writer streams.
type streamedDisk struct {
	ref  string
	name string
	disk int // index into vm.Disks
	size int64
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// fromNeutral builds ova.xml for vm: records kept in Extensions.Xen are
// reused (ids included) with the modelled fields written over them; the rest
// comes from templates.
func fromNeutral(vm *neutral.VM) (*Document, []streamedDisk, error) {
	b := &xvaBuilder{
		vm: vm, ext: vm.Extensions.Xen, doc: &Document{},
		used: map[string]bool{}, known: map[string]bool{},
		srIDs: map[string]bool{}, vdiOfSR: map[string][]string{}, netByID: map[string]*netRec{},
	}
	for _, step := range []func() error{b.version, b.reserveKept, b.vmRecord, b.buildDrives, b.buildNICs} {
		if err := step(); err != nil {
			return nil, nil, err
		}
	}
	b.assemble()
	return b.doc, b.streamed, nil
}

// xvaBuilder is what the steps of fromNeutral share: the document, the
// record ids taken so far, the records kept in the extensions, and the
// records each step makes for the last one to put in order.
type xvaBuilder struct {
	vm  *neutral.VM
	ext map[string]any
	doc *Document

	used    map[string]bool // record ids taken
	counter int             // next candidate for a new id

	vmExt    *extObj
	diskExt  map[string]any
	nicExt   []any
	others   []*extObj       // kept records of other classes (SRs, networks, …)
	known    map[string]bool // ids of records that described drives and NICs
	vmAbsent map[string]bool
	vmRec    Object

	srIDs   map[string]bool
	newSR   *Object
	vdiOfSR map[string][]string

	units    []int // each disk's userdevice slot
	drives   []drive
	vbdIDs   []string
	streamed []streamedDisk

	nets    []*netRec
	netByID map[string]*netRec
	newNets []*netRec
	vifs    []*Object
}

// drive is one disk's VBD and VDI records.
type drive struct {
	vbd, vdi *Object
}

// netRec is a network record and the VIFs on it.
type netRec struct {
	obj  *Object
	vifs []string
}

func (b *xvaBuilder) newID() string {
	for {
		id := fmt.Sprintf("Ref:%03d", b.counter)
		b.counter++
		if !b.used[id] {
			b.used[id] = true
			return id
		}
	}
}

// claim takes a kept record's id when it is still free, else a new one.
func (b *xvaBuilder) claim(e *extObj) string {
	if e != nil && e.id != "" && !b.used[e.id] && !strings.ContainsAny(e.id, "/\x00") {
		b.used[e.id] = true
		return e.id
	}
	return b.newID()
}

// version sets the document's version and top-level members.
func (b *xvaBuilder) version() error {
	b.doc.Version = defaultVersion()
	if v, ok := b.ext[extVersion]; ok {
		var err error
		if b.doc.Version, err = structFromJSON(v, "extensions.xen.version"); err != nil {
			return err
		}
	}
	if v, ok := b.ext[extTop]; ok {
		top, err := structFromJSON(v, "extensions.xen.top")
		if err != nil {
			return err
		}
		b.doc.Extra = top.Members
	}
	return nil
}

// reserveKept reads the records kept in the extensions and reserves their
// ids first, so that new ids avoid them.
func (b *xvaBuilder) reserveKept() error {
	var err error
	if b.vmExt, err = parseExtObj(b.ext[extVM], extVM); err != nil {
		return err
	}
	b.diskExt = map[string]any{}
	if m, ok := b.ext[extDisks].(map[string]any); ok {
		b.diskExt = m
	}
	if a, ok := b.ext[extNICs].([]any); ok {
		b.nicExt = a
	}
	if a, ok := b.ext[extObjects].([]any); ok {
		for i, x := range a {
			o, err := parseExtObj(x, fmt.Sprintf("objects[%d]", i))
			if err != nil {
				return err
			}
			if o == nil || o.class == "" || o.id == "" {
				return fmt.Errorf("extensions.xen.objects[%d]: class or id missing", i)
			}
			switch o.class {
			case "VM", "VBD", "VDI", "VIF":
				// Records of other VMs' drives: their data is not carried.
				continue
			}
			if b.used[o.id] {
				return fmt.Errorf("extensions.xen.objects[%d]: id %s used twice", i, o.id)
			}
			b.used[o.id] = true
			b.others = append(b.others, o)
		}
	}
	// Ids of records that described drives and NICs; those no longer emitted
	// are dropped from back-link lists.
	for _, x := range b.diskExt {
		if e, ok := x.(map[string]any); ok {
			for _, k := range []string{"vbd", "vdi"} {
				if o, ok := e[k].(map[string]any); ok {
					if id, ok := o["id"].(string); ok {
						b.known[id] = true
					}
				}
			}
		}
	}
	for _, x := range b.nicExt {
		if o, ok := x.(map[string]any); ok {
			if id, ok := o["id"].(string); ok {
				b.known[id] = true
			}
		}
	}
	return nil
}

// vmRecord builds the VM record: the kept one (or a template) with the
// modelled fields written over it.
func (b *xvaBuilder) vmRecord() error {
	vm := b.vm
	b.vmAbsent = absentSet(b.ext[extAbsent])
	b.vmRec = Object{Class: "VM", ID: b.claim(b.vmExt)}
	if b.vmExt != nil {
		b.vmRec.Snapshot = b.vmExt.fields
	} else {
		b.vmRec.Snapshot = defaultVM()
	}
	snap := &b.vmRec.Snapshot
	if !(b.vmAbsent["name_label"] && vm.Name == "") {
		snap.Set("name_label", Str(vm.Name))
	}
	if !(b.vmAbsent["uuid"] && vm.UUID == "") {
		u := vm.UUID
		if b.vmExt == nil && !uuidRE.MatchString(u) {
			u = newUUID()
		}
		snap.Set("uuid", Str(u))
	}
	for _, step := range []func(*Value) error{b.vmCPUs, b.vmPlatform} {
		if err := step(snap); err != nil {
			return err
		}
	}
	if _, ok := snap.Get("parent"); !ok {
		snap.Set("parent", Str(NullRef)) // without it xapi resets memory (pre-DMC export)
	}
	b.units = driveUnits(vm.Disks)
	return putHints(snap, vm, b.units)
}

// vmCPUs writes the vCPU counts and the memory.
func (b *xvaBuilder) vmCPUs(snap *Value) error {
	cpus := b.vm.CPUs
	if cpus < 1 || cpus > maxVCPUs {
		return fmt.Errorf("cpus %d: want 1 to %d", cpus, maxVCPUs)
	}
	if !b.vmAbsent["VCPUs_max"] {
		if v, ok := snap.Get("VCPUs_max"); ok && v.Kind == Int {
			v.Text = strconv.Itoa(cpus)
		} else {
			snap.Set("VCPUs_max", Str(strconv.Itoa(cpus)))
		}
	}
	if v, ok := snap.Get("VCPUs_at_startup"); !ok || !validInt(v, 1, int64(cpus)) {
		snap.Set("VCPUs_at_startup", Str(strconv.Itoa(cpus)))
	}
	return setMemory(snap, b.vm, b.vmAbsent["memory_static_max"])
}

// vmPlatform writes cores per socket, the firmware and a PV guest's boot.
func (b *xvaBuilder) vmPlatform(snap *Value) error {
	vm := b.vm
	if !(b.vmAbsent["platform.cores-per-socket"] && vm.CoresPerSocket <= 1) {
		cps := max(vm.CoresPerSocket, 1)
		if vm.CPUs%cps != 0 {
			return fmt.Errorf("cores_per_socket %d does not divide cpus %d", cps, vm.CPUs)
		}
		setMapMember(snap, "platform", "cores-per-socket", Str(strconv.Itoa(cps)))
	}
	fw := vm.Firmware
	switch fw {
	case "", "bios", "uefi":
	case "efi":
		fw = "uefi"
	default:
		return fmt.Errorf("firmware %q: want bios or uefi", fw)
	}
	if fw == "" {
		fw = "bios"
	}
	if !(b.vmAbsent["HVM_boot_params.firmware"] && fw == "bios") {
		setMapMember(snap, "HVM_boot_params", "firmware", Str(fw))
	}
	var boot neutral.Boot
	if vm.Boot != nil {
		boot = *vm.Boot
	}
	for _, pv := range []struct{ name, val string }{{"PV_kernel", boot.Kernel}, {"PV_ramdisk", boot.Initrd}, {"PV_args", boot.Cmdline}} {
		if !(b.vmAbsent[pv.name] && pv.val == "") {
			snap.Set(pv.name, Str(pv.val))
		}
	}
	return nil
}

// defaultSRID is the storage repository for new VDIs: the first kept SR
// that is not an ISO library, else a new one.
func (b *xvaBuilder) defaultSRID() string {
	for _, o := range b.others {
		if o.class == "SR" {
			if ct, ok := o.fields.Get("content_type"); !ok || ct.Text != "iso" {
				return o.id
			}
		}
	}
	if b.newSR == nil {
		b.newSR = &Object{Class: "SR", ID: b.newID(), Snapshot: defaultSR()}
		b.srIDs[b.newSR.ID] = true
	}
	return b.newSR.ID
}

// driveUnits gives each disk its userdevice slot. Units from a Xen source
// are the slots; from elsewhere (two SCSI controllers may both have unit 0)
// disks are numbered in order from 0 and CD drives take slot 3 first, as
// xapi's templates place them (slots 0-3 are the emulated IDE devices an
// HVM guest sees before its PV drivers load).
func driveUnits(disks []neutral.Disk) []int {
	units := make([]int, len(disks))
	seen := map[int]bool{}
	xenUnits := true
	for _, d := range disks {
		if d.Bus != "xen" || d.Unit < 0 || d.Unit > 1023 || seen[d.Unit] {
			xenUnits = false
		}
		seen[d.Unit] = true
	}
	if xenUnits {
		for i, d := range disks {
			units[i] = d.Unit
		}
		return units
	}
	taken := map[int]bool{}
	cds := 0
	for _, d := range disks {
		if d.Device == "cdrom" {
			cds++
		}
	}
	if cds > 0 {
		taken[3] = true // reserved for the first CD drive
	}
	next := func() int {
		n := 0
		for taken[n] {
			n++
		}
		taken[n] = true
		return n
	}
	for i, d := range disks {
		if d.Device != "cdrom" {
			units[i] = next()
		}
	}
	firstCD := true
	for i, d := range disks {
		if d.Device == "cdrom" {
			if firstCD {
				units[i], firstCD = 3, false
			} else {
				units[i] = next()
			}
		}
	}
	return units
}

// buildDrives makes each disk's VBD and VDI.
func (b *xvaBuilder) buildDrives() error {
	for _, o := range b.others {
		if o.class == "SR" {
			b.srIDs[o.id] = true
		}
	}
	b.drives = make([]drive, len(b.vm.Disks))
	b.vbdIDs = []string{}
	ids := map[string]bool{}
	for i, d := range b.vm.Disks {
		if d.ID == "" || ids[d.ID] {
			return fmt.Errorf("disk %d: id %q empty or used twice", i, d.ID)
		}
		ids[d.ID] = true
		dr, err := b.buildDrive(i, d, b.units[i])
		if err != nil {
			return err
		}
		b.drives[i] = dr
	}
	return nil
}

// keptDrive reads the records kept for disk id and the fields its VBD
// lacked in the source.
func (b *xvaBuilder) keptDrive(id string) (vbdExt, vdiExt *extObj, absent map[string]bool, err error) {
	if e, ok := b.diskExt[id].(map[string]any); ok {
		if vbdExt, err = parseExtObj(e["vbd"], "disks."+id+".vbd"); err != nil {
			return nil, nil, nil, err
		}
		if vdiExt, err = parseExtObj(e["vdi"], "disks."+id+".vdi"); err != nil {
			return nil, nil, nil, err
		}
		absent = absentSet(e[extAbsent])
	}
	for _, e := range []*extObj{vbdExt, vdiExt} {
		if e != nil && e.id != "" {
			b.known[e.id] = true
		}
	}
	return vbdExt, vdiExt, absent, nil
}

// buildDrive makes disk i's VBD in userdevice slot unit, and its VDI.
func (b *xvaBuilder) buildDrive(i int, d neutral.Disk, unit int) (drive, error) {
	vbdExt, vdiExt, absent, err := b.keptDrive(d.ID)
	if err != nil {
		return drive{}, err
	}
	var dr drive
	dr.vbd = &Object{Class: "VBD", ID: b.claim(vbdExt)}
	if vbdExt != nil {
		dr.vbd.Snapshot = vbdExt.fields
	} else {
		dr.vbd.Snapshot = defaultVBD()
		dr.vbd.Snapshot.Set("device", Str(diskID(unit)))
	}
	b.vbdIDs = append(b.vbdIDs, dr.vbd.ID)
	s := &dr.vbd.Snapshot
	s.Set("VM", Str(b.vmRec.ID))
	if _, kept := s.Get("userdevice"); !kept {
		s.Set("userdevice", Str(strconv.Itoa(unit)))
	}
	cd := d.Device == "cdrom"
	if !absent["bootable"] {
		s.Set("bootable", BoolValue(d.Bootable))
	}
	if !absent["mode"] {
		mode := "RW"
		if d.ReadOnly || cd {
			mode = "RO"
		}
		s.Set("mode", Str(mode))
	}
	if _, kept := s.Get("type"); !kept && !absent["type"] {
		t := "Disk"
		if cd {
			t = "CD"
		}
		s.Set("type", Str(t))
	}
	switch d.Device {
	case "disk", "cdrom":
	default:
		return drive{}, fmt.Errorf("disk %s: device %q, want disk or cdrom", d.ID, d.Device)
	}
	if cd {
		dr.vdi = b.cdVDI(s, vdiExt, absent)
	} else if dr.vdi, err = b.diskVDI(i, d, s, vdiExt, absent); err != nil {
		return drive{}, err
	}
	if dr.vdi != nil {
		reconcile(&dr.vdi.Snapshot, []string{"VBDs", "vbds"}, []string{dr.vbd.ID}, b.known)
	}
	return dr, nil
}

// cdVDI fills a CD drive's VBD s: xapi streams no CD contents, so the drive
// comes out empty unless it named an ISO VDI of the source pool (kept as
// is, and returned).
func (b *xvaBuilder) cdVDI(s *Value, vdiExt *extObj, absent map[string]bool) *Object {
	if vdiExt != nil {
		vdi := &Object{Class: "VDI", ID: b.claim(vdiExt), Snapshot: vdiExt.fields}
		s.Set("VDI", Str(vdi.ID))
		if !absent["empty"] {
			s.Set("empty", BoolValue(false))
		}
		return vdi
	}
	if _, kept := s.Get("VDI"); !kept {
		s.Set("VDI", Str(NullRef))
	}
	if !absent["empty"] {
		v, _ := s.Get("VDI")
		s.Set("empty", BoolValue(v.Text == NullRef))
	}
	return nil
}

// diskVDI makes disk i's VDI, links its VBD s to it and adds it to the
// disks streamed into the archive.
func (b *xvaBuilder) diskVDI(i int, d neutral.Disk, s *Value, vdiExt *extObj, absent map[string]bool) (*Object, error) {
	if d.Image == nil {
		return nil, fmt.Errorf("disk %s: no image to write", d.ID)
	}
	size := d.Image.Size()
	if size < 0 || size > maxVirtualSize {
		return nil, fmt.Errorf("disk %s: size %d out of range", d.ID, size)
	}
	if d.CapacityBytes != 0 && d.CapacityBytes != size {
		return nil, fmt.Errorf("disk %s: capacity_bytes %d but the image holds %d bytes", d.ID, d.CapacityBytes, size)
	}
	vdi := &Object{Class: "VDI", ID: b.claim(vdiExt)}
	if vdiExt != nil {
		vdi.Snapshot = vdiExt.fields
	} else {
		vdi.Snapshot = defaultVDI(strings.TrimSpace(b.vm.Name + " " + d.ID))
	}
	vs := &vdi.Snapshot
	vs.Set("virtual_size", Str(strconv.FormatInt(size, 10)))
	if sr, ok := vs.Get("SR"); !ok || !b.srIDs[sr.Text] {
		vs.Set("SR", Str(b.defaultSRID()))
	}
	sr, _ := vs.Get("SR")
	b.vdiOfSR[sr.Text] = append(b.vdiOfSR[sr.Text], vdi.ID)
	s.Set("VDI", Str(vdi.ID))
	if !absent["empty"] {
		s.Set("empty", BoolValue(false))
	}
	b.streamed = append(b.streamed, streamedDisk{ref: vdi.ID, name: memberText(vs, "name_label"), disk: i, size: size})
	return vdi, nil
}

// memberText is the text of struct member name of v, "" when it has none.
func memberText(v *Value, name string) string {
	if m, _ := v.Get(name); m != nil {
		return m.Text
	}
	return ""
}

func netName(n *netRec) string { return memberText(&n.obj.Snapshot, "name_label") }

// buildNICs makes each NIC's VIF and the networks they are on: the kept
// network the NIC named, else a kept one of the same name, else a new one.
func (b *xvaBuilder) buildNICs() error {
	for _, o := range b.others {
		if o.class == "network" {
			n := &netRec{obj: &Object{Class: o.class, ID: o.id, Snapshot: o.fields}}
			b.nets = append(b.nets, n)
			b.netByID[o.id] = n
		}
	}
	vifNet := map[*Object]*netRec{}
	for i, nic := range b.vm.NICs {
		vif, ne, err := b.buildVIF(i, nic)
		if err != nil {
			return err
		}
		net := b.networkFor(nic.Network, ne)
		b.vifs = append(b.vifs, vif)
		net.vifs = append(net.vifs, vif.ID)
		vifNet[vif] = net
	}
	for _, n := range b.newNets {
		n.obj.ID = b.newID()
	}
	vifIDs := make([]string, len(b.vifs))
	for i, vif := range b.vifs {
		vif.Snapshot.Set("network", Str(vifNet[vif].obj.ID))
		vifIDs[i] = vif.ID
	}
	reconcile(&b.vmRec.Snapshot, []string{"VBDs", "vbds"}, b.vbdIDs, b.known)
	reconcile(&b.vmRec.Snapshot, []string{"VIFs", "vifs"}, vifIDs, b.known)
	return nil
}

// buildVIF makes NIC i's VIF (its network is set once known) and returns
// the record kept for it, if any.
func (b *xvaBuilder) buildVIF(i int, nic neutral.NIC) (*Object, *extObj, error) {
	var ne *extObj
	if i < len(b.nicExt) {
		var err error
		if ne, err = parseExtObj(b.nicExt[i], fmt.Sprintf("nics[%d]", i)); err != nil {
			return nil, nil, err
		}
		if ne != nil && ne.id != "" {
			b.known[ne.id] = true
		}
	}
	vif := &Object{Class: "VIF", ID: b.claim(ne)}
	absent := map[string]bool{}
	if ne != nil {
		vif.Snapshot = ne.fields
		absent = ne.absent
	} else {
		vif.Snapshot = defaultVIF()
	}
	s := &vif.Snapshot
	if !(absent["MAC"] && nic.MAC == "") {
		s.Set("MAC", Str(nic.MAC))
	}
	s.Set("VM", Str(b.vmRec.ID))
	if _, kept := s.Get("device"); !kept {
		s.Set("device", Str(strconv.Itoa(i)))
	}
	s.Set("network", Str("")) // set once the network has an id
	return vif, ne, nil
}

// networkFor finds or makes the network named name for a NIC whose kept
// record is ne.
func (b *xvaBuilder) networkFor(name string, ne *extObj) *netRec {
	if ne != nil {
		if id, _ := ne.extra["network_id"].(string); id != "" {
			if n := b.netByID[id]; n != nil && netName(n) == name {
				return n
			}
		}
	}
	for _, n := range b.nets {
		if netName(n) == name || (name == "" && n.obj.ID != "") {
			return n
		}
	}
	label := name
	if label == "" {
		label = "Pool-wide network associated with eth0"
	}
	net := &netRec{obj: &Object{Class: "network", Snapshot: defaultNetwork(label)}}
	b.nets = append(b.nets, net)
	b.newNets = append(b.newNets, net)
	return net
}

// assemble puts the records in order (VM, kept records, new SR, drives,
// new networks, VIFs) with their back-links reconciled.
func (b *xvaBuilder) assemble() {
	doc := b.doc
	doc.Objects = append(doc.Objects, b.vmRec)
	for _, o := range b.others {
		switch o.class {
		case "network":
			n := b.netByID[o.id]
			reconcile(&n.obj.Snapshot, []string{"VIFs", "vifs"}, n.vifs, b.known)
			doc.Objects = append(doc.Objects, *n.obj)
		case "SR":
			obj := Object{Class: o.class, ID: o.id, Snapshot: o.fields}
			reconcile(&obj.Snapshot, []string{"VDIs"}, b.vdiOfSR[o.id], b.known)
			doc.Objects = append(doc.Objects, obj)
		default:
			doc.Objects = append(doc.Objects, Object{Class: o.class, ID: o.id, Snapshot: o.fields})
		}
	}
	if b.newSR != nil {
		reconcile(&b.newSR.Snapshot, []string{"VDIs"}, b.vdiOfSR[b.newSR.ID], b.known)
		doc.Objects = append(doc.Objects, *b.newSR)
	}
	for _, dr := range b.drives {
		if dr.vdi != nil {
			doc.Objects = append(doc.Objects, *dr.vdi)
		}
		doc.Objects = append(doc.Objects, *dr.vbd)
	}
	for _, n := range b.newNets {
		reconcile(&n.obj.Snapshot, []string{"VIFs", "vifs"}, n.vifs, b.known)
		doc.Objects = append(doc.Objects, *n.obj)
	}
	for _, v := range b.vifs {
		doc.Objects = append(doc.Objects, *v)
	}
	// A suspended VM's memory image is not carried: it comes out halted.
	emitted := map[string]bool{}
	for _, o := range doc.Objects {
		emitted[o.ID] = true
	}
	vmSnap := &doc.Objects[0].Snapshot
	if v, ok := vmSnap.Get("suspend_VDI"); ok && v.Text != NullRef && !emitted[v.Text] {
		vmSnap.Set("suspend_VDI", Str(NullRef))
		if ps, ok := vmSnap.Get("power_state"); ok && ps.Text == "Suspended" {
			vmSnap.Set("power_state", Str("Halted"))
		}
	}
	sort.Slice(b.streamed, func(i, j int) bool { return b.streamed[i].ref < b.streamed[j].ref })
}

func validInt(v *Value, lo, hi int64) bool {
	if v.Kind != String && v.Kind != Int {
		return false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v.Text), 10, 64)
	return err == nil && n >= lo && n <= hi
}

func intOf(v *Value) int64 {
	n, _ := strconv.ParseInt(strings.TrimSpace(v.Text), 10, 64)
	return n
}

// setMemory writes memory_static_max from memory_mib (keeping an exact byte
// count from the source when it rounds to the same MiB) and keeps the other
// memory fields within xapi's invariant
// static_min <= dynamic_min <= dynamic_max <= static_max.
func setMemory(snap *Value, vm *neutral.VM, absent bool) error {
	if vm.MemoryMiB < 0 || vm.MemoryMiB > maxMemory/mib {
		return fmt.Errorf("memory_mib %d out of range", vm.MemoryMiB)
	}
	want := vm.MemoryMiB * mib
	if absent && vm.MemoryMiB == 0 {
		return nil
	}
	if v, ok := snap.Get("memory_static_max"); ok && validInt(v, 0, maxMemory) && (intOf(v)+mib-1)/mib == vm.MemoryMiB {
		want = intOf(v)
	} else {
		snap.Set("memory_static_max", Str(strconv.FormatInt(want, 10)))
	}
	get := func(name string) (int64, bool) {
		v, ok := snap.Get(name)
		if !ok || !validInt(v, 0, maxMemory) {
			return 0, false
		}
		return intOf(v), true
	}
	dmax, ok1 := get("memory_dynamic_max")
	dmin, ok2 := get("memory_dynamic_min")
	smin, ok3 := get("memory_static_min")
	if ok1 && ok2 && ok3 && smin <= dmin && dmin <= dmax && dmax <= want {
		return nil
	}
	w := Str(strconv.FormatInt(want, 10))
	snap.Set("memory_dynamic_max", w)
	snap.Set("memory_dynamic_min", w)
	if !ok3 || smin > want {
		snap.Set("memory_static_min", w)
	}
	return nil
}

// setMapMember sets key inside the struct field name, creating it.
func setMapMember(snap *Value, name, key string, val Value) {
	m, ok := snap.Get(name)
	if !ok || m.Kind != Struct {
		snap.Set(name, Value{Kind: Struct})
		m, _ = snap.Get(name)
	}
	m.Set(key, val)
}

// reconcile brings a back-link list (VM.VBDs, network.VIFs, …) in line with
// the records written: a list kept from the source keeps its order and
// entries, loses those of drives or NICs no longer written (ids in known but
// not in want), and gains new ones, unless the source left it empty (Xen
// Orchestra's VM.VIFs), since xapi's importer links from the child side.
func reconcile(snap *Value, keys []string, want []string, known map[string]bool) {
	for _, k := range keys {
		v, ok := snap.Get(k)
		if !ok || v.Kind != Array {
			continue
		}
		wanted := map[string]bool{}
		for _, w := range want {
			wanted[w] = true
		}
		wasEmpty := len(v.Items) == 0
		have := map[string]bool{}
		items := v.Items[:0:0]
		for _, it := range v.Items {
			if it.Kind == String && known[it.Text] && !wanted[it.Text] {
				continue
			}
			have[it.Text] = true
			items = append(items, it)
		}
		if !wasEmpty {
			for _, w := range want {
				if !have[w] {
					items = append(items, Str(w))
				}
			}
		}
		v.Items = items
		return
	}
	snap.Set(keys[0], arr(want...))
}

// Facts of a VM from elsewhere that ova.xml has no field for travel in the
// VM's other_config under these keys (xapi keeps other_config on import), so
// VMX → XVA → VMX gives back the VMX: the VMware-only keys, and the drives'
// ids, buses and units, the NIC models and the guest OS hint.
const (
	hintVMware  = "vmconv:vmware"
	hintNeutral = "vmconv:neutral"
)

// hintDisk is one drive of the neutral VM, in its order, with the
// userdevice slot it was written to.
type hintDisk struct {
	ID   string `json:"id"`
	Bus  string `json:"bus"`
	Unit int    `json:"unit"`
	Slot int    `json:"slot"`
}

type neutralHint struct {
	GuestOS string     `json:"guest_os,omitempty"`
	Disks   []hintDisk `json:"disks"`
	NICs    []struct {
		Model string `json:"model,omitempty"`
	} `json:"nics"`
}

// takeHints moves the vmconv keys out of other_config into vm. A hint that
// does not fit the drives (edited on the host since) is left where it is.
func takeHints(vm *neutral.VM, f *fieldMap, L *layout) *neutralHint {
	oc, _ := f.m["other_config"].(map[string]any)
	if oc == nil {
		return nil
	}
	if s, ok := oc[hintVMware].(string); ok {
		var m map[string]string
		if json.Unmarshal([]byte(s), &m) == nil {
			vm.Extensions.VMware = m
			delete(oc, hintVMware)
		}
	}
	s, ok := oc[hintNeutral].(string)
	if !ok {
		return nil
	}
	var h neutralHint
	if json.Unmarshal([]byte(s), &h) != nil || len(h.Disks) != len(L.disks) || (len(h.NICs) != 0 && len(h.NICs) != len(L.nics)) {
		return nil
	}
	ids := map[string]bool{}
	for _, d := range h.Disks {
		if d.ID == "" || ids[d.ID] {
			return nil
		}
		ids[d.ID] = true
	}
	// Put the drives back in the neutral order, found by their slots.
	bySlot := map[int]int{}
	for k, d := range L.disks {
		if d.unit >= 0 {
			bySlot[d.unit] = k
		}
	}
	order := make([]int, len(h.Disks))
	used := map[int]bool{}
	for i, d := range h.Disks {
		k, ok := bySlot[d.Slot]
		if !ok || used[k] {
			return nil
		}
		used[k] = true
		order[i] = k
	}
	disks := make([]vdisk, len(order))
	newIndex := make([]int, len(order))
	for i, k := range order {
		disks[i] = L.disks[k]
		newIndex[k] = i
	}
	L.disks = disks
	for j := range L.streamed {
		if L.streamed[j].disk >= 0 {
			L.streamed[j].disk = newIndex[L.streamed[j].disk]
		}
	}
	delete(oc, hintNeutral)
	if h.GuestOS != "" {
		vm.GuestOS = h.GuestOS
	}
	return &h
}

// putHints records in other_config what ova.xml cannot say about a VM that
// did not come from Xen; a VM read from an XVA gets nothing added.
func putHints(snap *Value, vm *neutral.VM, units []int) error {
	if len(vm.Extensions.VMware) > 0 {
		b, err := json.Marshal(vm.Extensions.VMware)
		if err != nil {
			return err
		}
		setMapMember(snap, "other_config", hintVMware, Str(string(b)))
	}
	foreign := false
	var h neutralHint
	for i, d := range vm.Disks {
		if d.Bus != "xen" {
			foreign = true
		}
		h.Disks = append(h.Disks, hintDisk{ID: d.ID, Bus: d.Bus, Unit: d.Unit, Slot: units[i]})
	}
	for _, n := range vm.NICs {
		if n.Model != "" {
			foreign = true
		}
		h.NICs = append(h.NICs, struct {
			Model string `json:"model,omitempty"`
		}{n.Model})
	}
	if vm.GuestOS != "" {
		if base, ok := snap.Get("other_config"); !ok || func() bool { v, ok := base.Get("base_template_name"); return !ok || v.Text != vm.GuestOS }() {
			h.GuestOS = vm.GuestOS
			foreign = true
		}
	}
	if !foreign {
		return nil
	}
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	setMapMember(snap, "other_config", hintNeutral, Str(string(b)))
	return nil
}
