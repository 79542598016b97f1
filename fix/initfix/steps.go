//go:build linux

package initfix

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmconv/vmconv/fix"
)

// maxFile bounds a configuration file read from the guest.
const maxFile = 4 << 20

func runStep(root, kver string, s fix.Step, mounted *[]string) (r fix.Result) {
	r = fix.Result{Step: s.Kind}
	start := time.Now()
	defer func() { r.MS = time.Since(start).Milliseconds() }()
	var err error
	switch s.Kind {
	case fix.StepDeviceNames:
		r.Changed, err = deviceNames(root, s)
	case fix.StepNetLink:
		r.Changed, err = netLink(root, s)
	case fix.StepToolsDisable:
		r.Changed, err = toolsDisable(root, s)
	case fix.StepInitramfs:
		r.Changed, r.Output, err = rebuildInitramfs(root, kver, s, mounted)
	default:
		err = fmt.Errorf("unknown step %q", s.Kind)
	}
	r.OK = err == nil
	if err != nil {
		r.Message = err.Error()
	}
	return r
}

// guestPath is name inside the guest's root; the plan's names are absolute
// paths without "..", so they stay under it.
func guestPath(root, name string) (string, error) {
	if !filepath.IsAbs(name) || strings.Contains(name, "..") {
		return "", fmt.Errorf("%q: not an absolute guest path", name)
	}
	return filepath.Join(root, name), nil
}

// writeKeep replaces a file's contents in place, keeping its mode, owner
// and inode (a hard link or a bind mount still sees it).
func writeKeep(p string, b []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func readBounded(p string) ([]byte, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", p)
	}
	if fi.Size() > maxFile {
		return nil, fmt.Errorf("%s: larger than %d MiB", p, maxFile>>20)
	}
	return os.ReadFile(p)
}

func deviceNames(root string, s fix.Step) ([]string, error) {
	var changed []string
	for _, name := range s.Files {
		p, err := guestPath(root, name)
		if err != nil {
			return changed, err
		}
		b, err := readBounded(p)
		if err != nil {
			return changed, err
		}
		nb, what := fix.Rewrite(name, b, s.Names)
		if len(what) == 0 {
			continue
		}
		if err := writeKeep(p, nb); err != nil {
			return changed, fmt.Errorf("%s: %w", name, err)
		}
		for _, w := range what {
			changed = append(changed, name+":"+w)
		}
	}
	return changed, nil
}

// netLink writes a systemd .link file: whatever the new NIC's driver and
// slot, udev names the VM's MAC as the old configuration expects.
func netLink(root string, s fix.Step) ([]string, error) {
	if !validIfName(s.Name) || !validMAC(s.MAC) {
		return nil, fmt.Errorf("invalid interface name %q or MAC %q", s.Name, s.MAC)
	}
	name := "/etc/systemd/network/10-vmconv-" + s.Name + ".link"
	p, _ := guestPath(root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	body := fmt.Sprintf("# Written by vmconv fix: the NIC with the VM's MAC keeps the name\n# the network configuration uses.\n[Match]\nMACAddress=%s\n\n[Link]\nName=%s\n", s.MAC, s.Name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		return nil, err
	}
	return []string{name}, nil
}

func validIfName(s string) bool {
	if s == "" || len(s) > 15 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("_.-@:", c)) {
			return false
		}
	}
	return true
}

func validMAC(s string) bool {
	if len(s) != 17 {
		return false
	}
	for i, c := range s {
		if i%3 == 2 && c != ':' || i%3 != 2 && !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}

// toolsDisable removes the units' enablement symlinks (in any .wants or
// .requires directory under /etc/systemd/system): the package stays
// installed, nothing starts it.
func toolsDisable(root string, s fix.Step) ([]string, error) {
	var changed []string
	for _, u := range s.Units {
		if strings.ContainsAny(u, "/*?[") {
			return changed, fmt.Errorf("invalid unit name %q", u)
		}
		for _, pat := range []string{"/etc/systemd/system/*.wants/" + u, "/etc/systemd/system/*.requires/" + u} {
			links, _ := filepath.Glob(filepath.Join(root, pat))
			for _, l := range links {
				if fi, err := os.Lstat(l); err != nil || fi.Mode()&os.ModeSymlink == 0 {
					continue
				}
				if err := os.Remove(l); err != nil {
					return changed, err
				}
				changed = append(changed, strings.TrimPrefix(l, root))
			}
		}
	}
	return changed, nil
}

// rebuildInitramfs adds the drivers to the guest's initramfs
// configuration and has the guest's own tool rebuild it, chrooted in the
// guest with its own /proc, /sys and /dev.
func rebuildInitramfs(root, kver string, s fix.Step, mounted *[]string) ([]string, string, error) {
	for _, d := range s.Drivers {
		if !validIfName(strings.ReplaceAll(d, "-", "_")) {
			return nil, "", fmt.Errorf("invalid driver name %q", d)
		}
	}
	for _, m := range []struct{ src, dst, typ string }{{"proc", "proc", "proc"}, {"sysfs", "sys", "sysfs"}, {"devtmpfs", "dev", "devtmpfs"}, {"tmpfs", "run", "tmpfs"}} {
		dst := filepath.Join(root, m.dst)
		if err := unix.Mount(m.src, dst, m.typ, 0, ""); err != nil {
			return nil, "", fmt.Errorf("mount %s in the guest: %w", m.dst, err)
		}
		*mounted = append(*mounted, dst)
	}
	if err := udevLinks(filepath.Join(root, "dev")); err != nil {
		return nil, "", fmt.Errorf("device links in the guest's /dev: %w", err)
	}
	var changed []string
	var args []string
	switch s.Tool {
	case "update-initramfs":
		name := "/etc/initramfs-tools/modules"
		p, _ := guestPath(root, name)
		b, err := os.ReadFile(p)
		if err != nil && !os.IsNotExist(err) {
			return nil, "", err
		}
		if nb := addModules(b, s.Drivers); !bytes.Equal(nb, b) {
			if err := os.WriteFile(p, nb, 0o644); err != nil {
				return nil, "", err
			}
			changed = append(changed, name)
		}
		args = []string{"/usr/sbin/update-initramfs", "-u", "-k", kver}
	case "dracut":
		// The drivers go into dracut's configuration (as into
		// initramfs-tools' modules file), so the next kernel's image
		// has them too; force_drivers also loads them at boot:
		// virtio_mmio's devices come from the command line, and
		// nothing asks udev for it.
		name := "/etc/dracut.conf.d/50-vmconv.conf"
		p, _ := guestPath(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, "", err
		}
		conf := "# Written by vmconv fix: the disk drivers of the VM's new platform.\nforce_drivers+=\" " + strings.Join(s.Drivers, " ") + " \"\n"
		if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
			return nil, "", err
		}
		changed = append(changed, name)
		image := s.Initrd
		if image == "" {
			image = "/boot/initramfs-" + kver + ".img"
		}
		if _, err := guestPath(root, image); err != nil {
			return changed, "", err
		}
		args = []string{"/usr/bin/dracut", "--force", image, kver}
	default:
		return nil, "", fmt.Errorf("unknown initramfs tool %q", s.Tool)
	}
	out, err := chrootRun(root, args)
	if err != nil {
		return changed, out, err
	}
	return append(changed, "initramfs for "+kver+" rebuilt by "+filepath.Base(args[0])), out, nil
}

// addModules appends to an initramfs-tools modules file the drivers it
// does not list yet, keeping what is there.
func addModules(b []byte, drivers []string) []byte {
	have := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 0 && !strings.HasPrefix(f[0], "#") {
			have[strings.ReplaceAll(f[0], "-", "_")] = true
		}
	}
	out := append([]byte(nil), b...)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	for _, d := range drivers {
		if !have[d] {
			out = append(out, d+"\n"...)
		}
	}
	return out
}

// maxOutput bounds the tool output kept for the report (its tail).
const maxOutput = 4 << 10

func chrootRun(root string, args []string) (string, error) {
	if _, err := os.Stat(filepath.Join(root, args[0])); err != nil {
		// usr-merged or not, the tool may live in the other directory.
		alt := strings.Replace(args[0], "/usr/", "/", 1)
		if _, err2 := os.Stat(filepath.Join(root, alt)); err2 != nil {
			return "", fmt.Errorf("%s not found in the guest", args[0])
		}
		args[0] = alt
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C", "TERM=dumb"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	var buf tail
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s: %w", strings.Join(args, " "), err)
	}
	return buf.String(), err
}

// tail keeps the last maxOutput bytes written to it.
type tail struct{ b []byte }

func (t *tail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 2*maxOutput {
		t.b = append(t.b[:0], t.b[len(t.b)-maxOutput:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	if len(t.b) > maxOutput {
		return "…" + string(t.b[len(t.b)-maxOutput:])
	}
	return string(t.b)
}
