package vmx

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// parseBool accepts VMware's "TRUE"/"FALSE" in any case.
func parseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("expected TRUE or FALSE, got %q", v)
}

func parsePositive(v string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("expected a positive integer, got %q", v)
	}
	return n, nil
}

// parseMAC checks a colon-separated MAC address and returns it lower-case.
func parseMAC(v string) (string, error) {
	parts := strings.Split(v, ":")
	if len(parts) != 6 {
		return "", fmt.Errorf("expected a MAC address xx:xx:xx:xx:xx:xx, got %q", v)
	}
	for _, p := range parts {
		if len(p) != 2 || hexVal(p[0]) < 0 || hexVal(p[1]) < 0 {
			return "", fmt.Errorf("expected a MAC address xx:xx:xx:xx:xx:xx, got %q", v)
		}
	}
	return strings.ToLower(v), nil
}

// staticMACRange reports whether mac is in the range VMware accepts for
// addressType "static": 00:50:56:00:00:00–00:50:56:3F:FF:FF.
func staticMACRange(mac string) bool {
	m, err := parseMAC(mac)
	if err != nil || !strings.HasPrefix(m, "00:50:56:") {
		return false
	}
	return hexVal(m[9]) < 4
}

// parseVMwareUUID parses VMware's "56 4d 70 88 01 a1 98 32-e7 2b 67 90 c7
// 3b 64 ea" (bytes in written order) and returns the 16 bytes.
func parseVMwareUUID(v string) ([16]byte, error) {
	var u [16]byte
	s := strings.NewReplacer(" ", "", "-", "").Replace(strings.TrimSpace(v))
	if len(s) != 32 {
		return u, fmt.Errorf("expected 16 hex bytes like \"56 4d ... 3b 64 ea\", got %q", v)
	}
	if _, err := hex.Decode(u[:], []byte(s)); err != nil {
		return u, fmt.Errorf("expected 16 hex bytes like \"56 4d ... 3b 64 ea\", got %q", v)
	}
	return u, nil
}

// parseUUID parses the canonical 8-4-4-4-12 form (or 32 bare hex digits).
func parseUUID(v string) ([16]byte, error) {
	var u [16]byte
	s := strings.ReplaceAll(strings.TrimSpace(v), "-", "")
	if len(s) != 32 {
		return u, fmt.Errorf("expected a UUID like 564d7088-01a1-9832-e72b-6790c73b64ea, got %q", v)
	}
	if _, err := hex.Decode(u[:], []byte(s)); err != nil {
		return u, fmt.Errorf("expected a UUID like 564d7088-01a1-9832-e72b-6790c73b64ea, got %q", v)
	}
	return u, nil
}

// canonicalUUID formats bytes as 8-4-4-4-12, lower-case, in written order
// (no mixed-endian swap: the byte string VMware writes is the UUID).
func canonicalUUID(u [16]byte) string {
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// vmwareUUID formats bytes as VMware writes uuid.bios.
func vmwareUUID(u [16]byte) string {
	var b strings.Builder
	for i, c := range u {
		switch {
		case i == 8:
			b.WriteByte('-')
		case i > 0:
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%02x", c)
	}
	return b.String()
}
