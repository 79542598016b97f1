// Package vmm is vmconv's own virtual machine monitor on /dev/kvm: it boots a
// kernel straight into 64-bit mode with the converted disks on virtio-mmio,
// watches the serial console and decides whether the guest came up.
package vmm

import (
	"os"
	"strings"
)

// Host kinds, as reports name them.
const (
	// HostHardware: /dev/kvm backed by VT-x or AMD-V; any kernel runs at speed.
	HostHardware = "hardware"
	// HostPVM: /dev/kvm served by PVM (no hardware virtualization); ordinary
	// guest code is emulated instruction by instruction.
	HostPVM = "pvm"
	// HostEmulated: /dev/kvm present without vmx/svm and without PVM.
	HostEmulated = "emulated"
	// HostNone: no /dev/kvm.
	HostNone = "none"
)

// HostKind says how this host runs KVM guests.
func HostKind() string {
	_, err := os.Stat("/dev/kvm")
	cpuinfo, _ := os.ReadFile("/proc/cpuinfo")
	_, pvmErr := os.Stat("/sys/module/kvm_pvm")
	return hostKind(err == nil, string(cpuinfo), pvmErr == nil)
}

func hostKind(dev bool, cpuinfo string, pvm bool) string {
	if !dev {
		return HostNone
	}
	for _, line := range strings.Split(cpuinfo, "\n") {
		if !strings.HasPrefix(line, "flags") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if f == "vmx" || f == "svm" {
				return HostHardware
			}
		}
	}
	if pvm {
		return HostPVM
	}
	return HostEmulated
}
