package xl

import (
	"fmt"
	"strconv"
	"strings"
)

// DiskSpec is one entry of `disk = [...]` (xl-disk-configuration(5)).
type DiskSpec struct {
	Target  string // file or device; "" for an empty CD-ROM drive
	Format  string // raw (default), qcow, qcow2, vhd, qed
	Vdev    string // xvda, hda, sdb, xvda1, …
	Access  string // "rw" or "ro"
	CDROM   bool
	Script  string
	Other   []string // key=value pairs and flags kept as written
	Legacy  bool     // written in the deprecated xend form
	Partial bool     // vdev names a partition (xvda1): the disk is one filesystem
}

var diskFormats = map[string]bool{"raw": true, "qcow": true, "qcow2": true, "vhd": true, "qed": true}

// legacy prefixes of the xend form (`phy:`, `file:`, `tap:aio:`, …).
var (
	formatPrefixes = map[string]string{"raw": "raw", "qcow": "qcow", "qcow2": "qcow2", "vhd": "vhd", "qed": "qed"}
	scriptPrefixes = map[string]bool{"iscsi": true, "nbd": true, "enbd": true, "drbd": true}
	ignoredPrefix  = map[string]bool{"tapdisk": true, "tap2": true, "tap": true, "aio": true, "ioemu": true, "file": true, "phy": true}
)

// ParseDiskSpec parses a disk specification: positional values (target,
// format, vdev, access), key=value pairs (target= takes the rest of the
// string), flags, and the deprecated `[prefix:]target,vdev[:cdrom],mode`.
func ParseDiskSpec(s string) (DiskSpec, error) {
	var d DiskSpec
	var pos []string
	rest := s
	for rest != "" || len(pos) == 0 {
		var el string
		trimmed := strings.TrimLeft(rest, " \t")
		if strings.HasPrefix(trimmed, "target=") {
			el, rest = trimmed, ""
		} else if i := strings.IndexByte(rest, ','); i >= 0 {
			el, rest = rest[:i], rest[i+1:]
		} else {
			el, rest = rest, ""
		}
		el = strings.TrimLeft(el, " \t")
		if k, v, ok := strings.Cut(el, "="); ok && !strings.ContainsAny(k, "/:") {
			if err := d.setKey(strings.TrimSpace(k), v); err != nil {
				return d, err
			}
		} else {
			switch t := strings.TrimSpace(el); t {
			case "cdrom":
				d.CDROM = true
			case "direct-io-safe", "discard", "no-discard", "trusted", "untrusted", "colo":
				d.Other = append(d.Other, t)
			default:
				pos = append(pos, strings.TrimRight(el, " \t"))
			}
		}
		if rest == "" {
			break
		}
	}
	if err := d.positional(pos); err != nil {
		return d, err
	}
	if d.Vdev == "" {
		return d, fmt.Errorf("disk %q: no vdev (the guest device name, e.g. xvda)", clip(s))
	}
	if d.Format == "" {
		d.Format = "raw"
	}
	if !diskFormats[d.Format] {
		return d, fmt.Errorf("disk %q: format %q: want raw, qcow, qcow2, vhd or qed", clip(s), clip(d.Format))
	}
	switch d.Access {
	case "":
		d.Access = "rw"
		if d.CDROM {
			d.Access = "ro"
		}
	case "r", "ro":
		d.Access = "ro"
	case "w", "rw":
		d.Access = "rw"
	default:
		return d, fmt.Errorf("disk %q: access %q: want ro or rw", clip(s), clip(d.Access))
	}
	if d.Target == "" && !d.CDROM {
		return d, fmt.Errorf("disk %q: no target (only an empty CD-ROM drive may omit it)", clip(s))
	}
	if _, _, err := VdevIndex(d.Vdev); err != nil {
		return d, fmt.Errorf("disk %q: %w", clip(s), err)
	}
	return d, nil
}

func (d *DiskSpec) setKey(k, v string) error {
	switch k {
	case "target":
		d.Target = v
	case "format":
		d.Format = strings.TrimSpace(v)
	case "vdev":
		d.Vdev = strings.TrimSpace(v)
	case "access":
		d.Access = strings.TrimSpace(v)
	case "devtype":
		if strings.TrimSpace(v) == "cdrom" {
			d.CDROM = true
		} else if strings.TrimSpace(v) != "disk" {
			return fmt.Errorf("disk: devtype=%q: want cdrom or disk", clip(v))
		}
	case "script":
		d.Script = strings.TrimSpace(v)
	default:
		d.Other = append(d.Other, k+"="+strings.TrimSpace(v))
	}
	return nil
}

// positional fills target, format, vdev, access in order, or applies the
// deprecated xend rules when the first value carries a prefix.
func (d *DiskSpec) positional(pos []string) error {
	if len(pos) >= 2 && len(pos) <= 3 && d.Vdev == "" {
		if ok := d.legacy(pos); ok {
			return nil
		}
	}
	slots := []*string{&d.Target, &d.Format, &d.Vdev, &d.Access}
	if len(pos) > len(slots) {
		return fmt.Errorf("disk: %d positional values, at most 4 (target, format, vdev, access)", len(pos))
	}
	for i, v := range pos {
		if v = strings.TrimSpace(v); v != "" {
			*slots[i] = v
		}
	}
	if len(pos) > 0 {
		d.Target = d.stripPrefixes(d.Target)
	}
	return nil
}

// stripPrefixes applies xl's deprecated target prefixes ("phy:", "file:",
// "tap:aio:", "qcow2:", "nbd:"…): formats and scripts are taken, the rest
// dropped; a path is left alone.
func (d *DiskSpec) stripPrefixes(target string) string {
	for {
		pfx, after, ok := strings.Cut(target, ":")
		if !ok || strings.Contains(pfx, "/") {
			return target
		}
		switch {
		case formatPrefixes[pfx] != "":
			d.Format = formatPrefixes[pfx]
		case scriptPrefixes[pfx]:
			d.Script = pfx
		case ignoredPrefix[pfx]:
		default:
			return target
		}
		target = after
	}
}

// legacy reads `[prefix:]target,vdev[:cdrom][,mode]`: it applies when the
// second value is a device name (not a format).
func (d *DiskSpec) legacy(pos []string) bool {
	vdev := strings.TrimSpace(pos[1])
	if diskFormats[vdev] || vdev == "" {
		return false
	}
	vname, devtype, _ := strings.Cut(vdev, ":")
	if _, _, err := VdevIndex(vname); err != nil {
		return false
	}
	d.Target, d.Vdev, d.Legacy = d.stripPrefixes(strings.TrimSpace(pos[0])), vname, true
	if devtype == "cdrom" {
		d.CDROM = true
	}
	if len(pos) == 3 {
		d.Access = strings.TrimSpace(pos[2])
	}
	return true
}

// VdevIndex returns the disk index a vdev names (xvda → 0, hdc → 2,
// xvdaa → 26, numeric 0x301 / 51712 forms) and the partition (0 = whole disk).
func VdevIndex(v string) (disk, part int, err error) {
	if n, e := strconv.ParseInt(v, 0, 32); e == nil {
		return numericVdev(int(n))
	}
	var prefix string
	for _, p := range []string{"xvd", "hd", "sd"} {
		if strings.HasPrefix(v, p) {
			prefix = p
			break
		}
	}
	if prefix == "" {
		return 0, 0, fmt.Errorf("vdev %q: want xvdX, hdX, sdX or a number", clip(v))
	}
	s := v[len(prefix):]
	i := 0
	for i < len(s) && s[i] >= 'a' && s[i] <= 'z' {
		i++
	}
	letters, digits := s[:i], s[i:]
	if letters == "" || len(letters) > 3 {
		return 0, 0, fmt.Errorf("vdev %q: want a letter after %s", clip(v), prefix)
	}
	n := 0
	for _, c := range letters {
		n = n*26 + int(c-'a'+1)
	}
	n--
	if digits != "" {
		p, e := strconv.Atoi(digits)
		// libxl refuses leading zeros in a partition number (xvda01).
		if e != nil || p < 1 || p > 255 || digits[0] == '0' {
			return 0, 0, fmt.Errorf("vdev %q: partition %q", clip(v), clip(digits))
		}
		part = p
	}
	if prefix == "hd" && n > 3 {
		return 0, 0, fmt.Errorf("vdev %q: IDE has hda–hdd only", clip(v))
	}
	return n, part, nil
}

// numericVdev decodes xen-vbd-interface(7) numbers.
func numericVdev(n int) (int, int, error) {
	switch {
	case n>>8 == 202: // xvd, 16 partitions per disk
		return (n & 0xff) >> 4, n & 15, nil
	case n>>8 == 3: // hda/hdb
		return (n & 0xff) >> 6, n & 63, nil
	case n>>8 == 22: // hdc/hdd
		return 2 + (n&0xff)>>6, n & 63, nil
	case n>>8 == 8: // sd
		return (n & 0xff) >> 4, n & 15, nil
	case n&(1<<28) != 0:
		return (n >> 8) & 0xfffff, n & 255, nil
	}
	return 0, 0, fmt.Errorf("vdev %#x: not a Xen virtual disk number", n)
}

// VdevName is the Xen name of disk index i: xvda…xvdz, xvdaa….
func VdevName(prefix string, i int) string {
	s := ""
	for i++; i > 0; i = (i - 1) / 26 {
		s = string(rune('a'+(i-1)%26)) + s
	}
	return prefix + s
}

// VifSpec is one entry of `vif = [...]`.
type VifSpec struct {
	MAC    string
	Bridge string
	Model  string
	Other  []string // other key=value pairs as written
}

// ParseVifSpec parses comma-separated key=value pairs; ” is a NIC with
// defaults.
func ParseVifSpec(s string) (VifSpec, error) {
	var v VifSpec
	for _, el := range strings.Split(s, ",") {
		el = strings.TrimSpace(el)
		if el == "" {
			continue
		}
		k, val, ok := strings.Cut(el, "=")
		if !ok {
			return v, fmt.Errorf("vif %q: %q is not key=value", clip(s), clip(el))
		}
		k, val = strings.TrimSpace(k), strings.TrimSpace(val)
		switch k {
		case "mac":
			m, err := parseMAC(val)
			if err != nil {
				return v, fmt.Errorf("vif %q: mac=%q: %w", clip(s), clip(val), err)
			}
			v.MAC = m
		case "bridge":
			v.Bridge = val
		case "model":
			v.Model = val
		default:
			v.Other = append(v.Other, k+"="+val)
		}
	}
	return v, nil
}

func parseMAC(s string) (string, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 6 {
		return "", fmt.Errorf("want xx:xx:xx:xx:xx:xx")
	}
	for i, p := range parts {
		if len(p) != 2 || !isHexDigit(p[0]) || !isHexDigit(p[1]) {
			return "", fmt.Errorf("want xx:xx:xx:xx:xx:xx")
		}
		parts[i] = strings.ToLower(p)
	}
	return strings.Join(parts, ":"), nil
}
