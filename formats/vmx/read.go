package vmx

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/neutral"
)

// Format is the neutral Source.Format of VMs read from a .vmx.
const Format = "vmx"

// OrderKey is the extension entry that records the source file's key order
// (keys separated by spaces), so a VM written back to VMX keeps its keys
// where they were. No VMX key can start with '#'.
const OrderKey = "#order"

// device is a disk or CD-ROM drive found in a file, with what Read needs to
// open it.
type device struct {
	slot       slot
	cdrom      bool
	fileName   string // as written, unescaped
	fileKey    string // the key holding fileName, for errors
	fileLine   int
	deviceType string // lower-case
}

var (
	cdromTypes = map[string]bool{"cdrom-image": true, "atapi-cdrom": true, "cdrom-raw": true}
	diskTypes  = map[string]bool{"": true, "disk": true, "plaindisk": true, "rawdisk": true,
		"scsi-harddisk": true, "ata-harddisk": true}
)

// errAt names a key and its line.
func (f *File) errAt(key string, err error) error {
	k := key
	line := f.Line(key)
	if i, ok := f.index[strings.ToLower(key)]; ok {
		k = f.items[i].Key
	}
	if line > 0 {
		return fmt.Errorf("vmx %s: line %d: %s: %w", f.Name, line, k, err)
	}
	return fmt.Errorf("vmx %s: %s: %w", f.Name, k, err)
}

func (f *File) boolKey(key string, def bool) (bool, error) {
	v, ok := f.Get(key)
	if !ok {
		return def, nil
	}
	b, err := parseBool(v)
	if err != nil {
		return false, f.errAt(key, err)
	}
	return b, nil
}

// ToVM maps a parsed file to the neutral VM without opening any disk:
// disks have no Image and no capacity yet (Read fills them). Every key the
// neutral fields do not carry exactly is kept in Extensions.VMware, so
// FromVM gives back the same keys and values.
func ToVM(f *File) (*neutral.VM, error) {
	vm, _, err := toVM(f)
	return vm, err
}

// toVM is ToVM's steps, one per part of the VM, and also returns the
// devices found, for Read to open their disks.
func toVM(f *File) (*neutral.VM, []device, error) {
	vm := &neutral.VM{Schema: neutral.Schema, Firmware: "bios", CPUs: 1, CoresPerSocket: 1, MemoryMiB: 32,
		Disks: []neutral.Disk{}, NICs: []neutral.NIC{}}
	vmName(f, vm)
	for _, step := range []func(*File, *neutral.VM) error{vmCPUs, vmMemory, vmFirmware, vmUUID} {
		if err := step(f, vm); err != nil {
			return nil, nil, err
		}
	}
	devs, err := vmDisks(f, vm)
	if err != nil {
		return nil, nil, err
	}
	nicSlots, err := vmNICs(f, vm)
	if err != nil {
		return nil, nil, err
	}
	hints, err := vmExtensions(f, vm, nicSlots)
	if err != nil {
		return nil, nil, err
	}
	if err := hints.apply(f, vm); err != nil {
		return nil, nil, err
	}
	return vm, devs, nil
}

// vmName takes the VM's name (displayName, else the file's) and guest OS.
func vmName(f *File, vm *neutral.VM) {
	if v, ok := f.Get("displayName"); ok {
		vm.Name = v
	} else {
		vm.Name = strings.TrimSuffix(filepath.Base(f.Name), filepath.Ext(f.Name))
	}
	vm.GuestOS, _ = f.Get("guestOS")
}

// vmCPUs takes numvcpus and cpuid.coresPerSocket, which must divide it.
func vmCPUs(f *File, vm *neutral.VM) error {
	if v, ok := f.Get("numvcpus"); ok {
		n, err := parsePositive(v)
		if err != nil || n > 4096 {
			return f.errAt("numvcpus", fmt.Errorf("expected a vCPU count 1–4096, got %q", v))
		}
		vm.CPUs = int(n)
	}
	if v, ok := f.Get("cpuid.coresPerSocket"); ok {
		n, err := parsePositive(v)
		if err != nil || n > 4096 {
			return f.errAt("cpuid.coresPerSocket", fmt.Errorf("expected a core count, got %q", v))
		}
		if int(n) > vm.CPUs || vm.CPUs%int(n) != 0 {
			return f.errAt("cpuid.coresPerSocket",
				fmt.Errorf("%d cores per socket do not divide numvcpus %d", n, vm.CPUs))
		}
		vm.CoresPerSocket = int(n)
	}
	return nil
}

// vmMemory takes memsize (MiB).
func vmMemory(f *File, vm *neutral.VM) error {
	if v, ok := f.Get("memsize"); ok {
		n, err := parsePositive(v)
		if err != nil || n > 1<<24 {
			return f.errAt("memsize", fmt.Errorf("expected MiB of memory, got %q", v))
		}
		vm.MemoryMiB = n
	}
	return nil
}

// vmFirmware takes firmware: VMware's "efi" is the neutral "uefi".
func vmFirmware(f *File, vm *neutral.VM) error {
	if v, ok := f.Get("firmware"); ok {
		switch strings.ToLower(v) {
		case "bios":
		case "efi":
			vm.Firmware = "uefi"
		default:
			return f.errAt("firmware", fmt.Errorf("expected \"bios\" or \"efi\", got %q", v))
		}
	}
	return nil
}

// vmUUID takes uuid.bios, written canonically.
func vmUUID(f *File, vm *neutral.VM) error {
	if v, ok := f.Get("uuid.bios"); ok {
		u, err := parseVMwareUUID(v)
		if err != nil {
			return f.errAt("uuid.bios", err)
		}
		vm.UUID = canonicalUUID(u)
	}
	return nil
}

// vmDisks lists the disks and CD-ROM drives, the boot disk marked, and
// returns the devices found for Read to open.
func vmDisks(f *File, vm *neutral.VM) ([]device, error) {
	devs, err := findDevices(f)
	if err != nil {
		return nil, err
	}
	boot := bootSlot(f, devs)
	for _, d := range devs {
		nd := neutral.Disk{ID: d.slot.String(), Device: "disk", Bus: d.slot.bus, Unit: d.slot.flatUnit()}
		if d.cdrom {
			nd.Device, nd.ReadOnly = "cdrom", true
		}
		nd.Bootable = !d.cdrom && d.slot == boot
		vm.Disks = append(vm.Disks, nd)
	}
	return devs, nil
}

// vmNICs reads the present ethernetN adapters and returns their slots.
func vmNICs(f *File, vm *neutral.VM) ([]int, error) {
	nicSlots, err := sourceNICSlots(f)
	if err != nil {
		return nil, err
	}
	for _, n := range nicSlots {
		nic, err := readNIC(f, n)
		if err != nil {
			return nil, err
		}
		vm.NICs = append(vm.NICs, nic)
	}
	return nicSlots, nil
}

// neutralHints are what FromVM writes of the neutral VM that a VMX cannot
// hold: the guest OS name, and each disk's id and bus, by the disk's slot.
type neutralHints struct {
	guestOS   string
	diskIDs   map[string]string
	diskBuses map[string][2]string
}

// vmExtensions keeps every key in Extensions.VMware except the modelled ones
// the writer gives back exactly as they are, with the keys' order; vmconv's
// own keys go to Extensions.Xen, Boot and the hints instead.
func vmExtensions(f *File, vm *neutral.VM, nicSlots []int) (neutralHints, error) {
	gen := modelledValues(vm, nicSlots, f)
	vm.Extensions.VMware = map[string]string{}
	hints := neutralHints{diskIDs: map[string]string{}, diskBuses: map[string][2]string{}}
	order := make([]string, 0, f.Len())
	for _, e := range f.Entries() {
		own, err := hints.take(f, vm, e)
		if err != nil {
			return hints, err
		}
		if own {
			continue
		}
		order = append(order, e.Key)
		if g, ok := gen[strings.ToLower(e.Key)]; ok && g.Key == e.Key && g.Value == e.Value {
			continue
		}
		vm.Extensions.VMware[e.Key] = e.Value
	}
	vm.Extensions.VMware[OrderKey] = strings.Join(order, " ")
	return hints, nil
}

// take reads entry e if it is one of vmconv's own keys, and says whether it was.
func (h *neutralHints) take(f *File, vm *neutral.VM, e Entry) (bool, error) {
	switch strings.ToLower(e.Key) {
	case XenKey:
		if err := json.Unmarshal([]byte(e.Value), &vm.Extensions.Xen); err != nil {
			return true, f.errAt(e.Key, fmt.Errorf("not the JSON object vmconv writes: %w", err))
		}
		return true, nil
	case BootKey:
		vm.Boot = &neutral.Boot{}
		if err := json.Unmarshal([]byte(e.Value), vm.Boot); err != nil {
			return true, f.errAt(e.Key, fmt.Errorf("not the JSON object vmconv writes: %w", err))
		}
		return true, nil
	case GuestOSKey:
		h.guestOS = e.Value
		return true, nil
	}
	if ns, ok := strings.CutSuffix(strings.ToLower(e.Key), DiskIDSuffix); ok {
		h.diskIDs[ns] = e.Value
		return true, nil
	}
	if ns, ok := strings.CutSuffix(strings.ToLower(e.Key), DiskBusSuffix); ok {
		bus, unit, ok := strings.Cut(e.Value, ":")
		n, err := strconv.Atoi(unit)
		if !ok || err != nil || n < 0 || !slices.Contains(neutral.Buses, bus) {
			return true, f.errAt(e.Key, fmt.Errorf("want BUS:UNIT as vmconv writes it, got %q", e.Value))
		}
		h.diskBuses[ns] = [2]string{bus, unit}
		return true, nil
	}
	return false, nil
}

// apply gives the VM the neutral names FromVM wrote; disk ids must stay unique.
func (h neutralHints) apply(f *File, vm *neutral.VM) error {
	if h.guestOS != "" {
		vm.GuestOS = h.guestOS
	}
	seen := map[string]bool{}
	for i := range vm.Disks {
		slot := strings.ToLower(vm.Disks[i].ID)
		if id, ok := h.diskIDs[slot]; ok {
			vm.Disks[i].ID = id
		}
		if bu, ok := h.diskBuses[slot]; ok {
			vm.Disks[i].Bus = bu[0]
			vm.Disks[i].Unit, _ = strconv.Atoi(bu[1])
		}
		if seen[vm.Disks[i].ID] {
			return fmt.Errorf("vmx %s: disk id %q given twice (%s keys)", f.Name, vm.Disks[i].ID, DiskIDSuffix)
		}
		seen[vm.Disks[i].ID] = true
	}
	return nil
}

// findDevices lists the present disks and CD-ROM drives on present
// controllers, in VMware's enumeration order.
func findDevices(f *File) ([]device, error) {
	seen := map[slot]bool{}
	var slots []slot
	for _, e := range f.Entries() {
		ns := namespace(e.Key)
		s, ok, err := parseSlot(ns)
		if !ok || seen[s] {
			continue
		}
		if err != nil {
			// Only a device VMware would use is an error.
			if p, _ := f.Get(ns + ".present"); strings.EqualFold(strings.TrimSpace(p), "true") {
				return nil, f.errAt(ns+".present", err)
			}
			continue
		}
		seen[s] = true
		slots = append(slots, s)
	}
	slices.SortFunc(slots, func(a, b slot) int {
		if a.less(b) {
			return -1
		}
		if b.less(a) {
			return 1
		}
		return 0
	})
	ctrlPresent := map[string]bool{}
	var devs []device
	for _, s := range slots {
		ctrl := s.controller()
		present, known := ctrlPresent[ctrl]
		if !known {
			var err error
			present, err = f.boolKey(ctrl+".present", s.bus == "ide")
			if err != nil {
				return nil, err
			}
			ctrlPresent[ctrl] = present
		}
		ns := s.String()
		devPresent, err := f.boolKey(ns+".present", false)
		if err != nil {
			return nil, err
		}
		if !present || !devPresent {
			continue
		}
		d := device{slot: s, fileKey: ns + ".fileName"}
		d.fileName, _ = f.Get(d.fileKey)
		d.fileLine = f.Line(d.fileKey)
		dt, hasType := f.Get(ns + ".deviceType")
		d.deviceType = strings.ToLower(dt)
		lname := strings.ToLower(d.fileName)
		switch {
		case cdromTypes[d.deviceType]:
			d.cdrom = true
		case !hasType && (strings.HasSuffix(lname, ".iso") || lname == "emptybackingstring" || lname == "auto detect"):
			d.cdrom = true
		case diskTypes[d.deviceType]:
			if d.fileName == "" {
				if !hasType {
					continue // a present slot with nothing in it
				}
				return nil, f.errAt(ns+".deviceType", fmt.Errorf("hard disk %s has no fileName", ns))
			}
		default:
			continue // passthrough, tape, …: kept verbatim, not a disk
		}
		devs = append(devs, d)
	}
	return devs, nil
}

// bootSlot is the hard disk VMware boots: the first of bios.hddOrder that
// is a present disk, else the first disk.
func bootSlot(f *File, devs []device) slot {
	isDisk := map[slot]bool{}
	var first *slot
	for i := range devs {
		if !devs[i].cdrom {
			isDisk[devs[i].slot] = true
			if first == nil {
				first = &devs[i].slot
			}
		}
	}
	if order, ok := f.Get("bios.hddOrder"); ok {
		for _, name := range strings.Split(order, ",") {
			if s, ok, err := parseSlot(strings.TrimSpace(name)); ok && err == nil && isDisk[s] {
				return s
			}
		}
	}
	if first == nil {
		return slot{bus: "none"}
	}
	return *first
}

// sourceNICSlots lists the ethernetN namespaces whose present is TRUE, in
// index order.
func sourceNICSlots(f *File) ([]int, error) {
	seen := map[int]bool{}
	for _, e := range f.Entries() {
		if n, ok := ethernetIndex(namespace(e.Key)); ok && !seen[n] {
			present, err := f.boolKey(fmt.Sprintf("ethernet%d.present", n), false)
			if err != nil {
				return nil, err
			}
			if present {
				seen[n] = true
			}
		}
	}
	var out []int
	for n := range seen {
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// addressType resolves ethernetN.addressType the way VMware does: absent
// means "generated". The result is lower-case.
func addressType(f *File, n int) string {
	v, ok := f.Get(fmt.Sprintf("ethernet%d.addressType", n))
	if !ok {
		return "generated"
	}
	return strings.ToLower(strings.TrimSpace(v))
}

// macKey is the key holding the NIC's MAC for its address type: address
// for static, generatedAddress for generated and vpx.
func macKey(atype string, n int) string {
	if atype == "static" {
		return fmt.Sprintf("ethernet%d.address", n)
	}
	return fmt.Sprintf("ethernet%d.generatedAddress", n)
}

func readNIC(f *File, n int) (neutral.NIC, error) {
	var nic neutral.NIC
	ns := fmt.Sprintf("ethernet%d", n)
	key := macKey(addressType(f, n), n)
	if v, ok := f.Get(key); ok && v != "" {
		mac, err := parseMAC(v)
		if err != nil {
			return nic, f.errAt(key, err)
		}
		nic.MAC = mac
	}
	// A MAC in the other key must parse too: it may become the active one.
	for _, k := range []string{ns + ".address", ns + ".generatedAddress"} {
		if v, ok := f.Get(k); ok && v != "" {
			if _, err := parseMAC(v); err != nil {
				return nic, f.errAt(k, err)
			}
		}
	}
	nic.Model, _ = f.Get(ns + ".virtualDev")
	nic.Network, _ = f.Get(ns + ".networkName")
	return nic, nil
}

// ReadOptions change how Read treats the disks a file names.
type ReadOptions struct {
	// MarkMissing describes a hard disk whose file is not there as
	// neutral.Disk{Missing: true, File: path} with no Image instead of
	// failing: a .vmx copied off its host still names disks on the datastore
	// (/vmfs/volumes/...), and `info` should describe it anyway. A disk
	// whose own file is here but a file it names is not (a descriptor
	// copied without its -flat.vmdk extent, a snapshot without its parent:
	// the opener's error matches fs.ErrNotExist through an *fs.PathError)
	// is marked Missing too, File naming the absent file.
	MarkMissing bool
	// Capacity, when set, gives a Missing disk's size from the file that is
	// here (vmdk.Capacity reads a descriptor's extents).
	Capacity func(path string) (int64, error)
}

// Read reads the .vmx at path and opens its disks through openDisk (the
// caller passes vmdk.Open), resolving file names relative to the .vmx's
// directory. CD-ROM images that exist are opened read-only as raw files;
// missing ISOs and host drives leave an empty drive. A missing hard disk is
// an error naming its key and file. The VM's disks must be closed with
// vm.Close.
func Read(path string, openDisk func(path string) (disk.Image, error)) (*neutral.VM, error) {
	return ReadWith(path, openDisk, ReadOptions{})
}

// ReadWith is Read with options.
func ReadWith(path string, openDisk func(path string) (disk.Image, error), opt ReadOptions) (*neutral.VM, error) {
	f, err := parsePath(path)
	if err != nil {
		return nil, err
	}
	vm, devs, err := toVM(f)
	if err != nil {
		return nil, err
	}
	vm.Source = &neutral.Source{Format: Format, File: path}
	for i, d := range devs {
		if err := openDevice(&vm.Disks[i], d, path, openDisk, opt); err != nil {
			vm.Close()
			return nil, err
		}
	}
	return vm, nil
}

// parsePath parses the .vmx at path, refusing files too large to be one.
func parsePath(path string) (*File, error) {
	fh, err := disk.OpenFile(path)
	if err != nil {
		return nil, fmt.Errorf("vmx %s: %w", path, err)
	}
	defer fh.Close()
	if fi, err := fh.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > MaxFileSize {
		return nil, fmt.Errorf("vmx %s: %w (%d bytes)", path, ErrTooLarge, fi.Size())
	}
	return Parse(fh, path)
}

// openDevice fills nd's Image and capacity from device d of the .vmx at
// vmxPath, or leaves an empty drive / a Missing disk as described on Read.
func openDevice(nd *neutral.Disk, d device, vmxPath string, openDisk func(string) (disk.Image, error), opt ReadOptions) error {
	p := d.fileName
	if p != "" && !filepath.IsAbs(p) {
		p = filepath.Join(filepath.Dir(vmxPath), filepath.FromSlash(p))
	}
	fail := func(err error) error {
		return fmt.Errorf("vmx %s: line %d: %s %q: %w", vmxPath, d.fileLine, d.fileKey, d.fileName, err)
	}
	var img disk.Image
	var err error
	if d.cdrom {
		if d.deviceType != "cdrom-image" && !(d.deviceType == "" && strings.HasSuffix(strings.ToLower(p), ".iso")) {
			return nil // host drive or no media
		}
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
			return nil // the ISO is not here (often a datastore path): an empty drive
		}
		if img, err = disk.OpenRaw(p); err != nil {
			return fail(err)
		}
	} else {
		if _, err := os.Stat(p); opt.MarkMissing && errors.Is(err, fs.ErrNotExist) {
			nd.Missing, nd.File = true, p
			return nil
		}
		if img, err = openDisk(p); err != nil {
			if missing, ok := disk.MissingFile(err); ok && opt.MarkMissing {
				nd.Missing, nd.File = true, missing
				if opt.Capacity != nil {
					nd.CapacityBytes, _ = opt.Capacity(p) // unknown (0) when it cannot say
				}
				return nil
			}
			return fail(err)
		}
		if img == nil {
			return fail(errors.New("opener returned no image"))
		}
	}
	nd.Image = img
	nd.CapacityBytes = img.Size()
	return nil
}
