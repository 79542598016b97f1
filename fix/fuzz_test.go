package fix

import (
	"bytes"
	"path"
	"strings"
	"testing"
)

// FuzzParseConsole: whatever the guest prints, reading it back never
// panics and never returns more than MaxResults results.
func FuzzParseConsole(f *testing.F) {
	f.Add([]byte(Begin + "\n" + string(FormatResult(Result{Step: StepDeviceNames, OK: true, Changed: []string{"/etc/fstab:2: /dev/sda1 -> UUID=x"}})) + End + "\n"))
	f.Add([]byte("[    1.0] Kernel panic - not syncing\n" + Begin + "\r\n" + Prefix + "{\"step\":\n"))
	f.Add([]byte(Begin + "\n" + Prefix + `{"step":"initramfs","ok":false,"output":"\u0000\ud800"}` + "\n" + End))
	f.Fuzz(func(t *testing.T, console []byte) {
		rs, _ := ParseConsole(console)
		if len(rs) > MaxResults {
			t.Fatalf("%d results", len(rs))
		}
	})
}

// rewriteFiles are the kinds of file Rewrite treats each its own way; a fuzz
// input is rewritten as one of them.
var rewriteFiles = []string{"/etc/fstab", "/etc/crypttab", "/etc/default/grub", "/boot/grub2/grubenv", "/boot/grub/grub.cfg"}

// FuzzRewrite: whatever a guest's fstab, crypttab, GRUB files hold, the
// rewrite keeps the number of lines, changes nothing when it reports no
// change, keeps a grubenv's size, and a second pass finds nothing left.
func FuzzRewrite(f *testing.F) {
	f.Add(uint8(0), "# <fs>\n/dev/sda1 / ext4 defaults 0 1\r\n/dev/sda2\tnone swap sw 0 0")
	f.Add(uint8(1), "sdb1_crypt /dev/sdb1 none luks\n")
	f.Add(uint8(2), "GRUB_CMDLINE_LINUX=\"root=/dev/sda1 resume=/dev/sda2\"\n GRUB_DISABLE_LINUX_UUID='true'\n")
	f.Add(uint8(3), grubenv("kernelopts=root=/dev/sda1 ro\n"))
	f.Add(uint8(4), "linux /k root=/dev/sda1 RESUME=/dev/sdb1;root=/dev/sda10\n")
	f.Fuzz(func(t *testing.T, which uint8, text string) {
		file := rewriteFiles[int(which)%len(rewriteFiles)]
		out, changed := Rewrite(file, []byte(text), sda)
		if len(changed) == 0 && !bytes.Equal(out, []byte(text)) {
			t.Fatalf("%s: output differs with no change reported:\n%q\n%q", file, text, out)
		}
		if n, m := strings.Count(text, "\n"), bytes.Count(out, []byte("\n")); n != m {
			t.Fatalf("%s: %d lines became %d", file, n, m)
		}
		if path.Base(file) == "grubenv" && len(out) != len(text) {
			t.Fatalf("grubenv of %d bytes became %d", len(text), len(out))
		}
		if again, more := Rewrite(file, out, sda); len(more) != 0 || !bytes.Equal(again, out) {
			t.Fatalf("%s: a second pass changed %q", file, more)
		}
	})
}
