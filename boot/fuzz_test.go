package boot

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzGrubCfg runs arbitrary grub.cfg text through the parser, the
// interpreter and the entry choice: errors are fine, panics and hangs are not.
func FuzzGrubCfg(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/grub/*.cfg")
	for _, s := range seeds {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(string(b), "saved_entry=0\n")
		}
	}
	f.Add(menuCfg, "next_entry=adv>sub-b\n")
	f.Add("function f { f }\nf\n", "")
	f.Add("menuentry x { multiboot2 /xen\nmodule2 /k a\nmodule2 /i }\nsubmenu s { menuentry y { linux (hd0,msdos1)/k } }\nset default=\"s>y\"", "")
	f.Fuzz(func(t *testing.T, cfg, env string) {
		fsys := memFS{
			"/boot/grub/grub.cfg":    cfg,
			"/boot/grub/grubenv":     "# GRUB Environment Block\n" + env,
			"/k":                     "kernel",
			"/loader/entries/a.conf": "title a\nversion 1\nlinux /k\noptions $kernelopts\n",
		}
		vols := memVolumes(fsys, fsys)
		g := newGrub(vols, vols[0], "/boot/grub")
		if err := g.runFile(vols[0], "/boot/grub/grub.cfg", []byte(cfg)); err != nil {
			return
		}
		l, err := g.choose()
		if err != nil {
			return
		}
		if l.kernelVol == nil || !strings.HasPrefix(l.kernel, "/") {
			t.Fatalf("entry chosen without a kernel path: %+v", l)
		}
	})
}

func FuzzAdjustCmdline(f *testing.F) {
	f.Add("root=/dev/sda1 ro console=ttyS0,115200 console=tty0", 2)
	f.Add(`root=/dev/xvdb2 resume=/dev/hdc3 a="b c"`, 1)
	f.Fuzz(func(t *testing.T, s string, n int) {
		out := AdjustCmdline(s, n%64)
		if !strings.Contains(out, "console=ttyS0") {
			t.Fatalf("no ttyS0 console in %q", out)
		}
		if AdjustCmdline(out, n%64) != out {
			t.Fatalf("not idempotent: %q -> %q", out, AdjustCmdline(out, n%64))
		}
	})
}
