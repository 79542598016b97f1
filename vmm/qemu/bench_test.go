package qemu

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/formats/vmdk"
	"github.com/vmconv/vmconv/internal/testutil"
	"github.com/vmconv/vmconv/vmm/verdict"
)

// ext4Modules load after the virtio ones: crc32c before jbd2 and ext4
// (metadata_csum), then ext4's own dependencies.
var ext4Modules = []string{
	"crypto/crc32c_generic.ko",
	"lib/crc16.ko",
	"fs/mbcache.ko",
	"fs/jbd2/jbd2.ko",
	"fs/ext4/ext4.ko",
}

// TestBootBenchNBD times the same guest to its login marker with its VMDK
// served by our NBD server (Verify) and opened by QEMU's own VMDK driver,
// alternating, VMCONV_BENCH_BOOT_ROUNDS rounds after one warm-up of each.
// bench/boot-nbd.sh runs it.
func TestBootBenchNBD(t *testing.T) {
	rounds, _ := strconv.Atoi(os.Getenv("VMCONV_BENCH_BOOT_ROUNDS"))
	if rounds <= 0 {
		t.Skip("benchmark: set VMCONV_BENCH_BOOT_ROUNDS (bench/boot-nbd.sh)")
	}
	bin := testutil.RequireTool(t, Binary)
	qemuImg := testutil.RequireTool(t, "qemu-img")
	testutil.RequireTool(t, "mkfs.ext4")
	kernel, modules := debianKernel(t)
	work := t.TempDir()

	// An ext4 disk holding a 16 MiB payload the guest hashes, as a
	// monolithicSparse VMDK written by qemu-img.
	stage := filepath.Join(work, "stage")
	require.NoError(t, os.MkdirAll(stage, 0o755))
	payload := make([]byte, 16<<20)
	_, err := rand.Read(payload)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(stage, "payload"), payload, 0o644))
	sum := md5.Sum(payload)
	want := hex.EncodeToString(sum[:])
	raw := filepath.Join(work, "disk.raw")
	testutil.Run(t, "mkfs.ext4", "-q", "-F", "-d", stage, raw, "64M")
	vmdkPath := filepath.Join(work, "disk.vmdk")
	testutil.Run(t, qemuImg, "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=monolithicSparse", raw, vmdkPath)

	script := initHead + `
for m in crc32c_generic crc16 mbcache jbd2 ext4; do insmod /lib/modules/$m.ko || echo "insmod $m failed"; done
mkdir -p /mnt
mount -t ext4 -o ro /dev/vda /mnt || echo "mount failed"
echo "payload md5 $(md5sum /mnt/payload | cut -d' ' -f1)"
echo "read start $(cut -d' ' -f1 /proc/uptime)"
dd if=/dev/vda of=/dev/null bs=1M iflag=direct 2>/dev/null || echo "dd failed"
echo "read end $(cut -d' ' -f1 /proc/uptime)"
printf 'bench login: '
sleep 1000
`
	initrd := initramfsWith(t, modules, script, append(append([]string{}, virtioModules...), ext4Modules...))
	expect := regexp.MustCompile(`bench login:`)
	host := HostKind()
	accel, err := chooseAccel("auto", host)
	require.NoError(t, err)
	cmdline := "console=ttyS0 reboot=t panic=-1 quiet"
	if accel == "tcg" {
		cmdline += " tsc_early_khz=" + strconv.FormatInt(HostTSCkHz(), 10)
	}
	timeout := 5 * time.Minute
	// Both paths boot the same file: the ELF Verify would enter at its PVH
	// entry when there is one, else the bzImage.
	if p, err := pvhKernel(kernel, kernelCacheDir()); err == nil && p != "" {
		kernel = p
	}

	readRe := regexp.MustCompile(`read start ([0-9.]+)\s+read end ([0-9.]+)`)
	readMS := func(console string) float64 {
		m := readRe.FindStringSubmatch(console)
		require.NotNil(t, m, "no read timing on the console:\n%s", console)
		a, _ := strconv.ParseFloat(m[1], 64)
		b, _ := strconv.ParseFloat(m[2], 64)
		return (b - a) * 1000
	}
	// CPU time of this process and its waited-for children (QEMU) during a
	// run: less at the mercy of other load on the host than wall time.
	cpuNow := func() time.Duration {
		var self, kids syscall.Rusage
		require.NoError(t, syscall.Getrusage(syscall.RUSAGE_SELF, &self))
		require.NoError(t, syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids))
		tv := func(v syscall.Timeval) time.Duration { return time.Duration(v.Nano()) }
		return tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
	}
	ours := func() (int64, time.Duration, float64) {
		img, err := vmdk.Open(vmdkPath)
		require.NoError(t, err)
		defer img.Close()
		start := time.Now()
		rep, err := Verify(context.Background(), Config{
			Kernel: kernel, Initrd: initrd, Cmdline: cmdline, MemoryMiB: 256,
			Disks: []Disk{{ID: "disk", Format: "vmdk", Image: img}}, Expect: expect, Timeout: timeout,
			KeepBzImage: true, // boot the file chosen above as it is
		})
		require.NoError(t, err)
		require.Equal(t, verdict.Pass, rep.Result, "%s\n%s", rep.Reason, rep.Console)
		require.Contains(t, rep.Console, "payload md5 "+want)
		return rep.BootMS, time.Since(start), readMS(rep.Console)
	}
	theirs := func() (int64, time.Duration, float64) {
		args := qemuArgs(accel, host, kernel, initrd, cmdline, 1, 256,
			[]string{"file=" + qemuOptEscape(vmdkPath) + ",format=vmdk,readonly=on"})
		w := verdict.New(expect)
		start := time.Now()
		res, ms, err := run(context.Background(), bin, args, w, nil, timeout)
		require.NoError(t, err)
		require.True(t, res.Pass, "%s\n%s", res.Reason, w.Tail())
		require.Contains(t, w.Tail(), "payload md5 "+want)
		return ms, time.Since(start), readMS(w.Tail())
	}

	ours()
	theirs()
	var a, b, aw, bw, ar, br, ac, bc []float64
	for i := range rounds {
		c0 := cpuNow()
		ms, wall, rd := ours()
		c1 := cpuNow()
		ms2, wall2, rd2 := theirs()
		c2 := cpuNow()
		a, aw, ar, ac = append(a, float64(ms)), append(aw, float64(wall.Milliseconds())), append(ar, rd), append(ac, float64((c1-c0).Milliseconds()))
		b, bw, br, bc = append(b, float64(ms2)), append(bw, float64(wall2.Milliseconds())), append(br, rd2), append(bc, float64((c2-c1).Milliseconds()))
		t.Logf("round %d: nbd %d ms (wall %d, cpu %d, disk read %.0f ms), qemu-vmdk %d ms (wall %d, cpu %d, disk read %.0f ms)",
			i+1, ms, wall.Milliseconds(), (c1 - c0).Milliseconds(), rd, ms2, wall2.Milliseconds(), (c2 - c1).Milliseconds(), rd2)
	}
	ma, mb := median(a), median(b)
	fmt.Printf("boot-nbd: kernel=%s accel=%s host=%s rounds=%d nbd_median_ms=%.0f qemu_vmdk_median_ms=%.0f ratio=%.3f (wall medians %.0f / %.0f ms; min %.0f / %.0f ms)\n",
		filepath.Base(kernel), accel, host, rounds, ma, mb, ma/mb, median(aw), median(bw), minOf(a), minOf(b))
	fmt.Printf("boot-nbd: cpu (vmconv + qemu) to the marker: nbd_median_ms=%.0f qemu_vmdk_median_ms=%.0f ratio=%.3f\n",
		median(ac), median(bc), median(ac)/median(bc))
	fmt.Printf("boot-nbd: guest dd of the whole 64 MiB disk (O_DIRECT, 1 MiB): nbd_median_ms=%.0f qemu_vmdk_median_ms=%.0f ratio=%.3f\n",
		median(ar), median(br), median(ar)/median(br))
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minOf(v []float64) float64 {
	m := v[0]
	for _, x := range v {
		m = min(m, x)
	}
	return m
}
