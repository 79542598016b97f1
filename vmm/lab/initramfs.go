package lab

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vmconv/vmconv/internal/cpio"
	"github.com/vmconv/vmconv/internal/kmod"
)

// wantModules are the modules the lab loads, by name; their dependencies
// (from each module's own .modinfo) are loaded first. kvm-amd gives
// /dev/kvm on QEMU's emulated AMD-V; the rest carry the 9p share and the
// control console over virtio-mmio.
var wantModules = []string{
	"virtio_mmio", "virtio_console",
	"9pnet_virtio", "9p",
	"kvm-amd",
}

// moduleSet maps module names (with '-' and '_' as one) to their files
// under a kernel package's lib/modules.
type moduleSet map[string]string

func modName(s string) string { return kmod.Name(s) }

func findModules(kernelDir string) (moduleSet, error) {
	set := moduleSet{}
	root := filepath.Join(kernelDir, "lib", "modules")
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if n, ok := strings.CutSuffix(d.Name(), ".ko"); ok && !d.IsDir() {
			set[modName(n)] = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("lab: kernel modules under %s: %w", root, err)
	}
	return set, nil
}

// moduleDepends reads "depends=" from a module's .modinfo section.
func moduleDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("lab: module %s: %w", path, err)
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, fmt.Errorf("lab: module %s has no .modinfo section", path)
	}
	b, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("lab: module %s: .modinfo: %w", path, err)
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}

// loadOrder lists the files of want and their dependencies (from each
// module's own .modinfo), each after everything it depends on. Modules
// built into the kernel (absent from the set but named in modules.builtin)
// are skipped.
func loadOrder(set moduleSet, builtin map[string]bool, want []string) ([]string, error) {
	deps := func(name string) (string, []string, bool, error) {
		path, ok := set[name]
		if !ok {
			return "", nil, false, nil
		}
		ds, err := moduleDepends(path)
		return path, ds, true, err
	}
	order, err := kmod.Order(deps, builtin, want)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	return order, nil
}

// builtinModules reads modules.builtin (paths of modules compiled in).
func builtinModules(kernelDir string) map[string]bool {
	m := map[string]bool{}
	files, _ := filepath.Glob(filepath.Join(kernelDir, "lib", "modules", "*", "modules.builtin"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, line := range strings.Split(string(b), "\n") {
			if n, ok := strings.CutSuffix(filepath.Base(line), ".ko"); ok {
				m[modName(n)] = true
			}
		}
	}
	return m
}

// initScript is the lab's /init. It loads the modules, mounts the host's root
// over 9p, gives it the lab's own /proc, /sys, /dev and a tmpfs /run (whose
// run/tmp is the commands' TMPDIR: sparse files, hole punching), then
// serves the control console: each line it reads is a shell command run
// chrooted in the host's root, its output and a closing exit-status line
// written back. The 9p mount caches loosely (the test binaries and guest
// disks are read many times), so the cache is dropped before each command,
// which then sees the host's files as they are now, and what the command
// wrote is synced to the host before its exit status goes back.
const initScript = `#!/bin/busybox sh
/bin/busybox mkdir -p /usr/bin /sbin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
say() { echo "$*" > /dev/ttyS0; }
fail() {
	say "lab: $*"
	[ -c /dev/hvc0 ] && echo "@@lab-failed $*@@" > /dev/hvc0
	poweroff -f
}
while read -r m; do
	insmod "/lib/modules/$m" || fail "insmod $m failed"
done < /modules.order
for i in 1 2 3 4 5 6 7 8 9 10; do [ -c /dev/hvc0 ] && break; sleep 0.1; done
[ -c /dev/hvc0 ] || fail "no control console (/dev/hvc0)"
[ -c /dev/kvm ] || fail "no /dev/kvm after loading kvm-amd: does the CPU model have SVM?"
mkdir -p /host
mount -t 9p -o trans=virtio,version=9p2000.L,msize=1048576,cache=loose hostroot /host || fail "mounting the host's root over 9p failed"
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mount -t devtmpfs dev /host/dev
mount -t tmpfs -o mode=755 run /host/run
mkdir -m 1777 /host/run/tmp
# A heartbeat on the kernel console: the host stops a lab whose heart stops
# (its clock can stop under emulated AMD-V, and then nothing else is said).
( while :; do echo "@@lab-alive@@" > /dev/ttyS0; sleep 5; done ) &
exec 3<>/dev/hvc0
stty -F /dev/hvc0 raw -echo
echo "@@lab-ready@@" >&3
while read -r line <&3; do
	[ "$line" = "@@lab-poweroff@@" ] && break
	echo 3 > /proc/sys/vm/drop_caches
	chroot /host /bin/sh -c "$line" </dev/null >&3 2>&3
	status=$?
	sync
	echo "" >&3
	echo "@@lab-exit $status@@" >&3
done
poweroff -f
`

// initramfs returns the lab's initramfs for the kernel package at
// kernelDir, built once and cached under cacheDir by a hash of everything
// that goes in (busybox, the module files, the init script).
func initramfs(kernelDir, busybox, cacheDir string) (string, error) {
	set, err := findModules(kernelDir)
	if err != nil {
		return "", err
	}
	order, err := loadOrder(set, builtinModules(kernelDir), wantModules)
	if err != nil {
		return "", err
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return "", fmt.Errorf("lab: busybox: %w", err)
	}
	h := sha256.New()
	h.Write(bb)
	h.Write([]byte(initScript))
	for _, p := range order {
		fmt.Fprintf(h, "%s\n", p)
		if fi, err := os.Stat(p); err == nil {
			fmt.Fprintf(h, "%d %d\n", fi.Size(), fi.ModTime().UnixNano())
		}
	}
	out := filepath.Join(cacheDir, "initramfs-"+hex.EncodeToString(h.Sum(nil))[:16]+".cpio")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	var buf bytes.Buffer
	w := cpio.NewWriter(&buf)
	for _, d := range []string{"bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules"} {
		w.Dir(d, 0o755)
	}
	w.CharDevice("dev/console", 0o600, 5, 1)
	w.File("bin/busybox", 0o755, bb)
	w.File("init", 0o755, []byte(initScript))
	var names []string
	for _, p := range order {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("lab: %w", err)
		}
		w.File("lib/modules/"+filepath.Base(p), 0o644, b)
		names = append(names, filepath.Base(p))
	}
	w.File("modules.order", 0o644, []byte(strings.Join(names, "\n")+"\n"))
	if err := w.Close(); err != nil {
		return "", err
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("lab: %w", err)
	}
	tmp, err := os.CreateTemp(cacheDir, ".initramfs-*")
	if err != nil {
		return "", fmt.Errorf("lab: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return "", fmt.Errorf("lab: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("lab: %w", err)
	}
	return out, os.Rename(tmp.Name(), out)
}

// ModuleFiles returns the files of the named modules of the kernel package
// at kernelDir and of everything they depend on, in an order insmod can
// load them; modules built into the kernel are left out.
func ModuleFiles(kernelDir string, names ...string) ([]string, error) {
	set, err := findModules(kernelDir)
	if err != nil {
		return nil, err
	}
	return loadOrder(set, builtinModules(kernelDir), names)
}
