package guest

import (
	"bytes"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/vmconv/vmconv/boot"
	"github.com/vmconv/vmconv/boot/part"
	"github.com/vmconv/vmconv/disk"
)

// readOS parses /etc/os-release (or /usr/lib/os-release, which it links to).
func readOS(f boot.FS) *OS {
	var b []byte
	var err error
	for _, n := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		if b, err = f.ReadFile(n, 64<<10); err == nil {
			break
		}
	}
	if err != nil {
		return nil
	}
	o := &OS{}
	lines(b, func(_ int, l string) {
		k, v, ok := strings.Cut(strings.TrimSpace(l), "=")
		if !ok {
			return
		}
		if u, err := strconv.Unquote(v); err == nil {
			v = u
		} else {
			v = strings.Trim(v, `"'`)
		}
		switch k {
		case "ID":
			o.ID = v
		case "NAME":
			o.Name = v
		case "VERSION_ID":
			o.VersionID = v
		case "PRETTY_NAME":
			o.PrettyName = v
		case "ID_LIKE":
			o.IDLike = v
		}
	})
	return o
}

var kverRe = regexp.MustCompile(`(?:vmlinuz|vmlinux|kernel)-(.+)$`)

// kernelVersion is the version of the kernel the guest boots: from the boot
// entry's file name, else the only directory in /lib/modules.
func kernelVersion(f boot.FS, e *boot.Entry) string {
	if e != nil {
		if m := kverRe.FindStringSubmatch(path.Base(e.KernelPath)); m != nil {
			return m[1]
		}
	}
	for _, d := range []string{"/lib/modules", "/usr/lib/modules"} {
		if names, err := f.ReadDir(d); err == nil {
			var vs []string
			for _, n := range names {
				if n != "." && n != ".." {
					vs = append(vs, n)
				}
			}
			if len(vs) == 1 {
				return vs[0]
			}
		}
	}
	return ""
}

// findWindows recognises a Windows guest: an NTFS boot sector on a
// partition or the disk, or a Windows directory on a volume we read.
func findWindows(disks []disk.Image, vols []boot.Volume) *Finding {
	win := &Finding{Code: "windows-guest", Severity: Error, Message: "not supported: Windows guest",
		Fix: "convert Windows guests with a tool that injects Windows drivers (virt-v2v); vmconv inspects Linux guests"}
	for i, d := range disks {
		starts := []int64{0}
		if t, err := part.Read(d, d.Size()); err == nil {
			starts = starts[:0]
			for _, p := range t.Partitions {
				starts = append(starts, p.Start)
			}
		}
		for _, s := range starts {
			var b [11]byte
			if _, err := d.ReadAt(b[:], s); err == nil && bytes.Equal(b[3:11], []byte("NTFS    ")) {
				win.File = fmt.Sprintf("disk %d at offset %#x", i, s)
				win.Message += " (NTFS filesystem)"
				return win
			}
		}
	}
	for _, v := range vols {
		if _, dir, err := v.FS.Stat("/Windows/System32"); err == nil && dir {
			win.File = fmt.Sprintf("disk %d partition %d: /Windows", v.Disk, v.Partition)
			return win
		}
	}
	return nil
}
