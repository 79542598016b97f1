package guest

import (
	"fmt"
	"strings"
)

// guestTools are the old hypervisor's agents: harmless at best on another
// hypervisor, at worst a service failing at every boot or a driver that
// takes the wrong device.
var guestTools = []struct {
	hv       string
	packages []string
	files    []string
}{
	{"vmware", []string{"open-vm-tools", "open-vm-tools-desktop", "vmware-tools"},
		[]string{"/usr/bin/vmtoolsd", "/etc/vmware-tools", "/etc/init.d/vmware-tools", "/usr/lib/systemd/system/vmtoolsd.service", "/lib/systemd/system/vmtoolsd.service"}},
	{"xen", []string{"xe-guest-utilities", "xen-guest-agent"},
		[]string{"/usr/sbin/xe-daemon", "/usr/sbin/xe-update-guest-attrs", "/etc/init.d/xe-linux-distribution", "/usr/sbin/xen-guest-agent"}},
}

// checkTools finds another hypervisor's guest tools installed: in dpkg's
// status (with the line), else by their files (rpm systems).
func checkTools(c *checkCtx) ([]Finding, []string) {
	var out []Finding
	status, _ := c.fs.ReadFile("/var/lib/dpkg/status", 64<<20)
	installed := dpkgInstalled(status)
	for _, t := range guestTools {
		if containsStr(c.target.Tools, t.hv) {
			continue
		}
		found := false
		for _, p := range t.packages {
			if ln, ok := installed[p]; ok {
				found = true
				out = append(out, toolFinding(c, t.hv, p, "/var/lib/dpkg/status", ln))
			}
		}
		for _, f := range t.files {
			if _, _, err := c.fs.Stat(f); err == nil && !found {
				found = true
				out = append(out, toolFinding(c, t.hv, f, f, 0))
			}
		}
	}
	return out, nil
}

func toolFinding(c *checkCtx, hv, what, file string, line int) Finding {
	fix := fmt.Sprintf("remove %s (apt-get purge, dnf remove): before the conversion, or on %s after it", what, c.opt.Target)
	return Finding{Code: hv + "-tools", Severity: Warning, File: file, Line: line,
		Message: fmt.Sprintf("%s guest tools installed (%s); they do not work on %s", hv, what, c.opt.Target), Fix: fix}
}

// dpkgInstalled maps each installed package to the line of its "Package:" field.
func dpkgInstalled(b []byte) map[string]int {
	out := map[string]int{}
	pkg, line := "", 0
	for i, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(l, "Package: "):
			pkg, line = strings.TrimSpace(strings.TrimPrefix(l, "Package: ")), i+1
		case strings.HasPrefix(l, "Status: ") && strings.HasSuffix(strings.TrimSpace(l), " installed") && pkg != "":
			if !strings.Contains(l, "not-installed") && !strings.Contains(l, "config-files") {
				out[pkg] = line
			}
		case strings.TrimSpace(l) == "":
			pkg = ""
		}
	}
	return out
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
