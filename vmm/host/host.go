// Package host says what this machine's /dev/kvm can do, for both
// verification engines and their reports.
package host

import (
	"os"
	"strings"
)

// Kinds, as reports name them.
const (
	// Hardware: /dev/kvm backed by VT-x or AMD-V; any kernel runs at speed.
	Hardware = "hardware"
	// PVM: /dev/kvm served by PVM (no hardware virtualization); ordinary
	// guest code is emulated instruction by instruction.
	PVM = "pvm"
	// Emulated: /dev/kvm present without vmx/svm and without PVM.
	Emulated = "emulated"
	// None: no usable /dev/kvm.
	None = "none"
)

// Kind says how this host runs KVM guests.
func Kind() string {
	usable := false
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err == nil {
		f.Close()
		usable = true
	}
	cpuinfo, _ := os.ReadFile("/proc/cpuinfo")
	_, pvmErr := os.Stat("/sys/module/kvm_pvm")
	return Classify(usable, string(cpuinfo), pvmErr == nil)
}

// Classify is Kind from what it reads: whether /dev/kvm opens, the text of
// /proc/cpuinfo, and whether the kvm_pvm module is present.
func Classify(dev bool, cpuinfo string, pvm bool) string {
	if !dev {
		return None
	}
	for _, line := range strings.Split(cpuinfo, "\n") {
		if !strings.HasPrefix(line, "flags") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if f == "vmx" || f == "svm" {
				return Hardware
			}
		}
	}
	if pvm {
		return PVM
	}
	return Emulated
}
