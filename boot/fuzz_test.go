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

// FuzzLegacy runs arbitrary extlinux.conf and GRUB legacy menu.lst text (the
// guest's own, read as syslinux and pygrub read them) through the entry
// choice: errors are fine; panics, hangs and an entry without a kernel are not.
func FuzzLegacy(f *testing.F) {
	f.Add("DEFAULT linux\nLABEL linux\n  MENU LABEL Alpine\n  MENU DEFAULT\n  LINUX ../k\n  INITRD ../k,/k\n  APPEND root=/dev/sda1 initrd=/k\n", "inc.cfg")
	f.Add("INCLUDE inc.cfg\nAPPEND quiet\nLABEL a\nKERNEL /k\n", "INCLUDE inc.cfg\nINCLUDE /boot/extlinux/extlinux.conf\nLABEL b\nLINUX k\n")
	f.Add("default=1\ntimeout 5\nroot (hd0,0)\ntitle a\nkernel /k ro\ntitle b\nroot (hd0,1)\nkernel (hd0,0)/k root=/dev/xvda1\ninitrd (hd1)/k\n", "")
	f.Add("title x\nkernel (hd0,0/k\ninitrd\n", "MENU LABEL\nMENU DEFAULT\nLABEL\n")
	f.Fuzz(func(t *testing.T, cfg, other string) {
		for _, name := range []string{"/boot/extlinux/extlinux.conf", "/boot/grub/menu.lst"} {
			fsys := memFS{
				name:                     cfg,
				"/boot/extlinux/inc.cfg": other,
				"/boot/k":                "kernel",
				"/k":                     "kernel",
			}
			vols := memVolumes(fsys, memFS{"/k": "kernel on 2"})
			find := findExtlinux
			if strings.HasSuffix(name, "menu.lst") {
				find = findGrubLegacy
			}
			e, _, err := find(vols[0], vols)
			if err != nil || e == nil {
				continue
			}
			if len(e.Kernel) == 0 || !strings.HasPrefix(e.KernelPath, "/") {
				t.Fatalf("%s: entry chosen without a kernel: %+v", name, e)
			}
		}
	})
}

// FuzzBLS reads two arbitrary Boot Loader Specification entries as GRUB's
// blscfg does with no grub.cfg: the newest boots. Version order is a
// consistent comparison (antisymmetric, each equal to itself), and the
// entry chosen, when one is, names an absolute kernel path.
func FuzzBLS(f *testing.F) {
	f.Add("title Old\nversion 6.9.0\nlinux /k\ninitrd /i $tuned_initrd\noptions $kernelopts\n", "title New\nversion 6.10.0~rc1\nlinux\t/k\noptions root=/dev/sda1\n", "6.9.0-1.el9", "6.9.0~1")
	f.Add("version 1.0a\nlinux k\n", "version 1.0.a\n#linux /k\n", "1..a", "1.0a")
	f.Fuzz(func(t *testing.T, a, b, va, vb string) {
		for _, p := range [][2]string{{va, vb}, {a, b}} {
			if x, y := vercmp(p[0], p[1]), vercmp(p[1], p[0]); x != -y || vercmp(p[0], p[0]) != 0 {
				t.Fatalf("vercmp(%q, %q) = %d, reversed %d", p[0], p[1], x, y)
			}
		}
		fsys := memFS{"/loader/entries/a.conf": a, "/loader/entries/b.conf": b, "/k": "kernel", "/etc/kernel/cmdline": "root=/dev/vda1"}
		vols := memVolumes(fsys)
		_, entries := readBLS(vols[0])
		for i := 1; i < len(entries); i++ {
			if blsNewer(entries[i], entries[i-1]) {
				t.Fatalf("entry %s sorted after %s but newer", entries[i].file, entries[i-1].file)
			}
		}
		for _, e := range entries {
			var l loaded
			if err := e.load(nil, vols, &l); err == nil && !strings.HasPrefix(l.kernel, "/") {
				t.Fatalf("%s: kernel path %q", e.file, l.kernel)
			}
		}
	})
}
