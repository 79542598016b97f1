package boot

import (
	"fmt"
	"path"
	"strconv"
	"strings"
)

// extlinuxPaths are where extlinux and syslinux look for their configuration.
var extlinuxPaths = []string{
	"/boot/extlinux/extlinux.conf", "/extlinux/extlinux.conf", "/boot/extlinux.conf", "/extlinux.conf",
	"/boot/syslinux/syslinux.cfg", "/syslinux/syslinux.cfg", "/boot/syslinux/extlinux.conf",
	"/syslinux/extlinux.conf", "/syslinux.cfg",
}

type syslinuxLabel struct {
	name, kernel, initrd, appendArgs, menuLabel string
	hasAppend                                   bool
}

// findExtlinux reads extlinux.conf / syslinux.cfg: DEFAULT (or MENU DEFAULT)
// names a LABEL whose KERNEL/LINUX, INITRD and APPEND boot. Relative paths
// are relative to the configuration file's directory.
func findExtlinux(v *volume, all []*volume) (*Entry, string, error) {
	for _, name := range extlinuxPaths {
		b, ok := readConfig(v, name)
		if !ok {
			continue
		}
		var labels []*syslinuxLabel
		var cur *syslinuxLabel
		def, menuDef := "", ""
		globalAppend := ""
		includes := 0
		lines := strings.Split(string(b), "\n")
		for i := 0; i < len(lines); i++ {
			f := strings.Fields(lines[i])
			if len(f) == 0 || strings.HasPrefix(f[0], "#") {
				continue
			}
			key := strings.ToUpper(f[0])
			rest := strings.TrimSpace(strings.TrimSpace(lines[i])[len(f[0]):])
			switch key {
			case "DEFAULT":
				def = rest
			case "LABEL":
				cur = &syslinuxLabel{name: rest}
				labels = append(labels, cur)
			case "KERNEL", "LINUX":
				if cur != nil {
					cur.kernel = rest
				}
			case "INITRD":
				if cur != nil {
					cur.initrd = rest
				}
			case "APPEND":
				if cur != nil {
					cur.appendArgs, cur.hasAppend = rest, true
				} else {
					globalAppend = rest
				}
			case "MENU":
				if len(f) >= 2 && strings.ToUpper(f[1]) == "DEFAULT" && cur != nil {
					menuDef = cur.name
				}
				if len(f) >= 2 && strings.ToUpper(f[1]) == "LABEL" && cur != nil {
					cur.menuLabel = strings.TrimSpace(rest[len(f[1]):])
				}
			case "INCLUDE":
				// Splice the included file in place, a bounded number of times.
				if includes++; includes > 16 {
					continue
				}
				inc := rest
				if !strings.HasPrefix(inc, "/") {
					inc = path.Join(path.Dir(name), inc)
				}
				if ib, ok := readConfig(v, inc); ok {
					more := strings.Split(string(ib), "\n")
					lines = append(lines[:i+1], append(more, lines[i+1:]...)...)
				}
			}
		}
		if len(labels) == 0 {
			return nil, "", fmt.Errorf("%s: no LABEL", name)
		}
		want := def
		if menuDef != "" {
			want = menuDef
		}
		var chosen *syslinuxLabel
		for _, l := range labels {
			if want != "" && strings.EqualFold(l.name, strings.Fields(want)[0]) {
				chosen = l
				break
			}
		}
		if chosen == nil {
			chosen = labels[0]
		}
		if chosen.kernel == "" {
			return nil, "", fmt.Errorf("%s: label %q has no KERNEL or LINUX", name, chosen.name)
		}
		args := chosen.appendArgs
		if !chosen.hasAppend {
			args = globalAppend
		}
		l := &loaded{kernelVol: v, title: chosen.name, config: fmt.Sprintf("%s: %s", v, name)}
		rel := func(p string) string {
			if strings.HasPrefix(p, "/") {
				return path.Clean(p)
			}
			return path.Join(path.Dir(name), p)
		}
		l.kernel = rel(chosen.kernel)
		initrd := chosen.initrd
		// APPEND's initrd= is how older configurations name it; syslinux takes
		// it out of the command line it passes.
		var kept []string
		for _, a := range strings.Fields(args) {
			if strings.HasPrefix(a, "initrd=") {
				if initrd == "" {
					initrd = strings.TrimPrefix(a, "initrd=")
				}
				continue
			}
			kept = append(kept, a)
		}
		l.cmdline = strings.Join(kept, " ")
		for _, p := range strings.Split(initrd, ",") {
			if p = strings.TrimSpace(p); p != "" {
				l.initrdVols = append(l.initrdVols, v)
				l.initrds = append(l.initrds, rel(p))
			}
		}
		e, err := l.load()
		return e, "", err
	}
	return nil, "no extlinux.conf or syslinux.cfg", nil
}

// legacyPaths are where GRUB legacy (and Xen's pygrub) read menu.lst.
var legacyPaths = []string{"/boot/grub/menu.lst", "/boot/grub/grub.conf", "/grub/menu.lst", "/grub/grub.conf"}

// findGrubLegacy reads a GRUB legacy menu.lst as pygrub does: "default N"
// (0-based), "title" starts an entry, "root (hdD,P)" names its partition
// (0-based), "kernel PATH ARGS" and "initrd PATH".
func findGrubLegacy(v *volume, all []*volume) (*Entry, string, error) {
	type entry struct {
		title, root, kernel, args, initrd string
	}
	for _, name := range legacyPaths {
		b, ok := readConfig(v, name)
		if !ok {
			continue
		}
		var ents []*entry
		def := 0
		globalRoot := ""
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			k, rest := line, ""
			if i := strings.IndexAny(line, " \t="); i > 0 {
				k, rest = line[:i], strings.TrimSpace(strings.TrimLeft(line[i:], " \t="))
			}
			var cur *entry
			if len(ents) > 0 {
				cur = ents[len(ents)-1]
			}
			switch k {
			case "default":
				if n, err := strconv.Atoi(rest); err == nil && n >= 0 {
					def = n
				}
			case "title":
				ents = append(ents, &entry{title: rest, root: globalRoot})
			case "root":
				if cur == nil {
					globalRoot = rest
				} else {
					cur.root = rest
				}
			case "kernel":
				if cur != nil {
					f := strings.Fields(rest)
					if len(f) > 0 {
						cur.kernel, cur.args = f[0], strings.Join(f[1:], " ")
					}
				}
			case "initrd":
				if f := strings.Fields(rest); cur != nil && len(f) > 0 {
					cur.initrd = f[0]
				}
			}
		}
		if len(ents) == 0 {
			return nil, "", fmt.Errorf("%s: no title entries", name)
		}
		if def >= len(ents) {
			def = 0
		}
		e := ents[def]
		if e.kernel == "" {
			return nil, "", fmt.Errorf("%s: entry %q has no kernel", name, e.title)
		}
		l := &loaded{title: e.title, config: fmt.Sprintf("%s: %s", v, name), cmdline: e.args}
		resolve := func(p string) (*volume, string, error) {
			dev := e.root
			if strings.HasPrefix(p, "(") {
				end := strings.IndexByte(p, ')')
				if end < 0 {
					return nil, "", fmt.Errorf("path %q: unterminated device", p)
				}
				dev, p = p[:end+1], p[end+1:]
			}
			if dev == "" {
				return v, path.Clean("/" + p), nil
			}
			tv, err := legacyDevice(dev, all)
			if err != nil {
				// pygrub reads the partition holding menu.lst whatever root says.
				return v, path.Clean("/" + p), nil
			}
			return tv, path.Clean("/" + p), nil
		}
		var err error
		if l.kernelVol, l.kernel, err = resolve(e.kernel); err != nil {
			return nil, "", fmt.Errorf("%s: %w", name, err)
		}
		if e.initrd != "" {
			iv, ip, err := resolve(e.initrd)
			if err != nil {
				return nil, "", fmt.Errorf("%s: %w", name, err)
			}
			l.initrdVols, l.initrds = []*volume{iv}, []string{ip}
		}
		// A legacy config on a separate /boot names /vmlinuz; on the root
		// filesystem it names /boot/vmlinuz. If root points elsewhere, try here.
		if _, _, err := l.kernelVol.fs.Stat(l.kernel); err != nil && l.kernelVol != v {
			if _, _, err := v.fs.Stat(l.kernel); err == nil {
				l.kernelVol = v
				for i := range l.initrdVols {
					l.initrdVols[i] = v
				}
			}
		}
		ent, err := l.load()
		return ent, "", err
	}
	return nil, "no " + strings.Join(legacyPaths, ", "), nil
}

// legacyDevice resolves GRUB legacy's "(hdD,P)" (both 0-based) or "(hdD)".
func legacyDevice(dev string, all []*volume) (*volume, error) {
	s := strings.Trim(dev, "()")
	parts := strings.Split(s, ",")
	if !strings.HasPrefix(parts[0], "hd") {
		return nil, fmt.Errorf("device %s: only hdN devices are known", dev)
	}
	d, err := strconv.Atoi(parts[0][2:])
	if err != nil {
		return nil, fmt.Errorf("device %s: bad disk number", dev)
	}
	p := 0
	if len(parts) > 1 {
		n, err := strconv.Atoi(parts[1])
		if err != nil {
			return nil, fmt.Errorf("device %s: bad partition number", dev)
		}
		p = n + 1
	}
	for _, v := range all {
		if v.disk == d && v.part == p {
			return v, nil
		}
	}
	return nil, fmt.Errorf("device %s: no such filesystem", dev)
}
