package ovf

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/vmconv/vmconv/formats/neutral"
)

// The structures below write a descriptor as ovftool does: OVF 1.0 with
// the default namespace and ovf:, rasd:, vssd:, vmw: prefixes. Tags carry
// the prefix literally; the root declares the namespaces.

const (
	nsOVF  = "http://schemas.dmtf.org/ovf/envelope/1"
	nsRASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
	nsVSSD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
	nsVMW  = "http://www.vmware.com/schema/ovf"
	nsCIM  = "http://schemas.dmtf.org/wbem/wscim/1/common"
	nsXSI  = "http://www.w3.org/2001/XMLSchema-instance"

	// StreamOptimizedURI is the DiskSection format of the disks written.
	StreamOptimizedURI = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
)

type wEnvelope struct {
	XMLName    xml.Name    `xml:"Envelope"`
	Xmlns      string      `xml:"xmlns,attr"`
	XmlnsCIM   string      `xml:"xmlns:cim,attr"`
	XmlnsOVF   string      `xml:"xmlns:ovf,attr"`
	XmlnsRASD  string      `xml:"xmlns:rasd,attr"`
	XmlnsVMW   string      `xml:"xmlns:vmw,attr"`
	XmlnsVSSD  string      `xml:"xmlns:vssd,attr"`
	XmlnsXSI   string      `xml:"xmlns:xsi,attr"`
	References []wFile     `xml:"References>File"`
	Disks      *wDiskSect  `xml:"DiskSection"`
	Networks   *wNetSect   `xml:"NetworkSection"`
	System     wVirtualSys `xml:"VirtualSystem"`
}

type wFile struct {
	Href string `xml:"ovf:href,attr"`
	ID   string `xml:"ovf:id,attr"`
	Size int64  `xml:"ovf:size,attr"`
}

type wDiskSect struct {
	Info  string  `xml:"Info"`
	Disks []wDisk `xml:"Disk"`
}

type wDisk struct {
	Capacity      int64  `xml:"ovf:capacity,attr"`
	Units         string `xml:"ovf:capacityAllocationUnits,attr"`
	DiskID        string `xml:"ovf:diskId,attr"`
	FileRef       string `xml:"ovf:fileRef,attr"`
	Format        string `xml:"ovf:format,attr"`
	PopulatedSize int64  `xml:"ovf:populatedSize,attr"`
}

type wNetSect struct {
	Info     string     `xml:"Info"`
	Networks []wNetwork `xml:"Network"`
}

type wNetwork struct {
	Name        string `xml:"ovf:name,attr"`
	Description string `xml:"Description"`
}

type wVirtualSys struct {
	ID         string       `xml:"ovf:id,attr"`
	Info       string       `xml:"Info"`
	Name       string       `xml:"Name"`
	Annotation *wAnnotation `xml:"AnnotationSection"`
	OS         wOS          `xml:"OperatingSystemSection"`
	Hardware   wHardware    `xml:"VirtualHardwareSection"`
}

type wAnnotation struct {
	Info       string `xml:"Info"`
	Annotation string `xml:"Annotation"`
}

type wOS struct {
	ID          int    `xml:"ovf:id,attr"`
	OSType      string `xml:"vmw:osType,attr,omitempty"`
	Info        string `xml:"Info"`
	Description string `xml:"Description,omitempty"`
}

type wHardware struct {
	Info    string       `xml:"Info"`
	System  wSystem      `xml:"System"`
	Items   []wItem      `xml:"Item"`
	Configs []wVMWConfig `xml:"vmw:Config"`
}

type wSystem struct {
	ElementName string `xml:"vssd:ElementName"`
	InstanceID  int    `xml:"vssd:InstanceID"`
	Identifier  string `xml:"vssd:VirtualSystemIdentifier"`
	Type        string `xml:"vssd:VirtualSystemType"`
}

// wItem is a rasd: item; fields are in the schema's alphabetical order, as
// the CIM schema (and ovftool) want them.
type wItem struct {
	Required            string       `xml:"ovf:required,attr,omitempty"`
	Address             string       `xml:"rasd:Address,omitempty"`
	AddressOnParent     string       `xml:"rasd:AddressOnParent,omitempty"`
	AllocationUnits     string       `xml:"rasd:AllocationUnits,omitempty"`
	AutomaticAllocation string       `xml:"rasd:AutomaticAllocation,omitempty"`
	Connection          string       `xml:"rasd:Connection,omitempty"`
	Description         string       `xml:"rasd:Description,omitempty"`
	ElementName         string       `xml:"rasd:ElementName"`
	HostResource        string       `xml:"rasd:HostResource,omitempty"`
	InstanceID          int          `xml:"rasd:InstanceID"`
	Parent              string       `xml:"rasd:Parent,omitempty"`
	ResourceSubType     string       `xml:"rasd:ResourceSubType,omitempty"`
	ResourceType        int          `xml:"rasd:ResourceType"`
	VirtualQuantity     string       `xml:"rasd:VirtualQuantity,omitempty"`
	CoresPerSocket      *wCores      `xml:"vmw:CoresPerSocket,omitempty"`
	Configs             []wVMWConfig `xml:"vmw:Config"`
}

type wCores struct {
	Required string `xml:"ovf:required,attr"`
	Value    int    `xml:",chardata"`
}

type wVMWConfig struct {
	Required string `xml:"ovf:required,attr"`
	Key      string `xml:"vmw:key,attr"`
	Value    string `xml:"vmw:value,attr"`
}

// PackageFile is a file of the package written beside the descriptor.
type PackageFile struct {
	Name string // file name in the package
	Size int64  // bytes
	// Populated is the disk's allocated bytes (ovf:populatedSize).
	Populated int64
}

// slotPlan places each drive on a controller.
type slotPlan struct {
	bus        string
	ctrl, unit int
}

// writeBuses are the buses written, with their OVF controller.
var writeBuses = map[string]struct {
	rt      int
	subtype string
	units   int
}{
	"ide":  {5, "PIIX4", 2},
	"scsi": {6, "lsilogic", 16},
	"sata": {20, "vmware.sata.ahci", 30},
	"nvme": {20, "vmware.nvme.controller", 64},
}

// planSlots keeps each drive's bus and unit where OVF has that bus;
// other disks go to SCSI controller 0, other CD-ROMs to IDE.
func planSlots(vm *neutral.VM) ([]slotPlan, error) {
	out := make([]slotPlan, len(vm.Disks))
	used := map[slotPlan]bool{}
	placed := make([]bool, len(vm.Disks))
	for i, d := range vm.Disks {
		wb, ok := writeBuses[d.Bus]
		if !ok {
			continue
		}
		s := slotPlan{bus: d.Bus, ctrl: d.Unit / unitStride[d.Bus], unit: d.Unit % unitStride[d.Bus]}
		if s.ctrl > 3 || s.unit >= wb.units || (s.bus == "scsi" && s.unit == 7) || used[s] {
			continue
		}
		out[i], placed[i], used[s] = s, true, true
	}
	for i, d := range vm.Disks {
		if placed[i] {
			continue
		}
		bus := "scsi"
		if d.Device == "cdrom" {
			bus = "ide"
		}
		found := false
		for c := 0; c < 4 && !found; c++ {
			for u := 0; u < writeBuses[bus].units && !found; u++ {
				s := slotPlan{bus: bus, ctrl: c, unit: u}
				if !used[s] && !(bus == "scsi" && u == 7) {
					out[i], used[s], found = s, true, true
				}
			}
		}
		if !found {
			return nil, fmt.Errorf("ovf: vm %q: drive %s: no free %s slot", vm.Name, d.ID, bus)
		}
	}
	return out, nil
}

// descriptor builds the .ovf for vm. files runs parallel to vm.Disks:
// the package file holding each drive's content ("" Name for none).
func descriptor(vm *neutral.VM, files []PackageFile, hwVersion int) ([]byte, error) {
	slots, err := planSlots(vm)
	if err != nil {
		return nil, err
	}
	env := wEnvelope{Xmlns: nsOVF, XmlnsCIM: nsCIM, XmlnsOVF: nsOVF, XmlnsRASD: nsRASD, XmlnsVMW: nsVMW,
		XmlnsVSSD: nsVSSD, XmlnsXSI: nsXSI}
	b := &builder{vm: vm, env: &env, slots: slots, files: files, nextID: 1}
	b.system(hwVersion)
	b.cpuMemory()
	b.controllers()
	b.drives()
	b.nics()
	b.firmware()
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	enc := xml.NewEncoder(&buf)
	enc.Indent("", "  ")
	if err := enc.Encode(&env); err != nil {
		return nil, fmt.Errorf("ovf: vm %q: %w", vm.Name, err)
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// builder fills a descriptor, one step per kind of record.
type builder struct {
	vm     *neutral.VM
	env    *wEnvelope
	slots  []slotPlan
	files  []PackageFile
	nextID int
	ctrlID map[[2]int]int // (bus rank, ctrl) → InstanceID
}

func (b *builder) item(it wItem) {
	it.InstanceID = b.nextID
	b.nextID++
	b.env.System.Hardware.Items = append(b.env.System.Hardware.Items, it)
}

// system writes the VirtualSystem's identity, OS and annotation.
func (b *builder) system(hwVersion int) {
	vm := b.vm
	vs := &b.env.System
	vs.ID, vs.Info, vs.Name = vm.Name, "A virtual machine", vm.Name
	if a := vm.Extensions.VMware["annotation"]; a != "" {
		vs.Annotation = &wAnnotation{Info: "A human-readable annotation", Annotation: a}
	}
	osType := osTypeFor(vm.GuestOS)
	vs.OS = wOS{ID: cimOSID(osType), OSType: osType, Info: "The kind of installed guest operating system",
		Description: vm.GuestOS}
	vs.Hardware.Info = "Virtual hardware requirements"
	vs.Hardware.System = wSystem{ElementName: "Virtual Hardware Family", Identifier: vm.Name,
		Type: fmt.Sprintf("vmx-%02d", hwVersion)}
}

func (b *builder) cpuMemory() {
	cpu := wItem{AllocationUnits: "hertz * 10^6", Description: "Number of Virtual CPUs",
		ElementName: fmt.Sprintf("%d virtual CPU(s)", b.vm.CPUs), ResourceType: 3, VirtualQuantity: strconv.Itoa(b.vm.CPUs)}
	if b.vm.CoresPerSocket > 1 {
		cpu.CoresPerSocket = &wCores{Required: "false", Value: b.vm.CoresPerSocket}
	}
	b.item(cpu)
	b.item(wItem{AllocationUnits: "byte * 2^20", Description: "Memory Size",
		ElementName: fmt.Sprintf("%dMB of memory", b.vm.MemoryMiB), ResourceType: 4,
		VirtualQuantity: strconv.FormatInt(b.vm.MemoryMiB, 10)})
}

var busRank = map[string]int{"ide": 0, "scsi": 1, "sata": 2, "nvme": 3}

// controllers writes one controller item per (bus, number) in use. The
// SCSI model is the VMX source's scsiN.virtualDev when the VM has one.
func (b *builder) controllers() {
	b.ctrlID = map[[2]int]int{}
	for _, bus := range []string{"ide", "scsi", "sata", "nvme"} {
		for c := 0; c < 4; c++ {
			inUse := false
			for _, s := range b.slots {
				inUse = inUse || (s.bus == bus && s.ctrl == c)
			}
			if !inUse {
				continue
			}
			wb := writeBuses[bus]
			sub := wb.subtype
			if bus == "scsi" {
				sub = scsiSubtype(b.vm.Extensions.VMware[fmt.Sprintf("scsi%d.virtualDev", c)])
			}
			b.ctrlID[[2]int{busRank[bus], c}] = b.nextID
			b.item(wItem{Address: strconv.Itoa(c), Description: strings.ToUpper(bus) + " Controller",
				ElementName: fmt.Sprintf("%s Controller %d", strings.ToUpper(bus), c), ResourceSubType: sub, ResourceType: wb.rt})
		}
	}
}

func scsiSubtype(dev string) string {
	switch strings.ToLower(dev) {
	case "pvscsi":
		return "VirtualSCSI"
	case "lsisas1068":
		return "lsilogicsas"
	case "buslogic":
		return "buslogic"
	}
	return "lsilogic"
}

// drives writes the disks (with their DiskSection entries and files) and
// the CD-ROM drives.
func (b *builder) drives() {
	nDisk := 0
	for i, d := range b.vm.Disks {
		s := b.slots[i]
		parent := strconv.Itoa(b.ctrlID[[2]int{busRank[s.bus], s.ctrl}])
		f := b.files[i]
		fileID := ""
		if f.Name != "" {
			fileID = fmt.Sprintf("file%d", len(b.env.References)+1)
			b.env.References = append(b.env.References, wFile{Href: f.Name, ID: fileID, Size: f.Size})
		}
		if d.Device == "cdrom" {
			it := wItem{AddressOnParent: strconv.Itoa(s.unit), AutomaticAllocation: "false",
				ElementName: fmt.Sprintf("CD/DVD drive %d", i+1), Parent: parent, ResourceType: 15}
			if fileID != "" {
				it.HostResource, it.AutomaticAllocation = "ovf:/file/"+fileID, "true"
			}
			b.item(it)
			continue
		}
		nDisk++
		if b.env.Disks == nil {
			b.env.Disks = &wDiskSect{Info: "Virtual disk information"}
		}
		diskID := fmt.Sprintf("vmdisk%d", nDisk)
		b.env.Disks.Disks = append(b.env.Disks.Disks, wDisk{Capacity: d.CapacityBytes, Units: "byte", DiskID: diskID,
			FileRef: fileID, Format: StreamOptimizedURI, PopulatedSize: f.Populated})
		b.item(wItem{AddressOnParent: strconv.Itoa(s.unit), ElementName: fmt.Sprintf("Hard disk %d", nDisk),
			HostResource: "ovf:/disk/" + diskID, Parent: parent, ResourceType: 17})
	}
}

// nicSubtypes maps neutral NIC models to OVF ResourceSubType; others
// become E1000, which vSphere, VirtualBox and every guest know.
var nicSubtypes = map[string]string{"e1000": "E1000", "e1000e": "E1000e", "vmxnet3": "VmxNet3",
	"vlance": "PCNet32", "pcnet32": "PCNet32", "vmxnet2": "Vmxnet2", "vmxnet": "Vmxnet"}

// nics writes the NICs with their MACs and the NetworkSection.
func (b *builder) nics() {
	seen := map[string]bool{}
	for i, n := range b.vm.NICs {
		net := n.Network
		if net == "" {
			net = "VM Network"
		}
		if !seen[net] {
			seen[net] = true
			if b.env.Networks == nil {
				b.env.Networks = &wNetSect{Info: "The list of logical networks"}
			}
			b.env.Networks.Networks = append(b.env.Networks.Networks, wNetwork{Name: net, Description: "The " + net + " network"})
		}
		sub := nicSubtypes[strings.ToLower(n.Model)]
		if sub == "" {
			sub = "E1000"
		}
		it := wItem{AddressOnParent: strconv.Itoa(7 + i), AutomaticAllocation: "true", Connection: net,
			Description: sub + " ethernet adapter on \"" + net + "\"", ElementName: fmt.Sprintf("Network adapter %d", i+1),
			ResourceSubType: sub, ResourceType: 10}
		if n.MAC != "" {
			it.Address = strings.ToLower(n.MAC)
		}
		b.item(it)
	}
}

func (b *builder) firmware() {
	fw := "bios"
	if b.vm.Firmware == "uefi" {
		fw = "efi"
	}
	b.env.System.Hardware.Configs = append(b.env.System.Hardware.Configs, wVMWConfig{Required: "false", Key: "firmware", Value: fw})
}

var vmxIDShape = regexp.MustCompile(`^[a-z0-9-]+$`)

// osTypeFor maps a VMX guestOS id ("ubuntu-64", "other4xlinux-64",
// "windows9-64") to the vSphere guest id vmw:osType wants
// ("ubuntu64Guest", "other4xLinux64Guest", "windows9_64Guest"); hints
// from elsewhere become otherGuest64 / otherLinux64Guest.
func osTypeFor(g string) string {
	l := strings.ToLower(strings.TrimSpace(g))
	if strings.HasSuffix(g, "Guest") {
		return g // already a vSphere id
	}
	if !vmxIDShape.MatchString(l) || l == "" {
		if strings.Contains(l, "linux") || strings.Contains(l, "debian") || strings.Contains(l, "ubuntu") {
			return "otherLinux64Guest"
		}
		return "otherGuest64"
	}
	base, is64 := strings.CutSuffix(l, "-64")
	base = strings.Replace(base, "linux", "Linux", 1)
	switch {
	case base == "other" && is64:
		return "otherGuest64"
	case !is64:
		return base + "Guest"
	case base[len(base)-1] >= '0' && base[len(base)-1] <= '9':
		return base + "_64Guest"
	}
	return base + "64Guest"
}

// cimOSID is the CIM_OperatingSystem id for a vSphere guest id: the
// Linux, Windows and other families, as ovftool writes them.
func cimOSID(osType string) int {
	l := strings.ToLower(osType)
	switch {
	case strings.HasPrefix(l, "ubuntu"):
		return 94
	case strings.HasPrefix(l, "debian"):
		return 96
	case strings.HasPrefix(l, "win"):
		return 1
	case strings.Contains(l, "linux"), strings.HasPrefix(l, "rhel"), strings.HasPrefix(l, "centos"),
		strings.HasPrefix(l, "sles"), strings.HasPrefix(l, "fedora"):
		return 101
	}
	return 102
}
