// Package createopt parses the values of image writers' -o settings the way
// qemu-img parses them, so that a command line written for qemu-img means the
// same here: booleans as on/off, yes/no, true/false; sizes as a number with
// an optional fraction and a k, M, G, T, P or E suffix (powers of 1024).
package createopt

import (
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Bool reads on, yes, true, y and 1 as true and off, no, false, n and 0 as
// false, in any case. An empty value is an error, as in qemu-img ("-o
// compat6=" is refused; a bare "-o compat6" is handed over as "on").
func Bool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "on", "yes", "true", "y", "1":
		return true, nil
	case "off", "no", "false", "n", "0":
		return false, nil
	}
	return false, errors.New("want on or off")
}

// errSize says what Size accepts, in qemu-img's words.
var errSize = errors.New("want a non-negative size below 2^63, with an optional k, M, G, T, P or E suffix")

// Size reads a byte count: "65536", "64k", "2M", "0.5M", "1G". A fraction is
// allowed only with a suffix, and the result must be a whole number of
// bytes below 2^63.
func Size(v string) (int64, error) {
	num, mult := v, 1.0
	if n := len(v); n > 0 {
		if i := strings.IndexByte("bkmgtpe", lower(v[n-1])); i >= 0 {
			num, mult = v[:n-1], math.Pow(1024, float64(i))
		}
	}
	if num == "" || strings.ContainsAny(num, "+-eEpPxX_ \t") {
		return 0, errSize
	}
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || n > math.MaxInt64/int64(mult) {
			return 0, errSize
		}
		return n * int64(mult), nil
	}
	if mult == 1 {
		return 0, errSize // a fraction of a byte
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f*mult >= 1<<63 || f*mult != math.Trunc(f*mult) {
		return 0, errSize
	}
	return int64(f * mult), nil
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// Keys returns the settings' keys in order, so that of several bad settings
// the same one is reported every time.
func Keys(kv map[string]string) []string {
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Help documents one setting for "-o help", as qemu-img lists them.
type Help struct {
	Name  string // the key
	Value string // what it takes: "<bool (on/off)>", "<size>", "<str>", …
	Text  string
}

// Known lists the settings' names for an "unknown option" error.
func Known(settings []Help) string {
	names := make([]string, len(settings))
	for i, h := range settings {
		names[i] = h.Name
	}
	return strings.Join(names, ", ")
}

// IsHelp reports whether the settings ask for the list of settings: "-o
// help" or "-o ?", as qemu-img takes them.
func IsHelp(kv map[string]string) bool {
	_, help := kv["help"]
	_, q := kv["?"]
	return help || q
}

// PrintHelp writes format's settings in qemu-img's layout.
func PrintHelp(w io.Writer, format string, settings []Help) {
	if len(settings) == 0 {
		fmt.Fprintf(w, "The %s format takes no options.\n", format)
		return
	}
	fmt.Fprintf(w, "Supported %s options:\n", format)
	for _, h := range settings {
		fmt.Fprintf(w, "  %-22s - %s\n", h.Name+"="+h.Value, h.Text)
	}
}
