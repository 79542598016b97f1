package neutral

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
)

// TestBundleThroughput measures bundle writing and reading of the raw image
// named by VMCONV_BENCH_RAW, for example 1 GiB of realistic content made with
//
//	tar cf - /usr/lib | head -c 1G > /tmp/usr.raw; fallocate --dig-holes /tmp/usr.raw
//
// and reports the speeds and the peak RSS. It runs only when asked, since it
// takes the machine's cores for a while.
func TestBundleThroughput(t *testing.T) {
	raw := os.Getenv("VMCONV_BENCH_RAW")
	if raw == "" {
		t.Skip("set VMCONV_BENCH_RAW to run")
	}
	dir := t.TempDir()
	img, err := disk.OpenRaw(raw)
	require.NoError(t, err)
	defer img.Close()

	vm := testVM(Disk{ID: "disk0", Device: "disk", Bus: "scsi", Image: img})
	path := filepath.Join(dir, "vm.vmb")
	size := img.Size()
	mib := size >> 20
	start, cpu0 := time.Now(), cpuTime()
	writeTestBundle(t, path, vm, BundleOptions{})
	el, cpu := time.Since(start), cpuTime()-cpu0
	t.Logf("write: %d MiB in %v (CPU %v: %.0f MB/s per CPU-second): %.0f MB/s; bundle %d MiB",
		mib, el, cpu, float64(size)/cpu.Seconds()/1e6, float64(size)/el.Seconds()/1e6, dirBytes(t, path)>>20)

	got, err := OpenBundle(path)
	require.NoError(t, err)
	defer got.Close()
	start, cpu0 = time.Now(), cpuTime()
	d, err := disk.Digest(context.Background(), got.Disks[0].Image, disk.CopyOptions{})
	require.NoError(t, err)
	el, cpu = time.Since(start), cpuTime()-cpu0
	t.Logf("read+verify+digest: %v (CPU %v: %.0f MB/s per CPU-second): %.0f MB/s", el, cpu, float64(size)/cpu.Seconds()/1e6, float64(size)/el.Seconds()/1e6)
	require.Equal(t, vm.Disks[0].Digest, d)
	status, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "VmHWM") {
			t.Log(l)
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
