package lvm

import (
	"fmt"
	"strconv"
	"strings"
)

// LVM's text metadata is its config syntax: `name { ... }` sections,
// `key = value` with strings, integers and `[ ... ]` arrays of them, and `#`
// comments. Nothing in the Go ecosystem reads it, so this is a small
// hand-written parser.

const (
	maxDepth = 16 // LVM writes 4 levels; lvm.conf uses fewer
	// maxItems bounds the sections, keys and array elements of one text,
	// and with them the memory parsing takes: a VG of 16384 LVs needs a
	// quarter of it.
	maxItems = 1 << 20
)

type valueKind int

const (
	kindString valueKind = iota
	kindInt
	kindFloat
	kindArray
)

type value struct {
	kind valueKind
	str  string
	num  int64
	arr  []value
}

type section struct {
	name     string
	line     int
	keys     map[string]value
	children []*section
}

func (s *section) child(name string) *section {
	for _, c := range s.children {
		if c.name == name {
			return c
		}
	}
	return nil
}

type parser struct {
	src   string
	pos   int
	line  int
	items int
}

// item counts one more section, key or element against maxItems.
func (p *parser) item() error {
	if p.items++; p.items > maxItems {
		return p.errorf("more than %d sections, keys and array elements", maxItems)
	}
	return nil
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("lvm metadata: line %d (byte %d): %s", p.line, p.pos, fmt.Sprintf(format, args...))
}

// parseConfig parses text into its top-level section.
func parseConfig(text string) (*section, error) {
	p := &parser{src: text, line: 1}
	root := &section{name: "", line: 1, keys: map[string]value{}}
	if err := p.body(root, 0); err != nil {
		return nil, err
	}
	return root, nil
}

// skip passes white space and comments.
func (p *parser) skip() {
	for p.pos < len(p.src) {
		switch c := p.src[p.pos]; {
		case c == '\n':
			p.line++
			p.pos++
		case c == ' ' || c == '\t' || c == '\r':
			p.pos++
		case c == '#':
			for p.pos < len(p.src) && p.src[p.pos] != '\n' {
				p.pos++
			}
		default:
			return
		}
	}
}

func isWordByte(c byte) bool {
	return c > ' ' && c < 0x7f && !strings.ContainsRune("{}[]=,\"#", rune(c))
}

func (p *parser) word() string {
	start := p.pos
	for p.pos < len(p.src) && isWordByte(p.src[p.pos]) {
		p.pos++
	}
	return p.src[start:p.pos]
}

// body reads the items of s up to its closing brace (or the end of the
// text at depth 0).
func (p *parser) body(s *section, depth int) error {
	for {
		p.skip()
		if p.pos == len(p.src) {
			if depth > 0 {
				return p.errorf("section %q opened at line %d is not closed", s.name, s.line)
			}
			return nil
		}
		if p.src[p.pos] == '}' {
			if depth == 0 {
				return p.errorf("'}' with no open section")
			}
			p.pos++
			return nil
		}
		line := p.line
		if err := p.item(); err != nil {
			return err
		}
		name := p.word()
		if name == "" {
			return p.errorf("expected a name, found %q", p.src[p.pos])
		}
		p.skip()
		if p.pos == len(p.src) {
			return p.errorf("%q is followed by nothing", name)
		}
		switch p.src[p.pos] {
		case '{':
			if depth+1 >= maxDepth {
				return p.errorf("sections nested deeper than %d", maxDepth)
			}
			p.pos++
			c := &section{name: name, line: line, keys: map[string]value{}}
			if err := p.body(c, depth+1); err != nil {
				return err
			}
			s.children = append(s.children, c)
		case '=':
			p.pos++
			v, err := p.value(true)
			if err != nil {
				return fmt.Errorf("%w (in %q)", err, name)
			}
			s.keys[name] = v
		default:
			return p.errorf("expected '{' or '=' after %q, found %q", name, p.src[p.pos])
		}
	}
}

// value reads a string, a number or (when arrays are allowed) an array.
func (p *parser) value(arrays bool) (value, error) {
	p.skip()
	if p.pos == len(p.src) {
		return value{}, p.errorf("expected a value, found the end")
	}
	switch c := p.src[p.pos]; {
	case c == '"':
		s, err := p.str()
		return value{kind: kindString, str: s}, err
	case c == '[' && arrays:
		p.pos++
		return p.array()
	default:
		w := p.word()
		if w == "" {
			return value{}, p.errorf("expected a value, found %q", c)
		}
		if n, err := strconv.ParseInt(w, 10, 64); err == nil {
			return value{kind: kindInt, num: n}, nil
		}
		if _, err := strconv.ParseFloat(w, 64); err == nil {
			return value{kind: kindFloat, str: w}, nil
		}
		return value{}, p.errorf("%q is not a number or a quoted string", w)
	}
}

// array reads the elements after '[' up to ']'; commas separate them.
func (p *parser) array() (value, error) {
	v := value{kind: kindArray}
	for {
		p.skip()
		if p.pos == len(p.src) {
			return value{}, p.errorf("array not closed")
		}
		switch p.src[p.pos] {
		case ']':
			p.pos++
			return v, nil
		case ',':
			p.pos++
			continue
		}
		if err := p.item(); err != nil {
			return value{}, err
		}
		e, err := p.value(false)
		if err != nil {
			return value{}, err
		}
		v.arr = append(v.arr, e)
	}
}

// str reads a double-quoted string; a backslash escapes the next byte.
func (p *parser) str() (string, error) {
	start, line := p.pos, p.line
	p.pos++
	var b strings.Builder
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		p.pos++
		switch c {
		case '"':
			return b.String(), nil
		case '\\':
			if p.pos < len(p.src) {
				c = p.src[p.pos]
				p.pos++
			}
		case '\n':
			p.line++
		}
		b.WriteByte(c)
	}
	p.pos, p.line = start, line
	return "", p.errorf("string not closed")
}
