package xl

import (
	"bytes"
	"strings"
)

// xlKeys are settings that mark a file as an xl.cfg.
var xlKeys = map[string]bool{"name": true, "disk": true, "vif": true, "builder": true, "type": true,
	"vcpus": true, "maxvcpus": true, "memory": true, "maxmem": true, "kernel": true, "ramdisk": true,
	"bootloader": true, "extra": true, "root": true, "cmdline": true, "uuid": true, "on_crash": true}

// Detect reports whether head (a file's first bytes) is an xl.cfg, by its
// content whatever the file's name: text whose statements are all
// `ident = value` lines (comments and list continuations aside), naming at
// least two xl settings, one of them name, disk, builder, type or vcpus.
func Detect(head []byte) bool {
	if len(head) == 0 || bytes.IndexByte(head, 0) >= 0 {
		return false
	}
	lines := strings.Split(string(head), "\n")
	if len(head) == cap(head) && len(lines) > 1 {
		lines = lines[:len(lines)-1] // the last line may be cut
	}
	found := map[string]bool{}
	depth := 0
	for _, ln := range lines {
		t := strings.TrimSpace(ln)
		if t == "" || t[0] == '#' {
			continue
		}
		if depth > 0 {
			depth += strings.Count(t, "[") - strings.Count(t, "]")
			continue
		}
		for _, stmt := range strings.Split(t, ";") {
			stmt = strings.TrimSpace(stmt)
			if stmt == "" || stmt[0] == '#' {
				continue
			}
			k, v, ok := strings.Cut(stmt, "=")
			k = strings.TrimSuffix(strings.TrimSpace(k), "+")
			if !ok || k == "" || !isIdentStart(k[0]) {
				return false
			}
			for i := 0; i < len(k); i++ {
				if !isIdent(k[i]) {
					return false
				}
			}
			v = strings.TrimSpace(v)
			if v == "" || !(v[0] == '"' || v[0] == '\'' || v[0] == '[' || v[0] >= '0' && v[0] <= '9' || v[0] == '-') {
				return false
			}
			if xlKeys[k] {
				found[k] = true
			}
			depth += strings.Count(v, "[") - strings.Count(v, "]")
		}
	}
	return len(found) >= 2 && (found["name"] || found["disk"] || found["builder"] || found["type"] || found["vcpus"])
}
