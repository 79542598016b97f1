package ovf

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/vmconv/vmconv/formats/neutral"
)

// controller is a storage controller item.
type controller struct {
	bus     string // ide, scsi, sata, nvme
	index   int    // controller number on its bus
	subtype string // lower-case ResourceSubType
	used    map[int]bool
}

// unitStride is the neutral Unit stride per controller, as the VMX mapping
// numbers units (scsi1:0 is unit 65, ide1:0 unit 2).
var unitStride = map[string]int{"ide": 2, "scsi": 65, "sata": 30, "nvme": 64}

// busOf maps a controller item to a bus, or "" for a non-storage item.
func busOf(it *Item) string {
	sub := strings.ToLower(it.ResourceSubType)
	switch strings.TrimSpace(it.ResourceType) {
	case "5":
		return "ide"
	case "6":
		return "scsi"
	case "20":
		if strings.Contains(sub, "nvme") {
			return "nvme"
		}
		return "sata"
	case "1":
		if strings.Contains(sub, "nvme") {
			return "nvme"
		}
	}
	return ""
}

// controllers indexes the storage controllers by InstanceID. A controller
// keeps its rasd:Address as its number when that is free, else takes the
// next free one.
func (m *mapper) controllers() (map[string]*controller, error) {
	byID := map[string]*controller{}
	taken := map[string]map[int]bool{}
	for _, it := range m.resource(1, 5, 6, 20) {
		bus := busOf(it)
		if bus == "" {
			continue
		}
		if taken[bus] == nil {
			taken[bus] = map[int]bool{}
		}
		idx, err := strconv.Atoi(strings.TrimSpace(it.Address))
		if err != nil || idx < 0 || idx > 3 || taken[bus][idx] {
			idx = 0
			for taken[bus][idx] {
				idx++
			}
		}
		if idx > 3 {
			return nil, m.errf("item %s: more than 4 %s controllers", clip(it.InstanceID), bus)
		}
		taken[bus][idx] = true
		if dev := scsiDevs[strings.ToLower(strings.TrimSpace(it.ResourceSubType))]; bus == "scsi" && dev != "" {
			m.vmware[fmt.Sprintf("scsi%d.virtualDev", idx)] = dev
		}
		byID[strings.TrimSpace(it.InstanceID)] = &controller{bus: bus, index: idx,
			subtype: strings.ToLower(strings.TrimSpace(it.ResourceSubType)), used: map[int]bool{}}
	}
	return byID, nil
}

// scsiDevs maps SCSI ResourceSubTypes to VMX scsiN.virtualDev, so the
// controller model reaches a .vmx (and comes back in an OVF).
var scsiDevs = map[string]string{"lsilogic": "lsilogic", "lsilogicsas": "lsisas1068", "buslogic": "buslogic",
	"virtualscsi": "pvscsi", "pvscsi": "pvscsi"}

// hostRef splits a HostResource ("ovf:/disk/vmdisk1", "/disk/vmdisk1",
// "ovf:/file/file2") into its kind and id.
func hostRef(s string) (kind, id string) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "ovf:")
	s = strings.TrimLeft(s, "/")
	kind, id, ok := strings.Cut(s, "/")
	if !ok {
		return "", ""
	}
	return strings.ToLower(kind), id
}

// mapDrives reads the disks (ResourceType 17) and CD-ROM drives (15, 16) in
// document order, each on its controller.
func (m *mapper) mapDrives() error {
	ctrls, err := m.controllers()
	if err != nil {
		return err
	}
	items := m.resource(15, 16, 17)
	if len(items) > maxDevices {
		return m.errf("%d drives: more than the %d allowed", len(items), maxDevices)
	}
	ids := map[string]bool{}
	boot := false
	for _, it := range items {
		d, c, err := m.drive(it, ctrls)
		if err != nil {
			return err
		}
		for n := 1; ids[d.ID]; n++ {
			d.ID = fmt.Sprintf("%s-%d", strings.ReplaceAll(d.ID, ":", "_"), n)
		}
		ids[d.ID] = true
		if d.Device == "disk" && !boot {
			d.Bootable, boot = true, true
		}
		m.vm.Disks = append(m.vm.Disks, d)
		m.contents = append(m.contents, c)
	}
	return nil
}

// drive maps one drive item.
func (m *mapper) drive(it *Item, ctrls map[string]*controller) (neutral.Disk, Content, error) {
	where := fmt.Sprintf("item %s", clip(it.InstanceID))
	d := neutral.Disk{Device: "disk"}
	c := Content{Size: -1}
	if rt := strings.TrimSpace(it.ResourceType); rt == "15" || rt == "16" {
		d.Device, d.ReadOnly = "cdrom", true
	}
	ctrl := ctrls[strings.TrimSpace(it.Parent)]
	if ctrl == nil {
		// A drive without a known controller: VMware puts disks on SCSI,
		// CD-ROMs on IDE.
		bus := "scsi"
		if d.Device == "cdrom" {
			bus = "ide"
		}
		key := "#" + bus
		if ctrls[key] == nil {
			ctrls[key] = &controller{bus: bus, used: map[int]bool{}}
		}
		ctrl = ctrls[key]
	}
	unit, err := strconv.Atoi(strings.TrimSpace(it.AddressOnParent))
	if err != nil || unit < 0 || unit >= unitStride[ctrl.bus] || ctrl.used[unit] {
		unit = 0
		for ctrl.used[unit] || (ctrl.bus == "scsi" && unit == 7) {
			unit++
		}
		if unit >= unitStride[ctrl.bus] {
			return d, c, m.errf("%s: no free unit on %s controller %d", where, ctrl.bus, ctrl.index)
		}
	}
	ctrl.used[unit] = true
	d.Bus = ctrl.bus
	d.Unit = ctrl.index*unitStride[ctrl.bus] + unit
	d.ID = fmt.Sprintf("%s%d:%d", ctrl.bus, ctrl.index, unit)

	var ref string
	for _, h := range it.HostResource {
		if strings.TrimSpace(h) != "" {
			ref = h
			break
		}
	}
	kind, id := hostRef(ref)
	switch {
	case kind == "disk":
		return m.diskContent(where, d, c, id)
	case kind == "file" && d.Device == "cdrom":
		f := m.fileByID(id)
		if f == nil {
			return d, c, m.errf("%s: HostResource %q names no file of References", where, clip(ref))
		}
		c.Href, c.DiskFormat, c.Compression = f.Href, "raw", f.Compression
		c.Size = fileSize(f)
		d.CapacityBytes = max(c.Size, 0)
		var err error
		if c.ChunkSize, err = chunkSize(f); err != nil {
			return d, c, m.errf("%s: file %q: %w", where, clip(f.Href), err)
		}
		return d, c, nil
	case d.Device == "cdrom":
		return d, c, nil // an empty drive (host device, no media)
	}
	return d, c, m.errf("%s: disk with HostResource %q: want ovf:/disk/ID", where, clip(ref))
}

// diskContent resolves a disk item's DiskSection entry.
func (m *mapper) diskContent(where string, d neutral.Disk, c Content, id string) (neutral.Disk, Content, error) {
	var e *DiskEntry
	for i := range m.env.Disks {
		if m.env.Disks[i].DiskID == id {
			e = &m.env.Disks[i]
			break
		}
	}
	if e == nil {
		return d, c, m.errf("%s: disk %q is not in the DiskSection", where, clip(id))
	}
	capacity, err := m.capacity(e)
	if err != nil {
		return d, c, m.errf("%s: disk %q: %w", where, clip(id), err)
	}
	d.CapacityBytes = capacity
	c.DiskFormat = diskFormat(e.Format)
	if d.Device == "cdrom" && c.DiskFormat == "" {
		c.DiskFormat = "raw"
	}
	if strings.TrimSpace(e.FileRef) == "" {
		c.Blank = d.Device == "disk"
		return d, c, nil
	}
	f := m.fileByID(e.FileRef)
	if f == nil {
		return d, c, m.errf("%s: disk %q: fileRef %q is not in References", where, clip(id), clip(e.FileRef))
	}
	c.Href, c.Compression, c.Size = f.Href, f.Compression, fileSize(f)
	if c.ChunkSize, err = chunkSize(f); err != nil {
		return d, c, m.errf("%s: disk %q: file %q: %w", where, clip(id), clip(f.Href), err)
	}
	return d, c, nil
}

func (m *mapper) fileByID(id string) *FileRef {
	for i := range m.env.References {
		if m.env.References[i].ID == id {
			return &m.env.References[i]
		}
	}
	return nil
}

func fileSize(f *FileRef) int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(f.Size), 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// maxCapacity bounds a disk's capacity (VMDK's own limit is 2^41 sectors).
const maxCapacity = 1 << 54

// capacity is a Disk's capacity in bytes; "${key}" takes the default value
// of a ProductSection property, as vSphere does.
func (m *mapper) capacity(e *DiskEntry) (int64, error) {
	q := strings.TrimSpace(e.Capacity)
	if strings.HasPrefix(q, "${") && strings.HasSuffix(q, "}") {
		key := q[2 : len(q)-1]
		found := false
		for _, p := range m.vs.Products {
			for _, pr := range p.Properties {
				if pr.Key == key {
					q, found = strings.TrimSpace(pr.Value), true
				}
			}
		}
		if !found {
			return 0, fmt.Errorf("capacity %q names no ProductSection property", clip(e.Capacity))
		}
	}
	unit, err := ParseUnits(e.CapacityUnits)
	if err != nil {
		return 0, err
	}
	n, err := scaled(q, unit)
	if err != nil {
		return 0, fmt.Errorf("capacity %w", err)
	}
	if n > maxCapacity {
		return 0, fmt.Errorf("capacity of %d bytes is larger than the %d supported", n, int64(maxCapacity))
	}
	return n, nil
}

// diskFormat maps a DiskSection ovf:format URI to a registry format name.
func diskFormat(uri string) string {
	u := strings.ToLower(strings.TrimSpace(uri))
	switch {
	case u == "":
		return ""
	case strings.Contains(u, "vmdk"):
		return "vmdk"
	case strings.Contains(u, "qcow"):
		return "qcow2"
	case strings.Contains(u, "bb676673"), strings.Contains(u, "#vhd"), strings.HasSuffix(u, "vhd"):
		return "vhd"
	case strings.Contains(u, "hh831446"), strings.Contains(u, "vhdx"):
		return "vhdx"
	case strings.Contains(u, "ecma-119"), strings.Contains(u, "iso9660"):
		return "raw"
	case strings.Contains(u, "wiki/byte"), strings.Contains(u, "#raw"):
		return "raw"
	case strings.Contains(u, "vdi"):
		return "vdi"
	}
	return ""
}

// nicModels maps ResourceSubType spellings to VMX virtualDev names.
var nicModels = map[string]string{
	"e1000": "e1000", "e1000e": "e1000e", "vmxnet3": "vmxnet3", "vmxnet2": "vmxnet2",
	"vmxnet": "vmxnet", "pcnet32": "vlance", "vlance": "vlance", "virtio": "virtio",
}

// mapNICs reads ResourceType 10 items in order; a NIC without rasd:Address
// takes the MAC of the matching enabled adapter of vbox:Machine.
func (m *mapper) mapNICs() error {
	its := m.resource(10)
	if len(its) > maxDevices {
		return m.errf("%d NICs: more than the %d allowed", len(its), maxDevices)
	}
	var vbox []VBoxAdapter
	if mc := m.vs.Machine; mc != nil {
		for _, a := range mc.Hardware.Adapters {
			if strings.EqualFold(a.Enabled, "true") {
				vbox = append(vbox, a)
			}
		}
		sort.SliceStable(vbox, func(i, j int) bool { return atoiOr(vbox[i].Slot) < atoiOr(vbox[j].Slot) })
	}
	for i, it := range its {
		var nic neutral.NIC
		if a := strings.TrimSpace(it.Address); a != "" {
			mac, err := parseMAC(a)
			if err != nil {
				return m.errf("item %s (NIC): Address %q: %w", clip(it.InstanceID), clip(a), err)
			}
			nic.MAC = mac
		} else if i < len(vbox) && vbox[i].MAC != "" {
			mac, err := parseMAC(vbox[i].MAC)
			if err != nil {
				return m.errf("vbox:Machine adapter slot %s: MACAddress %q: %w", clip(vbox[i].Slot), clip(vbox[i].MAC), err)
			}
			nic.MAC = mac
		}
		for _, c := range it.Connection {
			if c = strings.TrimSpace(c); c != "" {
				nic.Network = clip(c)
				break
			}
		}
		sub := strings.ToLower(strings.TrimSpace(it.ResourceSubType))
		if mdl, ok := nicModels[sub]; ok {
			nic.Model = mdl
		} else if sub != "" {
			nic.Model = clip(sub)
		}
		m.vm.NICs = append(m.vm.NICs, nic)
	}
	return nil
}

func atoiOr(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 1 << 30
	}
	return n
}

// parseMAC accepts 00:50:56:aa:bb:cc, 00-50-56-AA-BB-CC and 005056AABBCC
// (VirtualBox) and returns lower-case colon form.
func parseMAC(s string) (string, error) {
	h := strings.NewReplacer(":", "", "-", "", ".", "").Replace(strings.TrimSpace(s))
	if len(h) != 12 {
		return "", fmt.Errorf("not a MAC address")
	}
	var b strings.Builder
	for i := 0; i < 12; i++ {
		if !isHex(h[i]) {
			return "", fmt.Errorf("not a MAC address")
		}
		if i > 0 && i%2 == 0 {
			b.WriteByte(':')
		}
		b.WriteByte(h[i] | 0x20)
	}
	return b.String(), nil
}
