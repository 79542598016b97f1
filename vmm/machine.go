package vmm

import (
	"encoding/binary"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/vmm/acpi"
	"github.com/vmconv/vmconv/vmm/devices"
	"github.com/vmconv/vmconv/vmm/guest"
	"github.com/vmconv/vmconv/vmm/kvm"
	"github.com/vmconv/vmconv/vmm/loader"
)

// Guest physical layout (the 64-bit boot protocol, as Firecracker lays it out).
const (
	gdtAddr        = 0x500
	idtAddr        = 0x520
	zeroPageAddr   = 0x7000
	stackTop       = 0x8ff0
	pml4Addr       = 0x9000
	pdptAddr       = 0xa000
	pdAddr         = 0xb000 // four page directories: 4 GiB of 2 MiB pages
	cmdlineAddr    = 0x20000
	cmdlineMax     = 0x10000
	ebdaStart      = 0x9fc00
	acpiAddr       = 0xe0000
	highMemStart   = 0x100000
	mmioGapStart   = 0xc0000000
	virtioBase     = 0xd0000000
	ioapicAddr     = 0xfec00000
	lapicAddr      = 0xfee00000
	identityMap    = 0xfffbc000
	tssAddr        = 0xfffbd000
	fourGiB        = 1 << 32
	uartPort       = 0x3f8
	uartGSI        = 4
	sleepPort      = 0x600
	consoleCmdline = "console=ttyS0"
)

// virtioIRQs are the GSIs of the virtio-mmio transports, one per disk: the
// free ISA lines first, then the IOAPIC's upper pins.
var virtioIRQs = []uint32{5, 6, 7, 9, 10, 11, 12, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23}

// Stop is why a run ended, before the verdict is applied.
type stopReason struct {
	reason string
	// reset is a guest-requested reset or shutdown (i8042, triple fault):
	// a pass already decided stands.
	reset bool
	fault bool
}

type machine struct {
	cfg    *Config
	host   string
	sys    *kvm.System
	vm     *kvm.VM
	mem    *guest.Memory
	vcpus  []*kvm.VCPU
	tids   []atomic.Int64
	pio    devices.Bus
	mmio   devices.Bus
	uart   *devices.UART
	blocks []*devices.Block
	ovls   []*disk.Overlay
	e820   []loader.E820Entry
	cmd    string

	stopOnce sync.Once
	stopped  atomic.Bool
	stopCh   chan struct{}
	why      stopReason
	wg       sync.WaitGroup
}

func (m *machine) stop(r stopReason) {
	m.stopOnce.Do(func() {
		m.why = r
		m.stopped.Store(true)
		close(m.stopCh)
		for i, c := range m.vcpus {
			c.Kick(int(m.tids[i].Load()))
		}
	})
}

func (m *machine) close() {
	for _, c := range m.vcpus {
		c.Close()
	}
	if m.vm != nil {
		m.vm.Close()
	}
	if m.sys != nil {
		m.sys.Close()
	}
	if m.mem != nil {
		m.mem.Close()
	}
	for _, o := range m.ovls {
		o.Close()
	}
}

// memoryLayout splits RAM around the 32-bit MMIO gap.
func memoryLayout(memMiB int64) []guest.Layout {
	size := uint64(memMiB) << 20
	low := min(size, mmioGapStart)
	l := []guest.Layout{{GPA: 0, Size: low}}
	if size > low {
		l = append(l, guest.Layout{GPA: fourGiB, Size: size - low})
	}
	return l
}

func e820Map(layout []guest.Layout) []loader.E820Entry {
	e := []loader.E820Entry{
		{Addr: 0, Size: ebdaStart, Type: loader.E820RAM},
		{Addr: ebdaStart, Size: highMemStart - ebdaStart, Type: loader.E820Reserved},
		{Addr: highMemStart, Size: layout[0].Size - highMemStart, Type: loader.E820RAM},
	}
	if len(layout) > 1 {
		e = append(e, loader.E820Entry{Addr: layout[1].GPA, Size: layout[1].Size, Type: loader.E820RAM})
	}
	return e
}

// newMachine builds the machine for cfg, step by step as a boot loader and
// a board would: the kernel placed, the VM and its memory, the boot
// information (command line, ACPI tables, initrd, zero page, page tables),
// the legacy devices, one virtio-blk per disk, the vCPUs.
func newMachine(cfg *Config, console io.Writer, host string) (_ *machine, err error) {
	m := &machine{cfg: cfg, host: host, stopCh: make(chan struct{})}
	defer func() {
		if err != nil {
			m.close()
		}
	}()
	k, err := loadKernel(cfg.Kernel)
	if err != nil {
		return nil, err
	}
	layout := memoryLayout(cfg.MemoryMiB)
	m.e820 = e820Map(layout)
	kernelEnd, err := kernelFits(k, layout[0].Size, cfg.MemoryMiB)
	if err != nil {
		return nil, err
	}
	if err = m.createVM(layout); err != nil {
		return nil, err
	}
	if err = m.loadSegments(k); err != nil {
		return nil, err
	}
	virt := virtioDevices(len(cfg.Disks))
	if err = m.writeCmdline(virt); err != nil {
		return nil, err
	}
	rsdp, err := m.writeACPI(virt)
	if err != nil {
		return nil, err
	}
	bp := loader.BootParams{CmdlineAddr: cmdlineAddr, CmdlineLen: len(m.cmd), E820: m.e820, RSDP: rsdp}
	if bp.InitrdAddr, bp.InitrdSize, err = m.placeInitrd(min(layout[0].Size, k.InitrdAddrMax+1), kernelEnd); err != nil {
		return nil, err
	}
	if err = m.writeZeroPage(k, bp); err != nil {
		return nil, err
	}
	if err = m.addLegacyDevices(console); err != nil {
		return nil, err
	}
	if err = m.addDisks(virt); err != nil {
		return nil, err
	}
	if err = m.createVCPUs(); err != nil {
		return nil, err
	}
	if err = m.setBSP(m.vcpus[0], k.Entry); err != nil {
		return nil, err
	}
	m.dropLoaderMemory()
	return m, nil
}

// dropLoaderMemory returns what loading took from the heap (the kernel
// file, the initrd: now copied into guest RAM) to the system before the
// guest runs, so the VMM's peak RSS is the guest's pages and little more.
func (m *machine) dropLoaderMemory() {
	m.cfg.Kernel, m.cfg.Initrd = nil, nil
	debug.FreeOSMemory()
}

// kernelFits checks that every kernel segment lies in low RAM above 1 MiB
// and returns where the kernel ends.
func kernelFits(k *loader.Kernel, lowRAM uint64, memMiB int64) (end uint64, err error) {
	for i, s := range k.Segments {
		if s.PAddr < highMemStart || s.PAddr+s.MemSize > lowRAM {
			return 0, fmt.Errorf("vmm: kernel segment %d at %#x+%#x does not fit in low RAM [%#x, %#x) of %d MiB",
				i, s.PAddr, s.MemSize, highMemStart, lowRAM, memMiB)
		}
		end = max(end, s.PAddr+s.MemSize)
	}
	return end, nil
}

// createVM opens /dev/kvm and makes the VM: its TSS and identity map pages,
// the in-kernel interrupt controllers and PIT, and guest RAM per layout.
func (m *machine) createVM(layout []guest.Layout) (err error) {
	if m.sys, err = kvm.Open(); err != nil {
		return &ErrNoKVM{Host: m.host, Err: err}
	}
	if m.vm, err = m.sys.CreateVM(); err != nil {
		return err
	}
	if err = m.vm.SetTSSAddr(tssAddr); err != nil {
		return err
	}
	if m.sys.CheckExtension(kvm.CapSetIdentityMapAddr) > 0 {
		if err = m.vm.SetIdentityMapAddr(identityMap); err != nil {
			return err
		}
	}
	if err = m.vm.CreateIRQChip(); err != nil {
		return err
	}
	if err = m.vm.CreatePIT2(); err != nil {
		return err
	}
	if m.mem, err = guest.Map(layout); err != nil {
		return err
	}
	for i, r := range m.mem.Regions {
		if err = m.vm.SetMemory(uint32(i), r.GPA, r.Data); err != nil {
			return err
		}
	}
	return nil
}

// loadSegments copies the kernel's segments into guest RAM. Their bss
// (past the file data) is left alone: guest RAM is a fresh anonymous
// mapping, zero already, and clearing it would only make its pages resident.
func (m *machine) loadSegments(k *loader.Kernel) error {
	for _, s := range k.Segments {
		b, err := m.mem.Slice(s.PAddr, s.MemSize)
		if err != nil {
			return err
		}
		copy(b, s.Data)
	}
	return nil
}

// virtioDevices places one virtio-mmio transport per disk.
func virtioDevices(n int) []acpi.MMIODevice {
	virt := make([]acpi.MMIODevice, n)
	for i := range virt {
		virt[i] = acpi.MMIODevice{Base: virtioBase + uint64(i)*devices.MMIOSize, Size: devices.MMIOSize, IRQ: virtioIRQs[i]}
	}
	return virt
}

// writeCmdline writes the guest's command line with the serial console and
// the virtio-mmio transports (the kernel finds them there, not by probing).
func (m *machine) writeCmdline(virt []acpi.MMIODevice) error {
	words := []string{withConsole(m.cfg.Cmdline)}
	for _, v := range virt {
		words = append(words, fmt.Sprintf("virtio_mmio.device=4K@%#x:%d", v.Base, v.IRQ))
	}
	m.cmd = strings.TrimSpace(strings.Join(words, " "))
	if len(m.cmd) >= cmdlineMax {
		return fmt.Errorf("vmm: command line of %d bytes is too long", len(m.cmd))
	}
	return m.mem.Write(cmdlineAddr, append([]byte(m.cmd), 0))
}

// writeACPI writes the ACPI tables below 1 MiB and returns the RSDP's address.
func (m *machine) writeACPI(virt []acpi.MMIODevice) (uint64, error) {
	tabs, err := acpi.Build(acpiAddr, acpi.Config{CPUs: m.cfg.CPUs, IOAPICAddr: ioapicAddr, LAPICAddr: lapicAddr,
		UART: true, Virtio: virt, SleepPort: sleepPort})
	if err != nil {
		return 0, err
	}
	if acpiAddr+uint64(len(tabs.Blob)) > highMemStart {
		return 0, fmt.Errorf("vmm: ACPI tables of %d bytes do not fit below 1 MiB", len(tabs.Blob))
	}
	return tabs.RSDP, m.mem.Write(acpiAddr, tabs.Blob)
}

// placeInitrd puts the initrd, if any, page-aligned as high as it may go
// below top and above the kernel, and returns where.
func (m *machine) placeInitrd(top, kernelEnd uint64) (addr, size uint64, err error) {
	if len(m.cfg.Initrd) == 0 {
		return 0, 0, nil
	}
	size = uint64(len(m.cfg.Initrd))
	addr = (top - size) &^ 0xfff
	if size > top || addr < (kernelEnd+0xfff)&^0xfff {
		return 0, 0, fmt.Errorf("vmm: initrd of %d MiB does not fit between the kernel and %#x; give more memory", size>>20, top)
	}
	return addr, size, m.mem.Write(addr, m.cfg.Initrd)
}

// writeZeroPage writes the boot parameters and the identity-mapped page
// tables the 64-bit entry point expects.
func (m *machine) writeZeroPage(k *loader.Kernel, bp loader.BootParams) error {
	zp, err := loader.ZeroPage(k, bp)
	if err != nil {
		return err
	}
	if err = m.mem.Write(zeroPageAddr, zp); err != nil {
		return err
	}
	return m.writePageTables()
}

// irq raises and lowers one GSI of the in-kernel IOAPIC.
func (m *machine) irq(gsi uint32) devices.IRQ {
	return func(level bool) { _ = m.vm.IRQLine(gsi, level) }
}

// addLegacyDevices registers the port-I/O devices a PC kernel expects: the
// serial console, the i8042 (its reset line), the RTC, the PCI host bridge
// and the ACPI sleep control (poweroff).
func (m *machine) addLegacyDevices(console io.Writer) error {
	m.uart = devices.NewUART(console, m.irq(uartGSI))
	reg := []struct {
		name       string
		base, size uint64
		dev        devices.Device
	}{
		{"uart", uartPort, 8, m.uart},
		{"i8042", 0x60, 5, devices.NewI8042(func() { m.stop(stopReason{reason: "guest reset through the i8042", reset: true}) })},
		{"rtc", 0x70, 2, devices.NewRTC(nil)},
		{"pci", 0xcf8, 8, &devices.PCIHost{}},
		{"acpi-sleep", sleepPort, 2, devices.NewSleepControl(func() { m.stop(stopReason{reason: "guest powered off (ACPI S5)", reset: true}) })},
	}
	for _, r := range reg {
		if err := m.pio.Register(r.name, r.base, r.size, r.dev); err != nil {
			return err
		}
	}
	return nil
}

// addDisks puts each disk behind a copy-on-write overlay and attaches it
// as a virtio-blk device; a device error stops the machine as a fault.
func (m *machine) addDisks(virt []acpi.MMIODevice) error {
	for i, d := range m.cfg.Disks {
		var img devices.WritableImage
		if m.cfg.Overlaid {
			w, ok := d.Image.(devices.WritableImage)
			if !ok {
				return fmt.Errorf("vmm: disk %s: an overlaid disk must be writable", d.ID)
			}
			img = w
		} else {
			ov, err := disk.NewOverlay(d.Image)
			if err != nil {
				return fmt.Errorf("vmm: disk %s: %w", d.ID, err)
			}
			m.ovls = append(m.ovls, ov)
			img = ov
		}
		b := devices.NewBlock(m.mem, img, d.ID, m.irq(virt[i].IRQ), func(err error) {
			m.stop(stopReason{reason: err.Error(), fault: true})
		})
		m.blocks = append(m.blocks, b)
		if err := m.mmio.Register("virtio-blk "+d.ID, virt[i].Base, virt[i].Size, b); err != nil {
			return err
		}
	}
	return nil
}

// createVCPUs makes the vCPUs with the CPUID each should see, the MSRs
// and the local APIC's LINT pins set as firmware leaves them.
func (m *machine) createVCPUs() error {
	cpuid, err := m.sys.SupportedCPUID()
	if err != nil {
		return err
	}
	m.tids = make([]atomic.Int64, m.cfg.CPUs)
	for i := 0; i < m.cfg.CPUs; i++ {
		c, err := m.vm.CreateVCPU(i)
		if err != nil {
			return err
		}
		m.vcpus = append(m.vcpus, c)
		if err = c.SetCPUID(vcpuCPUID(cpuid, i, m.cfg.CPUs)); err != nil {
			return err
		}
		setMSRs(c)
		if err = setLINTs(c); err != nil {
			return err
		}
	}
	return nil
}

// withConsole puts the kernel's console on our only serial port unless the
// command line names a console itself.
func withConsole(cmdline string) string {
	for _, w := range strings.Fields(cmdline) {
		if strings.HasPrefix(w, "console=") {
			return cmdline
		}
	}
	return strings.TrimSpace(consoleCmdline + " " + cmdline)
}

func (m *machine) writePageTables() error {
	if err := m.mem.PutUint64(pml4Addr, pdptAddr|3); err != nil {
		return err
	}
	for i := uint64(0); i < 4; i++ {
		if err := m.mem.PutUint64(pdptAddr+8*i, (pdAddr+i*0x1000)|3); err != nil {
			return err
		}
	}
	for j := uint64(0); j < 4*512; j++ {
		if err := m.mem.PutUint64(pdAddr+8*j, j<<21|0x83); err != nil {
			return err
		}
	}
	// GDT: null, null, code 0x10, data 0x18, TSS 0x20.
	gdt := []uint64{0, 0, 0x00af9b000000ffff, 0x00cf93000000ffff, 0x00808b0000000067}
	for i, e := range gdt {
		if err := m.mem.PutUint64(gdtAddr+8*uint64(i), e); err != nil {
			return err
		}
	}
	return nil
}

func (m *machine) setBSP(c *kvm.VCPU, entry uint64) error {
	s, err := c.GetSregs()
	if err != nil {
		return err
	}
	code := kvm.Segment{Base: 0, Limit: 0xffffffff, Selector: 0x10, Type: 11, Present: 1, S: 1, L: 1, G: 1}
	data := kvm.Segment{Base: 0, Limit: 0xffffffff, Selector: 0x18, Type: 3, Present: 1, S: 1, DB: 1, G: 1}
	s.CS = code
	s.DS, s.ES, s.FS, s.GS, s.SS = data, data, data, data, data
	s.TR = kvm.Segment{Base: 0, Limit: 0x67, Selector: 0x20, Type: 11, Present: 1}
	s.GDT = kvm.DTable{Base: gdtAddr, Limit: 5*8 - 1}
	s.IDT = kvm.DTable{Base: idtAddr, Limit: 0}
	s.CR0 = 0x80050033 // PG WP AM NE ET MP PE
	s.CR3 = pml4Addr
	s.CR4 = 0x20   // PAE
	s.EFER = 0x500 // LME LMA
	if err := c.SetSregs(s); err != nil {
		return err
	}
	if err := c.SetRegs(kvm.Regs{RIP: entry, RSI: zeroPageAddr, RSP: stackTop, RBP: stackTop, RFLAGS: 2}); err != nil {
		return err
	}
	return c.SetFPU(kvm.FPU{FCW: 0x37f, MXCSR: 0x1f80})
}

// KVM paravirtual features (leaf 0x40000001 EAX) a kernel looks for.
const (
	kvmFeatureClocksource2    = 1 << 3
	kvmFeatureAsyncPF         = 1 << 4
	kvmFeaturePVEOI           = 1 << 6
	kvmFeatureClocksourceStab = 1 << 24
)

// vcpuCPUID adapts the supported CPUID table for vCPU id of n. The KVM
// leaves (0x40000000 signature, 0x40000001 features: kvm-clock, PV EOI…)
// come from KVM_GET_SUPPORTED_CPUID; a host that leaves them out gets the
// basic set added, since kvm-clock spares the kernel its PIT calibration.
func vcpuCPUID(sup []kvm.CPUIDEntry, id, n int) []kvm.CPUIDEntry {
	var sig, feat bool
	for _, e := range sup {
		sig = sig || e.Function == 0x40000000
		feat = feat || e.Function == 0x40000001
	}
	if !sig {
		sup = append(sup, kvm.CPUIDEntry{Function: 0x40000000, EAX: 0x40000001})
	}
	if !feat {
		sup = append(sup, kvm.CPUIDEntry{Function: 0x40000001,
			EAX: kvmFeatureClocksource2 | kvmFeaturePVEOI | kvmFeatureClocksourceStab})
	}
	out := make([]kvm.CPUIDEntry, 0, len(sup))
	for _, e := range sup {
		switch e.Function {
		case 1:
			e.ECX |= 1 << 31 // hypervisor present
			e.EBX = e.EBX&0x0000ffff | uint32(id)<<24 | uint32(max(n, 1))<<16
			e.EDX |= 1 << 28 // HTT: the logical count above is valid
		case 7:
			if e.Index == 0 {
				e.EDX &^= 1 << 29 // ARCH_CAPABILITIES: its MSR is not writable on every host
			}
		case 0xa:
			e.EAX, e.EBX, e.ECX, e.EDX = 0, 0, 0, 0 // no PMU
		case 0xb, 0x1f:
			e.EDX = uint32(id) // x2APIC ID
		case 0x40000000:
			e.EBX, e.ECX, e.EDX = 0x4b4d564b, 0x564b4d56, 0x4d // "KVMKVMKVM\0\0\0"
			e.EAX = max(e.EAX, 0x40000001)
		}
		out = append(out, e)
	}
	return out
}

// setMSRs writes the boot MSRs Firecracker writes; a host that refuses one
// (PVM refuses some) keeps its default, which kernels cope with.
func setMSRs(c *kvm.VCPU) {
	for _, m := range []kvm.MSR{
		{Index: 0x174}, {Index: 0x175}, {Index: 0x176}, // SYSENTER_CS/ESP/EIP
		{Index: 0xc0000081}, {Index: 0xc0000082}, {Index: 0xc0000083}, {Index: 0xc0000084}, // STAR LSTAR CSTAR SFMASK
		{Index: 0xc0000102},             // KERNEL_GS_BASE
		{Index: 0x10},                   // TSC
		{Index: 0x1a0, Data: 1},         // MISC_ENABLE: fast strings
		{Index: 0x2ff, Data: 1<<11 | 6}, // MTRRdefType: enabled, write-back
	} {
		_ = c.SetMSRs([]kvm.MSR{m})
	}
}

// setLINTs wires LINT0 as ExtINT (the 8259) and LINT1 as NMI.
func setLINTs(c *kvm.VCPU) error {
	l, err := c.GetLAPIC()
	if err != nil {
		return err
	}
	lvt := func(off int, mode uint32) {
		v := binary.LittleEndian.Uint32(l.Regs[off:])
		v = v&^0x700 | mode<<8
		binary.LittleEndian.PutUint32(l.Regs[off:], v)
	}
	lvt(0x350, 7) // ExtINT
	lvt(0x360, 4) // NMI
	return c.SetLAPIC(l)
}

// run starts every vCPU and returns when the machine stops.
func (m *machine) start() {
	for i := range m.vcpus {
		m.wg.Add(1)
		go m.loop(i)
	}
}

func (m *machine) wait() { m.wg.Wait() }

func (m *machine) loop(i int) {
	defer m.wg.Done()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	m.tids[i].Store(int64(unix.Gettid()))
	c := m.vcpus[i]
	defer func() {
		if r := recover(); r != nil {
			m.stop(stopReason{reason: fmt.Sprintf("vmm: vCPU %d: internal error: %v", i, r), fault: true})
		}
	}()
	for !m.stopped.Load() {
		if err := c.Run(); err != nil {
			m.stop(stopReason{reason: err.Error(), fault: true})
			return
		}
		if r, done := m.exit(c); done {
			m.stop(r)
			return
		}
	}
}

// exit handles one exit; done says the run is over.
func (m *machine) exit(c *kvm.VCPU) (stopReason, bool) {
	switch ex := c.ExitReason(); ex {
	case kvm.ExitIO:
		out, port, data, err := c.IO()
		if err != nil {
			return stopReason{reason: err.Error(), fault: true}, true
		}
		// String I/O arrives as count items of the access size.
		size := 1
		if len(data) > 0 {
			size = ioSize(c)
		}
		for off := 0; off+size <= len(data); off += size {
			if out {
				m.pio.Write(uint64(port), data[off:off+size])
			} else {
				m.pio.Read(uint64(port), data[off:off+size])
			}
		}
	case kvm.ExitMMIO:
		addr, data, write := c.MMIO()
		if write {
			m.mmio.Write(addr, data)
		} else {
			m.mmio.Read(addr, data)
		}
	case kvm.ExitIntr:
	case kvm.ExitHLT:
		return stopReason{reason: "guest halted with interrupts off (KVM_EXIT_HLT)", reset: true}, true
	case kvm.ExitShutdown:
		return stopReason{reason: "guest triple fault or shutdown (KVM_EXIT_SHUTDOWN)", reset: true}, true
	case kvm.ExitSystemEvent:
		names := map[uint32]string{1: "shutdown", 2: "reset", 3: "crash"}
		t := c.SystemEvent()
		return stopReason{reason: fmt.Sprintf("guest %s (KVM_EXIT_SYSTEM_EVENT %d)", names[t], t), reset: t != 3, fault: t == 3}, true
	case kvm.ExitInternalError:
		sub, data := c.InternalError()
		what := map[uint32]string{1: "emulation failure", 2: "simultaneous exceptions", 3: "delivery event", 4: "unhandled exit"}[sub]
		rip := ""
		if r, err := c.GetRegs(); err == nil {
			rip = fmt.Sprintf(" at RIP %#x", r.RIP)
		}
		return stopReason{reason: fmt.Sprintf("KVM_EXIT_INTERNAL_ERROR suberror %d (%s) on vCPU %d%s, data %#x, on a %q host: the guest ran an instruction KVM cannot execute here",
			sub, what, c.ID, rip, data, m.host), fault: true}, true
	case kvm.ExitFailEntry:
		return stopReason{reason: fmt.Sprintf("KVM_EXIT_FAIL_ENTRY (hardware reason %#x) on vCPU %d", c.FailEntry(), c.ID), fault: true}, true
	default:
		return stopReason{reason: fmt.Sprintf("unexpected %s on vCPU %d", kvm.ExitName(ex), c.ID), fault: true}, true
	}
	return stopReason{}, false
}

func ioSize(c *kvm.VCPU) int {
	s := c.IOSize()
	if s != 1 && s != 2 && s != 4 {
		return 1
	}
	return s
}
