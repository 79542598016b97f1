package vmx

import (
	"regexp"
	"strconv"
	"strings"
)

// vmwareGuestID matches the shapes of VMware's guestOS identifiers (a
// family name, an optional version, an optional -64 or arm- part). It
// recognises an id so it is written back untouched; anything else is a hint
// from another hypervisor and is mapped.
var vmwareGuestID = regexp.MustCompile(`^(?i)(arm-)?(` +
	`other(\d+x|24x|26x)?linux|other|otherguest|` +
	`debian\d+|ubuntu|rhel\d+|centos\d*|oraclelinux\d*|fedora|amazonlinux\d+|almalinux|rockylinux|` +
	`sles\d*(sp\d)?|opensuse|suse|mandrake|mandriva\d*|turbolinux|asianux\d+|redhat|genericlinux|` +
	`vmwarephoton|vmkernel\d*|crxpod\d*|crxsys\d*|` +
	`win(nt|2000pro|2000serv|2000advserv|xphome|xppro|netstandard|netenterprise|netdatacenter|netweb|netbusiness|vista|longhorn|95|98|me|31)|` +
	`windows\d+(srv|server)?(next)?|windows\d*(hyperv)?|windows2019srv(next)?|windows2022srv(next)?|windowsserver\d+|` +
	`freebsd\d*|netbsd|openbsd|solaris\d+|darwin\d*|netware\d|os2|dos|ecomstation\d?|unixware\d|openserver\d|` +
	`vmwarephoton` +
	`)(-64)?$`)

// GuestOSFor maps a neutral guest OS hint to a VMware guestOS id: a VMware
// id is kept as it is; a distribution name maps to its VMware id; other
// Linux to "other4xlinux-64" (known since hardware version 14); anything
// else to "other-64".
func GuestOSFor(hint string) string {
	h := strings.TrimSpace(hint)
	if vmwareGuestID.MatchString(h) {
		return h
	}
	l := strings.ToLower(h)
	ver := func(lo, hi int) int {
		for _, f := range strings.FieldsFunc(l, func(r rune) bool { return r < '0' || r > '9' }) {
			if n, err := strconv.Atoi(f); err == nil && n >= lo && n <= hi {
				return n
			}
		}
		return 0
	}
	switch {
	case l == "":
		return "other-64"
	case strings.Contains(l, "windows"):
		if strings.Contains(l, "server") || strings.Contains(l, "srv") {
			return "windows2019srv-64"
		}
		if strings.Contains(l, "11") {
			return "windows11-64"
		}
		return "windows9-64"
	case strings.Contains(l, "ubuntu"):
		return "ubuntu-64"
	case strings.Contains(l, "debian"):
		if n := ver(8, 12); n > 0 {
			return "debian" + strconv.Itoa(n) + "-64"
		}
		if ver(13, 99) > 0 {
			return "debian12-64"
		}
		return "debian10-64"
	case strings.Contains(l, "red hat") || strings.Contains(l, "rhel"):
		if n := ver(6, 9); n > 0 {
			return "rhel" + strconv.Itoa(n) + "-64"
		}
		return "rhel8-64"
	case strings.Contains(l, "centos"):
		if n := ver(7, 8); n > 0 {
			return "centos" + strconv.Itoa(n) + "-64"
		}
		return "centos-64"
	case strings.Contains(l, "oracle"):
		return "oraclelinux8-64"
	case strings.Contains(l, "fedora"):
		return "fedora-64"
	case strings.Contains(l, "suse") || strings.Contains(l, "sles"):
		return "sles15-64"
	case strings.Contains(l, "freebsd"):
		return "freebsd-64"
	case strings.Contains(l, "linux") || strings.Contains(l, "alpine") ||
		strings.Contains(l, "gentoo") || strings.Contains(l, "rocky") || strings.Contains(l, "alma"):
		return "other4xlinux-64"
	}
	return "other-64"
}
