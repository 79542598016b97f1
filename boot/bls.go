package boot

import (
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
)

// blsDirs are where Boot Loader Specification entries live, relative to the
// filesystem holding them (separate /boot first, then /boot on the root).
var blsDirs = []string{"/loader/entries", "/boot/loader/entries"}

const maxBLSEntries = 4096

// blsEntry is one /loader/entries/*.conf file. Its paths are relative to the
// filesystem holding it.
type blsEntry struct {
	vol     *volume
	file    string
	id      string // file name without .conf: what saved_entry names
	title   string
	version string
	linux   string
	initrds []string
	options []string
}

func parseBLS(v *volume, file string, b []byte) *blsEntry {
	e := &blsEntry{vol: v, file: file, id: strings.TrimSuffix(path.Base(file), ".conf")}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, val, _ := strings.Cut(line, " ")
		if i := strings.IndexAny(line, " \t"); i > 0 {
			k, val = line[:i], strings.TrimSpace(line[i:])
		}
		switch k {
		case "title":
			e.title = val
		case "version":
			e.version = val
		case "linux":
			e.linux = val
		case "initrd":
			e.initrds = append(e.initrds, strings.Fields(val)...)
		case "options":
			e.options = append(e.options, val)
		}
	}
	if e.title == "" {
		e.title = e.id
	}
	return e
}

// readBLS reads and sorts the entries in v's entries directory, newest first,
// as GRUB's blscfg does: by version, then by file name, in rpm's version order.
func readBLS(v *volume) (string, []*blsEntry) {
	for _, dir := range blsDirs {
		names, err := v.fs.readDir(dir)
		if err != nil {
			continue
		}
		var out []*blsEntry
		for _, n := range names {
			if !strings.HasSuffix(n, ".conf") || len(n) <= 5 || strings.HasPrefix(n, ".") {
				continue
			}
			if len(out) >= maxBLSEntries {
				break
			}
			b, ok := readConfig(v, path.Join(dir, n))
			if !ok {
				continue
			}
			out = append(out, parseBLS(v, path.Join(dir, n), b))
		}
		sort.SliceStable(out, func(i, j int) bool { return blsNewer(out[i], out[j]) })
		return dir, out
	}
	return "", nil
}

func blsNewer(a, b *blsEntry) bool {
	switch {
	case a.version != "" && b.version == "":
		return false
	case a.version == "" && b.version != "":
		return true
	}
	if r := vercmp(a.version, b.version); r != 0 {
		return r > 0
	}
	return vercmp(a.id, b.id) > 0
}

var varRef = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)\}|\$([A-Za-z0-9_]+)`)

func expandVars(s string, vars map[string]string) string {
	out := varRef.ReplaceAllStringFunc(s, func(m string) string {
		name := strings.Trim(m, "${}")
		return vars[name]
	})
	return strings.Join(strings.Fields(out), " ")
}

func (e *blsEntry) load(vars map[string]string, all []*volume, l *loaded) error {
	if e.linux == "" {
		return fmt.Errorf("%s: no linux line", e.file)
	}
	vars = withKernelopts(vars, e, all)
	l.kernelVol, l.kernel = e.vol, path.Clean("/"+e.linux)
	for _, i := range e.initrds {
		// RHEL's tuned adds "initrd ... $tuned_initrd", empty unless set.
		if i = expandVars(i, vars); i == "" {
			continue
		}
		l.initrdVols = append(l.initrdVols, e.vol)
		l.initrds = append(l.initrds, path.Clean("/"+i))
	}
	l.cmdline = expandVars(strings.Join(e.options, " "), vars)
	l.config = fmt.Sprintf("%s: %s", e.vol, e.file)
	return nil
}

// resolve fills l from the entry as GRUB's blscfg menu entry would load it.
func (e *blsEntry) resolve(g *grub, l *loaded) error { return e.load(g.vars, g.all, l) }

// kernelCmdlineFiles hold the command line kernel-install writes into new BLS
// entries (RHEL 9, Fedora 34+); grubenv's kernelopts is gone there, but an
// entry carried over from RHEL 8 may still say $kernelopts.
var kernelCmdlineFiles = []string{"/etc/kernel/cmdline", "/usr/lib/kernel/cmdline"}

// withKernelopts returns vars with kernelopts taken from the root
// filesystem's /etc/kernel/cmdline when the entry uses $kernelopts and no
// grubenv set it.
func withKernelopts(vars map[string]string, e *blsEntry, all []*volume) map[string]string {
	if vars["kernelopts"] != "" || !strings.Contains(strings.Join(e.options, " "), "kernelopts") {
		return vars
	}
	for _, v := range append([]*volume{e.vol}, all...) {
		for _, f := range kernelCmdlineFiles {
			b, ok := readConfig(v, f)
			if !ok {
				continue
			}
			out := make(map[string]string, len(vars)+1)
			for k, val := range vars {
				out[k] = val
			}
			out["kernelopts"] = strings.Join(strings.Fields(string(b)), " ")
			return out
		}
	}
	return vars
}

// blscfg adds the BLS entries of $root (or $blsdir) to the menu.
func (g *grub) blscfg() error {
	v, err := g.volumeOf(g.vars["root"])
	if err != nil {
		return nil
	}
	_, ents := readBLS(v)
	for _, e := range ents {
		g.menu = append(g.menu, &menuItem{title: e.title, id: e.id, bls: e, file: fmt.Sprintf("%s: %s", v, e.file)})
	}
	return nil
}

// grubenvPaths are where a standalone BLS setup keeps kernelopts and saved_entry.
var grubenvPaths = []string{"/boot/grub2/grubenv", "/grub2/grubenv", "/boot/grub/grubenv", "/grub/grubenv"}

// findBLS reads BLS entries without a grub.cfg that runs blscfg (systemd-boot
// setups, or a grub.cfg we could not use): loader.conf's default, else
// grubenv's saved_entry, else the newest entry.
func findBLS(v *volume, all []*volume) (*Entry, string, error) {
	dir, ents := readBLS(v)
	if dir == "" {
		return nil, "no " + strings.Join(blsDirs, " or "), nil
	}
	if len(ents) == 0 {
		return nil, "", fmt.Errorf("%s: no *.conf entries", dir)
	}
	vars := map[string]string{}
	for _, o := range append([]*volume{v}, all...) {
		found := false
		for _, p := range grubenvPaths {
			if b, ok := readConfig(o, p); ok {
				vars = parseGrubenv(b)
				found = true
				break
			}
		}
		if found {
			break
		}
	}
	chosen := ents[0]
	def := vars["saved_entry"]
	for _, lc := range []string{"/loader/loader.conf", "/boot/loader/loader.conf"} {
		if b, ok := readConfig(v, lc); ok {
			for _, line := range strings.Split(string(b), "\n") {
				f := strings.Fields(line)
				if len(f) >= 2 && f[0] == "default" {
					def = f[1]
				}
			}
			break
		}
	}
	if def != "" {
		for _, e := range ents {
			if ok, _ := path.Match(strings.TrimSuffix(def, ".conf"), e.id); ok {
				chosen = e
				break
			}
		}
	}
	l := &loaded{title: chosen.title}
	if err := chosen.load(vars, all, l); err != nil {
		return nil, "", err
	}
	e, err := l.load()
	return e, "", err
}

// vercmp compares versions as rpm does: runs of digits numerically, runs of
// letters as strings, digits newer than letters, '~' older than anything.
func vercmp(a, b string) int {
	if a == b {
		return 0
	}
	alnum := func(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	digit := func(c byte) bool { return c >= '0' && c <= '9' }
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		for i < len(a) && !alnum(a[i]) && a[i] != '~' {
			i++
		}
		for j < len(b) && !alnum(b[j]) && b[j] != '~' {
			j++
		}
		ta, tb := i < len(a) && a[i] == '~', j < len(b) && b[j] == '~'
		if ta || tb {
			if !ta {
				return 1
			}
			if !tb {
				return -1
			}
			i++
			j++
			continue
		}
		if i >= len(a) || j >= len(b) {
			break
		}
		num := digit(a[i])
		si, sj := i, j
		if num {
			for i < len(a) && digit(a[i]) {
				i++
			}
			for j < len(b) && digit(b[j]) {
				j++
			}
		} else {
			for i < len(a) && alnum(a[i]) && !digit(a[i]) {
				i++
			}
			for j < len(b) && alnum(b[j]) && !digit(b[j]) {
				j++
			}
		}
		x, y := a[si:i], b[sj:j]
		if y == "" {
			if num {
				return 1
			}
			return -1
		}
		if num {
			x, y = strings.TrimLeft(x, "0"), strings.TrimLeft(y, "0")
			if len(x) != len(y) {
				if len(x) > len(y) {
					return 1
				}
				return -1
			}
		}
		if c := strings.Compare(x, y); c != 0 {
			return c
		}
	}
	switch {
	case i >= len(a) && j >= len(b):
		return 0
	case i >= len(a):
		return -1
	}
	return 1
}
