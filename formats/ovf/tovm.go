package ovf

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/vmconv/vmconv/formats/neutral"
)

// Format is the neutral Source.Format of VMs read from an .ovf; OVAFormat
// of those read from an .ova.
const (
	Format    = "ovf"
	OVAFormat = "ova"
)

// Limits on what a descriptor may ask for.
const (
	maxCPUs      = 4096
	maxMemoryMiB = 1 << 24 // 16 TiB
	maxDevices   = 1024
)

// Content says where a drive's content comes from.
type Content struct {
	// Href is the file of the package holding it; "" for a blank disk or an
	// empty CD-ROM drive.
	Href string
	// Size is the file's ovf:size, -1 when not given.
	Size int64
	// DiskFormat is the registry name of the file's format ("vmdk", "raw",
	// "qcow2", "vhd", …), "" when the descriptor does not say.
	DiskFormat string
	// Compression is the file's ovf:compression ("gzip") or "".
	Compression string
	// ChunkSize is the file's ovf:chunkSize: stored as HREF.000000000,
	// HREF.000000001, … of this size (the last shorter); 0 when it is not.
	ChunkSize int64
	// Blank marks a disk without a file: zeros of its capacity.
	Blank bool
}

// Mapped is a descriptor mapped to a neutral VM whose drives have no
// content yet, with where each drive's content is.
type Mapped struct {
	VM *neutral.VM
	// Contents runs parallel to VM.Disks.
	Contents []Content
	// Warnings are things the user should know (a collection of which only
	// the first system was taken, a configuration chosen).
	Warnings []string
}

// mapper carries one descriptor through the mapping steps.
type mapper struct {
	file     string
	env      *Envelope
	vs       *VirtualSystem
	items    []Item // of the chosen configuration, in document order
	vm       *neutral.VM
	contents []Content
	warnings []string
	vmware   map[string]string // VMX keys for Extensions.VMware
}

func (m *mapper) errf(format string, args ...any) error {
	return fmt.Errorf("ovf %s: "+format, append([]any{m.file}, args...)...)
}

// ToVM maps a parsed descriptor (read from file, named in errors) to a
// neutral VM. The drives have capacities but no Image.
func ToVM(env *Envelope, file string) (*Mapped, error) {
	m := &mapper{file: file, env: env, vmware: map[string]string{}}
	if err := m.pickSystem(); err != nil {
		return nil, err
	}
	m.pickItems()
	m.vm = &neutral.VM{Schema: neutral.Schema, Firmware: "bios", CPUs: 1, CoresPerSocket: 1, MemoryMiB: 1024,
		Disks: []neutral.Disk{}, NICs: []neutral.NIC{}}
	steps := []func() error{m.mapIdentity, m.mapCPUs, m.mapMemory, m.mapFirmware, m.mapGuestOS,
		m.mapDrives, m.mapNICs, m.mapExtensions}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	if err := m.vm.Validate(); err != nil {
		return nil, m.errf("%w", err)
	}
	return &Mapped{VM: m.vm, Contents: m.contents, Warnings: m.warnings}, nil
}

// pickSystem finds the VirtualSystem: the envelope's own, or the first of a
// collection (with a warning: vmconv converts one VM at a time).
func (m *mapper) pickSystem() error {
	if m.env.System != nil {
		m.vs = m.env.System
		return nil
	}
	c := m.env.Collection
	for depth := 0; c != nil && depth < 32; depth++ {
		n := countSystems(c, 0)
		if len(c.Systems) > 0 {
			m.vs = &c.Systems[0]
			if n > 1 {
				m.warnings = append(m.warnings, fmt.Sprintf("VirtualSystemCollection %q holds %d virtual systems; only the first, %q, is read",
					c.ID, n, m.vs.ID))
			}
			return nil
		}
		if len(c.Collections) == 0 {
			break
		}
		c = &c.Collections[0]
	}
	return m.errf("no VirtualSystem in the envelope")
}

func countSystems(c *Collection, depth int) int {
	n := len(c.Systems)
	if depth < 32 {
		for i := range c.Collections {
			n += countSystems(&c.Collections[i], depth+1)
		}
	}
	return n
}

// pickItems keeps the items of the first hardware section that belong to
// the default deployment configuration (the one marked ovf:default, else
// the first); items naming only other configurations are dropped.
func (m *mapper) pickItems() {
	if len(m.vs.Hardware) == 0 {
		return
	}
	config := ""
	for i, c := range m.env.Configs {
		if i == 0 || strings.EqualFold(c.Default, "true") {
			config = c.ID
		}
	}
	if config != "" && len(m.env.Configs) > 1 {
		m.warnings = append(m.warnings, fmt.Sprintf("deployment configuration %q (the default of %d) is read", config, len(m.env.Configs)))
	}
	for _, it := range m.vs.Hardware[0].Items {
		if it.Configuration != "" && !containsField(it.Configuration, config) {
			continue
		}
		if b := strings.ToLower(it.Bound); b != "" && b != "normal" {
			continue // min/max ranges of a resource
		}
		m.items = append(m.items, it)
	}
}

func containsField(list, v string) bool {
	for _, f := range strings.Fields(list) {
		if f == v {
			return true
		}
	}
	return false
}

// resource returns the items of one ResourceType, in order.
func (m *mapper) resource(types ...int) []*Item {
	var out []*Item
	for i := range m.items {
		it := &m.items[i]
		if k := it.Kind(); k != kindItem && k != kindStorage && k != kindEthernet {
			continue
		}
		rt, err := strconv.Atoi(strings.TrimSpace(it.ResourceType))
		if err != nil {
			continue
		}
		for _, t := range types {
			if rt == t {
				out = append(out, it)
			}
		}
	}
	return out
}

// vmwConfig is the value of a hardware-level vmw:Config (or ExtraConfig)
// key, or "".
func (m *mapper) vmwConfig(kind, key string) string {
	for i := range m.items {
		if m.items[i].Kind() == kind && m.items[i].Key == key {
			return m.items[i].Value
		}
	}
	return ""
}

func (m *mapper) mapIdentity() error {
	vm := m.vm
	vm.Name = strings.TrimSpace(m.vs.Name)
	if vm.Name == "" {
		vm.Name = strings.TrimSpace(m.vs.ID)
	}
	if vm.Name == "" && m.vs.Machine != nil {
		vm.Name = m.vs.Machine.Name
	}
	if vm.Name == "" {
		vm.Name = "vm"
	}
	if mc := m.vs.Machine; mc != nil {
		u := strings.Trim(strings.TrimSpace(mc.UUID), "{}")
		if uuidShape(u) {
			vm.UUID = strings.ToLower(u)
		}
	}
	if u := m.vmwConfig(kindExtra, "uuid.bios"); vm.UUID == "" && u != "" {
		if s := vmwareUUID(u); s != "" {
			vm.UUID = s
		}
	}
	return nil
}

// mapCPUs reads ResourceType 3: VirtualQuantity vCPUs and vmw:CoresPerSocket;
// vbox:Machine's CPU count when the section has none.
func (m *mapper) mapCPUs() error {
	its := m.resource(3)
	if len(its) == 0 {
		if mc := m.vs.Machine; mc != nil {
			cpu := mc.Hardware.CPU
			if cpu == nil && mc.Platform != nil {
				cpu = mc.Platform.CPU
			}
			if cpu != nil {
				if n, err := strconv.Atoi(cpu.Count); err == nil && n >= 1 && n <= maxCPUs {
					m.vm.CPUs = n
				}
			}
		}
		return nil
	}
	it := its[0]
	n, err := strconv.Atoi(strings.TrimSpace(it.VirtualQuantity))
	if err != nil || n < 1 || n > maxCPUs {
		return m.errf("item %s (CPU): VirtualQuantity %q: want 1–%d vCPUs", it.InstanceID, clip(it.VirtualQuantity), maxCPUs)
	}
	m.vm.CPUs = n
	if c := strings.TrimSpace(it.CoresPerSocket); c != "" {
		k, err := strconv.Atoi(c)
		if err != nil || k < 1 || k > n || n%k != 0 {
			return m.errf("item %s (CPU): CoresPerSocket %q does not divide %d vCPUs", it.InstanceID, clip(c), n)
		}
		m.vm.CoresPerSocket = k
	}
	return nil
}

// mapMemory reads ResourceType 4 with its AllocationUnits (default MiB as
// VirtualBox and older exporters assume), rounded up to MiB.
func (m *mapper) mapMemory() error {
	its := m.resource(4)
	if len(its) == 0 {
		if mc := m.vs.Machine; mc != nil && mc.Hardware.Memory != nil {
			if n, err := strconv.ParseInt(mc.Hardware.Memory.RAMSize, 10, 64); err == nil && n >= 1 && n <= maxMemoryMiB {
				m.vm.MemoryMiB = n
			}
		}
		return nil
	}
	it := its[0]
	unit := int64(1 << 20)
	if strings.TrimSpace(it.AllocationUnits) != "" {
		u, err := ParseUnits(it.AllocationUnits)
		if err != nil {
			return m.errf("item %s (memory): %w", it.InstanceID, err)
		}
		unit = u
	}
	b, err := scaled(it.VirtualQuantity, unit)
	if err != nil {
		return m.errf("item %s (memory): VirtualQuantity %w", it.InstanceID, err)
	}
	mib := (b + (1<<20 - 1)) >> 20
	if mib < 1 || mib > maxMemoryMiB {
		return m.errf("item %s (memory): %d MiB out of range (1–%d)", it.InstanceID, mib, maxMemoryMiB)
	}
	m.vm.MemoryMiB = mib
	return nil
}

// mapFirmware: vmw:Config firmware (efi/bios) at hardware level; else
// VirtualBox's Firmware type.
func (m *mapper) mapFirmware() error {
	switch v := strings.ToLower(m.vmwConfig(kindConfig, "firmware")); v {
	case "efi", "uefi":
		m.vm.Firmware = "uefi"
		return nil
	case "", "bios":
	default:
		return m.errf("vmw:Config firmware=%q: want efi or bios", clip(v))
	}
	if mc := m.vs.Machine; mc != nil && mc.Hardware.Firmware != nil &&
		strings.HasPrefix(strings.ToUpper(mc.Hardware.Firmware.Type), "EFI") {
		m.vm.Firmware = "uefi"
	}
	return nil
}

// mapGuestOS takes vmw:osType (as the VMX guestOS id), else VirtualBox's
// OS type, else the section's description.
func (m *mapper) mapGuestOS() error {
	os := m.vs.OS
	switch {
	case os != nil && os.OSType != "":
		m.vm.GuestOS = vmxGuestOS(os.OSType)
	case os != nil && os.VBoxOSType != "":
		m.vm.GuestOS = strings.TrimSpace(os.VBoxOSType)
	case m.vs.Machine != nil && m.vs.Machine.OSType != "":
		m.vm.GuestOS = m.vs.Machine.OSType
	case os != nil:
		m.vm.GuestOS = strings.TrimSpace(os.Description)
	}
	m.vm.GuestOS = clip(m.vm.GuestOS)
	return nil
}

// vmxGuestOS turns a vSphere guest id ("ubuntu64Guest", "windows9_64Guest")
// into the VMX guestOS spelling ("ubuntu-64", "windows9-64").
func vmxGuestOS(t string) string {
	s := strings.TrimSuffix(strings.TrimSpace(t), "Guest")
	switch {
	case strings.HasSuffix(s, "_64"):
		s = strings.TrimSuffix(s, "_64") + "-64"
	case strings.HasSuffix(s, "64") && len(s) > 2:
		s = strings.TrimSuffix(s, "64") + "-64"
	}
	if s == "" || s == "-64" {
		return strings.TrimSpace(t)
	}
	return strings.ToLower(s)
}

// mapExtensions keeps what VMware's side knows and the neutral VM does not
// model: the annotation and vmw:ExtraConfig entries (VMX keys), so a VM
// that goes to VMX gets them.
func (m *mapper) mapExtensions() error {
	ext := m.vmware
	if a := strings.TrimSpace(m.vs.Annotation); a != "" {
		ext["annotation"] = a
	}
	for i := range m.items {
		it := &m.items[i]
		if it.Kind() == kindExtra && vmxKey(it.Key) && !strings.EqualFold(it.Key, "uuid.bios") {
			ext[it.Key] = it.Value
		}
	}
	if len(ext) > 0 {
		m.vm.Extensions.VMware = ext
	}
	return nil
}

// vmxKey reports whether k can be a VMX key: printable ASCII without
// blanks, '=' or '#', at most 256 bytes.
func vmxKey(k string) bool {
	if k == "" || len(k) > 256 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c < 0x21 || c > 0x7e || c == '=' || c == '#' || c == '"' {
			return false
		}
	}
	return true
}

func uuidShape(u string) bool {
	if len(u) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := u[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
			continue
		}
		if !isHex(c) {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// vmwareUUID turns VMware's "56 4d … 2a-9c …" spelling into a canonical UUID,
// or "".
func vmwareUUID(v string) string {
	var hex []byte
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case isHex(c):
			hex = append(hex, c|0x20)
		case c == ' ' || c == '-':
		default:
			return ""
		}
	}
	if len(hex) != 32 {
		return ""
	}
	h := string(hex)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// clip shortens untrusted text for messages and hints.
func clip(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}
