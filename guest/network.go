package guest

import (
	"fmt"
	"path"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// netCtx collects network findings for one file.
type netCtx struct {
	c    *checkCtx
	file string
	out  *[]Finding
}

// byName reports a configuration bound to an interface name, unless a
// systemd .link file gives that name to one of the VM's NICs by its MAC
// (what vmconv fix writes).
func (n netCtx) byName(line int, name, how string) {
	if name == "" || name == "lo" || strings.ContainsAny(name, "*?[") || n.c.linked[name] {
		return
	}
	*n.out = append(*n.out, Finding{Code: "net-config-by-name", Severity: Warning, File: n.file, Line: line,
		Message: fmt.Sprintf("%s is bound to interface %s; on %s the NIC has another model and slot, so another name, and stays unconfigured",
			how, name, n.c.opt.Target),
		Fix: fmt.Sprintf("match the interface by the VM's MAC (%s) instead of the name %s, or rename it after conversion", n.c.macHint(), name)})
}

// byMAC reports a configuration bound to a MAC that is not the VM's.
func (n netCtx) byMAC(line int, mac, how string) {
	mac = strings.ToLower(strings.Trim(mac, `"' `))
	for _, m := range n.c.opt.MACs {
		if strings.EqualFold(m, mac) {
			return
		}
	}
	msg := fmt.Sprintf("%s is bound to MAC %s, which is not one of this VM's NICs (%s)", how, mac, strings.Join(n.c.opt.MACs, ", "))
	if len(n.c.opt.MACs) == 0 {
		msg = fmt.Sprintf("%s is bound to MAC %s; the NIC on the target has it only if the MAC is kept", how, mac)
	}
	*n.out = append(*n.out, Finding{Code: "net-config-by-mac", Severity: Warning, File: n.file, Line: line, Message: msg,
		Fix: "keep the MAC on the target VM, or change it here to the new NIC's MAC"})
}

func (c *checkCtx) macHint() string {
	if len(c.opt.MACs) > 0 {
		return strings.Join(c.opt.MACs, ", ")
	}
	return "kept on conversion"
}

// linkedNames returns the interface names systemd .link files in
// /etc/systemd/network give to NICs with one of the VM's MACs.
func linkedNames(c *checkCtx) map[string]bool {
	out := map[string]bool{}
	names, _ := c.fs.ReadDir("/etc/systemd/network")
	for _, name := range names {
		if !strings.HasSuffix(name, ".link") {
			continue
		}
		b, err := c.fs.ReadFile("/etc/systemd/network/"+name, maxTextFile)
		if err != nil {
			continue
		}
		mac, ifname := "", ""
		iniLines(b, func(_ int, section, k, v string) {
			switch {
			case section == "Match" && k == "MACAddress":
				mac = v
			case section == "Link" && k == "Name":
				ifname = v
			}
		})
		for _, m := range c.opt.MACs {
			if ifname != "" && strings.EqualFold(m, mac) {
				out[ifname] = true
			}
		}
	}
	return out
}

// checkNetwork reads each network configuration system's files.
func checkNetwork(c *checkCtx) ([]Finding, []string) {
	c.linked = linkedNames(c)
	var out []Finding
	var notes []string
	for _, src := range []struct {
		dir, glob string
		parse     func(n netCtx, b []byte) error
	}{
		{"/etc/network", "interfaces", netIfupdown},
		{"/etc/network/interfaces.d", "*", netIfupdown},
		{"/etc/netplan", "*.yaml", netNetplan},
		{"/etc/NetworkManager/system-connections", "*.nmconnection", netKeyfile},
		{"/etc/sysconfig/network-scripts", "ifcfg-*", netIfcfg},
		{"/etc/systemd/network", "*.network", netKeyfile},
		{"/etc/systemd/network", "*.link", netKeyfile},
		{"/etc/udev/rules.d", "70-persistent-net.rules", netUdev},
	} {
		names, err := c.fs.ReadDir(src.dir)
		if err != nil {
			continue
		}
		for _, name := range names {
			if ok, _ := path.Match(src.glob, name); !ok || name == "." || name == ".." {
				continue
			}
			file := src.dir + "/" + name
			b, err := c.fs.ReadFile(file, maxTextFile)
			if err != nil {
				continue // a directory, or unreadable
			}
			if err := src.parse(netCtx{c: c, file: file, out: &out}, b); err != nil {
				notes = append(notes, fmt.Sprintf("%s: %v", file, err))
			}
		}
	}
	return out, notes
}

// netIfupdown: Debian's /etc/network/interfaces.
func netIfupdown(n netCtx, b []byte) error {
	lines(b, func(ln int, l string) {
		f := strings.Fields(l)
		switch {
		case len(f) >= 4 && f[0] == "iface":
			n.byName(ln, f[1], fmt.Sprintf("the ifupdown %q configuration", f[2]+" "+f[3]))
		case len(f) >= 2 && f[0] == "hwaddress":
			n.byMAC(ln, f[len(f)-1], "an ifupdown configuration")
		}
	})
	return nil
}

// netKeyfile: NetworkManager keyfiles and systemd-networkd .network/.link
// files, both INI: interface-name=, mac-address=, [Match] Name=, MACAddress=.
func netKeyfile(n netCtx, b []byte) error {
	iniLines(b, func(ln int, section, k, v string) {
		switch {
		case k == "interface-name" || section == "Match" && k == "Name" || section == "Match" && k == "OriginalName":
			for _, name := range strings.Fields(v) {
				n.byName(ln, name, "the connection")
			}
		case k == "mac-address" || section == "Match" && (k == "MACAddress" || k == "PermanentMACAddress"):
			for _, mac := range strings.Fields(v) {
				n.byMAC(ln, mac, "the connection")
			}
		}
	})
	return nil
}

// iniLines calls fn for each key=value line of an INI file (systemd units,
// NetworkManager keyfiles) with the [section] it is in, key and value
// trimmed.
func iniLines(b []byte, fn func(ln int, section, key, value string)) {
	section := ""
	lines(b, func(ln int, l string) {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "[") {
			section = strings.Trim(l, "[]")
			return
		}
		if k, v, ok := strings.Cut(l, "="); ok {
			fn(ln, section, strings.TrimSpace(k), strings.TrimSpace(v))
		}
	})
}

// netIfcfg: Red Hat's ifcfg-NAME files.
func netIfcfg(n netCtx, b []byte) error {
	proto := "a"
	lines(b, func(_ int, l string) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "BOOTPROTO="); ok {
			proto = "a " + strings.Trim(v, `"'`)
		}
	})
	lines(b, func(ln int, l string) {
		k, v, _ := strings.Cut(strings.TrimSpace(l), "=")
		v = strings.Trim(v, `"'`)
		switch k {
		case "DEVICE":
			n.byName(ln, v, proto+" configuration")
		case "HWADDR", "MACADDR":
			n.byMAC(ln, v, proto+" configuration")
		}
	})
	return nil
}

var udevMAC = regexp.MustCompile(`ATTRS?\{address\}=="([0-9A-Fa-f:]+)"`)

// netUdev: the persistent-net rules that pin a name to a MAC.
func netUdev(n netCtx, b []byte) error {
	lines(b, func(ln int, l string) {
		if m := udevMAC.FindStringSubmatch(l); m != nil {
			n.byMAC(ln, m[1], "a persistent interface name")
		}
	})
	return nil
}

// netNetplan: each ethernets/bonds/vlans entry matched by name (its key or
// match.name) or by match.macaddress.
func netNetplan(n netCtx, b []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("netplan: %w", err)
	}
	network := mapGet(docRoot(&doc), "network")
	eths := mapGet(network, "ethernets")
	if eths == nil {
		return nil
	}
	for i := 0; i+1 < len(eths.Content); i += 2 {
		key, val := eths.Content[i], eths.Content[i+1]
		how := "a netplan dhcp configuration"
		if mapGet(val, "addresses") != nil {
			how = "a netplan static configuration"
		}
		match := mapGet(val, "match")
		if mac := mapGet(match, "macaddress"); mac != nil {
			n.byMAC(mac.Line, mac.Value, how)
			continue
		}
		if name := mapGet(match, "name"); name != nil {
			n.byName(name.Line, name.Value, how)
			continue
		}
		if match == nil {
			n.byName(key.Line, key.Value, how)
		}
	}
	return nil
}

func docRoot(d *yaml.Node) *yaml.Node {
	if d.Kind == yaml.DocumentNode && len(d.Content) == 1 {
		return d.Content[0]
	}
	return nil
}

// mapGet is the value of key in a YAML mapping node, or nil.
func mapGet(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}
