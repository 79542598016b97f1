package vmdk

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Descriptor is the parsed text descriptor of a VMDK disk.
type Descriptor struct {
	Version            int
	Encoding           string
	CID                uint32
	ParentCID          uint32
	CreateType         string
	ParentFileNameHint string
	Extents            []ExtentLine
	// DDB holds the ddb.* keys in file order; Other the unknown header keys.
	DDB   []KeyValue
	Other []KeyValue
}

// KeyValue is one "key = value" line, value unquoted.
type KeyValue struct{ Key, Value string }

// ExtentLine is one line of the extent description.
type ExtentLine struct {
	Access  string // RW, RDONLY, NOACCESS
	Sectors int64
	Type    string // FLAT, SPARSE, ZERO, VMFS, VMFSSPARSE, SESPARSE, ...
	File    string // empty for ZERO
	Offset  int64  // sectors into the file, FLAT only
}

const noParentCID = 0xFFFFFFFF

// DDBValue returns the value of a ddb key ("" when absent).
func (d *Descriptor) DDBValue(key string) string {
	for _, kv := range d.DDB {
		if strings.EqualFold(kv.Key, key) {
			return kv.Value
		}
	}
	return ""
}

// ParseDescriptor parses descriptor text. name is used in error messages.
// Text after the first NUL is ignored (embedded descriptors are NUL padded).
func ParseDescriptor(name string, text []byte) (*Descriptor, error) {
	if i := bytes.IndexByte(text, 0); i >= 0 {
		text = text[:i]
	}
	d := &Descriptor{Version: 1, Encoding: "UTF-8", ParentCID: noParentCID}
	var haveType bool // a missing CID reads as 0, like qemu
	lines := strings.Split(string(text), "\n")
	for n, line := range lines {
		lineNo := n + 1
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" || line[0] == '#' {
			continue
		}
		if isExtentLine(line) {
			e, err := parseExtentLine(line)
			if err != nil {
				return nil, fmt.Errorf("vmdk %s: descriptor line %d %q: %w", name, lineNo, clip(line), err)
			}
			d.Extents = append(d.Extents, e)
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("vmdk %s: descriptor line %d %q: want key=value or an extent line", name, lineNo, clip(line))
		}
		key = strings.TrimSpace(key)
		val = unquote(strings.TrimSpace(val))
		if key == "" || strings.ContainsAny(key, " \t\"") {
			return nil, fmt.Errorf("vmdk %s: descriptor line %d %q: bad key", name, lineNo, clip(line))
		}
		lk := strings.ToLower(key)
		if strings.HasPrefix(lk, "ddb.") {
			d.DDB = append(d.DDB, KeyValue{key, val})
			continue
		}
		var err error
		switch lk {
		case "version":
			d.Version, err = strconv.Atoi(val)
			if err == nil && (d.Version < 1 || d.Version > 3) {
				err = fmt.Errorf("want 1, 2 or 3")
			}
		case "encoding":
			d.Encoding = val
		case "cid":
			d.CID, err = parseCID(val)
		case "parentcid":
			d.ParentCID, err = parseCID(val)
		case "createtype":
			d.CreateType = val
			haveType = true
		case "parentfilenamehint":
			d.ParentFileNameHint = val
		default:
			d.Other = append(d.Other, KeyValue{key, val})
		}
		if err != nil {
			return nil, fmt.Errorf("vmdk %s: descriptor line %d: %s=%q: %w", name, lineNo, key, clip(val), err)
		}
	}
	if !haveType {
		return nil, fmt.Errorf("vmdk %s: descriptor has no createType", name)
	}
	if len(d.Extents) == 0 {
		return nil, fmt.Errorf("vmdk %s: descriptor has no extent lines", name)
	}
	return d, nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

func parseCID(s string) (uint32, error) {
	if s == "" || len(s) > 8 {
		return 0, fmt.Errorf("want up to 8 hex digits")
	}
	v, err := strconv.ParseUint(s, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("want up to 8 hex digits")
	}
	return uint32(v), nil
}

func isExtentLine(line string) bool {
	f, _, _ := strings.Cut(line, " ")
	switch f {
	case "RW", "RDONLY", "NOACCESS":
		return true
	}
	return false
}

// parseExtentLine parses ACCESS SECTORS TYPE ["FILE" [OFFSET [...]]]. The file
// name runs from the first quote to the last one: names may hold spaces and
// even unescaped quotes.
func parseExtentLine(line string) (ExtentLine, error) {
	var e ExtentLine
	head, rest := line, ""
	if i := strings.IndexByte(line, '"'); i >= 0 {
		j := strings.LastIndexByte(line, '"')
		if j == i {
			return e, fmt.Errorf("unterminated file name")
		}
		head, rest = line[:i], line[j+1:]
		e.File = line[i+1 : j]
		if e.File == "" {
			return e, fmt.Errorf("empty file name")
		}
	}
	f := strings.Fields(head)
	if len(f) != 3 {
		return e, fmt.Errorf("want ACCESS SECTORS TYPE before the file name")
	}
	e.Access, e.Type = f[0], strings.ToUpper(f[2])
	n, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || n <= 0 || n > maxCapacitySectors {
		return e, fmt.Errorf("extent size %q: want a positive sector count up to %d", f[1], int64(maxCapacitySectors))
	}
	e.Sectors = n
	tail := strings.Fields(rest)
	if len(tail) > 0 {
		off, err := strconv.ParseInt(tail[0], 10, 64)
		if err != nil || off < 0 || off > maxCapacitySectors {
			return e, fmt.Errorf("extent offset %q: want a sector number", tail[0])
		}
		e.Offset = off
	}
	switch e.Type {
	case "ZERO":
		if e.File != "" {
			return e, fmt.Errorf("ZERO extent with a file name")
		}
	case "FLAT", "SPARSE", "VMFS", "VMFSSPARSE", "SESPARSE", "VMFSRDM", "VMFSRAW":
		if e.File == "" {
			return e, fmt.Errorf("%s extent without a file name", e.Type)
		}
	default:
		return e, fmt.Errorf("unknown extent type %q", f[2])
	}
	return e, nil
}

// format renders the descriptor the way VMware and qemu write it: header keys
// unspaced (qemu finds CID= and parentCID= at fixed offsets, adjacent), the
// DDB as key = "value".
func (d *Descriptor) format() []byte {
	var b strings.Builder
	b.WriteString("# Disk DescriptorFile\n")
	fmt.Fprintf(&b, "version=%d\n", d.Version)
	if d.Encoding != "" {
		fmt.Fprintf(&b, "encoding=\"%s\"\n", d.Encoding)
	}
	fmt.Fprintf(&b, "CID=%08x\n", d.CID)
	fmt.Fprintf(&b, "parentCID=%08x\n", d.ParentCID)
	fmt.Fprintf(&b, "createType=\"%s\"\n", d.CreateType)
	if d.ParentFileNameHint != "" {
		fmt.Fprintf(&b, "parentFileNameHint=\"%s\"\n", d.ParentFileNameHint)
	}
	for _, kv := range d.Other {
		fmt.Fprintf(&b, "%s=\"%s\"\n", kv.Key, kv.Value)
	}
	b.WriteString("\n# Extent description\n")
	for _, e := range d.Extents {
		fmt.Fprintf(&b, "%s %d %s", e.Access, e.Sectors, e.Type)
		if e.File != "" {
			fmt.Fprintf(&b, " \"%s\"", e.File)
			if e.Type == "FLAT" {
				fmt.Fprintf(&b, " %d", e.Offset)
			}
		}
		b.WriteByte('\n')
	}
	b.WriteString("\n# The Disk Data Base\n#DDB\n\n")
	for _, kv := range d.DDB {
		fmt.Fprintf(&b, "%s = \"%s\"\n", kv.Key, kv.Value)
	}
	return []byte(b.String())
}
