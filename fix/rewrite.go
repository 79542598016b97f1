package fix

import (
	"path"
	"regexp"
	"strconv"
	"strings"
)

// Rewrite replaces the device names of names (e.g. "/dev/sda1" →
// "UUID=…") in a file of kind file (its path in the guest), line by line:
// in fstab the device field, in crypttab the device field, elsewhere the
// values of root=, resume= and RESUME=. Comment lines, other fields and
// every other byte are kept as they are. In /etc/default/grub a
// GRUB_DISABLE_LINUX_UUID=true is commented out, or update-grub would
// write the device names back. A GRUB environment block (grubenv) keeps
// its size: the longer names take the place of its '#' padding, and the
// file is left as it is when the padding is too short. changed lists what
// was replaced, one entry a line ("3: /dev/sda1 -> UUID=…").
func Rewrite(file string, b []byte, names map[string]string) (out []byte, changed []string) {
	lines := strings.SplitAfter(string(b), "\n")
	var sb strings.Builder
	for i, l := range lines {
		nl, what := rewriteLine(file, l, names)
		if nl != l {
			changed = append(changed, strconv.Itoa(i+1)+": "+what)
		}
		sb.WriteString(nl)
	}
	out = []byte(sb.String())
	if path.Base(file) == "grubenv" && len(changed) > 0 {
		var ok bool
		if out, ok = keepEnvSize(out, len(b)); !ok {
			return b, nil
		}
	}
	return out, changed
}

// keepEnvSize trims (or adds) the '#' padding at the end of a GRUB
// environment block so that it is size bytes again, as GRUB requires.
func keepEnvSize(b []byte, size int) ([]byte, bool) {
	if len(b) <= size {
		return append(b, strings.Repeat("#", size-len(b))...), true
	}
	pad := len(b) - len(strings.TrimRight(string(b), "#"))
	if excess := len(b) - size; excess <= pad {
		return b[:size], true
	}
	return nil, false
}

func rewriteLine(file, l string, names map[string]string) (string, string) {
	t := strings.TrimSpace(l)
	if t == "" {
		return l, ""
	}
	if strings.HasPrefix(t, "#") {
		return l, ""
	}
	switch file {
	case "/etc/fstab":
		return replaceField(l, 0, names)
	case "/etc/crypttab":
		return replaceField(l, 1, names)
	}
	if path.Base(file) == "grub" && strings.HasPrefix(t, "GRUB_DISABLE_LINUX_UUID=") &&
		strings.Trim(strings.TrimPrefix(t, "GRUB_DISABLE_LINUX_UUID="), `"'`) == "true" {
		i := strings.Index(l, "GRUB_DISABLE_LINUX_UUID")
		return l[:i] + "#" + l[i:], "GRUB_DISABLE_LINUX_UUID=true commented out"
	}
	return replaceParams(l, names)
}

// fieldRE finds whitespace-separated fields with their offsets.
var fieldRE = regexp.MustCompile(`\S+`)

// replaceField replaces field n of l when it is one of names.
func replaceField(l string, n int, names map[string]string) (string, string) {
	loc := fieldRE.FindAllStringIndex(l, n+1)
	if len(loc) <= n {
		return l, ""
	}
	f := l[loc[n][0]:loc[n][1]]
	to, ok := names[f]
	if !ok {
		return l, ""
	}
	return l[:loc[n][0]] + to + l[loc[n][1]:], f + " -> " + to
}

// paramRE matches root=, resume= and RESUME= with a /dev value, ending at
// whitespace, a quote or the line's end.
var paramRE = regexp.MustCompile(`(\b(?:root|resume|RESUME)=)(/dev/[^\s"';]+)`)

func replaceParams(l string, names map[string]string) (string, string) {
	var what []string
	out := paramRE.ReplaceAllStringFunc(l, func(m string) string {
		sm := paramRE.FindStringSubmatch(m)
		to, ok := names[sm[2]]
		if !ok {
			return m
		}
		what = append(what, sm[2]+" -> "+to)
		return sm[1] + to
	})
	return out, strings.Join(what, ", ")
}
