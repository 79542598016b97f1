package boot

import (
	"regexp"
	"strings"
)

// AdjustCmdline makes a guest's kernel command line fit the verifying VMM:
//
//   - the console is on ttyS0: console=ttyS0 is added when no console names
//     ttyS0, and a ttyS0 console is moved last, since the last console= is the
//     one /dev/console (and so the login prompt) goes to; other consoles stay;
//   - root= and resume= device names given for the guest's old hypervisor
//     (/dev/sdX[N], /dev/xvdX[N], /dev/hdX[N]) become the virtio names
//     /dev/vdX[N] of the VM's disk in the same position. A letter past the
//     VM's disks names its only disk when it has one (an IDE disk at hdc, say).
//     UUID=, LABEL=, PARTUUID= and other forms are left alone.
//
// Quoted values are kept as they are.
func AdjustCmdline(cmdline string, diskCount int) string {
	args := splitCmdline(cmdline)
	var out []string
	var serial []string
	for _, a := range args {
		key, val, hasVal := strings.Cut(a, "=")
		switch {
		case key == "console" && hasVal && isTTYS0(val):
			serial = append(serial, a)
			continue
		case (key == "root" || key == "resume") && hasVal:
			a = key + "=" + virtioName(val, diskCount)
		}
		out = append(out, a)
	}
	if len(serial) == 0 {
		serial = []string{"console=ttyS0"}
	}
	out = append(out, serial[len(serial)-1])
	return strings.Join(out, " ")
}

func isTTYS0(v string) bool {
	v = strings.Trim(v, `"`)
	return v == "ttyS0" || strings.HasPrefix(v, "ttyS0,")
}

// splitCmdline splits on spaces outside double quotes, as the kernel does.
func splitCmdline(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			inQuote = !inQuote
			cur.WriteByte(c)
		case (c == ' ' || c == '\t' || c == '\n') && !inQuote:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteByte(c)
		}
	}
	if inQuote {
		// The kernel would take the rest of the line as the quoted value;
		// close it so that what we add stays a parameter of its own.
		cur.WriteByte('"')
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

var oldDiskName = regexp.MustCompile(`^/dev/(sd|xvd|hd|vd)([a-z]+)([0-9]*)$`)

// virtioName maps /dev/sdb2, /dev/xvda1, /dev/hda3 to /dev/vdb2, /dev/vda1,
// /dev/vda3 by disk position; anything else is returned unchanged.
func virtioName(dev string, diskCount int) string {
	m := oldDiskName.FindStringSubmatch(dev)
	if m == nil {
		return dev
	}
	idx := letterIndex(m[2])
	if idx < 0 {
		return dev
	}
	if diskCount == 1 && idx >= 1 {
		idx = 0
	}
	return "/dev/vd" + indexLetters(idx) + m[3]
}

// letterIndex maps a, b, …, z, aa, ab, … to 0, 1, …, 25, 26, 27, ….
func letterIndex(s string) int {
	if len(s) > 3 {
		return -1
	}
	n := 0
	for _, c := range s {
		n = n*26 + int(c-'a'+1)
	}
	return n - 1
}

func indexLetters(i int) string {
	s := ""
	for i++; i > 0; i = (i - 1) / 26 {
		s = string(rune('a'+(i-1)%26)) + s
	}
	return s
}
