// Package kvm is a thin layer over the Linux KVM ioctl API: the ioctl numbers
// and structures are defined here from linux/kvm.h (x86-64), the calls go
// through golang.org/x/sys/unix. It knows nothing of devices or boot.
package kvm

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

const kvmio = 0xAE

func io_(nr uintptr) uintptr { return kvmio<<8 | nr }
func iow(nr, size uintptr) uintptr {
	return 1<<30 | size<<16 | kvmio<<8 | nr
}
func ior(nr, size uintptr) uintptr {
	return 2<<30 | size<<16 | kvmio<<8 | nr
}
func iowr(nr, size uintptr) uintptr {
	return 3<<30 | size<<16 | kvmio<<8 | nr
}

// Ioctl numbers (linux/kvm.h).
var (
	kvmGetAPIVersion       = io_(0x00)
	kvmCreateVM            = io_(0x01)
	kvmCheckExtension      = io_(0x03)
	kvmGetVCPUMmapSize     = io_(0x04)
	kvmGetSupportedCPUID   = iowr(0x05, 8)
	kvmCreateVCPU          = io_(0x41)
	kvmSetUserMemoryRegion = iow(0x46, unsafe.Sizeof(MemoryRegion{}))
	kvmSetTSSAddr          = io_(0x47)
	kvmSetIdentityMapAddr  = iow(0x48, 8)
	kvmCreateIRQChip       = io_(0x60)
	kvmIRQLine             = iow(0x61, 8)
	kvmIRQFD               = iow(0x76, 32)
	kvmCreatePIT2          = iow(0x77, 64)
	kvmIOEventFD           = iow(0x79, 64)
	kvmRun                 = io_(0x80)
	kvmGetRegs             = ior(0x81, unsafe.Sizeof(Regs{}))
	kvmSetRegs             = iow(0x82, unsafe.Sizeof(Regs{}))
	kvmGetSregs            = ior(0x83, unsafe.Sizeof(Sregs{}))
	kvmSetSregs            = iow(0x84, unsafe.Sizeof(Sregs{}))
	kvmSetMSRs             = iow(0x89, 8)
	kvmSetFPU              = iow(0x8d, unsafe.Sizeof(FPU{}))
	kvmGetLAPIC            = ior(0x8e, unsafe.Sizeof(LAPICState{}))
	kvmSetLAPIC            = iow(0x8f, unsafe.Sizeof(LAPICState{}))
	kvmSetCPUID2           = iow(0x90, 8)
	kvmGetMPState          = ior(0x98, 4)
)

// Capabilities (KVM_CAP_*).
const (
	CapIRQChip                   = 0
	CapUserMemory                = 3
	CapSetTSSAddr                = 4
	CapExtCPUID                  = 7
	CapPIT2                      = 33
	CapIRQFD                     = 32
	CapIOEventFD                 = 36
	CapSetIdentityMapAddr        = 37
	CapTSCDeadlineTimer          = 72
	CapImmediateExit             = 136
	pitSpeakerDummy       uint32 = 1
)

// Exit reasons (KVM_EXIT_*).
const (
	ExitUnknown       = 0
	ExitException     = 1
	ExitIO            = 2
	ExitHypercall     = 3
	ExitDebug         = 4
	ExitHLT           = 5
	ExitMMIO          = 6
	ExitIRQWindowOpen = 7
	ExitShutdown      = 8
	ExitFailEntry     = 9
	ExitIntr          = 10
	ExitNMI           = 16
	ExitInternalError = 17
	ExitSystemEvent   = 24
)

var exitNames = map[uint32]string{
	ExitUnknown: "KVM_EXIT_UNKNOWN", ExitException: "KVM_EXIT_EXCEPTION", ExitIO: "KVM_EXIT_IO",
	ExitHypercall: "KVM_EXIT_HYPERCALL", ExitDebug: "KVM_EXIT_DEBUG", ExitHLT: "KVM_EXIT_HLT",
	ExitMMIO: "KVM_EXIT_MMIO", ExitIRQWindowOpen: "KVM_EXIT_IRQ_WINDOW_OPEN", ExitShutdown: "KVM_EXIT_SHUTDOWN",
	ExitFailEntry: "KVM_EXIT_FAIL_ENTRY", ExitIntr: "KVM_EXIT_INTR", ExitNMI: "KVM_EXIT_NMI",
	ExitInternalError: "KVM_EXIT_INTERNAL_ERROR", ExitSystemEvent: "KVM_EXIT_SYSTEM_EVENT",
}

// ExitName names an exit reason as linux/kvm.h does.
func ExitName(r uint32) string {
	if n, ok := exitNames[r]; ok {
		return n
	}
	return fmt.Sprintf("KVM_EXIT_%d", r)
}

// MP states.
const (
	MPStateRunnable      = 0
	MPStateUninitialized = 1
	MPStateInitReceived  = 2
	MPStateHalted        = 3
	MPStateSIPIReceived  = 4
)

// MemoryRegion is struct kvm_userspace_memory_region.
type MemoryRegion struct {
	Slot          uint32
	Flags         uint32
	GuestPhysAddr uint64
	MemorySize    uint64
	UserspaceAddr uint64
}

// Regs is struct kvm_regs.
type Regs struct {
	RAX, RBX, RCX, RDX, RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11, R12, R13, R14, R15   uint64
	RIP, RFLAGS                            uint64
}

// Segment is struct kvm_segment.
type Segment struct {
	Base                           uint64
	Limit                          uint32
	Selector                       uint16
	Type                           uint8
	Present, DPL, DB, S, L, G, AVL uint8
	Unusable                       uint8
	_                              uint8
}

// DTable is struct kvm_dtable.
type DTable struct {
	Base  uint64
	Limit uint16
	_     [3]uint16
}

// Sregs is struct kvm_sregs.
type Sregs struct {
	CS, DS, ES, FS, GS, SS  Segment
	TR, LDT                 Segment
	GDT, IDT                DTable
	CR0, CR2, CR3, CR4, CR8 uint64
	EFER                    uint64
	APICBase                uint64
	InterruptBitmap         [4]uint64
}

// FPU is struct kvm_fpu.
type FPU struct {
	FPR        [8][16]uint8
	FCW        uint16
	FSW        uint16
	FTWX       uint8
	_          uint8
	LastOpcode uint16
	LastIP     uint64
	LastDP     uint64
	XMM        [16][16]uint8
	MXCSR      uint32
	_          uint32
}

// LAPICState is struct kvm_lapic_state: the 1 KiB register page.
type LAPICState struct {
	Regs [1024]byte
}

// CPUIDEntry is struct kvm_cpuid_entry2.
type CPUIDEntry struct {
	Function uint32
	Index    uint32
	Flags    uint32
	EAX      uint32
	EBX      uint32
	ECX      uint32
	EDX      uint32
	_        [3]uint32
}

// CPUIDFlagSignificantIndex marks entries whose Index matters.
const CPUIDFlagSignificantIndex = 1

const maxCPUID = 256

type cpuid2 struct {
	Nent    uint32
	_       uint32
	Entries [maxCPUID]CPUIDEntry
}

// MSR is struct kvm_msr_entry.
type MSR struct {
	Index uint32
	_     uint32
	Data  uint64
}

const maxMSRs = 32

type msrs struct {
	N       uint32
	_       uint32
	Entries [maxMSRs]MSR
}

type irqLevel struct {
	IRQ   uint32
	Level uint32
}

type pitConfig struct {
	Flags uint32
	_     [15]uint32
}

type irqfd struct {
	FD         uint32
	GSI        uint32
	Flags      uint32
	ResampleFD uint32
	_          [16]uint8
}

type ioeventfd struct {
	Datamatch uint64
	Addr      uint64
	Len       uint32
	FD        int32
	Flags     uint32
	_         [36]uint8
}

// IOEventFD flags.
const (
	IOEventFDDatamatch = 1 << 0
	IOEventFDPIO       = 1 << 1
)

func ioctl(fd int, req, arg uintptr) (uintptr, error) {
	r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
	if e != 0 {
		return r, e
	}
	return r, nil
}

// System is an open /dev/kvm.
type System struct {
	fd int
}

// DevicePath is where KVM lives.
const DevicePath = "/dev/kvm"

// Open opens /dev/kvm and checks the API version.
func Open() (*System, error) {
	fd, err := unix.Open(DevicePath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", DevicePath, err)
	}
	v, err := ioctl(fd, kvmGetAPIVersion, 0)
	if err != nil || v != 12 {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: KVM API version %d (%v), want 12", DevicePath, v, err)
	}
	return &System{fd: fd}, nil
}

// Close closes the system handle.
func (s *System) Close() error { return unix.Close(s.fd) }

// CheckExtension returns KVM_CHECK_EXTENSION's answer (0 = unsupported).
func (s *System) CheckExtension(c uintptr) int {
	r, err := ioctl(s.fd, kvmCheckExtension, c)
	if err != nil {
		return 0
	}
	return int(r)
}

// SupportedCPUID returns KVM_GET_SUPPORTED_CPUID.
func (s *System) SupportedCPUID() ([]CPUIDEntry, error) {
	c := new(cpuid2)
	c.Nent = maxCPUID
	if _, err := ioctl(s.fd, kvmGetSupportedCPUID, uintptr(unsafe.Pointer(c))); err != nil {
		return nil, fmt.Errorf("KVM_GET_SUPPORTED_CPUID: %w", err)
	}
	n := min(int(c.Nent), maxCPUID)
	return append([]CPUIDEntry(nil), c.Entries[:n]...), nil
}

// VM is one virtual machine.
type VM struct {
	sys      *System
	fd       int
	mmapSize int
}

// CreateVM creates a VM.
func (s *System) CreateVM() (*VM, error) {
	fd, err := ioctl(s.fd, kvmCreateVM, 0)
	if err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VM: %w", err)
	}
	sz, err := ioctl(s.fd, kvmGetVCPUMmapSize, 0)
	if err != nil {
		unix.Close(int(fd))
		return nil, fmt.Errorf("KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	return &VM{sys: s, fd: int(fd), mmapSize: int(sz)}, nil
}

// Close closes the VM.
func (vm *VM) Close() error { return unix.Close(vm.fd) }

// SetTSSAddr sets the 3-page TSS region (needed by Intel without unrestricted guest).
func (vm *VM) SetTSSAddr(addr uint64) error {
	if _, err := ioctl(vm.fd, kvmSetTSSAddr, uintptr(addr)); err != nil {
		return fmt.Errorf("KVM_SET_TSS_ADDR %#x: %w", addr, err)
	}
	return nil
}

// SetIdentityMapAddr sets the identity-map page.
func (vm *VM) SetIdentityMapAddr(addr uint64) error {
	a := addr
	if _, err := ioctl(vm.fd, kvmSetIdentityMapAddr, uintptr(unsafe.Pointer(&a))); err != nil {
		return fmt.Errorf("KVM_SET_IDENTITY_MAP_ADDR %#x: %w", addr, err)
	}
	return nil
}

// CreateIRQChip creates the in-kernel PIC, IOAPIC and LAPICs.
func (vm *VM) CreateIRQChip() error {
	if _, err := ioctl(vm.fd, kvmCreateIRQChip, 0); err != nil {
		return fmt.Errorf("KVM_CREATE_IRQCHIP: %w", err)
	}
	return nil
}

// CreatePIT2 creates the in-kernel i8254 (speaker port left to user space).
func (vm *VM) CreatePIT2() error {
	c := pitConfig{Flags: pitSpeakerDummy}
	if _, err := ioctl(vm.fd, kvmCreatePIT2, uintptr(unsafe.Pointer(&c))); err != nil {
		return fmt.Errorf("KVM_CREATE_PIT2: %w", err)
	}
	return nil
}

// SetMemory maps host memory mem at guest physical gpa in slot.
func (vm *VM) SetMemory(slot uint32, gpa uint64, mem []byte) error {
	r := MemoryRegion{Slot: slot, GuestPhysAddr: gpa, MemorySize: uint64(len(mem)),
		UserspaceAddr: uint64(uintptr(unsafe.Pointer(&mem[0])))}
	if _, err := ioctl(vm.fd, kvmSetUserMemoryRegion, uintptr(unsafe.Pointer(&r))); err != nil {
		return fmt.Errorf("KVM_SET_USER_MEMORY_REGION slot %d at %#x size %#x: %w", slot, gpa, len(mem), err)
	}
	return nil
}

// IRQLine sets a GSI's level.
func (vm *VM) IRQLine(gsi uint32, level bool) error {
	l := irqLevel{IRQ: gsi}
	if level {
		l.Level = 1
	}
	if _, err := ioctl(vm.fd, kvmIRQLine, uintptr(unsafe.Pointer(&l))); err != nil {
		return fmt.Errorf("KVM_IRQ_LINE %d: %w", gsi, err)
	}
	return nil
}

// IRQFD makes a write to eventfd efd inject an edge on gsi.
func (vm *VM) IRQFD(efd int, gsi uint32) error {
	a := irqfd{FD: uint32(efd), GSI: gsi}
	if _, err := ioctl(vm.fd, kvmIRQFD, uintptr(unsafe.Pointer(&a))); err != nil {
		return fmt.Errorf("KVM_IRQFD gsi %d: %w", gsi, err)
	}
	return nil
}

// IOEventFD makes a guest write of length n at addr signal efd without an exit.
func (vm *VM) IOEventFD(efd int, addr uint64, n uint32, pio bool) error {
	a := ioeventfd{Addr: addr, Len: n, FD: int32(efd)}
	if pio {
		a.Flags |= IOEventFDPIO
	}
	if _, err := ioctl(vm.fd, kvmIOEventFD, uintptr(unsafe.Pointer(&a))); err != nil {
		return fmt.Errorf("KVM_IOEVENTFD %#x: %w", addr, err)
	}
	return nil
}

// VCPU is one virtual CPU with its shared kvm_run page.
type VCPU struct {
	ID  int
	fd  int
	run []byte
}

// CreateVCPU creates vCPU id and maps its kvm_run structure.
func (vm *VM) CreateVCPU(id int) (*VCPU, error) {
	fd, err := ioctl(vm.fd, kvmCreateVCPU, uintptr(id))
	if err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VCPU %d: %w", id, err)
	}
	run, err := unix.Mmap(int(fd), 0, vm.mmapSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(int(fd))
		return nil, fmt.Errorf("mmap kvm_run of vCPU %d: %w", id, err)
	}
	return &VCPU{ID: id, fd: int(fd), run: run}, nil
}

// Close unmaps and closes the vCPU.
func (c *VCPU) Close() error {
	err := unix.Munmap(c.run)
	return errors.Join(err, unix.Close(c.fd))
}

// Run enters the guest until the next exit. EINTR is not an error: the exit
// reason is then ExitIntr.
func (c *VCPU) Run() error {
	_, err := ioctl(c.fd, kvmRun, 0)
	// EINTR: a signal (our kick); EAGAIN: an application processor still
	// waiting for its INIT/SIPI. Both mean "run it again", as QEMU and
	// Firecracker do; the loop checks for a stop in between.
	if err == unix.EINTR || err == unix.EAGAIN {
		*(*uint32)(unsafe.Pointer(&c.run[8])) = ExitIntr
		return nil
	}
	if err != nil {
		return fmt.Errorf("KVM_RUN vCPU %d: %w", c.ID, err)
	}
	return nil
}

// SetImmediateExit makes the next (or current, after a signal) KVM_RUN return at once.
func (c *VCPU) SetImmediateExit(v bool) {
	var b byte
	if v {
		b = 1
	}
	c.run[1] = b
}

// ExitReason is kvm_run.exit_reason.
func (c *VCPU) ExitReason() uint32 { return *(*uint32)(unsafe.Pointer(&c.run[8])) }

// The exit union starts at offset 32 of kvm_run.
const runUnion = 32

// IO describes a KVM_EXIT_IO: direction out, access size, port, count, and
// the data buffer inside kvm_run (size*count bytes).
func (c *VCPU) IO() (out bool, port uint16, data []byte, err error) {
	u := c.run[runUnion:]
	dir, size := u[0], int(u[1])
	port = *(*uint16)(unsafe.Pointer(&u[2]))
	count := int(*(*uint32)(unsafe.Pointer(&u[4])))
	off := *(*uint64)(unsafe.Pointer(&u[8]))
	n := size * count
	if off > uint64(len(c.run)) || uint64(n) > uint64(len(c.run))-off {
		return false, 0, nil, fmt.Errorf("KVM_EXIT_IO data at %#x+%d outside kvm_run", off, n)
	}
	return dir == 1, port, c.run[off : off+uint64(n)], nil
}

// IOSize is the access size of a KVM_EXIT_IO.
func (c *VCPU) IOSize() int { return int(c.run[runUnion+1]) }

// MMIO describes a KVM_EXIT_MMIO; data is the 8-byte buffer cut to len.
func (c *VCPU) MMIO() (addr uint64, data []byte, write bool) {
	u := c.run[runUnion:]
	addr = *(*uint64)(unsafe.Pointer(&u[0]))
	n := min(int(*(*uint32)(unsafe.Pointer(&u[16]))), 8)
	return addr, u[8 : 8+n], u[20] != 0
}

// InternalError returns KVM_EXIT_INTERNAL_ERROR's suberror and data words.
func (c *VCPU) InternalError() (sub uint32, data []uint64) {
	u := c.run[runUnion:]
	sub = *(*uint32)(unsafe.Pointer(&u[0]))
	n := min(int(*(*uint32)(unsafe.Pointer(&u[4]))), 16)
	for i := 0; i < n; i++ {
		data = append(data, *(*uint64)(unsafe.Pointer(&u[8+8*i])))
	}
	return sub, data
}

// FailEntry returns KVM_EXIT_FAIL_ENTRY's hardware reason.
func (c *VCPU) FailEntry() uint64 { return *(*uint64)(unsafe.Pointer(&c.run[runUnion])) }

// SystemEvent returns KVM_EXIT_SYSTEM_EVENT's type (1 shutdown, 2 reset, 3 crash).
func (c *VCPU) SystemEvent() uint32 { return *(*uint32)(unsafe.Pointer(&c.run[runUnion])) }

func (c *VCPU) do(name string, req uintptr, p unsafe.Pointer) error {
	if _, err := ioctl(c.fd, req, uintptr(p)); err != nil {
		return fmt.Errorf("%s vCPU %d: %w", name, c.ID, err)
	}
	return nil
}

// GetRegs reads the general registers.
func (c *VCPU) GetRegs() (Regs, error) {
	var r Regs
	err := c.do("KVM_GET_REGS", kvmGetRegs, unsafe.Pointer(&r))
	return r, err
}

// SetRegs writes the general registers.
func (c *VCPU) SetRegs(r Regs) error { return c.do("KVM_SET_REGS", kvmSetRegs, unsafe.Pointer(&r)) }

// GetSregs reads the special registers.
func (c *VCPU) GetSregs() (Sregs, error) {
	var s Sregs
	err := c.do("KVM_GET_SREGS", kvmGetSregs, unsafe.Pointer(&s))
	return s, err
}

// SetSregs writes the special registers.
func (c *VCPU) SetSregs(s Sregs) error { return c.do("KVM_SET_SREGS", kvmSetSregs, unsafe.Pointer(&s)) }

// SetFPU writes the FPU state.
func (c *VCPU) SetFPU(f FPU) error { return c.do("KVM_SET_FPU", kvmSetFPU, unsafe.Pointer(&f)) }

// GetLAPIC reads the local APIC registers.
func (c *VCPU) GetLAPIC() (LAPICState, error) {
	var l LAPICState
	err := c.do("KVM_GET_LAPIC", kvmGetLAPIC, unsafe.Pointer(&l))
	return l, err
}

// SetLAPIC writes the local APIC registers.
func (c *VCPU) SetLAPIC(l LAPICState) error {
	return c.do("KVM_SET_LAPIC", kvmSetLAPIC, unsafe.Pointer(&l))
}

// MPState returns KVM_GET_MP_STATE.
func (c *VCPU) MPState() (uint32, error) {
	var s uint32
	err := c.do("KVM_GET_MP_STATE", kvmGetMPState, unsafe.Pointer(&s))
	return s, err
}

// SetCPUID installs the CPUID table.
func (c *VCPU) SetCPUID(entries []CPUIDEntry) error {
	if len(entries) > maxCPUID {
		return fmt.Errorf("KVM_SET_CPUID2: %d entries, at most %d", len(entries), maxCPUID)
	}
	t := new(cpuid2)
	t.Nent = uint32(len(entries))
	copy(t.Entries[:], entries)
	return c.do("KVM_SET_CPUID2", kvmSetCPUID2, unsafe.Pointer(t))
}

// SetMSRs writes model-specific registers; all must be accepted.
func (c *VCPU) SetMSRs(list []MSR) error {
	if len(list) > maxMSRs {
		return fmt.Errorf("KVM_SET_MSRS: %d entries, at most %d", len(list), maxMSRs)
	}
	m := new(msrs)
	m.N = uint32(len(list))
	copy(m.Entries[:], list)
	n, err := ioctl(c.fd, kvmSetMSRs, uintptr(unsafe.Pointer(m)))
	if err != nil {
		return fmt.Errorf("KVM_SET_MSRS vCPU %d: %w", c.ID, err)
	}
	if int(n) != len(list) {
		return fmt.Errorf("KVM_SET_MSRS vCPU %d: MSR %#x refused", c.ID, list[n].Index)
	}
	return nil
}

// Kick makes the thread tid (running KVM_RUN for c) leave the guest: it sets
// immediate_exit and sends a signal the Go runtime ignores harmlessly.
func (c *VCPU) Kick(tid int) {
	c.SetImmediateExit(true)
	if tid > 0 {
		_ = unix.Tgkill(os.Getpid(), tid, unix.SIGURG)
	}
}

var _ = runtime.GOOS

// NewDetachedVCPU returns a vCPU with no kernel object behind it, whose
// kvm_run page is run: exit handling can be exercised by filling the page
// as KVM would. Its ioctls fail.
func NewDetachedVCPU(id int, run []byte) *VCPU { return &VCPU{ID: id, fd: -1, run: run} }
