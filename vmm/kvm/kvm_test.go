package kvm

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/internal/testutil"
)

// TestABIAgainstHeaders compiles a C program against the system's linux/kvm.h
// and compares every ioctl number and structure size we define by hand.
func TestABIAgainstHeaders(t *testing.T) {
	gcc := testutil.RequireTool(t, "gcc")
	if _, err := os.Stat("/usr/include/linux/kvm.h"); err != nil {
		testutil.Unavailable(t, "linux/kvm.h not installed (linux-libc-dev)")
	}
	ours := map[string]uint64{
		"KVM_GET_API_VERSION": uint64(kvmGetAPIVersion), "KVM_CREATE_VM": uint64(kvmCreateVM),
		"KVM_CHECK_EXTENSION": uint64(kvmCheckExtension), "KVM_GET_VCPU_MMAP_SIZE": uint64(kvmGetVCPUMmapSize),
		"KVM_GET_SUPPORTED_CPUID": uint64(kvmGetSupportedCPUID), "KVM_CREATE_VCPU": uint64(kvmCreateVCPU),
		"KVM_SET_USER_MEMORY_REGION": uint64(kvmSetUserMemoryRegion), "KVM_SET_TSS_ADDR": uint64(kvmSetTSSAddr),
		"KVM_SET_IDENTITY_MAP_ADDR": uint64(kvmSetIdentityMapAddr), "KVM_CREATE_IRQCHIP": uint64(kvmCreateIRQChip),
		"KVM_IRQ_LINE": uint64(kvmIRQLine), "KVM_IRQFD": uint64(kvmIRQFD), "KVM_CREATE_PIT2": uint64(kvmCreatePIT2),
		"KVM_IOEVENTFD": uint64(kvmIOEventFD), "KVM_RUN": uint64(kvmRun), "KVM_GET_REGS": uint64(kvmGetRegs),
		"KVM_SET_REGS": uint64(kvmSetRegs), "KVM_GET_SREGS": uint64(kvmGetSregs), "KVM_SET_SREGS": uint64(kvmSetSregs),
		"KVM_SET_MSRS": uint64(kvmSetMSRs), "KVM_SET_FPU": uint64(kvmSetFPU), "KVM_GET_LAPIC": uint64(kvmGetLAPIC),
		"KVM_SET_LAPIC": uint64(kvmSetLAPIC), "KVM_SET_CPUID2": uint64(kvmSetCPUID2), "KVM_GET_MP_STATE": uint64(kvmGetMPState),
		"KVM_EXIT_IO": ExitIO, "KVM_EXIT_HLT": ExitHLT, "KVM_EXIT_MMIO": ExitMMIO, "KVM_EXIT_SHUTDOWN": ExitShutdown,
		"KVM_EXIT_FAIL_ENTRY": ExitFailEntry, "KVM_EXIT_INTR": ExitIntr, "KVM_EXIT_INTERNAL_ERROR": ExitInternalError,
		"KVM_EXIT_SYSTEM_EVENT": ExitSystemEvent, "KVM_MP_STATE_UNINITIALIZED": MPStateUninitialized,
		"KVM_CAP_IRQCHIP": CapIRQChip, "KVM_CAP_PIT2": CapPIT2, "KVM_CAP_IRQFD": CapIRQFD,
		"KVM_CAP_IOEVENTFD": CapIOEventFD, "KVM_CAP_SET_IDENTITY_MAP_ADDR": CapSetIdentityMapAddr,
		"KVM_CAP_IMMEDIATE_EXIT": CapImmediateExit, "KVM_CAP_TSC_DEADLINE_TIMER": CapTSCDeadlineTimer,
		"sizeof(struct kvm_regs)": uint64(unsafe.Sizeof(Regs{})), "sizeof(struct kvm_sregs)": uint64(unsafe.Sizeof(Sregs{})),
		"sizeof(struct kvm_fpu)": uint64(unsafe.Sizeof(FPU{})), "sizeof(struct kvm_segment)": uint64(unsafe.Sizeof(Segment{})),
		"sizeof(struct kvm_cpuid_entry2)": uint64(unsafe.Sizeof(CPUIDEntry{})), "sizeof(struct kvm_msr_entry)": uint64(unsafe.Sizeof(MSR{})),
		"sizeof(struct kvm_irqfd)": uint64(unsafe.Sizeof(irqfd{})), "sizeof(struct kvm_ioeventfd)": uint64(unsafe.Sizeof(ioeventfd{})),
		"sizeof(struct kvm_pit_config)": uint64(unsafe.Sizeof(pitConfig{})),
		"offsetof(struct kvm_run, io)":  runUnion, "offsetof(struct kvm_run, exit_reason)": 8,
		"offsetof(struct kvm_run, immediate_exit)": 1,
		"offsetof(struct kvm_run, io.direction)":   runUnion, "offsetof(struct kvm_run, io.size)": runUnion + 1,
		"offsetof(struct kvm_run, io.port)": runUnion + 2, "offsetof(struct kvm_run, io.count)": runUnion + 4,
		"offsetof(struct kvm_run, io.data_offset)": runUnion + 8, "offsetof(struct kvm_run, mmio.phys_addr)": runUnion,
		"offsetof(struct kvm_run, mmio.data)": runUnion + 8, "offsetof(struct kvm_run, mmio.len)": runUnion + 16,
		"offsetof(struct kvm_run, mmio.is_write)": runUnion + 20, "offsetof(struct kvm_run, internal.suberror)": runUnion,
		"offsetof(struct kvm_run, internal.ndata)": runUnion + 4, "offsetof(struct kvm_run, internal.data)": runUnion + 8,
		"offsetof(struct kvm_run, system_event.type)": runUnion, "offsetof(struct kvm_run, fail_entry.hardware_entry_failure_reason)": runUnion,
		"KVM_EXIT_IO_OUT": 1, "KVM_SYSTEM_EVENT_RESET": 2, "KVM_SYSTEM_EVENT_SHUTDOWN": 1, "KVM_SYSTEM_EVENT_CRASH": 3,
		"sizeof(struct kvm_lapic_state)": uint64(unsafe.Sizeof(LAPICState{})), "sizeof(struct kvm_userspace_memory_region)": uint64(unsafe.Sizeof(MemoryRegion{})),
		"sizeof(struct kvm_dtable)": uint64(unsafe.Sizeof(DTable{})), "offsetof(struct kvm_sregs, efer)": uint64(unsafe.Offsetof(Sregs{}.EFER)),
		"offsetof(struct kvm_sregs, gdt)": uint64(unsafe.Offsetof(Sregs{}.GDT)), "offsetof(struct kvm_fpu, mxcsr)": uint64(unsafe.Offsetof(FPU{}.MXCSR)),
		"offsetof(struct kvm_cpuid2, entries)": uint64(unsafe.Offsetof(cpuid2{}.Entries)), "offsetof(struct kvm_msrs, entries)": uint64(unsafe.Offsetof(msrs{}.Entries)),
	}
	var src strings.Builder
	src.WriteString("#include <stdio.h>\n#include <stddef.h>\n#include <linux/kvm.h>\nint main(void){\n")
	names := make([]string, 0, len(ours))
	for k := range ours {
		names = append(names, k)
		src.WriteString("printf(\"%s=%llu\\n\", \"" + k + "\", (unsigned long long)(" + k + "));\n")
	}
	src.WriteString("return 0;}\n")
	dir := t.TempDir()
	c := filepath.Join(dir, "abi.c")
	require.NoError(t, os.WriteFile(c, []byte(src.String()), 0o644))
	exe := filepath.Join(dir, "abi")
	testutil.Run(t, gcc, "-o", exe, c)
	out, err := exec.Command(exe).Output()
	require.NoError(t, err)
	got := map[string]uint64{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(l, "=")
		n, err := strconv.ParseUint(v, 10, 64)
		require.NoError(t, err)
		got[k] = n
	}
	for _, k := range names {
		assert.Equal(t, got[k], ours[k], "%s: header says %#x, we say %#x", k, got[k], ours[k])
	}
}

func TestExitName(t *testing.T) {
	assert.Equal(t, "KVM_EXIT_INTERNAL_ERROR", ExitName(17))
	assert.Equal(t, "KVM_EXIT_99", ExitName(99))
}
