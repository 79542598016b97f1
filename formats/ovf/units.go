package ovf

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// maxUnitBytes bounds a unit (2^60 bytes): larger is no real unit and
// would overflow capacity × unit.
const maxUnitBytes = 1 << 60

// ParseUnits returns the number of bytes one unit of a DMTF programmatic
// unit string stands for: "byte", "byte * 2^20", "byte*2^30",
// "byte * 1024", "byte * 10^6", and the plain names vendors write
// ("MegaBytes", "KiloBytes", "GigaBytes", "MB", "bytes"). Empty means byte.
func ParseUnits(s string) (int64, error) {
	t := strings.ToLower(strings.Join(strings.Fields(s), ""))
	switch t {
	case "", "byte", "bytes", "b":
		return 1, nil
	case "kilobytes", "kilobyte", "kb", "kib":
		return 1 << 10, nil
	case "megabytes", "megabyte", "mb", "mib":
		return 1 << 20, nil
	case "gigabytes", "gigabyte", "gb", "gib":
		return 1 << 30, nil
	case "terabytes", "terabyte", "tb", "tib":
		return 1 << 40, nil
	}
	terms := strings.Split(t, "*")
	if terms[0] != "byte" && terms[0] != "bytes" {
		return 0, fmt.Errorf("allocation units %q: want byte, byte * 2^N or a name like MegaBytes", s)
	}
	n := int64(1)
	for _, term := range terms[1:] {
		v, err := unitTerm(term)
		if err != nil {
			return 0, fmt.Errorf("allocation units %q: %w", s, err)
		}
		hi, lo := bits.Mul64(uint64(n), uint64(v))
		if hi != 0 || lo > maxUnitBytes {
			return 0, fmt.Errorf("allocation units %q: more than 2^60 bytes", s)
		}
		n = int64(lo)
	}
	return n, nil
}

// unitTerm evaluates N or N^M.
func unitTerm(t string) (int64, error) {
	base, exp, hasExp := strings.Cut(t, "^")
	b, err := strconv.ParseInt(base, 10, 64)
	if err != nil || b < 1 || b > maxUnitBytes {
		return 0, fmt.Errorf("factor %q is not a positive number", t)
	}
	if !hasExp {
		return b, nil
	}
	e, err := strconv.Atoi(exp)
	if err != nil || e < 0 || e > 60 {
		return 0, fmt.Errorf("exponent in %q: want 0–60", t)
	}
	r := int64(1)
	for i := 0; i < e; i++ {
		if r > maxUnitBytes/b {
			return 0, fmt.Errorf("%q is more than 2^60", t)
		}
		r *= b
	}
	return r, nil
}

// scaled is q × unit bytes, refusing overflow and negative values.
func scaled(q string, unit int64) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(q), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a non-negative whole number", q)
	}
	hi, lo := bits.Mul64(uint64(n), uint64(unit))
	if hi != 0 || lo > 1<<62 {
		return 0, fmt.Errorf("%q × %d bytes overflows", q, unit)
	}
	return int64(lo), nil
}
