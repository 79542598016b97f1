package ovf_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats"
	"github.com/vmconv/vmconv/formats/neutral"
	"github.com/vmconv/vmconv/internal/testutil"
)

// makeRaw writes a raw image of size bytes with a pattern at offsets.
func makeRaw(t *testing.T, path string, size int64, offs ...int64) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(size))
	pat := []byte(strings.Repeat(filepath.Base(path), 100))
	for _, o := range offs {
		_, err := f.WriteAt(pat, min(o, size-int64(len(pat))))
		require.NoError(t, err)
	}
	require.NoError(t, f.Close())
}

// testVM is a VM with two disks (one not a MiB multiple), an ISO and two
// NICs, opened from raw files in dir.
func testVM(t *testing.T, dir string) (*neutral.VM, map[string]string) {
	t.Helper()
	specs := []struct {
		id, device, bus string
		unit            int
		size            int64
		offs            []int64
	}{
		{"scsi0:0", "disk", "scsi", 0, 6 << 20, []int64{0, 3<<20 + 17, 6<<20 - 4096}},
		{"sata0:1", "disk", "sata", 1, 3<<20 + 512, []int64{512, 3<<20 - 256}},
		{"ide1:0", "cdrom", "ide", 2, 1 << 20, []int64{32768}},
	}
	vm := &neutral.VM{Schema: neutral.Schema, Name: "web 01", Firmware: "uefi", CPUs: 4, CoresPerSocket: 2, MemoryMiB: 2048,
		GuestOS: "ubuntu-64", NICs: []neutral.NIC{{MAC: "00:50:56:01:02:03", Network: "Prod", Model: "vmxnet3"}, {MAC: "00:16:3e:aa:bb:cc", Model: "e1000"}},
		Extensions: neutral.Extensions{VMware: map[string]string{"annotation": "made by a test"}}}
	digests := map[string]string{}
	for i, s := range specs {
		p := filepath.Join(dir, s.id[:4]+".raw")
		makeRaw(t, p, s.size, s.offs...)
		img, err := disk.OpenRaw(p)
		require.NoError(t, err)
		vm.Disks = append(vm.Disks, neutral.Disk{ID: s.id, Device: s.device, Bus: s.bus, Unit: s.unit, CapacityBytes: s.size,
			Bootable: i == 0, ReadOnly: s.device == "cdrom", Image: img})
		digests[s.id] = rawDigest(t, p)
	}
	return vm, digests
}

type checked struct {
	First    string   `json:"first"`
	CPUs     int      `json:"cpus"`
	Memory   int      `json:"memory"`
	Firmware string   `json:"firmware"`
	MACs     []string `json:"macs"`
	CDROMs   []string `json:"cdroms"`
	Manifest []string `json:"manifest"`
	Disks    []struct {
		Capacity  int64  `json:"capacity"`
		File      string `json:"file"`
		Populated int64  `json:"populated"`
	} `json:"disks"`
}

func pyCheck(t *testing.T, pkg, extract string) checked {
	t.Helper()
	testutil.RequireTool(t, "python3")
	args := []string{filepath.Join("testdata", "tools", "checkova.py"), pkg}
	if extract != "" {
		args = append(args, extract)
	}
	out, err := exec.Command("python3", args...).CombinedOutput()
	require.NoError(t, err, "%s", out)
	var c checked
	require.NoError(t, json.Unmarshal(out, &c), "%s", out)
	return c
}

func TestWriteReadBack(t *testing.T) {
	for _, format := range []string{"ova", "ovf"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			vm, digests := testVM(t, dir)
			defer vm.Close()
			target := filepath.Join(dir, "out", "web01."+format)
			out := disk.NewOutput(false)
			f := mustLookup(t, format)
			require.NoError(t, f.WriteVM(context.Background(), out, target, vm, map[string]string{}, disk.CopyOptions{}))
			require.NoError(t, out.Commit())
			entries, _ := os.ReadDir(filepath.Dir(target))
			for _, e := range entries {
				assert.False(t, strings.HasPrefix(e.Name(), "."), "staging left behind: %s", e.Name())
			}

			// The Python checker: first member, manifest, sizes.
			extract := ""
			if format == "ova" {
				extract = t.TempDir()
			}
			c := pyCheck(t, target, extract)
			assert.Equal(t, "web01.ovf", c.First)
			assert.Equal(t, 4, c.CPUs)
			assert.Equal(t, 2048, c.Memory)
			assert.Equal(t, "efi", c.Firmware)
			assert.Equal(t, []string{"00:50:56:01:02:03", "00:16:3e:aa:bb:cc"}, c.MACs)
			assert.Equal(t, []string{"ovf:/file/file3"}, c.CDROMs)
			assert.Equal(t, []string{"web01-disk1.vmdk", "web01-disk2.vmdk", "web01-file1.iso", "web01.ovf"}, c.Manifest)
			require.Len(t, c.Disks, 2)
			assert.Equal(t, int64(6<<20), c.Disks[0].Capacity)
			assert.Equal(t, int64(3<<20+512), c.Disks[1].Capacity)

			// qemu-img reads our VMDKs and finds the same bytes.
			vmdkDir := filepath.Dir(target)
			if extract != "" {
				vmdkDir = extract
			}
			if testutil.RequireTool(t, "qemu-img") != "" {
				for i, raw := range []string{"scsi.raw", "sata.raw"} {
					v := filepath.Join(vmdkDir, c.Disks[i].File)
					testutil.Run(t, "qemu-img", "check", "-f", "vmdk", v)
					info := testutil.Run(t, "qemu-img", "info", "--output=json", "-f", "vmdk", v)
					assert.Contains(t, info, `"streamOptimized"`)
					testutil.Run(t, "qemu-img", "compare", "-f", "raw", "-F", "vmdk", filepath.Join(dir, raw), v)
				}
			}

			// Our reader gives back the VM.
			back, err := formats.OpenVM(target, f)
			require.NoError(t, err)
			defer back.Close()
			assert.Equal(t, "web 01", back.Name)
			assert.Equal(t, "uefi", back.Firmware)
			assert.Equal(t, 4, back.CPUs)
			assert.Equal(t, 2, back.CoresPerSocket)
			assert.Equal(t, int64(2048), back.MemoryMiB)
			assert.Equal(t, "ubuntu-64", back.GuestOS)
			assert.Equal(t, "made by a test", back.Extensions.VMware["annotation"])
			require.Len(t, back.NICs, 2)
			assert.Equal(t, neutral.NIC{MAC: "00:50:56:01:02:03", Network: "Prod", Model: "vmxnet3"}, back.NICs[0])
			assert.Equal(t, "00:16:3e:aa:bb:cc", back.NICs[1].MAC)
			require.Len(t, back.Disks, 3)
			for i, id := range []string{"scsi0:0", "sata0:1", "ide1:0"} {
				d := back.Disks[i]
				assert.Equal(t, id, d.ID)
				got, err := disk.Digest(context.Background(), d.Image, disk.CopyOptions{})
				require.NoError(t, err)
				assert.Equal(t, digests[id], got, id)
			}
			if format == "ova" {
				_, sd, err := streamDigest(t, target)
				require.NoError(t, err)
				assert.Equal(t, digests, sd)
			}
		})
	}
}
