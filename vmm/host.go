// Package vmm is vmconv's own virtual machine monitor on /dev/kvm: it boots a
// kernel straight into 64-bit mode with the converted disks on virtio-mmio,
// watches the serial console and decides whether the guest came up.
package vmm

import "github.com/vmconv/vmconv/vmm/host"

// Host kinds, as reports name them (see package host).
const (
	HostHardware = host.Hardware
	HostPVM      = host.PVM
	HostEmulated = host.Emulated
	HostNone     = host.None
)

// HostKind says how this host runs KVM guests.
func HostKind() string { return host.Kind() }

func hostKind(dev bool, cpuinfo string, pvm bool) string { return host.Classify(dev, cpuinfo, pvm) }
