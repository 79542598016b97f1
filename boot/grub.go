package boot

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
)

// grub2Paths are where GRUB 2 keeps its configuration, relative to the
// filesystem holding it (root filesystem, separate /boot, EFI partition).
var grub2Paths = []string{
	"/boot/grub/grub.cfg", "/grub/grub.cfg", "/boot/grub2/grub.cfg", "/grub2/grub.cfg",
}

// setConfigFile sets the variables GRUB's normal mode sets for the
// configuration it reads (RHEL's grub.cfg loads ${config_directory}/grubenv).
func (g *grub) setConfigFile(v *volume, name string) {
	dev := "(" + v.grubName() + ")"
	g.vars["config_file"] = dev + name
	g.vars["config_directory"] = dev + path.Dir(name)
}

func findGrub2(v *volume, all []*volume) (*Entry, string, error) {
	cands := append([]string(nil), grub2Paths...)
	// EFI system partitions: /EFI/<vendor>/grub.cfg.
	for _, efi := range []string{"/EFI", "/boot/efi/EFI"} {
		if names, err := v.fs.readDir(efi); err == nil {
			for _, n := range names {
				cands = append(cands, path.Join(efi, n, "grub.cfg"))
			}
		}
	}
	for _, name := range cands {
		b, ok := readConfig(v, name)
		if !ok {
			continue
		}
		g := newGrub(all, v, path.Dir(name))
		g.setConfigFile(v, name)
		if err := g.runFile(v, name, b); err != nil {
			return nil, "", fmt.Errorf("%s: %w", name, err)
		}
		l, err := g.choose()
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", g.decider(), err)
		}
		e, err := l.load()
		return e, "", err
	}
	return nil, "no " + strings.Join(grub2Paths, ", ") + " or /EFI/*/grub.cfg", nil
}

// menuItem is one entry (or submenu) of a GRUB menu.
type menuItem struct {
	title, id string
	submenu   bool
	body      []node
	args      []string // positional parameters after the title
	bls       *blsEntry
	file      string // the configuration file that defined it
}

// grub runs a grub.cfg as GRUB does to build its menu, then runs the chosen
// entry's commands to learn what it loads.
type grub struct {
	all     []*volume
	vars    map[string]string
	funcs   map[string][]node
	menu    []*menuItem
	file    string // configuration file being run, for messages
	depth   int
	steps   int
	stop    bool // configfile replaced the running script
	load    *loaded
	current string // file that defined the chosen entry
}

const (
	maxGrubSteps  = 100000
	maxGrubDepth  = 16
	maxGrubVarLen = 16 << 10
	maxGrubVars   = 1024
)

var errStop = errors.New("stop")

func newGrub(all []*volume, v *volume, prefixDir string) *grub {
	dev := v.grubName()
	return &grub{
		all: all,
		vars: map[string]string{
			"root": dev, "prefix": "(" + dev + ")" + prefixDir, "cmdpath": "(" + dev + ")" + prefixDir,
			"grub_platform": "pc", "grub_cpu": "i386",
			"feature_platform_search_hint": "y", "feature_default_font_path": "y",
			"feature_all_video_module": "y", "feature_menuentry_id": "y", "feature_timeout_style": "y",
			"feature_200_final": "y", "feature_chainloader_bpb": "y", "feature_ntldr": "y",
			"menuentry_id_option": "--id",
		},
		funcs: map[string][]node{},
	}
}

// volumeOf resolves a GRUB device name ("hd0,msdos1", "hd1,gpt2", "hd0,1", "hd0").
func (g *grub) volumeOf(dev string) (*volume, error) {
	dev = strings.Trim(dev, "()")
	parts := strings.Split(dev, ",")
	if !strings.HasPrefix(parts[0], "hd") {
		return nil, fmt.Errorf("device (%s): only hdN devices are known", dev)
	}
	d, err := strconv.Atoi(parts[0][2:])
	if err != nil {
		return nil, fmt.Errorf("device (%s): bad disk number", dev)
	}
	p := 0
	if len(parts) > 1 {
		s := strings.TrimLeft(parts[1], "abcdefghijklmnopqrstuvwxyz")
		if p, err = strconv.Atoi(s); err != nil {
			return nil, fmt.Errorf("device (%s): bad partition %q", dev, parts[1])
		}
	}
	for _, v := range g.all {
		if v.disk == d && v.part == p {
			return v, nil
		}
	}
	return nil, fmt.Errorf("device (%s): no such filesystem", dev)
}

// resolve splits "(dev)/path" or "/path" (on $root) into a volume and a path.
func (g *grub) resolve(p string) (*volume, string, error) {
	dev := g.vars["root"]
	if strings.HasPrefix(p, "(") {
		end := strings.IndexByte(p, ')')
		if end < 0 {
			return nil, "", fmt.Errorf("path %q: unterminated device", p)
		}
		dev, p = p[1:end], p[end+1:]
	}
	v, err := g.volumeOf(dev)
	if err != nil {
		return nil, "", fmt.Errorf("path %q: %w", p, err)
	}
	if p == "" {
		p = "/"
	}
	return v, path.Clean("/" + p), nil
}

func (g *grub) runFile(v *volume, name string, src []byte) error {
	nodes, err := parseScript(string(src))
	if err != nil {
		return err
	}
	prev := g.file
	g.file = fmt.Sprintf("%s: %s", v, name)
	defer func() { g.file = prev }()
	_, err = g.run(nodes, nil)
	if err == errStop {
		return nil
	}
	return err
}

// decider names the file that defined the chosen entry.
func (g *grub) decider() string {
	if g.current != "" {
		return g.current
	}
	return g.file
}

// expand turns words into fields: unquoted variables split on whitespace.
func (g *grub) expand(ws []word, pos []string) []string {
	var out []string
	for _, w := range ws {
		var fields []string
		cur := ""
		has := w.quoted
		for _, s := range w.segs {
			if !s.isVar {
				cur += s.text
				has = has || s.text != ""
				continue
			}
			val := g.lookupVar(s.text, pos)
			if s.quoted {
				cur += val
				continue
			}
			f := strings.Fields(val)
			if len(f) == 0 {
				continue
			}
			if isSpace(val[0]) && (cur != "" || has) {
				fields = append(fields, cur)
				cur, has = "", false
			}
			cur += f[0]
			has = true
			for _, x := range f[1:] {
				fields = append(fields, cur)
				cur = x
			}
			if isSpace(val[len(val)-1]) {
				fields = append(fields, cur)
				cur, has = "", false
			}
		}
		if has || cur != "" {
			fields = append(fields, cur)
		}
		out = append(out, fields...)
	}
	return out
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' }

func (g *grub) lookupVar(name string, pos []string) string {
	if n, err := strconv.Atoi(name); err == nil {
		if n >= 1 && n <= len(pos) {
			return pos[n-1]
		}
		return ""
	}
	switch name {
	case "#":
		return strconv.Itoa(len(pos))
	case "@", "*":
		return strings.Join(pos, " ")
	case "?":
		return "0"
	}
	return g.vars[name]
}

// run executes nodes; it returns the status of the last command (true = 0).
func (g *grub) run(nodes []node, pos []string) (bool, error) {
	g.depth++
	defer func() { g.depth-- }()
	if g.depth > maxGrubDepth*4 {
		return false, fmt.Errorf("%s: scripts nested deeper than %d", g.file, maxGrubDepth*4)
	}
	ok := true
	for _, n := range nodes {
		g.steps++
		if g.steps > maxGrubSteps {
			return false, fmt.Errorf("%s: more than %d commands run", g.file, maxGrubSteps)
		}
		var err error
		switch n := n.(type) {
		case *cmdNode:
			ok, err = g.command(n, pos)
		case *ifNode:
			ok, err = g.runIf(n, pos)
		case *funcNode:
			g.funcs[n.name] = n.body
			ok = true
		case *menuNode:
			g.addMenu(n, pos)
			ok = true
		}
		if err != nil {
			return false, err
		}
	}
	return ok, nil
}

func (g *grub) runIf(n *ifNode, pos []string) (bool, error) {
	for i, c := range n.conds {
		ok, err := g.run(c, pos)
		if err != nil {
			return false, err
		}
		if ok {
			return g.run(n.bodies[i], pos)
		}
	}
	if n.els != nil {
		return g.run(n.els, pos)
	}
	return true, nil
}

func (g *grub) addMenu(n *menuNode, pos []string) {
	args := g.expand(n.args, pos)
	it := &menuItem{submenu: n.submenu, body: n.body, file: g.file}
	titled := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--id" && i+1 < len(args):
			it.id = args[i+1]
			i++
		case strings.HasPrefix(a, "--id="):
			it.id = strings.TrimPrefix(a, "--id=")
		case (a == "--class" || a == "--users" || a == "--hotkey" || a == "--source") && i+1 < len(args):
			i++
		case strings.HasPrefix(a, "--"):
		case !titled:
			it.title = a
			titled = true
		default:
			it.args = append(it.args, a)
		}
	}
	g.menu = append(g.menu, it)
}

var assignName = func(s string) (string, string, bool) {
	eq := strings.IndexByte(s, '=')
	if eq <= 0 {
		return "", "", false
	}
	for i := 0; i < eq; i++ {
		if !isVarChar(s[i]) {
			return "", "", false
		}
	}
	return s[:eq], s[eq+1:], true
}

func (g *grub) command(c *cmdNode, pos []string) (bool, error) {
	if len(c.words) == 0 {
		return true, nil
	}
	args := g.expand(c.words, pos)
	if len(args) == 0 {
		return true, nil
	}
	name := args[0]
	if k, v, ok := assignName(name); ok && len(args) == 1 {
		return true, g.set(k, v, c.line)
	}
	args = args[1:]
	switch name {
	case "set":
		for _, a := range args {
			if k, v, ok := assignName(a); ok {
				if err := g.set(k, v, c.line); err != nil {
					return false, err
				}
			} else if a != "" && !strings.HasPrefix(a, "-") {
				g.vars[a] = ""
			}
		}
		return true, nil
	case "unset":
		for _, a := range args {
			delete(g.vars, a)
		}
		return true, nil
	case "true", "export", "insmod", "echo", "load_video", "set_gfxpayload", "terminal_output", "terminal_input",
		"terminal", "gfxmode", "save_env", "savedefault", "loadfont", "font", "background_image", "play", "sleep":
		if body, ok := g.funcs[name]; ok && name != "savedefault" {
			return g.call(body, args)
		}
		return true, nil
	case "false":
		return false, nil
	case "[", "test":
		if name == "[" {
			if len(args) == 0 || args[len(args)-1] != "]" {
				return false, nil
			}
			args = args[:len(args)-1]
		}
		return g.test(args), nil
	case "load_env":
		return g.loadEnv(args), nil
	case "search", "search.fs_uuid", "search.fs_label", "search.file":
		return g.search(name, args), nil
	case "source", "configfile":
		if len(args) == 0 {
			return false, nil
		}
		if g.depth > maxGrubDepth {
			return false, fmt.Errorf("%s: %s nested deeper than %d", g.file, name, maxGrubDepth)
		}
		v, p, err := g.resolve(args[0])
		if err != nil {
			return false, nil
		}
		b, ok := readConfig(v, p)
		if !ok {
			return false, nil
		}
		if name == "configfile" {
			// The new file builds a new menu; GRUB shows that one.
			g.menu = nil
			g.setConfigFile(v, p)
		}
		if err := g.runFile(v, p, b); err != nil {
			return false, err
		}
		if name == "configfile" {
			return false, errStop
		}
		return true, nil
	case "blscfg":
		return true, g.blscfg()
	case "linux", "linux16", "linuxefi", "kernel":
		return g.cmdLinux(args, false)
	case "multiboot", "multiboot2":
		// A Xen or other multiboot kernel: the dom0 Linux comes as the first module.
		if g.load != nil {
			g.load.kernel = ""
			g.load.multiboot = true
		}
		return true, nil
	case "module", "module2":
		if g.load == nil || !g.load.multiboot {
			return true, nil
		}
		for len(args) > 0 && strings.HasPrefix(args[0], "--") {
			args = args[1:]
		}
		if g.load.kernel == "" {
			return g.cmdLinux(args, true)
		}
		return g.cmdInitrd(args)
	case "initrd", "initrd16", "initrdefi":
		return g.cmdInitrd(args)
	case "chainloader":
		if g.load != nil {
			g.load.chain = true
		}
		return true, nil
	}
	if body, ok := g.funcs[name]; ok {
		return g.call(body, args)
	}
	return true, nil
}

// set assigns a variable; values are bounded so that "set a=$a$a" in a loop
// of calls cannot grow without limit.
func (g *grub) set(k, v string, line int) error {
	if len(v) > maxGrubVarLen {
		return fmt.Errorf("%s: line %d: value of %s longer than %d bytes", g.file, line, k, maxGrubVarLen)
	}
	if _, ok := g.vars[k]; !ok && len(g.vars) >= maxGrubVars {
		return fmt.Errorf("%s: line %d: more than %d variables", g.file, line, maxGrubVars)
	}
	g.vars[k] = v
	return nil
}

func (g *grub) call(body []node, args []string) (bool, error) {
	if g.depth > maxGrubDepth {
		return false, fmt.Errorf("%s: functions nested deeper than %d", g.file, maxGrubDepth)
	}
	return g.run(body, args)
}

func (g *grub) cmdLinux(args []string, keepMultiboot bool) (bool, error) {
	if g.load == nil {
		return true, nil // outside a menu entry: nothing to boot
	}
	if len(args) == 0 {
		return false, nil
	}
	v, p, err := g.resolve(args[0])
	if err != nil {
		g.load.err = err
		return false, nil
	}
	g.load.kernelVol, g.load.kernel = v, p
	g.load.cmdline = strings.Join(args[1:], " ")
	g.load.chain = false
	if !keepMultiboot {
		g.load.multiboot = false
	}
	return true, nil
}

func (g *grub) cmdInitrd(args []string) (bool, error) {
	if g.load == nil {
		return true, nil
	}
	g.load.initrdVols, g.load.initrds = nil, nil
	for _, a := range args {
		if strings.HasPrefix(a, "--") {
			continue
		}
		v, p, err := g.resolve(a)
		if err != nil {
			g.load.err = err
			return false, nil
		}
		g.load.initrdVols = append(g.load.initrdVols, v)
		g.load.initrds = append(g.load.initrds, p)
	}
	return true, nil
}

// test evaluates GRUB's test command: file tests, string and integer comparisons.
func (g *grub) test(a []string) bool {
	if len(a) > 0 && a[0] == "!" {
		return !g.test(a[1:])
	}
	for i, x := range a {
		if x == "-o" && i > 0 {
			return g.test(a[:i]) || g.test(a[i+1:])
		}
	}
	for i, x := range a {
		if x == "-a" && i > 0 {
			return g.test(a[:i]) && g.test(a[i+1:])
		}
	}
	switch len(a) {
	case 0:
		return false
	case 1:
		return a[0] != ""
	case 2:
		switch a[0] {
		case "-n":
			return a[1] != ""
		case "-z":
			return a[1] == ""
		case "-e", "-f", "-d", "-s":
			v, p, err := g.resolve(a[1])
			if err != nil {
				return false
			}
			size, dir, err := v.fs.Stat(p)
			if err != nil {
				return false
			}
			switch a[0] {
			case "-f":
				return !dir
			case "-d":
				return dir
			case "-s":
				return size > 0
			}
			return true
		}
		return false
	}
	l, op, r := a[0], a[1], a[2]
	switch op {
	case "=", "==":
		return l == r
	case "!=":
		return l != r
	case "<":
		return l < r
	case ">":
		return l > r
	}
	li, err1 := strconv.ParseInt(l, 10, 64)
	ri, err2 := strconv.ParseInt(r, 10, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	switch op {
	case "-eq":
		return li == ri
	case "-ne":
		return li != ri
	case "-lt":
		return li < ri
	case "-le":
		return li <= ri
	case "-gt":
		return li > ri
	case "-ge":
		return li >= ri
	}
	return false
}

// loadEnv reads a grubenv block: "# GRUB Environment Block", then name=value
// lines, then '#' padding to 1024 bytes.
func (g *grub) loadEnv(args []string) bool {
	file := g.vars["prefix"] + "/grubenv"
	var only []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-f" || a == "--file":
			if i+1 < len(args) {
				file = args[i+1]
				i++
			}
		case strings.HasPrefix(a, "--file="):
			file = strings.TrimPrefix(a, "--file=")
		case strings.HasPrefix(a, "-"):
		default:
			only = append(only, a)
		}
	}
	v, p, err := g.resolve(file)
	if err != nil {
		return false
	}
	b, ok := readConfig(v, p)
	if !ok {
		return false
	}
	for k, val := range parseGrubenv(b) {
		if len(only) > 0 && !contains(only, k) {
			continue
		}
		if g.set(k, val, 0) != nil {
			return false
		}
	}
	return true
}

func parseGrubenv(b []byte) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok && k != "" {
			// grubenv escapes backslash and newline with a backslash.
			v = strings.NewReplacer(`\\`, `\`, `\n`, "\n").Replace(v)
			out[k] = v
		}
	}
	return out
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// search finds a filesystem by UUID, label or file and sets a variable
// (root unless --set names another) to its GRUB device name.
func (g *grub) search(name string, args []string) bool {
	kind := map[string]string{"search.fs_uuid": "uuid", "search.fs_label": "label", "search.file": "file"}[name]
	setVar := ""
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--fs-uuid" || a == "-u":
			kind = "uuid"
		case a == "--label" || a == "-l":
			kind = "label"
		case a == "--file" || a == "-f":
			kind = "file"
		case a == "--set" || a == "-s":
			setVar = "root"
			// "--set root" is not GRUB syntax: the value needs "=".
		case strings.HasPrefix(a, "--set="):
			setVar = strings.TrimPrefix(a, "--set=")
		case strings.HasPrefix(a, "--hint") || a == "--no-floppy" || a == "-n":
			if (a == "--hint" || a == "-h") && i+1 < len(args) {
				i++
			}
		case strings.HasPrefix(a, "-"):
		default:
			rest = append(rest, a)
		}
	}
	if len(rest) == 0 {
		return false
	}
	if kind == "" {
		kind = "file"
	}
	if name != "search" && len(rest) > 1 && setVar == "" {
		setVar = rest[1] // search.fs_uuid UUID VAR
	}
	if name != "search" && setVar == "" {
		setVar = "root"
	}
	want := rest[0]
	for _, v := range g.all {
		match := false
		switch kind {
		case "uuid":
			match = strings.EqualFold(v.uuid, want)
		case "label":
			match = v.label == want
		case "file":
			_, _, err := v.fs.Stat(want)
			match = err == nil
		}
		if match {
			if setVar != "" {
				g.vars[setVar] = v.grubName()
			}
			return true
		}
	}
	return false
}

// choose picks the default entry ($default, saved_entry, "a>b" paths, ids,
// titles, numbers) and runs it to learn what it loads.
func (g *grub) choose() (*loaded, error) {
	if len(g.menu) == 0 {
		return nil, errors.New("no menu entries")
	}
	def := g.vars["default"]
	if def == "saved" {
		def = g.vars["saved_entry"]
	}
	menu := g.menu
	var path []*menuItem
	if def == "" {
		def = "0"
	}
	for _, comp := range strings.Split(def, ">") {
		it := findItem(menu, comp)
		if it == nil {
			if len(path) == 0 {
				// GRUB falls back to the first entry when the default names none.
				it = menu[0]
			} else {
				return nil, fmt.Errorf("default %q: no entry %q in submenu %q", def, comp, path[len(path)-1].title)
			}
		}
		path = append(path, it)
		if !it.submenu {
			break
		}
		sub, err := g.submenuItems(it)
		if err != nil {
			return nil, err
		}
		menu = sub
		if len(menu) == 0 {
			return nil, fmt.Errorf("submenu %q is empty", it.title)
		}
	}
	it := path[len(path)-1]
	for it.submenu {
		// A default that names a submenu opens it; its first entry is what boots.
		sub, err := g.submenuItems(it)
		if err != nil || len(sub) == 0 {
			return nil, fmt.Errorf("submenu %q has no entries", it.title)
		}
		it = sub[0]
		path = append(path, it)
	}
	var titles []string
	for _, p := range path {
		titles = append(titles, p.title)
	}
	g.current = it.file
	l := &loaded{title: strings.Join(titles, ">"), config: it.file}
	if it.bls != nil {
		if err := it.bls.resolve(g, l); err != nil {
			return nil, fmt.Errorf("entry %q: %w", l.title, err)
		}
		return l, nil
	}
	g.load = l
	saved := g.vars
	g.vars = copyVars(saved)
	g.vars["chosen"] = it.title
	_, err := g.run(it.body, it.args)
	g.vars = saved
	g.load = nil
	if err != nil && err != errStop {
		return nil, err
	}
	if l.err != nil {
		return nil, fmt.Errorf("entry %q: %w", l.title, l.err)
	}
	if l.chain {
		return nil, fmt.Errorf("entry %q chain-loads another boot loader, not a Linux kernel", l.title)
	}
	if l.kernel == "" {
		return nil, fmt.Errorf("entry %q loads no Linux kernel", l.title)
	}
	return l, nil
}

func (g *grub) submenuItems(it *menuItem) ([]*menuItem, error) {
	saved, savedMenu, savedFile := g.vars, g.menu, g.file
	g.vars, g.menu, g.file = copyVars(saved), nil, it.file
	_, err := g.run(it.body, it.args)
	sub := g.menu
	g.vars, g.menu, g.file = saved, savedMenu, savedFile
	if err != nil && err != errStop {
		return nil, err
	}
	return sub, nil
}

func findItem(menu []*menuItem, s string) *menuItem {
	if n, err := strconv.Atoi(s); err == nil {
		if n >= 0 && n < len(menu) {
			return menu[n]
		}
		return nil
	}
	for _, it := range menu {
		if it.id != "" && it.id == s {
			return it
		}
	}
	for _, it := range menu {
		if it.title == s {
			return it
		}
	}
	return nil
}

func copyVars(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
