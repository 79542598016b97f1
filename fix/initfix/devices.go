//go:build linux

package initfix

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"

	"github.com/vmconv/vmconv/fix"
)

// findDevice returns the /dev node of the block device whose filesystem
// has m's UUID (or label), read from its superblock; "" when none has.
func findDevice(m fix.Mount) string {
	names, _ := filepath.Glob("/sys/class/block/*")
	for _, n := range names {
		dev := "/dev/" + filepath.Base(n)
		uuid, label := superblockID(dev, m.FSType)
		if uuid == "" && label == "" {
			continue
		}
		if matches(m, uuid, label) {
			return dev
		}
	}
	return ""
}

// matches reports whether a filesystem with uuid and label is m's: by
// UUID, or by label when m has no UUID.
func matches(m fix.Mount, uuid, label string) bool {
	return m.UUID != "" && strings.EqualFold(uuid, m.UUID) || m.UUID == "" && m.Label != "" && label == m.Label
}

// superblockID reads the UUID and label of an ext2/3/4, XFS or Btrfs
// filesystem on dev.
func superblockID(dev, fstype string) (uuid, label string) {
	f, err := os.Open(dev)
	if err != nil {
		return "", ""
	}
	defer f.Close()
	var uuidOff, labelOff, labelLen int64
	switch fstype {
	case "ext2", "ext3", "ext4":
		b := make([]byte, 2)
		if _, err := f.ReadAt(b, 1024+0x38); err != nil || b[0] != 0x53 || b[1] != 0xef {
			return "", ""
		}
		uuidOff, labelOff, labelLen = 1024+0x68, 1024+0x78, 16
	case "xfs":
		b := make([]byte, 4)
		if _, err := f.ReadAt(b, 0); err != nil || string(b) != "XFSB" {
			return "", ""
		}
		uuidOff, labelOff, labelLen = 32, 108, 12
	case "btrfs":
		b := make([]byte, 8)
		if _, err := f.ReadAt(b, 0x10000+0x40); err != nil || string(b) != "_BHRfS_M" {
			return "", ""
		}
		uuidOff, labelOff, labelLen = 0x10000+0x20, 0x10000+0x12b, 256
	default:
		return "", ""
	}
	u := make([]byte, 16)
	l := make([]byte, labelLen)
	if _, err := f.ReadAt(u, uuidOff); err != nil {
		return "", ""
	}
	f.ReadAt(l, labelOff)
	h := hex.EncodeToString(u)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32], string(bytes.TrimRight(l, "\x00"))
}

// udevLinks makes in dev the links a running udev (and systemd) would,
// that guest tools run chrooted rely on: dracut in host-only mode finds
// the root's stack of devices through /dev/block/MAJ:MIN and runs shell
// process substitutions through /dev/fd.
func udevLinks(dev string) error {
	names, _ := filepath.Glob("/sys/class/block/*")
	if err := os.MkdirAll(filepath.Join(dev, "block"), 0o755); err != nil {
		return err
	}
	for _, n := range names {
		num, err := os.ReadFile(filepath.Join(n, "dev"))
		if err != nil {
			continue
		}
		link := filepath.Join(dev, "block", strings.TrimSpace(string(num)))
		os.Remove(link)
		if err := os.Symlink("../"+filepath.Base(n), link); err != nil {
			return err
		}
	}
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		if _, err := os.Lstat(filepath.Join(dev, name)); err == nil {
			continue
		}
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	return nil
}
