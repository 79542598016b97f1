package vmx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/neutral"
)

type wantDisk struct {
	id, device, bus string
	unit            int
	bootable        bool
}

// Expected values are read off the files by hand (see testdata/README.md).
func TestToVMRealFiles(t *testing.T) {
	tests := []struct {
		file      string
		name      string
		uuid      string
		firmware  string
		cpus, cps int
		mem       int64
		guest     string
		disks     []wantDisk
		nics      []neutral.NIC
	}{
		{"esx8-win11-subfolder.vmx", "esx8.0-win11-with-second-disk-in-subfolder",
			"42256ec1-e066-9364-3dd1-36a0b75263dd", "bios", 2, 1, 4096, "windows2019srvNext-64",
			[]wantDisk{{"scsi0:0", "disk", "scsi", 0, true}, {"scsi0:1", "disk", "scsi", 1, false}, {"sata0:0", "cdrom", "sata", 0, false}},
			[]neutral.NIC{{MAC: "00:50:56:a5:b8:68", Network: "Mgmt Network", Model: "e1000e"}}},
		{"esx8-rhel9-efi-nvme.vmx", "Auto-esx8.0-rhel9.4-efi-nvme-disk",
			"4220df89-e3a8-8513-f611-ad252bfd7047", "uefi", 1, 1, 2048, "rhel9-64",
			[]wantDisk{{"sata0:0", "cdrom", "sata", 0, false}, {"nvme0:0", "disk", "nvme", 0, true}},
			[]neutral.NIC{{MAC: "00:50:56:a0:a6:7e", Network: "VM Network", Model: "vmxnet3"}}},
		{"esx55-win2012-vpx.vmx", "v2v-windows-kkulkarn",
			"42009372-17da-be73-779d-007ccf1bd228", "bios", 16, 4, 16384, "windows8srv-64",
			[]wantDisk{{"scsi0:0", "disk", "scsi", 0, true}, {"sata0:0", "cdrom", "sata", 0, false}},
			[]neutral.NIC{{MAC: "00:50:56:80:b3:81", Network: "VM Network", Model: "vmxnet3"}}},
		{"esx4-fedora11.vmx", "Fedora11",
			"50115e16-9bdc-49d7-f171-53c4d7f91710", "bios", 1, 1, 1024, "rhel5",
			[]wantDisk{{"ide0:0", "cdrom", "ide", 0, false}, {"scsi0:0", "disk", "scsi", 0, true}},
			[]neutral.NIC{{MAC: "00:50:56:91:48:c7", Network: "VM Network"}}},
		{"case-insensitive.vmx", "FEDORA11",
			"50115e16-9bdc-49d7-f171-53c4d7f91710", "bios", 1, 1, 1024, "RHEL5",
			[]wantDisk{{"ide0:0", "cdrom", "ide", 0, false}, {"scsi0:0", "disk", "scsi", 0, true}},
			[]neutral.NIC{{MAC: "00:50:56:91:48:c7", Network: "VM NETWORK"}}},
		{"esxi-ubuntu-delta.vmx", "test flo",
			"564dfd52-65f4-71df-e4c8-668eb127c48b", "bios", 2, 1, 1024, "ubuntu-64",
			[]wantDisk{{"scsi0:0", "disk", "scsi", 0, true}, {"sata0:0", "cdrom", "sata", 0, false}},
			[]neutral.NIC{{MAC: "00:0c:29:27:c4:8b", Network: "VM Network", Model: "vmxnet3"}}},
		{"fusion-winxp.vmx", "ATTM_VM",
			"564d7088-01a1-9832-e72b-6790c73b64ea", "bios", 2, 1, 3572, "winxppro",
			[]wantDisk{{"ide0:0", "cdrom", "ide", 0, false}, {"scsi0:0", "disk", "scsi", 0, true}},
			[]neutral.NIC{{MAC: "00:0c:29:3b:64:ea", Network: "VMnet0"}, {MAC: "00:0c:29:3b:64:f4", Network: "VMnet0"}}},
		{"gsx-debian-ide.vmx", "Client",
			"564dad58-0629-d3e6-ecfe-8ff839c5e35d", "bios", 1, 1, 264, "other26xlinux",
			[]wantDisk{{"ide0:0", "disk", "ide", 0, true}}, // ide1:0 is present = FALSE
			[]neutral.NIC{{MAC: "00:0c:29:c5:e3:5d", Network: "net2"}}},
		{"annotation.vmx", "test", "", "bios", 1, 1, 32, "", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			vm, err := ToVM(parseFile(t, filepath.Join("testdata", tc.file)))
			require.NoError(t, err)
			assert.Equal(t, neutral.Schema, vm.Schema)
			assert.Equal(t, tc.name, vm.Name)
			assert.Equal(t, tc.uuid, vm.UUID)
			assert.Equal(t, tc.firmware, vm.Firmware)
			assert.Equal(t, tc.cpus, vm.CPUs)
			assert.Equal(t, tc.cps, vm.CoresPerSocket)
			assert.Equal(t, tc.mem, vm.MemoryMiB)
			assert.Equal(t, tc.guest, vm.GuestOS)
			var got []wantDisk
			for _, d := range vm.Disks {
				got = append(got, wantDisk{d.ID, d.Device, d.Bus, d.Unit, d.Bootable})
				assert.Equal(t, d.Device == "cdrom", d.ReadOnly, d.ID)
			}
			assert.Equal(t, tc.disks, got)
			if tc.nics == nil {
				tc.nics = []neutral.NIC{}
			}
			assert.Equal(t, tc.nics, vm.NICs)
			// Modelled keys are not duplicated in extensions when the writer
			// gives them back as they are; everything else is kept.
			assert.NotContains(t, vm.Extensions.VMware, "displayName")
			for k := range vm.Extensions.VMware {
				assert.NotEqual(t, "numvcpus", k)
			}
		})
	}
}

func entryMap(f *File) map[string]string {
	m := map[string]string{}
	for _, e := range f.Entries() {
		m[e.Key] = e.Value
	}
	return m
}

// viaJSON passes a VM through vm.json as the bundle stores it.
func viaJSON(t testing.TB, vm *neutral.VM) *neutral.VM {
	t.Helper()
	b, err := json.Marshal(vm)
	require.NoError(t, err)
	var out neutral.VM
	require.NoError(t, json.Unmarshal(b, &out))
	return &out
}

// VMX → neutral (through vm.json) → VMX gives back every key and value.
// What may differ: .encoding is always written, and a disk whose file name
// is not a plain name in the VM's directory (a sub-folder, a snapshot delta
// that is written flattened) gets VMware's NAME.vmdk / NAME_N.vmdk.
func TestRoundTripRealFiles(t *testing.T) {
	renamed := map[string]map[string]string{
		"esx8-win11-subfolder.vmx": {"scsi0:1.fileName": "out_1.vmdk"},
		"esxi-ubuntu-delta.vmx":    {"scsi0:0.fileName": "out.vmdk"},
	}
	for _, path := range realFiles(t) {
		base := filepath.Base(path)
		t.Run(base, func(t *testing.T) {
			src := parseFile(t, path)
			vm, err := ToVM(src)
			require.NoError(t, err)
			out, err := FromVM(viaJSON(t, vm), "out", WriteOptions{})
			require.NoError(t, err)

			want := entryMap(src)
			if _, ok := src.Get(".encoding"); !ok {
				want[".encoding"] = "UTF-8"
			}
			for k, v := range renamed[base] {
				want[k] = v
			}
			assert.Equal(t, want, entryMap(out))
			assert.Equal(t, ".encoding", out.Entries()[0].Key, "written first")
			// Keys stay in the source's order.
			var srcKeys, outKeys []string
			if _, ok := src.Get(".encoding"); !ok {
				srcKeys = append(srcKeys, ".encoding")
			}
			for _, e := range src.Entries() {
				srcKeys = append(srcKeys, e.Key)
			}
			for _, e := range out.Entries() {
				outKeys = append(outKeys, e.Key)
			}
			assert.Equal(t, srcKeys, outKeys)
			if _, ok := src.Get(".encoding"); ok && renamed[base] == nil {
				assert.Equal(t, string(src.Marshal()), string(out.Marshal()), "comment-free VMware files come back byte for byte")
			}

			// And the neutral VM is a fixed point.
			again, err := ToVM(out)
			require.NoError(t, err)
			vm.Extensions, again.Extensions = neutral.Extensions{}, neutral.Extensions{}
			again.Name, vm.Name = "", ""
			assert.Equal(t, vm, again)
		})
	}
}

func TestBadMapping(t *testing.T) {
	base := ".encoding = \"UTF-8\"\nconfig.version = \"8\"\nvirtualHW.version = \"14\"\n"
	disk0 := "scsi0.present = \"TRUE\"\nscsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"a.vmdk\"\n"
	tests := []struct {
		name  string
		body  string
		parts []string
	}{
		{"bad MAC", "ethernet0.present = \"TRUE\"\nethernet0.addressType = \"generated\"\nethernet0.generatedAddress = \"00:0c:29:zz:00:01\"\n",
			[]string{"line 6", "ethernet0.generatedAddress", "00:0c:29:zz:00:01"}},
		{"short static MAC", "ethernet1.present = \"TRUE\"\nethernet1.addressType = \"static\"\nethernet1.address = \"00:50:56:01:02\"\n",
			[]string{"line 6", "ethernet1.address", "MAC"}},
		{"inactive MAC key", "ethernet0.present = \"TRUE\"\nethernet0.addressType = \"static\"\nethernet0.address = \"00:50:56:01:02:03\"\nethernet0.generatedAddress = \"x\"\n",
			[]string{"line 7", "ethernet0.generatedAddress"}},
		{"bad boolean", "scsi0.present = \"yes\"\nscsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"a.vmdk\"\n",
			[]string{"line 4", "scsi0.present", "TRUE or FALSE"}},
		{"bad vCPUs", "numvcpus = \"two\"\n", []string{"line 4", "numvcpus", `"two"`}},
		{"cores not dividing", "numvcpus = \"4\"\ncpuid.coresPerSocket = \"3\"\n", []string{"line 5", "cpuid.coresPerSocket", "divide"}},
		{"zero memory", "memsize = \"0\"\n", []string{"line 4", "memsize"}},
		{"unknown firmware", "firmware = \"coreboot\"\n", []string{"line 4", "firmware", "coreboot"}},
		{"bad UUID", "uuid.bios = \"56 4d 70 88\"\n", []string{"line 4", "uuid.bios"}},
		{"reserved SCSI unit", "scsi0.present = \"TRUE\"\nscsi0:7.present = \"TRUE\"\nscsi0:7.fileName = \"a.vmdk\"\n",
			[]string{"line 5", "scsi0:7", "out of range"}},
		{"disk without file", "scsi0.present = \"TRUE\"\nscsi0:0.present = \"TRUE\"\nscsi0:0.deviceType = \"scsi-hardDisk\"\n",
			[]string{"line 6", "no fileName"}},
		// vmconv's own keys, as FromVM writes them, damaged.
		{"Xen extension not JSON", "vmconv.xen = \"{platform\"\n", []string{"line 4", "vmconv.xen", "JSON"}},
		{"boot not JSON", "vmconv.boot = \"[1]\"\n", []string{"line 4", "vmconv.boot", "JSON"}},
		{"disk bus without unit", disk0 + "scsi0:0.vmconv.bus = \"virtio\"\n", []string{"line 7", "scsi0:0.vmconv.bus", "BUS:UNIT"}},
		{"disk bus unknown", disk0 + "scsi0:0.vmconv.bus = \"floppy:0\"\n", []string{"line 7", "BUS:UNIT", "floppy:0"}},
		{"disk bus negative unit", disk0 + "scsi0:0.vmconv.bus = \"scsi:-1\"\n", []string{"line 7", "scsi:-1"}},
		{"disk id twice", disk0 + "scsi0:1.present = \"TRUE\"\nscsi0:1.fileName = \"b.vmdk\"\n" +
			"scsi0:0.vmconv.id = \"root\"\nscsi0:1.vmconv.id = \"root\"\n", []string{`disk id "root" given twice`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse(strings.NewReader(base+tc.body), "bad.vmx")
			require.NoError(t, err)
			_, err = ToVM(f)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "bad.vmx")
			for _, p := range tc.parts {
				assert.Contains(t, err.Error(), p)
			}
		})
	}
}

func TestUUIDForms(t *testing.T) {
	u, err := parseVMwareUUID("56 4D 70 88 01 a1 98 32-e7 2b 67 90 c7 3b 64 ea")
	require.NoError(t, err)
	assert.Equal(t, "564d7088-01a1-9832-e72b-6790c73b64ea", canonicalUUID(u))
	assert.Equal(t, "56 4d 70 88 01 a1 98 32-e7 2b 67 90 c7 3b 64 ea", vmwareUUID(u))
	v, err := parseUUID("564D7088-01A1-9832-E72B-6790C73B64EA")
	require.NoError(t, err)
	assert.Equal(t, u, v)
}

func TestBootOrder(t *testing.T) {
	body := ".encoding = \"UTF-8\"\nconfig.version = \"8\"\nvirtualHW.version = \"14\"\n" +
		"scsi0.present = \"TRUE\"\nscsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"a.vmdk\"\n" +
		"scsi0:1.present = \"TRUE\"\nscsi0:1.fileName = \"b.vmdk\"\n" +
		"ide0:0.present = \"TRUE\"\nide0:0.fileName = \"c.vmdk\"\n"
	vm, err := ToVM(mustParse(t, body))
	require.NoError(t, err)
	require.Len(t, vm.Disks, 3)
	assert.Equal(t, []string{"ide0:0", "scsi0:0", "scsi0:1"}, ids(vm), "BIOS order: IDE, then SCSI")
	assert.True(t, vm.Disks[0].Bootable)

	vm, err = ToVM(mustParse(t, body+"bios.hddOrder = \"scsi3:0,scsi0:1,ide0:0\"\n"))
	require.NoError(t, err)
	assert.Equal(t, []bool{false, false, true}, bootables(vm), "first present disk named by bios.hddOrder")

	// Writing puts a boot disk that is not first into bios.hddOrder.
	vm.Extensions.VMware = nil
	for i := range vm.Disks {
		vm.Disks[i].Bootable = vm.Disks[i].ID == "scsi0:0"
	}
	out, err := FromVM(vm, "b", WriteOptions{})
	require.NoError(t, err)
	v, _ := out.Get("bios.hddOrder")
	assert.Equal(t, "scsi0:0", v)
	back, err := ToVM(out)
	require.NoError(t, err)
	assert.Equal(t, []bool{false, true, false}, bootables(back))
}

func mustParse(t testing.TB, s string) *File {
	t.Helper()
	f, err := Parse(strings.NewReader(s), "t.vmx")
	require.NoError(t, err)
	return f
}

func ids(vm *neutral.VM) []string {
	var out []string
	for _, d := range vm.Disks {
		out = append(out, d.ID)
	}
	return out
}

func bootables(vm *neutral.VM) []bool {
	var out []bool
	for _, d := range vm.Disks {
		out = append(out, d.Bootable)
	}
	return out
}

func TestGuestOSFor(t *testing.T) {
	for hint, want := range map[string]string{
		"ubuntu-64":                  "ubuntu-64",
		"windows2019srvNext-64":      "windows2019srvNext-64",
		"other5xlinux-64":            "other5xlinux-64",
		"rhel9-64":                   "rhel9-64",
		"Debian Bookworm 12":         "debian12-64",
		"debian":                     "debian10-64",
		"Ubuntu Jammy Jellyfish":     "ubuntu-64",
		"CentOS 7":                   "centos7-64",
		"Red Hat Enterprise Linux 9": "rhel9-64",
		"Other install media":        "other-64",
		"Linux":                      "other4xlinux-64",
		"":                           "other-64",
	} {
		assert.Equal(t, want, GuestOSFor(hint), hint)
	}
}

// memImage is a disk whose bytes live in memory.
func memImage(data []byte) disk.Image {
	return disk.FromReaderAt(bytes.NewReader(data), int64(len(data)))
}

func randomBytes(n int, seed int64) []byte {
	p := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(p)
	// Leave a zero MiB in the middle so the copy skips something.
	if n > 3<<20 {
		clear(p[1<<20 : 2<<20])
	}
	return p
}

func rawDisk(out *disk.Output, path string, size int64) (disk.Writer, error) {
	f, err := out.Create(path)
	if err != nil {
		return nil, err
	}
	return disk.NewRawWriter(f, size), nil
}

func openRaw(path string) (disk.Image, error) { return disk.OpenRaw(path) }

func sameContent(t *testing.T, a, b disk.Image) {
	t.Helper()
	off, equal, err := disk.Compare(context.Background(), a, b, disk.CopyOptions{})
	require.NoError(t, err)
	assert.True(t, equal, "contents differ at %#x", off)
}

// A VM as the Xen side describes it: xen bus, foreign MACs, no VMware
// extensions.
func xenVM(d0, d1, iso []byte) *neutral.VM {
	vm := &neutral.VM{
		Schema: neutral.Schema, Name: "web01", UUID: "3f0c3e8e-5a1b-4c7d-9e2f-0123456789ab",
		Firmware: "uefi", CPUs: 4, CoresPerSocket: 2, MemoryMiB: 1022, GuestOS: "Debian Bookworm 12",
		Disks: []neutral.Disk{
			{ID: "xvda", Device: "disk", Bus: "xen", Unit: 0, Bootable: true, CapacityBytes: int64(len(d0)), Image: memImage(d0)},
			{ID: "xvdb", Device: "disk", Bus: "xen", Unit: 1, CapacityBytes: int64(len(d1)), Image: memImage(d1)},
			{ID: "xvdd", Device: "cdrom", Bus: "xen", Unit: 3, ReadOnly: true},
		},
		NICs: []neutral.NIC{
			{MAC: "c2:4f:11:8a:30:07", Network: "Pool-wide network associated with eth0", Model: "netfront"},
			{MAC: "00:50:56:01:02:03", Network: "Backup"},
		},
		Extensions: neutral.Extensions{Xen: map[string]any{"HVM_boot_policy": "BIOS order"}},
	}
	if iso != nil {
		vm.Disks = append(vm.Disks, neutral.Disk{ID: "hdc", Device: "cdrom", Bus: "ide", Unit: 2, ReadOnly: true,
			CapacityBytes: int64(len(iso)), Image: memImage(iso)})
	}
	return vm
}

func TestWriteFromXenThenRead(t *testing.T) {
	d0 := randomBytes(5<<20+512, 1) // not a whole number of MiB
	d1 := randomBytes(1<<20, 2)
	iso := randomBytes(300<<10, 3)
	dir := filepath.Join(t.TempDir(), "vms", "web01") // does not exist yet
	vmxPath := filepath.Join(dir, "web01.vmx")

	out := disk.NewOutput(false)
	require.NoError(t, Write(context.Background(), out, vmxPath, xenVM(d0, d1, iso), rawDisk, disk.CopyOptions{}))
	require.NoError(t, out.Commit())

	names, err := filepath.Glob(filepath.Join(dir, "*"))
	require.NoError(t, err)
	for i := range names {
		names[i] = filepath.Base(names[i])
	}
	assert.ElementsMatch(t, []string{"web01.vmx", "web01.vmdk", "web01_1.vmdk", "web01_cdrom.iso"}, names,
		"one file per disk, one ISO for the CD with media, none for the empty drive")

	text, err := os.ReadFile(vmxPath)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(text), ".encoding = \"UTF-8\"\nconfig.version = \"8\"\nvirtualHW.version = \"14\"\n"))
	f := parseFile(t, vmxPath)
	for k, v := range map[string]string{
		"displayName": "web01", "numvcpus": "4", "cpuid.coresPerSocket": "2", "memsize": "1024",
		"firmware": "efi", "nvram": "web01.nvram", "guestOS": "debian12-64",
		"uuid.bios":     "3f 0c 3e 8e 5a 1b 4c 7d-9e 2f 01 23 45 67 89 ab",
		"scsi0.present": "TRUE", "scsi0.virtualDev": "lsilogic",
		"scsi0:0.present": "TRUE", "scsi0:0.fileName": "web01.vmdk",
		"scsi0:1.present": "TRUE", "scsi0:1.fileName": "web01_1.vmdk",
		"sata0.present": "TRUE", "sata0:0.deviceType": "atapi-cdrom", "sata0:0.fileName": "auto detect",
		"sata0:0.startConnected": "FALSE",
		"ide1:0.present":         "TRUE", "ide1:0.deviceType": "cdrom-image", "ide1:0.fileName": "web01_cdrom.iso",
		"ethernet0.present": "TRUE", "ethernet0.addressType": "static", "ethernet0.address": "c2:4f:11:8a:30:07",
		"ethernet0.checkMACAddress": "FALSE", "ethernet0.virtualDev": "e1000",
		"ethernet0.networkName": "Pool-wide network associated with eth0",
		"ethernet1.addressType": "static", "ethernet1.address": "00:50:56:01:02:03",
	} {
		got, ok := f.Get(k)
		if assert.True(t, ok, "%s missing", k) {
			assert.Equal(t, v, got, k)
		}
	}
	_, ok := f.Get("ethernet1.checkMACAddress")
	assert.False(t, ok, "a MAC in VMware's static range needs no check override")
	_, ok = f.Get("bios.hddOrder")
	assert.False(t, ok, "the boot disk is already first")

	vm, err := Read(vmxPath, openRaw)
	require.NoError(t, err)
	defer vm.Close()
	assert.Equal(t, &neutral.Source{Format: "vmx", File: vmxPath}, vm.Source)
	assert.Equal(t, "web01", vm.Name)
	assert.Equal(t, "3f0c3e8e-5a1b-4c7d-9e2f-0123456789ab", vm.UUID)
	assert.Equal(t, "uefi", vm.Firmware)
	assert.Equal(t, 4, vm.CPUs)
	assert.Equal(t, 2, vm.CoresPerSocket)
	assert.Equal(t, int64(1024), vm.MemoryMiB)
	// The names VMware has no place for come back from vmconv's own keys.
	assert.Equal(t, "Debian Bookworm 12", vm.GuestOS)
	assert.Equal(t, "debian12-64", get(t, f, "guestOS"))
	assert.Equal(t, []string{"hdc", "xvda", "xvdb", "xvdd"}, ids(vm))
	assert.Equal(t, "xen", vm.Disks[1].Bus)
	assert.Equal(t, 3, vm.Disks[3].Unit)
	assert.Equal(t, map[string]any{"HVM_boot_policy": "BIOS order"}, vm.Extensions.Xen)
	assert.Equal(t, []bool{false, true, false, false}, bootables(vm))
	assert.Equal(t, int64(len(iso)), vm.Disks[0].CapacityBytes)
	assert.Equal(t, int64(len(d0)), vm.Disks[1].CapacityBytes)
	assert.Equal(t, int64(len(d1)), vm.Disks[2].CapacityBytes)
	assert.Nil(t, vm.Disks[3].Image, "empty drive")
	sameContent(t, memImage(iso), vm.Disks[0].Image)
	sameContent(t, memImage(d0), vm.Disks[1].Image)
	sameContent(t, memImage(d1), vm.Disks[2].Image)
	assert.Equal(t, []neutral.NIC{
		{MAC: "c2:4f:11:8a:30:07", Network: "Pool-wide network associated with eth0", Model: "e1000"},
		{MAC: "00:50:56:01:02:03", Network: "Backup"},
	}, vm.NICs)

	// Writing it again from what we read gives the same file.
	out2 := disk.NewOutput(false)
	vmx2 := filepath.Join(t.TempDir(), "web01.vmx")
	require.NoError(t, Write(context.Background(), out2, vmx2, viaJSONKeepImages(t, vm), rawDisk, disk.CopyOptions{}))
	require.NoError(t, out2.Commit())
	text2, err := os.ReadFile(vmx2)
	require.NoError(t, err)
	assert.Equal(t, string(text), string(text2))
}

// viaJSONKeepImages passes the VM through vm.json and puts the open images back.
func viaJSONKeepImages(t testing.TB, vm *neutral.VM) *neutral.VM {
	out := viaJSON(t, vm)
	for i := range out.Disks {
		out.Disks[i].Image = vm.Disks[i].Image
	}
	return out
}

// A VMware VM read with its disks and written elsewhere keeps every key;
// a disk in a sub-folder is written beside the .vmx.
func TestReadWriteRealVM(t *testing.T) {
	src := t.TempDir()
	data, err := os.ReadFile("testdata/esx8-win11-subfolder.vmx")
	require.NoError(t, err)
	vmxPath := filepath.Join(src, "esx8.vmx")
	require.NoError(t, os.WriteFile(vmxPath, data, 0o644))
	d0, d1 := randomBytes(4<<20, 4), randomBytes(2<<20+4096, 5)
	require.NoError(t, os.WriteFile(filepath.Join(src, "esx8.0-win11-with-second-disk-in-subfolder.vmdk"), d0, 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(src, "subfolder"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "subfolder", "esx8.0-win11-with-second-disk-in-subfolder_1.vmdk"), d1, 0o644))

	var opened []string
	vm, err := Read(vmxPath, func(p string) (disk.Image, error) {
		opened = append(opened, p)
		return disk.OpenRaw(p)
	})
	require.NoError(t, err)
	defer vm.Close()
	assert.Equal(t, []string{
		filepath.Join(src, "esx8.0-win11-with-second-disk-in-subfolder.vmdk"),
		filepath.Join(src, "subfolder", "esx8.0-win11-with-second-disk-in-subfolder_1.vmdk"),
	}, opened, "disk paths relative to the .vmx directory")
	assert.Equal(t, int64(len(d0)), vm.Disks[0].CapacityBytes)
	assert.Equal(t, int64(len(d1)), vm.Disks[1].CapacityBytes)
	assert.Nil(t, vm.Disks[2].Image, "the ISO on a datastore path is not here: empty drive")

	dst := filepath.Join(t.TempDir(), "copy.vmx")
	out := disk.NewOutput(false)
	require.NoError(t, Write(context.Background(), out, dst, viaJSONKeepImages(t, vm), rawDisk, disk.CopyOptions{}))
	require.NoError(t, out.Commit())

	want := entryMap(parseFile(t, vmxPath))
	want["scsi0:1.fileName"] = "copy_1.vmdk"
	assert.Equal(t, want, entryMap(parseFile(t, dst)))
	for name, content := range map[string][]byte{
		"esx8.0-win11-with-second-disk-in-subfolder.vmdk": d0, "copy_1.vmdk": d1} {
		img, err := disk.OpenRaw(filepath.Join(filepath.Dir(dst), name))
		require.NoError(t, err)
		sameContent(t, memImage(content), img)
		img.Close()
	}
}

func TestReadMissingDisk(t *testing.T) {
	dir := t.TempDir()
	vmxPath := filepath.Join(dir, "m.vmx")
	require.NoError(t, os.WriteFile(vmxPath, []byte(".encoding = \"UTF-8\"\nconfig.version = \"8\"\n"+
		"scsi0.present = \"TRUE\"\nscsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"gone.vmdk\"\n"), 0o644))
	_, err := Read(vmxPath, openRaw)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "m.vmx: line 5: scsi0:0.fileName \"gone.vmdk\"")
}

func TestWriteRefusals(t *testing.T) {
	d := randomBytes(1<<20, 6)
	dir := t.TempDir()
	vmxPath := filepath.Join(dir, "web01.vmx")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "web01_1.vmdk"), []byte("keep"), 0o644))

	out := disk.NewOutput(false)
	err := Write(context.Background(), out, vmxPath, xenVM(d, d, nil), rawDisk, disk.CopyOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "web01_1.vmdk: already exists")
	out.Abort()
	names, _ := filepath.Glob(filepath.Join(dir, "*"))
	assert.Len(t, names, 1, "nothing written, the existing file untouched")
	kept, _ := os.ReadFile(filepath.Join(dir, "web01_1.vmdk"))
	assert.Equal(t, "keep", string(kept))

	bad := xenVM(d, d, nil)
	bad.NICs[0].MAC = "c2:4f:11:8a:30"
	err = Write(context.Background(), disk.NewOutput(false), filepath.Join(dir, "x.vmx"), bad, rawDisk, disk.CopyOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "nic 0")

	nodata := xenVM(d, d, nil)
	nodata.Disks[1].Image = nil
	err = Write(context.Background(), disk.NewOutput(false), filepath.Join(dir, "y.vmx"), nodata, rawDisk, disk.CopyOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "disk xvdb has no content")

	_, err = FromVM(xenVM(d, d, nil), "z", WriteOptions{HWVersion: 10})
	require.NoError(t, err, "SCSI and SATA need no newer hardware")
	nvme := xenVM(d, d, nil)
	nvme.Disks[0].Bus = "nvme"
	_, err = FromVM(nvme, "z", WriteOptions{HWVersion: 10})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "nvme0:0 needs virtualHW.version 13")
}

// Removing a NIC or disk from the neutral VM removes its keys; devices the
// source had switched off stay as they were.
func TestWriteDropsRemovedDevices(t *testing.T) {
	vm, err := ToVM(parseFile(t, "testdata/fusion-winxp.vmx"))
	require.NoError(t, err)
	vm.NICs = vm.NICs[:1]
	vm.Disks = vm.Disks[1:] // drop the CD-ROM on ide0:0
	out, err := FromVM(vm, "ATTM_VM", WriteOptions{})
	require.NoError(t, err)
	for _, e := range out.Entries() {
		assert.False(t, strings.HasPrefix(e.Key, "ethernet1."), e.Key)
		assert.False(t, strings.HasPrefix(e.Key, "ide0:0."), e.Key)
	}
	v, _ := out.Get("ethernet0.generatedAddress")
	assert.Equal(t, "00:0c:29:3b:64:ea", v)

	vm, err = ToVM(parseFile(t, "testdata/gsx-debian-ide.vmx"))
	require.NoError(t, err)
	out, err = FromVM(vm, "Client", WriteOptions{})
	require.NoError(t, err)
	v, _ = out.Get("ide1:0.deviceType")
	assert.Equal(t, "cdrom-raw", v, "switched-off drive kept verbatim")
}

// A neutral field changed after reading wins over the source's spelling.
func TestWriteNeutralWins(t *testing.T) {
	vm, err := ToVM(parseFile(t, "testdata/esx55-win2012-vpx.vmx"))
	require.NoError(t, err)
	require.Equal(t, "memSize", keyOf(vm.Extensions.VMware, "memsize"), "source spelling kept for the round trip")
	vm.MemoryMiB = 8192
	vm.CPUs, vm.CoresPerSocket = 4, 1
	vm.NICs[0].MAC = "00:50:56:80:00:01"
	out, err := FromVM(vm, "w", WriteOptions{})
	require.NoError(t, err)
	m := entryMap(out)
	assert.Equal(t, "8192", m["memsize"])
	assert.NotContains(t, m, "memSize")
	assert.Equal(t, "4", m["numvcpus"])
	assert.NotContains(t, m, "cpuid.coresPerSocket")
	assert.Equal(t, "00:50:56:80:00:01", m["ethernet0.generatedAddress"])
	assert.Equal(t, "vpx", m["ethernet0.addressType"])
}

func keyOf(m map[string]string, lower string) string {
	for k := range m {
		if strings.ToLower(k) == lower {
			return k
		}
	}
	return ""
}

type failingReader struct{ after int64 }

func (r failingReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= r.after {
		return 0, errors.New("medium error")
	}
	clear(p)
	p[0] = 1
	return len(p), nil
}

// A copy that fails leaves nothing behind once the output is aborted.
func TestWriteFailureLeavesNothing(t *testing.T) {
	d := randomBytes(1<<20, 7)
	vm := xenVM(d, d, nil)
	vm.Disks[1].Image = disk.FromReaderAt(failingReader{after: 2 << 20}, 4<<20)
	dir := filepath.Join(t.TempDir(), "vm")
	require.NoError(t, os.Mkdir(dir, 0o755))
	out := disk.NewOutput(false)
	err := Write(context.Background(), out, filepath.Join(dir, "web01.vmx"), vm, rawDisk, disk.CopyOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "disk xvdb")
	assert.Contains(t, err.Error(), "medium error")
	out.Abort()
	names, _ := filepath.Glob(filepath.Join(dir, "*"))
	assert.Empty(t, names)
	hidden, _ := filepath.Glob(filepath.Join(dir, ".*"))
	assert.Empty(t, hidden)
}

func TestWriteAdapterTypes(t *testing.T) {
	d := randomBytes(1<<20, 8)
	vm, err := ToVM(parseFile(t, "testdata/fusion-winxp.vmx")) // BusLogic scsi0
	require.NoError(t, err)
	vm.Disks[1].Image = memImage(d)
	vm.Disks = append(vm.Disks, neutral.Disk{ID: "ide0:1", Device: "disk", Bus: "ide", Unit: 1, Image: memImage(d)})
	got := map[string]string{}
	opt := WriteOptions{NewDiskAdapter: func(out *disk.Output, path string, size int64, adapter string) (disk.Writer, error) {
		got[filepath.Base(path)] = adapter
		return rawDisk(out, path, size)
	}}
	out := disk.NewOutput(false)
	defer out.Abort()
	require.NoError(t, WriteWith(context.Background(), out, filepath.Join(t.TempDir(), "ATTM_VM.vmx"), vm, nil, disk.CopyOptions{}, opt))
	assert.Equal(t, map[string]string{"ATTM_VM.vmdk": "buslogic", "ATTM_VM_1.vmdk": "ide"}, got)
}

func TestWriteRejectsBadExtensionKeys(t *testing.T) {
	for _, k := range []string{"with space", "a=b", "x#y", "", "ünï"} {
		vm := xenVM(nil, nil, nil)
		vm.Disks = nil
		vm.Extensions.VMware = map[string]string{k: "1"}
		_, err := FromVM(vm, "x", WriteOptions{})
		require.Error(t, err, "%q", k)
		assert.Contains(t, err.Error(), "not a VMX key")
	}
}

func get(t *testing.T, f *File, key string) string {
	t.Helper()
	v, ok := f.Get(key)
	require.True(t, ok, "key %s", key)
	return v
}
