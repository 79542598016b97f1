// Package ovf reads and writes OVF packages (DMTF DSP0243, OVF 1.x and
// 2.x): a directory with NAME.ovf, NAME.mf and the disks, or one OVA tar.
//
// # Reading
//
// The descriptor is decoded with encoding/xml structures that name local
// names only, so `ovf:`-prefixed and default-namespace documents, OVF 1.x
// Items and OVF 2.0 StorageItem/EthernetPortItem read alike (envelope.go).
// ToVM maps its VirtualSystem to a neutral.VM in steps, one per kind of
// record (tovm.go, devices.go): identity, CPUs (VirtualQuantity,
// vmw:CoresPerSocket), memory (AllocationUnits), firmware (vmw:Config
// firmware, VirtualBox's Firmware), guest OS (vmw:osType as the VMX id),
// drives on their controllers (ResourceType 5 IDE, 6 SCSI, 20 SATA/NVMe;
// ids like VMX slots, "scsi0:1"), CD-ROMs (an ISO of References included),
// NICs (rasd:Address, else vbox:Machine's adapters), annotation and
// vmw:ExtraConfig (kept as VMX keys in Extensions.VMware). Items of
// non-default DeploymentOptionSection configurations are left out; of a
// VirtualSystemCollection the first system is read, with a warning. A
// disk without a fileRef is a blank disk of its capacity.
//
// An OVA is indexed once (members are never read to be found) and its
// disks are opened in place through Disks.OpenAt (single-file sparse VMDK),
// else copied to an unlinked temporary file for formats that need one, and
// for files stored gzip-compressed (ovf:compression="gzip", bounded by what
// the disk can hold). The
// manifest (SHA1/SHA256/SHA512, "SHA256(f)= x" and "SHA256 (f) = x") is
// checked for every file it lists; the descriptor before it is parsed.
// StreamReader reads an OVA from a pipe in one pass, hashing every member
// as it passes and checking it against the manifest wherever that is in
// the archive. This package imports no other format: the registry supplies
// the disk readers and writers (Disks, WriteOptions.NewDisk).
//
// # Writing
//
// Write produces what vSphere, ovftool and VirtualBox import: OVF 1.0 in
// ovftool's shape, streamOptimized VMDK disks, vmw:Config firmware, MACs in
// rasd:Address, ovf:size of every file and ovf:populatedSize of every disk,
// and a SHA256 manifest. Disks go to a staging directory beside the target
// first (sizes and digests are in the descriptor, which comes first in an
// OVA); an OVA then streams (to stdout too) and an OVF directory's files
// are renamed into place. Signature files (.cert) are accepted when
// reading and not written: a new descriptor would not match them.
package ovf
