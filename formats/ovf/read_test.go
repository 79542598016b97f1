package ovf

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// drive is what a test expects of one drive: id, device, bus, unit,
// capacity in bytes, and whether its file is missing (the disk files of
// the real descriptors are not in testdata).
type drive struct {
	id, device, bus string
	unit            int
	capacity        int64
	missing         bool
}

type nic struct{ mac, network, model string }

func TestRealDescriptors(t *testing.T) {
	tests := []struct {
		file           string
		name           string
		firmware       string
		cpus, cps      int
		memMiB         int64
		guestOS        string
		drives         []drive
		nics           []nic
		warnings       int
		uuid           string
		annotationSeen bool
	}{
		{file: "vsphere8-simplevm-efi.ovf", name: "SimpleVm", firmware: "uefi", cpus: 2, cps: 1, memMiB: 1024, guestOS: "windows2019srv-64",
			drives: []drive{{"scsi0:0", "disk", "scsi", 0, 1 << 30, true}, {"sata0:0", "cdrom", "sata", 0, 0, false}},
			nics:   []nic{{"", "VM Network", "e1000e"}}},
		{file: "esx5-ubuntu12.ovf", name: "Ubuntu-12.04.2-64-Server-Tools", firmware: "bios", cpus: 4, cps: 4, memMiB: 2048, guestOS: "ubuntu-64",
			drives: []drive{{"scsi0:0", "disk", "scsi", 0, 40 << 30, true}, {"ide1:0", "cdrom", "ide", 2, 0, false}},
			nics:   []nic{{"", "Private", "e1000"}}},
		{file: "esx65-untangle-pvscsi.ovf", name: "Untangle NGFW", firmware: "bios", cpus: 1, cps: 1, memMiB: 4096, guestOS: "debian9-64",
			drives: []drive{{"sata0:0", "cdrom", "sata", 0, 0, false}, {"scsi0:0", "disk", "scsi", 0, 320 << 30, true}},
			nics:   []nic{{"", "External", "vmxnet3"}, {"", "Internal", "vmxnet3"}}},
		{file: "ovftool-bitnami-tomcat.ovf", name: "bitnami-tomcatstack-8.0.36-2-linux-ubuntu-14.04-x86_64", firmware: "bios", cpus: 1, cps: 1,
			memMiB: 1024, guestOS: "ubuntu-64",
			drives: []drive{{"scsi0:0", "disk", "scsi", 0, 18253611008, true}},
			nics:   []nic{{"", "bridged", "vlance"}}},
		{file: "ovftool35-vcloud-idesas.ovf", name: "Vm1", firmware: "bios", cpus: 1, cps: 1, memMiB: 256, guestOS: "rhel6",
			drives: []drive{{"ide1:1", "disk", "ide", 3, 8 << 20, true}, {"scsi1:1", "disk", "scsi", 66, 8 << 20, true}, {"ide0:0", "cdrom", "ide", 0, 0, false}},
			nics:   []nic{{"00:50:56:0e:00:fa", "VappNetworks", "vlance"}}},
		{file: "vcenter-nostalgia-two-disks.ovf", name: "Nostalgia", firmware: "bios", cpus: 1, cps: 1, memMiB: 64, guestOS: "other",
			drives: []drive{{"ide0:0", "cdrom", "ide", 0, 0, false}, {"scsi0:0", "disk", "scsi", 0, 107373568, true}, {"scsi0:1", "disk", "scsi", 1, 107373568, true}},
			nics:   []nic{{"", "VM Network", "vlance"}}, annotationSeen: true},
		{file: "govc-deployment-configs.ovf", name: "deployment-configs-vm", firmware: "bios", cpus: 8, cps: 1, memMiB: 8192, guestOS: "other3xlinux-64",
			// The default configuration "large": three 4 GiB disks, the
			// third without a file (a blank disk, never missing).
			drives: []drive{{"scsi0:0", "disk", "scsi", 0, 4 << 30, true}, {"scsi0:1", "disk", "scsi", 1, 4 << 30, true}, {"scsi0:2", "disk", "scsi", 2, 4 << 30, false}},
			nics:   []nic{{"", "Management", "vmxnet3"}}, warnings: 1, annotationSeen: true},
		{file: "vapp-multi-vm.ovf", name: "testVm1", firmware: "bios", cpus: 1, cps: 1, memMiB: 4096, guestOS: "windows7server-64",
			drives: []drive{{"scsi0:0", "disk", "scsi", 0, 10 << 20, true}, {"ide1:0", "cdrom", "ide", 2, 0, false}},
			nics:   []nic{{"", "3c705", "e1000"}, {"", "3c705", "e1000"}}, warnings: 1},
		{file: "studio-centos6-jeos-iso.ovf", name: "CentOS_6_JeOS_-_Minimal", firmware: "bios", cpus: 1, cps: 1, memMiB: 512, guestOS: "centos",
			drives: []drive{{"scsi0:0", "disk", "scsi", 0, 2 << 30, true}, {"ide1:0", "cdrom", "ide", 2, 0, false}, {"ide1:1", "cdrom", "ide", 3, 0, true}},
			nics:   []nic{{"", "Network 1", "vlance"}}},
		{file: "vbox-nxos-box.ovf", name: "edev", firmware: "uefi", cpus: 2, cps: 1, memMiB: 8196, guestOS: "Linux_64",
			uuid:   "5bd2aa3c-4199-452c-be54-ccdc4f20de88",
			drives: []drive{{"sata0:0", "disk", "sata", 0, 4 << 30, true}, {"sata0:1", "cdrom", "sata", 1, 0, false}},
			nics:   []nic{{"08:00:27:e7:92:b6", "NAT", "e1000"}}},
		{file: "vbox20-untangle.ovf", name: "Untangle", firmware: "bios", cpus: 2, cps: 1, memMiB: 2048, guestOS: "Debian_64",
			drives: []drive{{"sata0:0", "disk", "sata", 0, 320 << 30, true}},
			nics:   []nic{{"", "External", "e1000"}, {"", "Internal", "e1000"}}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			res, err := Read(filepath.Join("testdata", tc.file), ReadOptions{MarkMissing: true})
			require.NoError(t, err)
			vm := res.VM
			require.NoError(t, vm.Validate())
			assert.Equal(t, tc.name, vm.Name)
			assert.Equal(t, tc.firmware, vm.Firmware)
			assert.Equal(t, tc.cpus, vm.CPUs)
			assert.Equal(t, tc.cps, vm.CoresPerSocket)
			assert.Equal(t, tc.memMiB, vm.MemoryMiB)
			assert.Equal(t, tc.guestOS, vm.GuestOS)
			assert.Equal(t, tc.uuid, vm.UUID)
			var got []drive
			for _, d := range vm.Disks {
				got = append(got, drive{d.ID, d.Device, d.Bus, d.Unit, d.CapacityBytes, d.Missing})
				if d.Missing {
					assert.NotEmpty(t, d.File, "a missing disk names its file")
				}
			}
			assert.Equal(t, tc.drives, got)
			var gotNICs []nic
			for _, n := range vm.NICs {
				gotNICs = append(gotNICs, nic{n.MAC, n.Network, n.Model})
			}
			assert.Equal(t, tc.nics, gotNICs)
			assert.Len(t, res.Warnings, tc.warnings, "%q", res.Warnings)
			_, hasAnnotation := vm.Extensions.VMware["annotation"]
			assert.Equal(t, tc.annotationSeen, hasAnnotation)
		})
	}
}

// Without MarkMissing an absent disk file is an error naming the file.
func TestMissingDiskIsAnError(t *testing.T) {
	_, err := Read(filepath.Join("testdata", "vsphere8-simplevm-efi.ovf"), ReadOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "nostalgia-disk1.vmdk")
}

// The SCSI controller model reaches the VMX keys (and an OVF written again).
func TestSCSIModel(t *testing.T) {
	for file, want := range map[string]string{"esx65-untangle-pvscsi.ovf": "pvscsi", "vsphere8-simplevm-efi.ovf": "lsisas1068",
		"esx5-ubuntu12.ovf": "lsilogic", "ovftool35-vcloud-idesas.ovf": "lsisas1068"} {
		res, err := Read(filepath.Join("testdata", file), ReadOptions{MarkMissing: true})
		require.NoError(t, err)
		key := "scsi0.virtualDev"
		if file == "ovftool35-vcloud-idesas.ovf" {
			key = "scsi1.virtualDev"
		}
		assert.Equal(t, want, res.VM.Extensions.VMware[key], file)
		files := make([]PackageFile, len(res.VM.Disks))
		desc, err := descriptor(res.VM, files, 14)
		require.NoError(t, err)
		assert.Contains(t, string(desc), "<rasd:ResourceSubType>"+map[string]string{"pvscsi": "VirtualSCSI", "lsisas1068": "lsilogicsas", "lsilogic": "lsilogic"}[want]+"</rasd:ResourceSubType>", file)
	}
}
