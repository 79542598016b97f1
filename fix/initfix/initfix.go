//go:build linux

// Package initfix is the fixer's /init: vmconv's own binary run as PID 1
// in the initramfs package fix builds. It loads the modules, mounts the
// guest's root read-write, runs the plan's steps, reports each as a JSON
// line on the console, unmounts, syncs and powers the machine off.
package initfix

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmconv/vmconv/boot/lvm"
	"github.com/vmconv/vmconv/fix"
)

// Active reports whether this process is the fixer's /init: PID 1 with
// the plan beside it.
func Active() bool {
	if os.Getpid() != 1 {
		return false
	}
	_, err := os.Stat(fix.PlanFile)
	return err == nil
}

// rootDir is where the guest's root is mounted.
const rootDir = "/root"

// Main runs the plan and powers off; it never returns.
func Main() {
	out := os.Stdout
	fmt.Fprintln(out, fix.Begin)
	var mounted []string
	err := run(&mounted, func(r fix.Result) { out.Write(fix.FormatResult(r)) })
	if err != nil {
		out.Write(fix.FormatResult(fix.Result{Step: "setup", OK: false, Message: err.Error()}))
	}
	for i := len(mounted) - 1; i >= 0; i-- {
		if err := unix.Unmount(mounted[i], 0); err != nil {
			out.Write(fix.FormatResult(fix.Result{Step: "unmount", OK: false, Message: mounted[i] + ": " + err.Error()}))
		}
	}
	unix.Sync()
	// End only once every write reached the disks: the host may stop the
	// machine as soon as it reads it.
	fmt.Fprintln(out, fix.End)
	// The serial port drains at its own pace; powering off at once could
	// cut the last line short.
	time.Sleep(100 * time.Millisecond)
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

func run(mounted *[]string, report func(fix.Result)) error {
	for _, m := range []struct{ src, dst, typ string }{{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"}} {
		if err := unix.Mount(m.src, m.dst, m.typ, 0, ""); err != nil && err != unix.EBUSY {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	b, err := os.ReadFile(fix.PlanFile)
	if err != nil {
		return err
	}
	var plan fix.Plan
	if err := json.Unmarshal(b, &plan); err != nil {
		return fmt.Errorf("%s: %w", fix.PlanFile, err)
	}
	for _, m := range plan.Modules {
		if err := loadModule(filepath.Join(fix.ModuleDir, m)); err != nil {
			return err
		}
	}
	if err := mountFS(plan.Root, rootDir, mounted); err != nil {
		return err
	}
	for _, m := range plan.Mounts {
		if err := mountFS(m, filepath.Join(rootDir, m.Path), mounted); err != nil {
			return err
		}
	}
	for _, s := range plan.Steps {
		r := runStep(rootDir, plan.Kernel, s, mounted)
		report(r)
	}
	return nil
}

func loadModule(file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if err := unix.InitModule(b, ""); err != nil && err != unix.EEXIST {
		return fmt.Errorf("loading module %s: %w", filepath.Base(file), err)
	}
	return nil
}

// mountFS waits for the filesystem's device to appear (the disk drivers
// probe asynchronously; an LV's device once all its PVs are there) and
// mounts it read-write at dir.
func mountFS(m fix.Mount, dir string, mounted *[]string) error {
	dev, err := waitDevice(m)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(dev, dir, m.FSType, 0, m.Options); err != nil {
		return fmt.Errorf("mount %s (%s, %q) on %s: %w", dev, m.FSType, m.Options, m.Path, err)
	}
	*mounted = append(*mounted, dir)
	return nil
}

func waitDevice(m fix.Mount) (string, error) {
	var lvErr error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if m.LV == "" {
			if dev := findDevice(m); dev != "" {
				return dev, nil
			}
		} else {
			var lv *lvm.Mapping
			var devs map[string]string
			if lv, devs, lvErr = lvMapping(m.LV); lvErr == nil {
				dev, err := activate(lv, devs)
				if err != nil {
					return "", fmt.Errorf("LV %s: %w", m.LV, err)
				}
				if uuid, label := superblockID(dev, m.FSType); !matches(m, uuid, label) {
					return "", fmt.Errorf("LV %s holds no %s filesystem UUID=%s LABEL=%s", m.LV, m.FSType, m.UUID, m.Label)
				}
				return dev, nil
			}
		}
		if time.Now().After(deadline) {
			break
		}
	}
	if lvErr != nil {
		return "", fmt.Errorf("LV %s: %w", m.LV, lvErr)
	}
	return "", fmt.Errorf("no block device holds the %s filesystem UUID=%s LABEL=%s", m.FSType, m.UUID, m.Label)
}
