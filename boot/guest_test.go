package boot

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/internal/testutil"
)

// guestDir is where testdata/guest/build.sh caches the Debian guest built
// from its current contents (VMCONV_GUEST_DIR overrides).
func guestDir(t testing.TB) string {
	t.Helper()
	d, err := testutil.GuestDir("..")
	require.NoError(t, err)
	if _, err := os.Stat(filepath.Join(d, "guest.vmx")); err != nil {
		testutil.Unavailable(t, "the Debian guest is not built: run testdata/guest/build.sh (as root) to make "+d)
	}
	return d
}

func readGuestFile(t testing.TB, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	require.NoError(t, err)
	return b
}

// The real Debian guest: what Find reads through the partition table, ext4
// and grub-mkconfig's grub.cfg is byte for byte what build.sh put in.
func TestFindRealGuest(t *testing.T) {
	dir := guestDir(t)
	e, err := Find([]disk.Image{openImage(t, filepath.Join(dir, "disk.raw"))})
	require.NoError(t, err)
	kver := strings.TrimSpace(string(readGuestFile(t, dir, "kernel-version")))
	uuid := strings.TrimSpace(string(readGuestFile(t, dir, "root-uuid")))
	assert.True(t, bytes.Equal(readGuestFile(t, dir, "vmlinuz"), e.Kernel), "kernel differs")
	assert.True(t, bytes.Equal(readGuestFile(t, dir, "initrd.img"), e.Initrd), "initrd differs")
	assert.Equal(t, "/boot/vmlinuz-"+kver, e.KernelPath)
	assert.Equal(t, "/boot/initrd.img-"+kver, e.InitrdPath)
	assert.Equal(t, strings.Join(strings.Fields(string(readGuestFile(t, dir, "cmdline"))), " "), e.Cmdline)
	assert.Contains(t, e.Cmdline, "root=UUID="+uuid)
	assert.Equal(t, e.Cmdline+" console=ttyS0", e.AdjustedCmdline)
	assert.Equal(t, "disk 0 partition 1: /boot/grub/grub.cfg", e.Config)
	assert.Equal(t, 1, e.Partition)
	assert.Equal(t, "ext4", e.FS)
	// The checked-in grub.cfg fixture is this guest's.
	assert.Equal(t, string(readGuestFile(t, dir, "grub.cfg")), string(debianCfg(t)))
}

// The anchor for the end-to-end tests: the guest's own kernel, initrd and
// adjusted command line, as Find reports them, boot the guest under plain
// QEMU TCG (microvm, virtio-mmio disk) to its login prompt on ttyS0.
// Minutes long: runs when VMCONV_GUEST_BOOT is set.
func TestRealGuestBootsTCG(t *testing.T) {
	if os.Getenv("VMCONV_GUEST_BOOT") == "" {
		t.Skip("boots the Debian guest under TCG for minutes; set VMCONV_GUEST_BOOT=1")
	}
	qemu := testutil.RequireTool(t, "qemu-system-x86_64")
	dir := guestDir(t)
	raw := filepath.Join(dir, "disk.raw")
	e, err := Find([]disk.Image{openImage(t, raw)})
	require.NoError(t, err)
	work := t.TempDir()
	k, i := filepath.Join(work, "vmlinuz"), filepath.Join(work, "initrd")
	require.NoError(t, os.WriteFile(k, e.Kernel, 0o644))
	require.NoError(t, os.WriteFile(i, e.Initrd, 0o644))
	// TCG has no kvm-clock: give the kernel the TSC frequency (see vmm.md §4.3).
	appendLine := e.AdjustedCmdline + " panic=-1 tsc_early_khz=" + strconv.Itoa(hostKHz(t))
	timeout := 15 * time.Minute
	if s := os.Getenv("VMCONV_GUEST_BOOT_TIMEOUT"); s != "" {
		timeout, err = time.ParseDuration(s)
		require.NoError(t, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, "-accel", "tcg", "-cpu", "max", "-m", "1024", "-smp", "1",
		"-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio", "-no-reboot", "-M", "microvm",
		"-kernel", k, "-initrd", i, "-append", appendLine,
		"-drive", "id=d0,file="+raw+",format=raw,if=none,snapshot=on", "-device", "virtio-blk-device,drive=d0")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var log strings.Builder
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sc.Split(scanLoginOrLine)
	for sc.Scan() {
		line := sc.Text()
		log.WriteString(line + "\n")
		if strings.Contains(line, "login:") {
			t.Logf("login prompt after %.1f s under TCG (cmdline %q)", time.Since(start).Seconds(), appendLine)
			return
		}
		if strings.Contains(line, "Kernel panic") {
			break
		}
	}
	t.Fatalf("no login prompt after %.0f s; console:\n%s", time.Since(start).Seconds(), tail(log.String(), 4000))
}

// scanLoginOrLine splits console output into lines, and also returns a
// partial line as soon as it holds "login:" (the prompt has no newline).
func scanLoginOrLine(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, bytes.TrimRight(data[:i], "\r"), nil
	}
	if i := bytes.Index(data, []byte("login:")); i >= 0 {
		return len(data), data, nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func hostKHz(t testing.TB) int {
	b, err := os.ReadFile("/proc/cpuinfo")
	require.NoError(t, err)
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "cpu MHz" {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			require.NoError(t, err)
			return int(f * 1000)
		}
	}
	t.Fatal(fmt.Errorf("no cpu MHz in /proc/cpuinfo"))
	return 0
}

// The wild guests testdata/guest/build-wild.sh builds: what Find reads
// through LVM, XFS, btrfs subvolumes and the ESP's stub grub.cfg is byte for
// byte the kernel and initrd the script put in, with its command line.
func TestFindWildGuests(t *testing.T) {
	for _, tc := range []struct {
		variant, config, fs string
		partition           int
	}{
		{"xfs-lvm-efi", "disk 0 partition 2: /grub/grub.cfg", "xfs", 2},
		{"btrfs", "disk 0 partition 1: /boot/grub/grub.cfg", "btrfs", 1},
		{"broken", "disk 0 partition 1: /boot/grub/grub.cfg", "ext4", 1},
	} {
		t.Run(tc.variant, func(t *testing.T) {
			dir := testutil.RequireWildGuest(t, "..", tc.variant)
			e, err := Find([]disk.Image{openImage(t, filepath.Join(dir, "disk.raw"))})
			require.NoError(t, err)
			assert.True(t, bytes.Equal(readGuestFile(t, dir, "vmlinuz"), e.Kernel), "kernel differs")
			assert.True(t, bytes.Equal(readGuestFile(t, dir, "initrd.img"), e.Initrd), "initrd differs")
			assert.Equal(t, strings.TrimSpace(string(readGuestFile(t, dir, "kernel-path"))), e.KernelPath)
			assert.Equal(t, strings.Join(strings.Fields(string(readGuestFile(t, dir, "cmdline"))), " "), e.Cmdline)
			assert.Equal(t, tc.config, e.Config)
			assert.Equal(t, tc.fs, e.FS)
			assert.Equal(t, tc.partition, e.Partition)
		})
	}
}

// Every filesystem of the XFS + LVM + UEFI guest is found, the root inside
// its logical volume.
func TestWildGuestVolumes(t *testing.T) {
	dir := testutil.RequireWildGuest(t, "..", "xfs-lvm-efi")
	vols, notes := Volumes([]disk.Image{openImage(t, filepath.Join(dir, "disk.raw"))})
	got := map[string]string{}
	for _, v := range vols {
		key := fmt.Sprintf("partition %d", v.Partition)
		if v.LV != "" {
			key = "LV " + v.LV
		}
		got[key] = v.FSType + " " + v.UUID
	}
	uuid := func(name string) string { return strings.TrimSpace(string(readGuestFile(t, dir, name))) }
	assert.Equal(t, map[string]string{
		"partition 1": "fat32 " + uuid("esp-uuid"),
		"partition 2": "xfs " + uuid("boot-uuid"),
		"LV vg0/root": "ext4 " + uuid("root-uuid"),
	}, got, "notes: %v", notes)
}
