package guest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/internal/testutil"
)

// partitioned writes a disk of sizeMiB with sfdisk's script and the given
// filesystem images placed at their partitions' starts (in MiB).
func partitioned(t *testing.T, dir string, sizeMiB int, script string, fsAt map[int]string) string {
	t.Helper()
	testutil.RequireTool(t, "sfdisk")
	raw := filepath.Join(dir, "disk.raw")
	require.NoError(t, os.WriteFile(raw, nil, 0o644))
	require.NoError(t, os.Truncate(raw, int64(sizeMiB)<<20))
	if script != "" {
		cmd := exec.Command("sfdisk", "-q", "--no-reread", "--no-tell-kernel", raw)
		cmd.Stdin = strings.NewReader(script)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	f, err := os.OpenFile(raw, os.O_WRONLY, 0)
	require.NoError(t, err)
	defer f.Close()
	for mib, img := range fsAt {
		b, err := os.ReadFile(img)
		require.NoError(t, err)
		_, err = f.WriteAt(b, int64(mib)<<20)
		require.NoError(t, err)
	}
	return raw
}

func inspectFile(t *testing.T, raw string, opt Options) *Report {
	t.Helper()
	img, err := disk.OpenRaw(raw)
	require.NoError(t, err)
	defer img.Close()
	rep, err := Inspect([]disk.Image{img}, opt)
	require.NoError(t, err)
	return rep
}

// TestWindowsGuest: NTFS made by mkntfs, on a partition or the whole disk,
// is named a Windows guest, not supported; an NTFS data disk beside a Linux
// root is not.
func TestWindowsGuest(t *testing.T) {
	testutil.RequireTool(t, "mkntfs")
	tests := []struct {
		name, script string
		at           int
		where        string
	}{
		{"partition", "label: dos\nstart=2048, size=40960, type=7, bootable\n", 1, "disk 0 at offset 0x100000"},
		{"whole disk", "", 0, "disk 0 at offset 0x0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ntfs := filepath.Join(dir, "ntfs.img")
			require.NoError(t, os.WriteFile(ntfs, nil, 0o644))
			require.NoError(t, os.Truncate(ntfs, 20<<20))
			testutil.Run(t, "mkntfs", "-q", "-F", "-Q", "-L", "Windows", ntfs)
			rep := inspectFile(t, partitioned(t, dir, 24, tc.script, map[int]string{tc.at: ntfs}), Options{Target: "kvm"})
			require.Len(t, rep.Findings, 1)
			f := rep.Findings[0]
			assert.Equal(t, "windows-guest", f.Code)
			assert.Equal(t, Error, f.Severity)
			assert.Equal(t, tc.where, f.File)
			assert.Contains(t, f.Message, "not supported: Windows guest")
		})
	}
	t.Run("NTFS data disk of a Linux guest", func(t *testing.T) {
		dir := t.TempDir()
		ntfs := filepath.Join(dir, "ntfs.img")
		require.NoError(t, os.WriteFile(ntfs, nil, 0o644))
		require.NoError(t, os.Truncate(ntfs, 20<<20))
		testutil.Run(t, "mkntfs", "-q", "-F", "-Q", ntfs)
		linux, err := disk.OpenRaw(buildBroken(t))
		require.NoError(t, err)
		defer linux.Close()
		data, err := disk.OpenRaw(partitioned(t, dir, 24, "label: dos\nstart=2048, size=40960, type=7\n", map[int]string{1: ntfs}))
		require.NoError(t, err)
		defer data.Close()
		rep, err := Inspect([]disk.Image{linux, data}, Options{Target: "vmware"})
		require.NoError(t, err)
		require.NotNil(t, rep.OS)
		for _, f := range rep.Findings {
			assert.NotEqual(t, "windows-guest", f.Code)
		}
	})
}

// TestEFIOnlyGuest: a GPT disk from sfdisk with an ESP made by mkfs.vfat
// and mtools holding EFI/debian/grubx64.efi, an ext4 root, and no BIOS boot
// code: an error on BIOS firmware, nothing on UEFI or with a BIOS boot
// partition beside it.
func TestEFIOnlyGuest(t *testing.T) {
	for _, tool := range []string{"mkfs.vfat", "mmd", "mcopy", "mkfs.ext4"} {
		testutil.RequireTool(t, tool)
	}
	dir := t.TempDir()
	esp := filepath.Join(dir, "esp.img")
	testutil.Run(t, "mkfs.vfat", "-C", esp, "8192")
	loader := filepath.Join(dir, "grubx64.efi")
	require.NoError(t, os.WriteFile(loader, []byte("MZ not a real loader"), 0o644))
	testutil.Run(t, "mmd", "-i", esp, "::/EFI", "::/EFI/debian")
	testutil.Run(t, "mcopy", "-i", esp, loader, "::/EFI/debian/grubx64.efi")
	root := filepath.Join(dir, "root")
	writeTree(t, root, map[string]string{"etc/os-release": "ID=debian\nVERSION_ID=12\n",
		"etc/fstab": "UUID=4d5e6f70-1111-2222-3333-444455556666 / ext4 defaults 0 1\n"})
	rootImg := filepath.Join(dir, "root.ext4")
	testutil.Run(t, "mkfs.ext4", "-q", "-F", "-U", "4d5e6f70-1111-2222-3333-444455556666", "-d", root, rootImg, "8M")
	const esp1 = "label: gpt\nstart=2048, size=16384, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\nstart=18432, size=16384, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n"
	const withBIOS = esp1 + "start=34816, size=2048, type=21686148-6449-6E6F-744E-656564454649\n"
	tests := []struct {
		name, script, firmware string
		want                   []found
	}{
		{"BIOS firmware", esp1, "bios", []found{{"firmware-efi-only", Error, "disk 0 partition 1: /EFI/debian/grubx64.efi"}}},
		{"UEFI firmware", esp1, "uefi", []found{}},
		{"BIOS boot partition too", withBIOS, "bios", []found{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := partitioned(t, t.TempDir(), 20, tc.script, map[int]string{1: esp, 9: rootImg})
			rep := inspectFile(t, raw, Options{Target: "kvm", Firmware: tc.firmware})
			require.NotNil(t, rep.OS, "%v", rep.Notes)
			var got []Finding
			for _, f := range rep.Findings {
				if strings.HasPrefix(f.Code, "firmware") {
					got = append(got, f)
				}
			}
			assert.Equal(t, tc.want, summarize(got))
		})
	}
}
