package xl_test

import (
	"context"
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
)

func digestOf(t *testing.T, img disk.Image) string {
	t.Helper()
	d, err := disk.Digest(context.Background(), img, disk.CopyOptions{})
	require.NoError(t, err)
	return d
}

// vmFromRaw is a VMware-looking VM (SCSI disks, an IDE CD, a vmxnet3 NIC)
// whose disks are raw files in dir.
func vmFromRaw(t *testing.T, dir string) (*neutral.VM, []string) {
	t.Helper()
	vm := &neutral.VM{Schema: neutral.Schema, Name: "db 01", UUID: "3b0e6a0a-6a8a-4c43-9a52-2b6f1e3c9d10", Firmware: "uefi",
		CPUs: 2, CoresPerSocket: 1, MemoryMiB: 2048, NICs: []neutral.NIC{{MAC: "00:50:56:0a:0b:0c", Network: "xenbr0", Model: "vmxnet3"}}}
	var digests []string
	for i, s := range []struct {
		id, device, bus string
		unit            int
		size            int64
	}{{"scsi0:0", "disk", "scsi", 0, 5 << 20}, {"scsi0:1", "disk", "scsi", 1, 2 << 20}, {"ide1:0", "cdrom", "ide", 2, 1 << 20}} {
		p := filepath.Join(dir, strings.ReplaceAll(s.id, ":", "_")+".raw")
		f, err := os.Create(p)
		require.NoError(t, err)
		require.NoError(t, f.Truncate(s.size))
		_, err = f.WriteAt([]byte(strings.Repeat(s.id, 999)), int64(i)<<19+4096)
		require.NoError(t, err)
		require.NoError(t, f.Close())
		img, err := disk.OpenRaw(p)
		require.NoError(t, err)
		vm.Disks = append(vm.Disks, neutral.Disk{ID: s.id, Device: s.device, Bus: s.bus, Unit: s.unit, CapacityBytes: s.size,
			Bootable: i == 0, ReadOnly: s.device == "cdrom", Image: img})
		digests = append(digests, digestOf(t, img))
	}
	return vm, digests
}

func TestWriteReadBack(t *testing.T) {
	for _, diskFormat := range []string{"raw", "qcow2"} {
		t.Run(diskFormat, func(t *testing.T) {
			if diskFormat != "raw" {
				if f, err := formats.Lookup(diskFormat); err != nil || f.CreateImage == nil {
					t.Skipf("%s is not a registered writable format here", diskFormat)
				}
			}
			dir := t.TempDir()
			vm, digests := vmFromRaw(t, dir)
			defer vm.Close()
			target := filepath.Join(dir, "out", "db01.cfg")
			f, err := formats.Lookup("xl")
			require.NoError(t, err)
			out := disk.NewOutput(false)
			opts := map[string]string{}
			if diskFormat != "raw" {
				opts["disk_format"] = diskFormat
			}
			require.NoError(t, f.WriteVM(context.Background(), out, target, vm, opts, disk.CopyOptions{}))
			require.NoError(t, out.Commit())
			text, err := os.ReadFile(target)
			require.NoError(t, err)
			t.Logf("%s", text)

			// Detected by content, whatever its name.
			renamed := filepath.Join(dir, "out", "db01-domain")
			require.NoError(t, os.WriteFile(renamed, text, 0o644))
			df, err := formats.Detect(renamed)
			require.NoError(t, err)
			assert.Equal(t, "xl", df.Name)

			// Xen's own parser reads what we wrote.
			if bin := xlucheckBin(t); bin != "" {
				o, err := exec.Command(bin, target).CombinedOutput()
				require.NoError(t, err, "%s", o)
				s := string(o)
				assert.Contains(t, s, "name db 01\n")
				assert.Contains(t, s, "type hvm\n")
				assert.Contains(t, s, "bios ovmf\n")
				assert.Contains(t, s, "memory 2048\n")
				assert.Contains(t, s, "vcpus 2\n")
				abs, _ := filepath.Abs(filepath.Join(dir, "out"))
				assert.Contains(t, s, "disk xvda "+diskFormat+" cdrom=0 rw=1 "+filepath.Join(abs, "db01-xvda."+map[string]string{"raw": "img", "qcow2": "qcow2"}[diskFormat])+"\n")
				assert.Contains(t, s, "disk hdc raw cdrom=1 rw=0 "+filepath.Join(abs, "db01-hdc.iso")+"\n")
				assert.Contains(t, s, "vif mac=00:50:56:0a:0b:0c, bridge=xenbr0, model=e1000\n")
			}

			back, err := formats.OpenVM(target, f)
			require.NoError(t, err)
			defer back.Close()
			assert.Equal(t, "db 01", back.Name)
			assert.Equal(t, vm.UUID, back.UUID)
			assert.Equal(t, "uefi", back.Firmware)
			assert.Equal(t, 2, back.CPUs)
			assert.Equal(t, int64(2048), back.MemoryMiB)
			require.Len(t, back.Disks, 3)
			assert.Equal(t, []string{"xvda", "xvdb", "hdc"}, []string{back.Disks[0].ID, back.Disks[1].ID, back.Disks[2].ID})
			for i := range back.Disks {
				assert.Equal(t, digests[i], digestOf(t, back.Disks[i].Image), back.Disks[i].ID)
			}
			require.Len(t, back.NICs, 1)
			assert.Equal(t, "00:50:56:0a:0b:0c", back.NICs[0].MAC)
		})
	}
}

func xlucheckBin(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("cc"); err != nil {
		return ""
	}
	bin := filepath.Join(t.TempDir(), "xlucheck")
	if out, err := exec.Command("cc", "-o", bin, filepath.Join("testdata", "tools", "xlucheck.c"), "-lxlutil", "-lxenlight").CombinedOutput(); err != nil {
		if os.Getenv("VMCONV_REQUIRE_TOOLS") != "" {
			t.Fatalf("libxlutil oracle: %v\n%s", err, out)
		}
		t.Logf("libxlutil oracle not built: %s", out)
		return ""
	}
	return bin
}
