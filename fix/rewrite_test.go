package fix

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

var sda = map[string]string{
	"/dev/sda1": "UUID=5b1e0c4a-8d1f-4a47-9c1e-6d2f0b7a9e32",
	"/dev/sda2": "UUID=0d6f8e4c-2b7a-4c1e-9a3f-6e5d4c3b2a19",
	"/dev/sdb1": "UUID=1111aaaa-2222-4333-8444-555566667777",
}

// grubenv is a GRUB environment block holding vars: 1024 bytes, '#'
// padded, as grub-editenv writes it.
func grubenv(vars string) string {
	s := "# GRUB Environment Block\n" + vars
	return s + strings.Repeat("#", 1024-len(s))
}

func TestRewrite(t *testing.T) {
	tests := []struct {
		name, file, in, want string
		changed              []string
	}{
		{"fstab as the Debian installer writes it", "/etc/fstab",
			"# /etc/fstab: static file system information.\n#\n# <file system> <mount point>   <type>  <options>       <dump>  <pass>\n# / was on /dev/sda1 during installation\n/dev/sda1       /               ext4    errors=remount-ro 0       1\n/dev/sda2\tnone\tswap\tsw\t0\t0\n/dev/sr0        /media/cdrom0   udf,iso9660 user,noauto     0       0\n",
			"# /etc/fstab: static file system information.\n#\n# <file system> <mount point>   <type>  <options>       <dump>  <pass>\n# / was on /dev/sda1 during installation\nUUID=5b1e0c4a-8d1f-4a47-9c1e-6d2f0b7a9e32       /               ext4    errors=remount-ro 0       1\nUUID=0d6f8e4c-2b7a-4c1e-9a3f-6e5d4c3b2a19\tnone\tswap\tsw\t0\t0\n/dev/sr0        /media/cdrom0   udf,iso9660 user,noauto     0       0\n",
			[]string{"5: /dev/sda1 -> UUID=5b1e0c4a-8d1f-4a47-9c1e-6d2f0b7a9e32", "6: /dev/sda2 -> UUID=0d6f8e4c-2b7a-4c1e-9a3f-6e5d4c3b2a19"}},
		{"fstab: a mount point named like a device is not touched", "/etc/fstab",
			"UUID=x /dev/sda1 ext4 defaults 0 0", "UUID=x /dev/sda1 ext4 defaults 0 0", nil},
		{"fstab without a final newline", "/etc/fstab", "/dev/sdb1 /srv xfs defaults 0 2",
			"UUID=1111aaaa-2222-4333-8444-555566667777 /srv xfs defaults 0 2", []string{"1: /dev/sdb1 -> UUID=1111aaaa-2222-4333-8444-555566667777"}},
		{"crypttab: the second field", "/etc/crypttab",
			"# <target name> <source device> <key file> <options>\nsdb1_crypt /dev/sdb1 none luks,discard\n",
			"# <target name> <source device> <key file> <options>\nsdb1_crypt UUID=1111aaaa-2222-4333-8444-555566667777 none luks,discard\n",
			[]string{"2: /dev/sdb1 -> UUID=1111aaaa-2222-4333-8444-555566667777"}},
		{"grub.cfg linux lines, recovery too", "/boot/grub/grub.cfg",
			"\techo\t'Loading Linux 6.1.0-50-amd64 ...'\n\tlinux\t/boot/vmlinuz-6.1.0-50-amd64 root=/dev/sda1 ro  quiet\n\tlinux\t/boot/vmlinuz-6.1.0-50-amd64 root=/dev/sda1 ro single resume=/dev/sda2\n\tsearch --no-floppy --fs-uuid --set=root 5b1e0c4a\n",
			"\techo\t'Loading Linux 6.1.0-50-amd64 ...'\n\tlinux\t/boot/vmlinuz-6.1.0-50-amd64 root=UUID=5b1e0c4a-8d1f-4a47-9c1e-6d2f0b7a9e32 ro  quiet\n\tlinux\t/boot/vmlinuz-6.1.0-50-amd64 root=UUID=5b1e0c4a-8d1f-4a47-9c1e-6d2f0b7a9e32 ro single resume=UUID=0d6f8e4c-2b7a-4c1e-9a3f-6e5d4c3b2a19\n\tsearch --no-floppy --fs-uuid --set=root 5b1e0c4a\n",
			[]string{"2: /dev/sda1 -> UUID=5b1e0c4a-8d1f-4a47-9c1e-6d2f0b7a9e32", "3: /dev/sda1 -> UUID=5b1e0c4a-8d1f-4a47-9c1e-6d2f0b7a9e32, /dev/sda2 -> UUID=0d6f8e4c-2b7a-4c1e-9a3f-6e5d4c3b2a19"}},
		{"grub.cfg: an unknown device and a longer name stay", "/boot/grub/grub.cfg",
			"linux /vmlinuz root=/dev/sdc1 resume=/dev/sda10\n", "linux /vmlinuz root=/dev/sdc1 resume=/dev/sda10\n", nil},
		{"default/grub: quoted value, and UUIDs re-enabled", "/etc/default/grub",
			"GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX=\"root=/dev/sda1 console=tty0\"\nGRUB_DISABLE_LINUX_UUID=true\n# GRUB_DISABLE_LINUX_UUID=true\n",
			"GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX=\"root=UUID=5b1e0c4a-8d1f-4a47-9c1e-6d2f0b7a9e32 console=tty0\"\n#GRUB_DISABLE_LINUX_UUID=true\n# GRUB_DISABLE_LINUX_UUID=true\n",
			[]string{"2: /dev/sda1 -> UUID=5b1e0c4a-8d1f-4a47-9c1e-6d2f0b7a9e32", "3: GRUB_DISABLE_LINUX_UUID=true commented out"}},
		{"initramfs-tools resume", "/etc/initramfs-tools/conf.d/resume", "RESUME=/dev/sda2\n",
			"RESUME=UUID=0d6f8e4c-2b7a-4c1e-9a3f-6e5d4c3b2a19\n", []string{"1: /dev/sda2 -> UUID=0d6f8e4c-2b7a-4c1e-9a3f-6e5d4c3b2a19"}},
		{"a BLS entry's options", "/boot/loader/entries/0a1b-5.14.0-362.el9.x86_64.conf",
			"title Rocky Linux\nversion 5.14.0-362.el9.x86_64\nlinux /vmlinuz-5.14.0-362.el9.x86_64\noptions root=/dev/sda2 ro resume=/dev/sda1\n",
			"title Rocky Linux\nversion 5.14.0-362.el9.x86_64\nlinux /vmlinuz-5.14.0-362.el9.x86_64\noptions root=UUID=0d6f8e4c-2b7a-4c1e-9a3f-6e5d4c3b2a19 ro resume=UUID=5b1e0c4a-8d1f-4a47-9c1e-6d2f0b7a9e32\n",
			[]string{"4: /dev/sda2 -> UUID=0d6f8e4c-2b7a-4c1e-9a3f-6e5d4c3b2a19, /dev/sda1 -> UUID=5b1e0c4a-8d1f-4a47-9c1e-6d2f0b7a9e32"}},
		{"menu.lst kernel line", "/boot/grub/menu.lst", "kernel /vmlinuz-2.6.32 ro root=/dev/sda1\n",
			"kernel /vmlinuz-2.6.32 ro root=UUID=5b1e0c4a-8d1f-4a47-9c1e-6d2f0b7a9e32\n", []string{"1: /dev/sda1 -> UUID=5b1e0c4a-8d1f-4a47-9c1e-6d2f0b7a9e32"}},
		{"grubenv keeps its 1024 bytes", "/boot/grub2/grubenv", grubenv("kernelopts=root=/dev/sda1 ro\n"),
			grubenv("kernelopts=root=UUID=5b1e0c4a-8d1f-4a47-9c1e-6d2f0b7a9e32 ro\n"), []string{"2: /dev/sda1 -> UUID=5b1e0c4a-8d1f-4a47-9c1e-6d2f0b7a9e32"}},
		{"grubenv without room is left alone", "/boot/grub2/grubenv", grubenv("kernelopts=root=/dev/sda1 " + strings.Repeat("x", 952) + "\n"),
			grubenv("kernelopts=root=/dev/sda1 " + strings.Repeat("x", 952) + "\n"), nil},
		{"CRLF lines keep their ends", "/etc/fstab", "/dev/sda1 / ext4 defaults 0 1\r\n",
			"UUID=5b1e0c4a-8d1f-4a47-9c1e-6d2f0b7a9e32 / ext4 defaults 0 1\r\n", []string{"1: /dev/sda1 -> UUID=5b1e0c4a-8d1f-4a47-9c1e-6d2f0b7a9e32"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, changed := Rewrite(tc.file, []byte(tc.in), sda)
			assert.Equal(t, tc.want, string(out))
			assert.Equal(t, tc.changed, changed)
		})
	}
}
