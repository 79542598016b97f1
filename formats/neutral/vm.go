// Package neutral holds the hypervisor-neutral VM description (vm.json) every
// VM format maps to, and the bundle NAME.vmb/ stored on disk.
//
// A bundle directory holds
//
//	vm.json                 the VM (ParseVM, VM.MarshalIndent)
//	disks/<id>.json         per disk: virtual size, chunk size (1 MiB), digest
//	                        and the ordered chunk list (see chunklist.go)
//	chunks/<hh>/<sha256>    zstd frames named by the SHA-256 of their
//	                        uncompressed bytes; all-zero chunks are absent
//
// The chunk directory may live elsewhere and be shared by many bundles
// (BundleOptions.Store); the chunk lists say where. NAME.vmb.tar holds the
// same tree in one archive. Every chunk is verified against its name when it
// is read, and every disk is a random-access disk.Image (OpenBundle).
package neutral

import (
	"errors"

	"github.com/vmconv/vmconv/disk"
)

// Schema is the vm.json schema version this package reads and writes.
const Schema = 1

// VM is a virtual machine in neutral terms. The JSON field names are fixed:
// scripts rely on them. Add fields freely; rename none.
type VM struct {
	Schema         int        `json:"schema"`
	Name           string     `json:"name"`
	UUID           string     `json:"uuid,omitempty"`
	Firmware       string     `json:"firmware"` // "bios" or "uefi"
	CPUs           int        `json:"cpus"`
	CoresPerSocket int        `json:"cores_per_socket"`
	MemoryMiB      int64      `json:"memory_mib"`
	GuestOS        string     `json:"guest_os,omitempty"`
	Disks          []Disk     `json:"disks"`
	NICs           []NIC      `json:"nics"`
	Boot           *Boot      `json:"boot,omitempty"`
	Source         *Source    `json:"source,omitempty"`
	Extensions     Extensions `json:"extensions"`
}

// Disk is one disk or CD-ROM drive of the VM, in the VM's order.
type Disk struct {
	ID            string `json:"id"`
	Device        string `json:"device"` // "disk" or "cdrom"
	Bus           string `json:"bus"`    // "scsi", "sata", "ide", "nvme", "xen", "virtio"
	Unit          int    `json:"unit"`
	CapacityBytes int64  `json:"capacity_bytes"`
	Bootable      bool   `json:"bootable"`
	ReadOnly      bool   `json:"read_only"`
	Digest        string `json:"digest,omitempty"`
	// Missing marks a disk whose file the VM names but which is not there
	// (a .vmx copied off its datastore, an .ovf without its disks): the VM
	// can still be described, not converted or booted. Image is nil.
	Missing bool `json:"missing,omitempty"`
	// File is the disk file the source names, resolved against the VM's
	// directory; set for a Missing disk so the user sees what to fetch.
	File string `json:"file,omitempty"`
	// Image is the disk's content when the VM is open; nil for an empty
	// CD-ROM drive. Not part of vm.json.
	Image disk.Image `json:"-"`
}

// NIC is one network interface; MAC is kept exactly as the source wrote it
// (lower-case, colon-separated).
type NIC struct {
	MAC     string `json:"mac"`
	Network string `json:"network,omitempty"`
	Model   string `json:"model,omitempty"`
}

// Boot is a direct-boot kernel as Xen PV guests have it.
type Boot struct {
	Kernel  string `json:"kernel,omitempty"`
	Initrd  string `json:"initrd,omitempty"`
	Cmdline string `json:"cmdline,omitempty"`
}

// Source says where the VM was read from.
type Source struct {
	Format string `json:"format"`
	File   string `json:"file"`
}

// Extensions keeps, verbatim, what only one hypervisor knows, so a VM that goes
// out and comes back loses nothing.
type Extensions struct {
	// VMware holds every VMX key not modelled above, key → value.
	VMware map[string]string `json:"vmware,omitempty"`
	// Xen holds every ova.xml field not modelled above; values are
	// JSON-compatible (string, float64, bool, []any, map[string]any).
	Xen map[string]any `json:"xen,omitempty"`
}

// Close closes every open disk image of the VM.
func (vm *VM) Close() error {
	var errs []error
	for i := range vm.Disks {
		if vm.Disks[i].Image != nil {
			errs = append(errs, vm.Disks[i].Image.Close())
			vm.Disks[i].Image = nil
		}
	}
	return errors.Join(errs...)
}
