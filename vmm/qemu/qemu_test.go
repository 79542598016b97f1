package qemu

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/internal/testutil"
	"github.com/vmconv/vmconv/vmm/loader"
	"github.com/vmconv/vmconv/vmm/verdict"
)

// debianKernel fetches (once, into the shared cache) Debian's stock kernel
// and returns the vmlinuz path and its modules directory.
func debianKernel(t *testing.T) (vmlinuz, modules string) {
	t.Helper()
	testutil.RequireTool(t, "apt-get")
	testutil.RequireTool(t, "dpkg-deb")
	out, err := exec.Command("sh", "testdata/fetch-kernel.sh").Output()
	if err != nil {
		testutil.Unavailable(t, "Debian kernel not available (vmm/qemu/testdata/fetch-kernel.sh failed: "+err.Error()+")")
	}
	dir := strings.TrimSpace(string(out))
	ks, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	ms, _ := filepath.Glob(filepath.Join(dir, "lib", "modules", "*"))
	if len(ks) != 1 || len(ms) != 1 {
		testutil.Unavailable(t, "unexpected layout of the kernel package in "+dir)
	}
	return ks[0], ms[0]
}

// virtioModules are loaded in this order: virtio_ring before virtio, the
// transport and the block driver after them.
var virtioModules = []string{
	"drivers/virtio/virtio_ring.ko",
	"drivers/virtio/virtio.ko",
	"drivers/virtio/virtio_mmio.ko",
	"drivers/block/virtio_blk.ko",
}

// initramfs builds a busybox initramfs (newc cpio) whose /init is script,
// with the virtio modules of the kernel under /lib/modules.
func initramfs(t *testing.T, modules, script string) string {
	t.Helper()
	return initramfsWith(t, modules, script, virtioModules)
}

// initramfsWith is initramfs with the given modules (paths under kernel/).
func initramfsWith(t *testing.T, modules, script string, mods []string) string {
	t.Helper()
	busybox := testutil.RequireTool(t, "busybox")
	testutil.RequireTool(t, "cpio")
	if f, err := elf.Open(busybox); err == nil {
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				testutil.Unavailable(t, busybox+" is dynamically linked: install busybox-static")
			}
		}
		f.Close()
	}
	root := filepath.Join(t.TempDir(), "root")
	for _, d := range []string{"bin", "dev", "proc", "sys", "lib/modules"} {
		require.NoError(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	bb, err := os.ReadFile(busybox)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(root, "bin", "busybox"), bb, 0o755))
	require.NoError(t, os.Symlink("busybox", filepath.Join(root, "bin", "sh")))
	for _, m := range mods {
		b, err := os.ReadFile(filepath.Join(modules, "kernel", m))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(root, "lib", "modules", filepath.Base(m)), b, 0o644))
	}
	require.NoError(t, os.WriteFile(filepath.Join(root, "init"), []byte(script), 0o755))
	out := filepath.Join(t.TempDir(), "initrd.cpio")
	cmd := exec.Command("sh", "-c", "find . | cpio -o -H newc --quiet > "+out)
	cmd.Dir = root
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", b)
	return out
}

const initHead = `#!/bin/sh
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_mmio virtio_blk; do insmod /lib/modules/$m.ko || echo "insmod $m failed"; done
i=0
while [ ! -b /dev/vdb ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
`

const cmdline = "console=ttyS0 reboot=t panic=-1 quiet"

func token(t *testing.T) string {
	b := make([]byte, 8)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return "TOKEN" + hex.EncodeToString(b)
}

// TestVerifyBoots boots Debian's kernel with a busybox initramfs that reads a
// token from each of two NBD-served disks (checking their order), writes to
// the first one and reads the write back, then prints a login prompt.
func TestVerifyBoots(t *testing.T) {
	testutil.RequireTool(t, Binary)
	kernel, modules := debianKernel(t)
	tokA, tokB := token(t), token(t)
	script := initHead + `
a=$(dd if=/dev/vda bs=512 count=1 2>/dev/null | head -c 21)
b=$(dd if=/dev/vdb bs=512 skip=2048 count=1 2>/dev/null | head -c 21)
echo "disks: vda=$a vdb=$b"
printf 'GUEST-WROTE-THIS' | dd of=/dev/vda bs=512 seek=8 conv=notrunc,fsync 2>/dev/null
echo 3 > /proc/sys/vm/drop_caches
w=$(dd if=/dev/vda bs=512 skip=8 count=1 iflag=direct 2>/dev/null | head -c 16)
echo "readback: $w"
echo
printf 'vmconv-test login: '
sleep 1000
`
	initrd := initramfs(t, modules, script)

	baseA := make([]byte, 4<<20)
	copy(baseA, tokA)
	baseB := make([]byte, 2<<20)
	copy(baseB[1<<20:], tokB)
	origA := bytes.Clone(baseA)

	var console bytes.Buffer
	rep, err := Verify(context.Background(), Config{
		Kernel: kernel, Initrd: initrd, Cmdline: cmdline,
		CPUs: 1, MemoryMiB: 256,
		Disks: []Disk{
			{ID: "a", Format: "raw", Image: disk.FromReaderAt(bytes.NewReader(baseA), int64(len(baseA)))},
			{ID: "b", Format: "raw", Image: disk.FromReaderAt(bytes.NewReader(baseB), int64(len(baseB)))},
		},
		Timeout: 120 * time.Second,
		Console: &console,
	})
	require.NoError(t, err)
	t.Logf("boot %d ms, host %s", rep.BootMS, rep.Host)
	require.Equal(t, verdict.Pass, rep.Result, "reason %q, console:\n%s", rep.Reason, rep.Console)
	assert.Contains(t, rep.Console, "disks: vda="+tokA+" vdb="+tokB)
	assert.Contains(t, rep.Console, "readback: GUEST-WROTE-THIS")
	assert.Equal(t, "login:", rep.Marker)
	assert.Equal(t, "qemu", rep.Engine)
	assert.Equal(t, HostKind(), rep.Host)
	assert.Positive(t, rep.BootMS)
	assert.Equal(t, []verdict.DiskReport{{ID: "a", Format: "raw"}, {ID: "b", Format: "raw"}}, rep.Disks)
	assert.Equal(t, rep.Console, console.String(), "the console log and the report's tail differ")
	if HostKind() != HostHardware {
		assert.Contains(t, rep.Cmdline, "tsc_early_khz=")
	}
	assert.Equal(t, origA, baseA, "the guest's write reached the base image")
}

func TestVerifyFails(t *testing.T) {
	testutil.RequireTool(t, Binary)
	kernel, modules := debianKernel(t)
	img := disk.FromReaderAt(bytes.NewReader(make([]byte, 1<<20)), 1<<20)
	cases := []struct {
		name    string
		script  string
		timeout time.Duration
		accel   string
		reason  *regexp.Regexp
		keepBz  bool
	}{
		// Also the bzImage path: QEMU's firmware and the kernel's decompressor.
		{"init exits: kernel panic", initHead + "echo bye\nexit 1\n", 120 * time.Second, "auto", regexp.MustCompile(`^kernel panic$`), true},
		{"timeout", initHead + "sleep 1000\n", 3 * time.Second, "tcg", regexp.MustCompile(`^timeout`), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			initrd := initramfs(t, modules, c.script)
			start := time.Now()
			rep, err := Verify(context.Background(), Config{
				Kernel: kernel, Initrd: initrd, Cmdline: cmdline, MemoryMiB: 256,
				Disks:   []Disk{{ID: "d", Image: img}, {ID: "e", Image: img}},
				Timeout: c.timeout, Accel: c.accel, KeepBzImage: c.keepBz,
			})
			require.NoError(t, err)
			assert.Equal(t, verdict.Fail, rep.Result)
			assert.Regexp(t, c.reason, rep.Reason, "console:\n%s", rep.Console)
			assert.Less(t, time.Since(start), c.timeout+10*time.Second)
			assertNoQEMULeft(t)
		})
	}
}

// assertNoQEMULeft checks that no QEMU started by this process survives.
func assertNoQEMULeft(t *testing.T) {
	t.Helper()
	me := os.Getpid()
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(b)
		if !strings.Contains(s, "("+Binary[:15]+")") { // comm is cut at 15 bytes
			continue
		}
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) > 1 && f[1] == strconv.Itoa(me) && f[0] != "Z" {
			t.Errorf("a QEMU child is still running: %s", s)
		}
	}
}

// TestProcessHandling runs stand-in QEMU scripts to check how the engine
// treats the process: a decision kills the whole process group (children
// included), an exit without a marker fails with QEMU's complaint, the
// timeout and the context end the run.
func TestProcessHandling(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755))
		return p
	}
	pidFile := filepath.Join(dir, "child.pid")
	img := disk.FromReaderAt(bytes.NewReader(make([]byte, 4096)), 4096)
	cases := []struct {
		name    string
		body    string
		timeout time.Duration
		cancel  bool
		result  string
		reason  string
	}{
		{"marker then hang", "sleep 300 & echo $! > " + pidFile + "\necho booting\nprintf 'host login: '\nwait\n", 20 * time.Second, false, verdict.Pass, "expected marker seen"},
		{"clean exit without marker", "echo booting\nexit 0\n", 20 * time.Second, false, verdict.Fail, "the guest stopped before the marker appeared"},
		{"qemu error", "echo 'qemu-system-x86_64: -drive driver=nbd: Failed to connect' >&2\nexit 1\n", 20 * time.Second, false, verdict.Fail, "qemu exited (exit status 1) before the marker appeared: qemu-system-x86_64: -drive driver=nbd: Failed to connect"},
		{"panic on the console", "echo '[    1.0] Kernel panic - not syncing: VFS: Unable to mount root fs'\nsleep 300\n", 20 * time.Second, false, verdict.Fail, "kernel panic"},
		{"timeout", "sleep 300\n", time.Second, false, verdict.Fail, "timeout: no marker within 1s"},
		{"context ends", "sleep 300\n", 20 * time.Second, true, verdict.Fail, "verification interrupted: context canceled"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if c.cancel {
				time.AfterFunc(500*time.Millisecond, cancel)
			}
			start := time.Now()
			rep, err := Verify(ctx, Config{
				KernelData: []byte("kernel"), Cmdline: "console=ttyS0", Accel: "tcg",
				Disks:   []Disk{{ID: "d", Image: img}},
				Timeout: c.timeout, QEMU: script(strings.ReplaceAll(c.name, " ", "-"), c.body),
			})
			if c.cancel {
				require.ErrorIs(t, err, context.Canceled)
			} else {
				require.NoError(t, err)
			}
			assert.Equal(t, c.result, rep.Result, "console: %q", rep.Console)
			assert.Equal(t, c.reason, rep.Reason)
			assert.Less(t, time.Since(start), 15*time.Second)
		})
	}
	// The child of the "marker then hang" script died with its group.
	b, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond)
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err == nil {
		f := strings.Fields(string(st)[strings.LastIndexByte(string(st), ')')+2:])
		assert.Equal(t, "Z", f[0], "the QEMU stand-in's child survived the kill: %s", st)
	}
}

func TestVerifySetupErrors(t *testing.T) {
	testutil.RequireTool(t, Binary)
	img := disk.FromReaderAt(bytes.NewReader(make([]byte, 4096)), 4096)
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no kernel", Config{}, "no kernel"},
		{"missing kernel file", Config{Kernel: "/nonexistent/vmlinuz"}, "nonexistent"},
		{"bad accel", Config{KernelData: []byte("x"), Accel: "hax"}, "unknown accelerator"},
		{"disk without image", Config{KernelData: []byte("x"), Disks: []Disk{{ID: "x"}}}, "no image"},
		{"no qemu", Config{KernelData: []byte("x"), QEMU: "/nonexistent/qemu"}, "nonexistent"},
		{"overlaid disk read-only", Config{KernelData: []byte("x"), Overlaid: true,
			Disks: []Disk{{ID: "ro", Image: img}}}, "disk ro: an overlaid disk must be writable"},
		// The first disk's overlay is made before the second fails.
		{"second disk without image", Config{KernelData: []byte("x"),
			Disks: []Disk{{ID: "a", Image: img}, {ID: "b"}}}, "disk 1 (b) has no image"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Verify(context.Background(), c.cfg)
			assert.ErrorContains(t, err, c.want)
		})
	}
	_ = img

	// A kernel QEMU cannot load: a failure report naming QEMU's complaint.
	rep, err := Verify(context.Background(), Config{KernelData: []byte("not a kernel"), Accel: "tcg", Timeout: 30 * time.Second,
		Disks: []Disk{{ID: "d", Image: img}}})
	require.NoError(t, err)
	assert.Equal(t, verdict.Fail, rep.Result)
	assert.Contains(t, rep.Reason, "qemu exited")
}

func TestPVHKernel(t *testing.T) {
	kernel, _ := debianKernel(t)
	// The shared cache: the unpacking (seconds of xz) is paid once per kernel.
	cache := kernelCacheDir()
	if cache == "" {
		testutil.Unavailable(t, "no user cache directory")
	}
	p, err := pvhKernel(kernel, cache)
	require.NoError(t, err)
	require.NotEmpty(t, p, "Debian's kernel has a PVH note")
	orig, err := os.ReadFile(kernel)
	require.NoError(t, err)
	sum := sha256.Sum256(orig)
	assert.Equal(t, filepath.Join(cache, hex.EncodeToString(sum[:])+".elf"), p)
	k, err := os.ReadFile(p)
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(k, elfMagic))
	lk, err := loader.LoadELF(bytes.NewReader(k), int64(len(k)))
	require.NoError(t, err)
	assert.NotZero(t, lk.PVHEntry)
	// The ELF as it is.
	p3, err := pvhKernel(p, "")
	require.NoError(t, err)
	assert.Equal(t, p, p3)

	// Not a kernel, a truncated one, no cache: boot as given.
	dir := t.TempDir()
	for name, b := range map[string][]byte{
		"junk":      bytes.Repeat([]byte{0x90}, 4096),
		"truncated": orig[:len(orig)/2],
		"tiny":      []byte("x"),
	} {
		f := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(f, b, 0o644))
		got, err := pvhKernel(f, cache)
		require.NoError(t, err, name)
		assert.Empty(t, got, name)
	}
	got, err := pvhKernel(kernel, "")
	require.NoError(t, err)
	assert.Empty(t, got, "no cache directory")
}

func TestArgs(t *testing.T) {
	args := qemuArgs("tcg", HostPVM, "/k", "/i", "console=ttyS0", 2, 256, nbdDrives("/tmp/a,b/nbd.sock", 2))
	s := strings.Join(args, " ")
	for _, want := range []string{
		"-M microvm", "-accel tcg -cpu max", "-m 256", "-smp 2", "-nodefaults", "-no-user-config",
		"-nographic", "-serial stdio", "-no-reboot", "-kernel /k", "-initrd /i", "-append console=ttyS0",
		"-drive driver=nbd,server.type=unix,server.path=/tmp/a,,b/nbd.sock,export=d0,if=none,id=d0 -device virtio-blk-device,drive=d0",
		"export=d1,if=none,id=d1 -device virtio-blk-device,drive=d1",
	} {
		assert.Contains(t, s, want)
	}
	assert.NotContains(t, s, "file=", "QEMU must not open image files")
	assert.Contains(t, strings.Join(qemuArgs("kvm", HostHardware, "/k", "", "", 1, 64, nil), " "), "-accel kvm -cpu host")
	assert.Contains(t, strings.Join(qemuArgs("kvm", HostPVM, "/k", "", "", 1, 64, nil), " "), "-cpu max,-arch-capabilities")

	for _, c := range []struct{ want, host, got string }{
		{"auto", HostHardware, "kvm"}, {"auto", HostPVM, "tcg"}, {"", HostNone, "tcg"},
		{"tcg", HostHardware, "tcg"}, {"kvm", HostPVM, "kvm"},
	} {
		a, err := chooseAccel(c.want, c.host)
		require.NoError(t, err)
		assert.Equal(t, c.got, a, "%s on %s", c.want, c.host)
	}
	_, err := chooseAccel("kvm", HostNone)
	assert.Error(t, err)
}

// failingImage reads fine for the first 4 KiB and fails beyond, like a
// corrupt image.
type failingImage struct{ disk.Image }

func (f failingImage) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > 4096 {
		return 0, fmt.Errorf("chunk 7 at %#x: checksum mismatch", off)
	}
	return f.Image.ReadAt(p, off)
}

// TestDiskErrorsInReason: a disk read error on the NBD side is named in the
// failure reason.
func TestDiskErrorsInReason(t *testing.T) {
	testutil.RequireTool(t, "qemu-io")
	dir := t.TempDir()
	fake := filepath.Join(dir, "qemu")
	// The stand-in reads the disk through the socket on its command line,
	// as the guest would, then stops without a marker.
	require.NoError(t, os.WriteFile(fake, []byte("#!/bin/sh\nfor a; do case $a in *server.path=*) p=${a#*server.path=}; p=${p%%,export=*};; esac; done\n"+
		"qemu-io -r -f raw -c 'read 0 64k' \"nbd+unix:///d0?socket=$p\" >/dev/null 2>&1\necho guest stopped\n"), 0o755))
	img := failingImage{disk.FromReaderAt(bytes.NewReader(make([]byte, 1<<20)), 1<<20)}
	rep, err := Verify(context.Background(), Config{KernelData: []byte("k"), Accel: "tcg", QEMU: fake,
		Disks: []Disk{{ID: "d", Image: img}}, Timeout: 20 * time.Second})
	require.NoError(t, err)
	assert.Equal(t, verdict.Fail, rep.Result)
	assert.Contains(t, rep.Reason, "the guest stopped before the marker appeared; serving the disks failed: ")
	assert.Contains(t, rep.Reason, "checksum mismatch")
}

// TestLongTempDir: a TMPDIR too long for a Unix socket path still works.
func TestLongTempDir(t *testing.T) {
	long := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	require.NoError(t, os.MkdirAll(long, 0o755))
	t.Setenv("TMPDIR", long)
	dir := t.TempDir()
	fake := filepath.Join(dir, "qemu")
	// The stand-in connects to the NBD socket named on its command line.
	require.NoError(t, os.WriteFile(fake, []byte("#!/bin/sh\nfor a; do case $a in *server.path=*) p=${a#*server.path=}; p=${p%%,export=*};; esac; done\n[ -S \"$p\" ] && echo \"socket ok login:\"\nsleep 5\n"), 0o755))
	img := disk.FromReaderAt(bytes.NewReader(make([]byte, 4096)), 4096)
	rep, err := Verify(context.Background(), Config{KernelData: []byte("k"), Accel: "tcg", QEMU: fake,
		Disks: []Disk{{ID: "d", Image: img}}, Timeout: 20 * time.Second})
	require.NoError(t, err)
	assert.Equal(t, verdict.Pass, rep.Result, "%s: %s", rep.Reason, rep.Console)
}
