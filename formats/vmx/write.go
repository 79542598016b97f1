package vmx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/neutral"
)

// WriteOptions tunes what FromVM and Write emit for a VM that did not come
// from VMware (one that did keeps its own settings).
type WriteOptions struct {
	// HWVersion is virtualHW.version when the VM's extensions carry none;
	// 0 means 14 (ESXi 6.7, Workstation 14 and every later product).
	HWVersion int
	// NewDiskAdapter, when set, replaces Write's newDisk and is also told
	// the VMDK adapter type that matches the disk's controller ("ide",
	// "buslogic" or "lsilogic", VMDK's ddb.adapterType values).
	NewDiskAdapter func(out *disk.Output, path string, size int64, adapterType string) (disk.Writer, error)
}

// adapterType is the VMDK ddb.adapterType for a disk in slot s of file f.
func adapterType(f *File, s slot) string {
	switch s.bus {
	case "ide":
		return "ide"
	case "scsi":
		if v, _ := f.Get(s.controller() + ".virtualDev"); strings.EqualFold(v, "buslogic") {
			return "buslogic"
		}
	}
	return "lsilogic"
}

// DefaultHWVersion is the virtual hardware version written for VMs that
// carry none: the oldest that has every device we emit.
const DefaultHWVersion = 14

// The VM-level keys the neutral fields model, lower-case, with the value
// VMware assumes when the key is absent.
var modelledDefaults = map[string]string{
	"displayname":          "",
	"numvcpus":             "1",
	"cpuid.corespersocket": "1",
	"memsize":              "32",
	"firmware":             "bios",
	"guestos":              "",
	"uuid.bios":            "",
}

// modelledValues renders the keys the neutral fields model, lower-case key
// → entry with VMware's usual spelling; keys whose value is VMware's default
// are left out. nics gives the ethernet index of each NIC; src supplies
// each NIC's addressType.
func modelledValues(vm *neutral.VM, nics []int, src *File) map[string]Entry {
	m := map[string]Entry{}
	put := func(k, v string) { m[strings.ToLower(k)] = Entry{Key: k, Value: v} }
	if vm.Name != "" {
		put("displayName", vm.Name)
	}
	if vm.CPUs > 1 {
		put("numvcpus", strconv.Itoa(vm.CPUs))
	}
	if vm.CoresPerSocket > 1 && vm.CPUs%vm.CoresPerSocket == 0 {
		put("cpuid.coresPerSocket", strconv.Itoa(vm.CoresPerSocket))
	}
	if mem := (vm.MemoryMiB + 3) &^ 3; mem > 0 && mem != 32 {
		put("memsize", strconv.FormatInt(mem, 10))
	}
	if vm.Firmware == "uefi" {
		put("firmware", "efi")
	}
	put("guestOS", GuestOSFor(vm.GuestOS))
	if u, err := parseUUID(vm.UUID); err == nil && vm.UUID != "" {
		put("uuid.bios", vmwareUUID(u))
	}
	for i, n := range nics {
		if i >= len(vm.NICs) {
			break
		}
		nic := vm.NICs[i]
		ns := fmt.Sprintf("ethernet%d", n)
		if dev := nicModel(nic.Model); dev != "" {
			put(ns+".virtualDev", dev)
		}
		if nic.Network != "" {
			put(ns+".networkName", nic.Network)
		}
		if nic.MAC != "" {
			put(macKey(nicAddressType(src, n, nic), n), strings.ToLower(nic.MAC))
		}
	}
	return m
}

// nicAddressType is the address type the NIC at ethernet index n is
// written with: the one its extensions carry, else VMware's default
// "generated" for a NIC that came from VMware, else "static" for a MAC from
// elsewhere (the only way to keep it exactly).
func nicAddressType(src *File, n int, nic neutral.NIC) string {
	if _, ok := src.Get(fmt.Sprintf("ethernet%d.addressType", n)); ok {
		return addressType(src, n)
	}
	if p, _ := src.Get(fmt.Sprintf("ethernet%d.present", n)); strings.EqualFold(strings.TrimSpace(p), "true") {
		return "generated"
	}
	if nic.MAC == "" {
		return "generated"
	}
	return "static"
}

var vmwareNICs = map[string]bool{"e1000": true, "e1000e": true, "vmxnet3": true, "vmxnet": true,
	"vmxnet2": true, "vlance": true}

// nicModel maps a neutral NIC model to ethernetN.virtualDev: VMware models
// as they are, anything else (netfront, rtl8139, virtio) to e1000, which
// every x86 guest has a driver for.
func nicModel(model string) string {
	switch {
	case model == "":
		return ""
	case vmwareNICs[strings.ToLower(model)]:
		return model
	}
	return "e1000"
}

// keepSourceNICModels gives back a NIC's virtualDev as the source VMX had
// it when the neutral model is still that value, even one nicModel does not
// know (a model newer than its list), instead of e1000.
func keepSourceNICModels(gen map[string]Entry, vm *neutral.VM, nics []int, ext *File) {
	for i, n := range nics {
		if i >= len(vm.NICs) || vm.NICs[i].Model == "" {
			continue
		}
		key := fmt.Sprintf("ethernet%d.virtualDev", n)
		if v, ok := ext.Get(key); ok && v == vm.NICs[i].Model {
			gen[strings.ToLower(key)] = Entry{Key: key, Value: v}
		}
	}
}

// isModelled reports whether the lower-case key lk is one the neutral
// fields decide, for a VM whose NICs sit at ethernet indices nics.
func isModelled(lk string, nics []int, src *File) bool {
	if _, ok := modelledDefaults[lk]; ok {
		return true
	}
	ns := namespace(lk)
	n, ok := ethernetIndex(ns)
	if !ok || !slices.Contains(nics, n) {
		return false
	}
	switch lk[len(ns)+1:] {
	case "virtualdev", "networkname":
		return true
	case "address", "generatedaddress":
		return strings.EqualFold(lk, macKey(nicAddressType(src, n, neutral.NIC{MAC: "x"}), n))
	}
	return false
}

// sameMeaning reports whether two values of a modelled key mean the same
// to VMware, so the source's own spelling can be kept.
func sameMeaning(lk, a, b string) bool {
	if a == b {
		return true
	}
	switch {
	case lk == "numvcpus" || lk == "cpuid.corespersocket" || lk == "memsize":
		x, e1 := strconv.ParseInt(strings.TrimSpace(a), 10, 64)
		y, e2 := strconv.ParseInt(strings.TrimSpace(b), 10, 64)
		return e1 == nil && e2 == nil && x == y
	case lk == "firmware":
		return strings.EqualFold(a, b)
	case lk == "guestos":
		return GuestOSFor(a) == GuestOSFor(b)
	case lk == "uuid.bios":
		x, e1 := parseVMwareUUID(a)
		y, e2 := parseVMwareUUID(b)
		return e1 == nil && e2 == nil && x == y
	case strings.HasSuffix(lk, ".virtualdev"), strings.HasSuffix(lk, "address"):
		return strings.EqualFold(a, b)
	}
	return false
}

// extFile turns the VM's VMware extensions into a File for case-insensitive
// look-ups, in a stable order.
func extFile(vm *neutral.VM) *File {
	f := NewFile("extensions")
	keys := make([]string, 0, len(vm.Extensions.VMware))
	for k := range vm.Extensions.VMware {
		if !strings.HasPrefix(k, "#") {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, naturalCompare)
	for _, k := range keys {
		f.Set(k, vm.Extensions.VMware[k])
	}
	return f
}

// layout places the VM's devices and names its files.
type layout struct {
	slots []slot   // per vm.Disks
	files []string // per vm.Disks: output file name, "" for none
	nics  []int    // ethernet index per vm.NICs
}

var deltaName = regexp.MustCompile(`(?i)-\d{6}\.vmdk$`)

// planLayout decides where each disk, CD-ROM and NIC of vm goes in the VMX
// named name, keeping what the source VMX (ext) gave them where it can.
func planLayout(vm *neutral.VM, ext *File, name string) (*layout, error) {
	slots, err := placeDisks(vm)
	if err != nil {
		return nil, err
	}
	lay := &layout{slots: slots, files: nameDiskFiles(vm, ext, slots, name)}
	if lay.nics, err = placeNICs(vm, ext); err != nil {
		return nil, err
	}
	return lay, nil
}

// placeDisks gives every disk its controller slot. Disks that came from
// VMware go back where they were; others keep their bus and unit when
// VMware has that bus; the rest go on the first SCSI controller, CD-ROMs
// on the first SATA controller.
func placeDisks(vm *neutral.VM) ([]slot, error) {
	slots := make([]slot, len(vm.Disks))
	used := map[slot]bool{}
	placed := make([]bool, len(vm.Disks))
	for pass := 0; pass < 2; pass++ {
		for i, d := range vm.Disks {
			if placed[i] {
				continue
			}
			var s slot
			var ok bool
			if pass == 0 {
				var err error
				s, ok, err = parseSlot(d.ID)
				ok = ok && err == nil && s.bus == strings.ToLower(d.Bus)
			} else {
				s, ok = slotFromUnit(strings.ToLower(d.Bus), d.Unit)
			}
			if ok && !used[s] {
				used[s], placed[i], slots[i] = true, true, s
			}
		}
	}
	for i, d := range vm.Disks {
		if placed[i] {
			continue
		}
		bus := "scsi"
		if d.Device == "cdrom" {
			bus = "sata"
		}
		s, ok := freeSlot(bus, used)
		if !ok {
			return nil, fmt.Errorf("vmx: disk %s: no free %s slot", d.ID, bus)
		}
		used[s], slots[i] = true, s
	}
	return slots, nil
}

// nameDiskFiles names each disk's and CD image's file: the source's own
// when it is a plain name, else VMware's NAME.vmdk, NAME_1.vmdk, ….
// An empty CD-ROM drive gets "".
func nameDiskFiles(vm *neutral.VM, ext *File, slots []slot, name string) []string {
	files := make([]string, len(vm.Disks))
	taken := map[string]bool{strings.ToLower(name + ".vmx"): true}
	for i, d := range vm.Disks {
		if d.Device == "cdrom" && d.Image == nil {
			continue
		}
		hint, _ := ext.Get(slots[i].String() + ".fileName")
		if plainFileName(hint, d.Device) && !taken[strings.ToLower(hint)] {
			files[i] = hint
			taken[strings.ToLower(hint)] = true
		}
	}
	nDisk, nCD := 0, 0
	for i, d := range vm.Disks {
		if d.Device == "cdrom" && d.Image == nil {
			continue
		}
		// The k-th disk is NAME_k.vmdk (the first NAME.vmdk) unless that
		// name is taken; then the next free number.
		k := &nDisk
		if d.Device == "cdrom" {
			k = &nCD
		}
		n := *k
		*k++
		if files[i] != "" {
			continue
		}
		for ; ; n++ {
			fn := numberedFileName(name, d.Device, n)
			if !taken[strings.ToLower(fn)] {
				files[i] = fn
				taken[strings.ToLower(fn)] = true
				break
			}
		}
	}
	return files
}

// plainFileName says whether a source's fileName can be kept: a name in the
// VMX's directory, not hidden, with the device's suffix and not a snapshot's
// delta name.
func plainFileName(hint, device string) bool {
	suffix := ".vmdk"
	if device == "cdrom" {
		suffix = ".iso"
	}
	return hint != "" && hint == filepath.Base(hint) && !strings.ContainsAny(hint, `\/`) &&
		hint != "." && hint != ".." && !strings.HasPrefix(hint, ".") &&
		strings.HasSuffix(strings.ToLower(hint), suffix) && !deltaName.MatchString(hint)
}

// numberedFileName is VMware's name for the n-th disk or CD image of VM name.
func numberedFileName(name, device string, n int) string {
	switch {
	case device == "cdrom" && n == 0:
		return name + "_cdrom.iso"
	case device == "cdrom":
		return fmt.Sprintf("%s_cdrom_%d.iso", name, n)
	case n == 0:
		return name + ".vmdk"
	default:
		return fmt.Sprintf("%s_%d.vmdk", name, n)
	}
}

// placeNICs gives every NIC its ethernet index: back on the indices they
// came from, then the free ones.
func placeNICs(vm *neutral.VM, ext *File) ([]int, error) {
	src, err := sourceNICSlots(ext)
	if err != nil {
		return nil, err
	}
	busy := map[int]bool{}
	for _, e := range ext.Entries() {
		if n, ok := ethernetIndex(namespace(e.Key)); ok {
			busy[n] = true
		}
	}
	var nics []int
	next := 0
	for i := range vm.NICs {
		if i < len(src) {
			nics = append(nics, src[i])
			continue
		}
		for next < maxNICs && busy[next] {
			next++
		}
		if next >= maxNICs {
			return nil, fmt.Errorf("vmx: %d NICs: VMware allows at most %d", len(vm.NICs), maxNICs)
		}
		nics = append(nics, next)
		busy[next] = true
	}
	return nics, nil
}

func freeSlot(bus string, used map[slot]bool) (slot, bool) {
	b := buses[bus]
	for c := 0; c < b.ctrls; c++ {
		for u := 0; u < b.units; u++ {
			s := slot{bus: bus, ctrl: c, unit: u}
			// Stay within the 16 units every hardware version has.
			if s.valid() && !used[s] && (bus != "scsi" || u < 16) {
				return s, true
			}
		}
	}
	return slot{}, false
}

// FromVM builds the .vmx for vm, whose files are named after name (the
// .vmx's base name without extension): the modelled keys from the neutral
// fields, every extension key verbatim, and what VMware needs for a VM that
// comes from elsewhere.
func FromVM(vm *neutral.VM, name string, opt WriteOptions) (*File, error) {
	f, _, err := build(vm, name, opt)
	return f, err
}

func build(vm *neutral.VM, name string, opt WriteOptions) (*File, *layout, error) {
	if err := checkVM(vm); err != nil {
		return nil, nil, err
	}
	ext := extFile(vm)
	lay, err := planLayout(vm, ext, name)
	if err != nil {
		return nil, nil, err
	}
	out := NewFile(name + ".vmx")
	if err := writeHeader(out, vm, ext, lay, opt); err != nil {
		return nil, nil, err
	}
	body := keptBody(vm, ext, lay)
	body.drives(vm, lay)
	body.nics(vm, ext, lay)
	if len(vm.Extensions.VMware) == 0 {
		// Workstation adds a floppy drive unless told not to.
		body.setDefault("floppy0.present", "FALSE")
	}
	if vm.Firmware == "uefi" {
		body.setDefault("nvram", name+".nvram")
	}
	for _, e := range body.ordered(vm.Extensions.VMware[OrderKey]) {
		out.Set(e.Key, e.Value)
	}
	if err := setBootDisk(out, vm, lay); err != nil {
		return nil, nil, err
	}
	if err := writeOwnKeys(out, vm, lay); err != nil {
		return nil, nil, err
	}
	return out, lay, nil
}

// checkVM refuses what no VMX can say.
func checkVM(vm *neutral.VM) error {
	switch {
	case vm.CPUs < 1 || vm.CPUs > 4096:
		return fmt.Errorf("vmx: vm %q: %d vCPUs: expected 1–4096", vm.Name, vm.CPUs)
	case vm.MemoryMiB < 1 || vm.MemoryMiB > 1<<24:
		return fmt.Errorf("vmx: vm %q: memory %d MiB out of range", vm.Name, vm.MemoryMiB)
	case vm.Firmware != "" && vm.Firmware != "bios" && vm.Firmware != "uefi":
		return fmt.Errorf("vmx: vm %q: firmware %q: expected \"bios\" or \"uefi\"", vm.Name, vm.Firmware)
	}
	if vm.UUID != "" {
		if _, err := parseUUID(vm.UUID); err != nil {
			return fmt.Errorf("vmx: vm %q: uuid: %w", vm.Name, err)
		}
	}
	for i, n := range vm.NICs {
		if n.MAC != "" {
			if _, err := parseMAC(n.MAC); err != nil {
				return fmt.Errorf("vmx: vm %q: nic %d: %w", vm.Name, i, err)
			}
		}
	}
	for k := range vm.Extensions.VMware {
		if !strings.HasPrefix(k, "#") && !validKey(k) {
			return fmt.Errorf("vmx: vm %q: extension key %q is not a VMX key (printable ASCII without blanks, '=' or '#')", vm.Name, k)
		}
	}
	return nil
}

// writeHeader writes the keys VMware puts first: the encoding, the config
// version and the virtual hardware version (the source's, else
// opt.HWVersion, which must know every device slot used).
func writeHeader(out *File, vm *neutral.VM, ext *File, lay *layout, opt WriteOptions) error {
	out.Set(".encoding", "UTF-8")
	if v, ok := ext.Get("config.version"); ok {
		out.Set(ext.items[ext.index["config.version"]].Key, v)
	} else {
		out.Set("config.version", "8")
	}
	if v, ok := ext.Get("virtualHW.version"); ok {
		out.Set(ext.items[ext.index["virtualhw.version"]].Key, v)
		return nil
	}
	hw := opt.HWVersion
	if hw == 0 {
		hw = DefaultHWVersion
	}
	for _, s := range lay.slots {
		if hw < 13 && (s.bus == "nvme" || (s.bus == "scsi" && s.unit > 15)) {
			return fmt.Errorf("vmx: vm %q: device %s needs virtualHW.version 13 or later, not %d", vm.Name, s, hw)
		}
	}
	out.Set("virtualHW.version", strconv.Itoa(hw))
	return nil
}

// vmxBody is the VMX's keys after the header, in the making: keys compare
// in lower case.
type vmxBody []Entry

func (b *vmxBody) set(k, v string) {
	lk := strings.ToLower(k)
	for i := range *b {
		if strings.ToLower((*b)[i].Key) == lk {
			(*b)[i].Value = v
			return
		}
	}
	*b = append(*b, Entry{Key: k, Value: v})
}

// setDefault sets k unless the body has it.
func (b *vmxBody) setDefault(k, v string) {
	if _, ok := b.get(k); !ok {
		b.set(k, v)
	}
}

func (b vmxBody) get(k string) (string, bool) {
	lk := strings.ToLower(k)
	for _, e := range b {
		if strings.ToLower(e.Key) == lk {
			return e.Value, true
		}
	}
	return "", false
}

func (b vmxBody) isTrue(k string) bool {
	v, ok := b.get(k)
	t, err := parseBool(v)
	return ok && err == nil && t
}

// keptBody is the source's keys that still hold, then the modelled keys
// whose value changed: the neutral value, in the source's spelling when it
// means the same. Keys of devices the VM no longer has are dropped.
func keptBody(vm *neutral.VM, ext *File, lay *layout) vmxBody {
	live := map[string]bool{} // device namespaces the neutral VM still has
	for _, s := range lay.slots {
		live[s.String()] = true
	}
	for _, n := range lay.nics {
		live[fmt.Sprintf("ethernet%d", n)] = true
	}
	gen := modelledValues(vm, lay.nics, ext)
	keepSourceNICModels(gen, vm, lay.nics, ext)
	// A VM that came from VMware carries VMware extensions; it keeps its
	// own settings where VMware's defaults apply.
	if len(vm.Extensions.VMware) > 0 && vm.GuestOS == "" {
		// VMware's own file had no guestOS: keep it that way.
		delete(gen, "guestos")
	}
	var body vmxBody
	for _, e := range ext.Entries() {
		lk := strings.ToLower(e.Key)
		switch lk {
		case ".encoding", "config.version", "virtualhw.version":
			continue
		}
		if ns := namespace(e.Key); ns != "" && !live[strings.ToLower(ns)] && isDeviceNS(ns) {
			// A device the VM no longer has: drop it, unless it was
			// never switched on (VMware keeps those too).
			if p, _ := ext.Get(ns + ".present"); strings.EqualFold(strings.TrimSpace(p), "true") {
				continue
			}
		}
		if isModelled(lk, lay.nics, ext) {
			g, has := gen[lk]
			want := modelledDefaults[lk]
			if has {
				want = g.Value
			}
			if lk == "memsize" {
				// Compare with the VM's own size, not the one rounded to
				// VMware's multiple of 4: a VMware value stays as it was.
				want = strconv.FormatInt(vm.MemoryMiB, 10)
			}
			if !sameMeaning(lk, e.Value, want) {
				continue
			}
			delete(gen, lk)
		}
		body = append(body, Entry{Key: e.Key, Value: e.Value})
	}
	for _, g := range gen {
		body = append(body, g)
	}
	return body
}

// drives sets up each disk's controller and drive.
func (b *vmxBody) drives(vm *neutral.VM, lay *layout) {
	for i, d := range vm.Disks {
		s := lay.slots[i]
		ns := s.String()
		fresh := !b.isTrue(ns + ".present")
		if s.bus != "ide" {
			ctrl := s.controller()
			if !b.isTrue(ctrl + ".present") {
				if _, ok := b.get(ctrl + ".virtualDev"); !ok && s.bus == "scsi" {
					b.set(ctrl+".virtualDev", "lsilogic")
				}
				b.set(ctrl+".present", "TRUE")
			}
		}
		if fresh {
			b.set(ns+".present", "TRUE")
		}
		if d.Device == "cdrom" {
			b.cdrom(ns, d, lay.files[i])
		} else {
			b.hardDisk(ns, s.bus, fresh, lay.files[i])
		}
	}
}

// cdrom sets up the CD drive in namespace ns: an image it holds, the
// source's drive as it was, or an empty host drive not connected.
func (b *vmxBody) cdrom(ns string, d neutral.Disk, file string) {
	dt, hasDT := b.get(ns + ".deviceType")
	switch {
	case d.Image != nil:
		b.set(ns+".deviceType", "cdrom-image")
		b.set(ns+".fileName", file)
	case hasDT && cdromTypes[strings.ToLower(dt)]:
		// The source's drive as it was.
	default:
		b.set(ns+".deviceType", "atapi-cdrom")
		b.set(ns+".fileName", "auto detect")
		b.setDefault(ns+".startConnected", "FALSE")
	}
}

// hardDisk sets up the disk in namespace ns on bus, its type fixed when
// the source's was not a disk's.
func (b *vmxBody) hardDisk(ns, bus string, fresh bool, file string) {
	dt, hasDT := b.get(ns + ".deviceType")
	if hasDT && !diskTypes[strings.ToLower(dt)] {
		switch bus {
		case "ide":
			b.set(ns+".deviceType", "ata-hardDisk")
		case "scsi":
			b.set(ns+".deviceType", "scsi-hardDisk")
		default:
			b.set(ns+".deviceType", "disk")
		}
	} else if !hasDT && bus == "ide" && fresh {
		b.set(ns+".deviceType", "ata-hardDisk")
	}
	b.set(ns+".fileName", file)
}

// nics switches on the NICs from elsewhere: VMware keeps a foreign MAC only
// as a static address, and refuses a static address outside 00:50:56:00–3F
// unless told not to check.
func (b *vmxBody) nics(vm *neutral.VM, ext *File, lay *layout) {
	for i, n := range lay.nics {
		ns := fmt.Sprintf("ethernet%d", n)
		if b.isTrue(ns + ".present") {
			continue
		}
		b.set(ns+".present", "TRUE")
		if _, ok := b.get(ns + ".addressType"); ok {
			continue
		}
		atype := nicAddressType(ext, n, vm.NICs[i])
		b.set(ns+".addressType", atype)
		if atype == "static" && !staticMACRange(vm.NICs[i].MAC) {
			b.setDefault(ns+".checkMACAddress", "FALSE")
		}
	}
}

// ordered is the body with the keys the source had in its order (order,
// the source's keys as OrderKey lists them) and the new ones after them,
// grouped by device.
func (b vmxBody) ordered(order string) vmxBody {
	rank := map[string]int{}
	for i, k := range strings.Fields(order) {
		if _, dup := rank[strings.ToLower(k)]; !dup {
			rank[strings.ToLower(k)] = i
		}
	}
	slices.SortStableFunc(b, func(x, y Entry) int {
		rx, okx := rank[strings.ToLower(x.Key)]
		ry, oky := rank[strings.ToLower(y.Key)]
		switch {
		case okx && oky:
			return rx - ry
		case okx:
			return -1
		case oky:
			return 1
		}
		return naturalCompare(x.Key, y.Key)
	})
	return b
}

// setBootDisk makes the VM's bootable disk the one VMware boots.
func setBootDisk(out *File, vm *neutral.VM, lay *layout) error {
	for i, d := range vm.Disks {
		if !d.Bootable || d.Device == "cdrom" {
			continue
		}
		devs, err := findDevices(out)
		if err != nil {
			return fmt.Errorf("vmx: vm %q: %w", vm.Name, err)
		}
		if want := lay.slots[i]; bootSlot(out, devs) != want {
			out.Set("bios.hddOrder", want.String())
		}
		return nil
	}
	return nil
}

// writeOwnKeys writes what VMware has no key for in keys of our own
// (VMware keeps keys it does not know), so a VM that came from Xen goes
// back with its ova.xml fields and its PV boot settings, and names VMware
// would lose: the guest OS as the source named it, and disk ids that are
// not the slot's own name.
func writeOwnKeys(out *File, vm *neutral.VM, lay *layout) error {
	if len(vm.Extensions.Xen) > 0 {
		b, err := json.Marshal(vm.Extensions.Xen)
		if err != nil {
			return fmt.Errorf("vmx: vm %q: extensions.xen: %w", vm.Name, err)
		}
		out.Set(XenKey, string(b))
	}
	if vm.GuestOS != "" && GuestOSFor(vm.GuestOS) != vm.GuestOS {
		out.Set(GuestOSKey, vm.GuestOS)
	}
	var own []Entry // in slot order, so a rewrite gives the same file
	for i, d := range vm.Disks {
		s := lay.slots[i]
		if d.ID != "" && d.ID != s.String() {
			own = append(own, Entry{Key: s.String() + DiskIDSuffix, Value: d.ID})
		}
		if d.Bus != "" && (d.Bus != s.bus || d.Unit != s.flatUnit()) {
			own = append(own, Entry{Key: s.String() + DiskBusSuffix, Value: fmt.Sprintf("%s:%d", d.Bus, d.Unit)})
		}
	}
	slices.SortStableFunc(own, func(a, b Entry) int { return naturalCompare(a.Key, b.Key) })
	for _, e := range own {
		out.Set(e.Key, e.Value)
	}
	if vm.Boot != nil {
		b, err := json.Marshal(vm.Boot)
		if err != nil {
			return fmt.Errorf("vmx: vm %q: boot: %w", vm.Name, err)
		}
		out.Set(BootKey, string(b))
	}
	return nil
}

// Keys of our own: the neutral VM's Xen extensions and PV boot settings as
// JSON, and names VMX has no place for. Keys are compared in lower case.
const (
	XenKey     = "vmconv.xen"
	BootKey    = "vmconv.boot"
	GuestOSKey = "vmconv.guestos"
	// DiskIDSuffix follows a device slot ("scsi0:0.vmconv.id") to give the
	// neutral id of a disk that came from elsewhere ("xvda").
	DiskIDSuffix = ".vmconv.id"
	// DiskBusSuffix gives the bus and unit ("xen:3") the disk had where it
	// came from, when the slot is on another bus.
	DiskBusSuffix = ".vmconv.bus"
)

func validKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c < 0x21 || c > 0x7e || c == '=' || c == '#' {
			return false
		}
	}
	return true
}

func isDeviceNS(ns string) bool {
	if _, ok := ethernetIndex(ns); ok {
		return true
	}
	_, ok, err := parseSlot(ns)
	return ok && err == nil
}

// naturalCompare orders keys case-insensitively with digit runs compared as
// numbers, so scsi0:2 sorts before scsi0:10 and ethernet9 before ethernet10.
func naturalCompare(a, b string) int {
	a, b = strings.ToLower(a), strings.ToLower(b)
	for a != "" && b != "" {
		da, db := digitRun(a), digitRun(b)
		if da > 0 && db > 0 {
			x, y := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if len(x) != len(y) {
				return len(x) - len(y)
			}
			if c := strings.Compare(x, y); c != 0 {
				return c
			}
			if da != db {
				return da - db
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return int(a[0]) - int(b[0])
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func digitRun(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

// Write writes vm as a VMware VM: the .vmx at vmxPath and, beside it, one
// disk per hard disk made by newDisk (normally a VMDK writer; names
// NAME.vmdk, NAME_1.vmdk, … as VMware names them, or the source's own plain
// names) and one ISO per CD-ROM with media. Empty drives get no file. Every
// file goes through out, so nothing appears until the caller commits it; a
// missing directory is created.
func Write(ctx context.Context, out *disk.Output, vmxPath string, vm *neutral.VM,
	newDisk func(out *disk.Output, path string, size int64) (disk.Writer, error), copyOpt disk.CopyOptions) error {
	return WriteWith(ctx, out, vmxPath, vm, newDisk, copyOpt, WriteOptions{})
}

// WriteWith is Write with options.
func WriteWith(ctx context.Context, out *disk.Output, vmxPath string, vm *neutral.VM,
	newDisk func(out *disk.Output, path string, size int64) (disk.Writer, error), copyOpt disk.CopyOptions,
	opt WriteOptions) error {
	if vmxPath == disk.Stdout {
		return errors.New("vmx: a VM is a directory of files and cannot be written to standard output")
	}
	name := strings.TrimSuffix(filepath.Base(vmxPath), filepath.Ext(vmxPath))
	dir := filepath.Dir(vmxPath)
	f, lay, err := build(vm, name, opt)
	if err != nil {
		return err
	}
	for _, d := range vm.Disks {
		if d.Device != "cdrom" && d.Image == nil {
			return fmt.Errorf("vmx %s: disk %s has no content to write", vmxPath, d.ID)
		}
	}
	// Refuse existing targets before copying anything.
	targets := []string{vmxPath}
	for _, fn := range lay.files {
		if fn != "" {
			targets = append(targets, filepath.Join(dir, fn))
		}
	}
	if !out.Force {
		for _, t := range targets {
			if _, err := os.Lstat(t); err == nil {
				return fmt.Errorf("%s: already exists (use --force to replace it)", t)
			}
		}
	}
	if err := out.MkdirAll(dir); err != nil {
		return fmt.Errorf("vmx %s: %w", vmxPath, err)
	}

	fh, err := out.Create(vmxPath)
	if err != nil {
		return err
	}
	if _, err := fh.Write(f.Marshal()); err != nil {
		return fmt.Errorf("vmx %s: %w", vmxPath, err)
	}
	for i, d := range vm.Disks {
		if lay.files[i] == "" || d.Image == nil {
			continue
		}
		path := filepath.Join(dir, lay.files[i])
		var w disk.Writer
		if d.Device == "cdrom" {
			iso, err := out.Create(path)
			if err != nil {
				return err
			}
			w = disk.NewRawWriter(iso, d.Image.Size())
		} else {
			if opt.NewDiskAdapter != nil {
				w, err = opt.NewDiskAdapter(out, path, d.Image.Size(), adapterType(f, lay.slots[i]))
			} else {
				w, err = newDisk(out, path, d.Image.Size())
			}
			if err != nil {
				return fmt.Errorf("vmx %s: disk %s: %w", vmxPath, d.ID, err)
			}
		}
		if err := disk.Copy(ctx, d.Image, w, copyOpt); err != nil {
			return fmt.Errorf("vmx %s: disk %s → %s: %w", vmxPath, d.ID, lay.files[i], err)
		}
	}
	return nil
}
