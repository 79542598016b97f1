// Package vmm is vmconv's own virtual machine monitor on /dev/kvm: it boots a
// kernel straight into 64-bit mode with the converted disks on virtio-mmio,
// watches the serial console and decides whether the guest came up.
//
// The machine is built in steps (newMachine): guest RAM and the in-kernel
// interrupt controllers, the kernel and its boot information (command
// line, ACPI tables, initrd, zero page, page tables), the legacy port
// devices (serial console, i8042 reset, RTC, a PCI host bridge, ACPI sleep),
// one virtio-blk per disk behind a copy-on-write overlay, and the vCPUs.
// Every guest-supplied address and length is checked by the device that
// receives it; a guest that misbehaves ends its own run with a named reason.
//
// It needs a /dev/kvm backed by hardware virtualization (HostKind
// "hardware"). Its tests run on one: on this host when it has one, else in
// the KVM lab (package lab), where QEMU's TCG emulates AMD-V and Debian's
// stock kernel gives a real /dev/kvm. They never skip.
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
