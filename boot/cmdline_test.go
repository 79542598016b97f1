package boot

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestAdjustCmdline(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		disks    int
		want     string
	}{
		{"no console", "root=UUID=5b1e0c4a-8d1f-4a47-9c1e-6d2f0b7a9e31 ro quiet", 1, "root=UUID=5b1e0c4a-8d1f-4a47-9c1e-6d2f0b7a9e31 ro quiet console=ttyS0"},
		{"empty", "", 1, "console=ttyS0"},
		{"ttyS0 not last", "console=ttyS0,115200n8 console=tty0 ro", 1, "console=tty0 ro console=ttyS0,115200n8"},
		{"ttyS0 already last", "ro console=tty0 console=ttyS0", 1, "ro console=tty0 console=ttyS0"},
		{"xen hvc0 kept", "root=/dev/xvda1 ro console=hvc0", 1, "root=/dev/vda1 ro console=hvc0 console=ttyS0"},
		{"other serial kept", "console=ttyS1,9600 root=/dev/sda2", 2, "console=ttyS1,9600 root=/dev/vda2 console=ttyS0"},
		{"sd whole disk", "root=/dev/sda", 1, "root=/dev/vda console=ttyS0"},
		{"second disk", "root=/dev/sdb3 resume=/dev/sda2", 2, "root=/dev/vdb3 resume=/dev/vda2 console=ttyS0"},
		{"ide hdc on a one-disk VM", "root=/dev/hdc1", 1, "root=/dev/vda1 console=ttyS0"},
		{"ide hdb of two", "root=/dev/hdb1", 2, "root=/dev/vdb1 console=ttyS0"},
		{"xvd", "root=/dev/xvdb1 resume=/dev/xvda2", 3, "root=/dev/vdb1 resume=/dev/vda2 console=ttyS0"},
		{"two letters", "root=/dev/sdab1", 40, "root=/dev/vdab1 console=ttyS0"},
		{"vd unchanged", "root=/dev/vda1", 1, "root=/dev/vda1 console=ttyS0"},
		{"uuid label partuuid left alone", "root=PARTUUID=7a3c9e51-01 resume=UUID=abc", 1, "root=PARTUUID=7a3c9e51-01 resume=UUID=abc console=ttyS0"},
		{"label", "root=LABEL=/ ro", 1, "root=LABEL=/ ro console=ttyS0"},
		{"lvm left alone", "root=/dev/mapper/vg-root ro", 1, "root=/dev/mapper/vg-root ro console=ttyS0"},
		{"not root", "foo=/dev/sda1 rootdelay=/dev/sda", 1, "foo=/dev/sda1 rootdelay=/dev/sda console=ttyS0"},
		{"quoted kept", `acpi_osi="Windows 2009" root=/dev/sda1`, 1, `acpi_osi="Windows 2009" root=/dev/vda1 console=ttyS0`},
		{"extra spaces", "  root=/dev/sda1   ro  ", 1, "root=/dev/vda1 ro console=ttyS0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, AdjustCmdline(tc.in, tc.disks))
		})
	}
}

func TestVercmp(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"6.10.0", "6.9.0", 1},
		{"6.5.6-300.fc39.x86_64", "6.5.6-300.fc39.x86_64", 0},
		{"1.0", "1.0.1", -1},
		{"1.0~rc1", "1.0", -1},
		{"1.0a", "1.0", 1},
		{"1.01", "1.1", 0},
		{"abc-6.10.1-200", "abc-6.5.6-300", 1},
		{"2.0", "10", -1},
		{"a", "1", -1},
	} {
		assert.Equal(t, tc.want, vercmp(tc.a, tc.b), "%s vs %s", tc.a, tc.b)
		assert.Equal(t, -tc.want, vercmp(tc.b, tc.a), "%s vs %s", tc.b, tc.a)
	}
}

func TestEntryString(t *testing.T) {
	e := &Entry{Kernel: make([]byte, 10), Initrd: make([]byte, 20), KernelPath: "/boot/vmlinuz", InitrdPath: "/boot/initrd.img",
		Cmdline: "root=/dev/sda1 ro", AdjustedCmdline: "root=/dev/vda1 ro console=ttyS0", Config: "disk 0 partition 1: /boot/grub/grub.cfg",
		Title: "Debian GNU/Linux", Partition: 1, FS: "ext4"}
	s := e.String()
	for _, want := range []string{"config:  disk 0 partition 1: /boot/grub/grub.cfg", "entry:   Debian GNU/Linux",
		"kernel:  /boot/vmlinuz (10 bytes, ext4 on disk 0 partition 1)", "initrd:  /boot/initrd.img (20 bytes)",
		"cmdline: root=/dev/sda1 ro", "boot:    root=/dev/vda1 ro console=ttyS0"} {
		assert.Contains(t, s, want)
	}
}
