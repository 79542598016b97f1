// Package xva reads and writes XVA archives, the VM exports of XenServer,
// XCP-ng (xe vm-export) and Xen Orchestra: a tar holding ova.xml (XML-RPC
// dumps of xapi records) followed by each disk in 1 MiB chunks, each chunk
// followed by its checksum file. See shared/formats/xva.md for the format.
//
// # Reading
//
// NewStreamReader reads in one pass from a file or a pipe, plain or gzip- or
// zstd-compressed; Open indexes an uncompressed file for random access
// (compressed files give ErrCompressed: read them as a stream, or decompress
// them to a temporary file first); Check verifies a whole file. Every chunk
// is checked against its .checksum (SHA-1) or .xxhash (XXH64) file; a
// mismatch is an error wrapping ErrChecksum naming the VDI and chunk. Chunks
// are placed by xapi's importer rule, so 0-byte keep-alive entries are
// handled; absent chunks are zeros (Unallocated extents).
//
// # Mapping to neutral.VM
//
// name_label, uuid, VCPUs_max, platform:cores-per-socket, memory_static_max
// (rounded up to MiB), HVM_boot_params:firmware and PV_kernel/PV_ramdisk/
// PV_args are modelled; other_config:base_template_name is copied into
// guest_os as a hint. Drives are the VM's VBDs in userdevice order: bus
// "xen", unit = userdevice, CD or disk, bootable, mode RO → read_only,
// capacity = VDI virtual_size. NICs are its VIFs in device order with the
// MAC as written and the network's name_label.
//
// Disk ids are the Xen device name of the drive's slot, computed from
// userdevice (0 → "xvda", 3 → "xvdd", 26 → "xvdaa"), not VBD.device, which
// xapi leaves empty until first boot. A drive whose userdevice is not a
// number, or a clash, is named "disk<N>" after its position.
//
// Everything else is kept in Extensions.Xen:
//
//	version        the version struct
//	vm             {"id", "fields"}: the VM record less the modelled fields
//	absent         modelled VM fields the source did not have
//	disks          {disk id: {"vbd": {id, fields}, "vdi": {id, fields}, "absent"}}
//	nics           [{"id", "fields", "network_id", "absent"}] in NIC order
//	objects        [{"class", "id", "fields"}]: every other record (SR,
//	               network, host, guest metrics, …)
//	top            other top-level members of ova.xml, if any
//
// XML-RPC values become JSON values (see ext.go for the tagged forms of
// typed integers, dates and base64). Writing a VM read from an XVA reuses
// those records and ids, so XVA → neutral → XVA gives back every field.
//
// The other way, what a VM from elsewhere has and ova.xml cannot say (its
// Extensions.VMware keys, drive ids, buses and units, NIC models, guest OS
// hint) is written as JSON into the VM's other_config under "vmconv:vmware"
// and "vmconv:neutral", which xapi keeps, and taken back out on reading, so
// VMX → XVA → VMX loses nothing either.
//
// # Writing
//
// Write streams (it never seeks): ova.xml as Xen Orchestra writes it (no
// declaration, untyped strings; version block claiming xapi 1.20, which every
// supported host accepts), then each VDI's chunks in id string order, as
// xapi's importer requires. All-zero chunks are left out except the first
// and the last, which the importer needs; the last chunk is short when the
// size is not a MiB multiple, as xapi writes it. Checksums are SHA-1
// .checksum files by default: xapi verifies those in every version, while
// .xxhash files are refused by xapi before Citrix Hypervisor 8.1 / XCP-ng
// 8.1; -o checksum=xxhash selects them (faster, for 8.1 and later).
package xva
