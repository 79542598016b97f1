// Package xl reads and writes Xen xl domain configuration files (xl.cfg(5),
// the files `xl create` takes) through the neutral VM. The file is parsed
// with libxlu's grammar — it is data, never executed — and its disk and
// network specifications with xl-disk-configuration(5) and
// xl-network-configuration(5). See shared/formats/xen-config.md.
package xl

import (
	"fmt"
	"strconv"
	"strings"
)

// Limits on what a file may hold.
const (
	MaxFileSize  = 1 << 20 // real configs are a few KiB
	maxListItems = 4096
	maxNesting   = 8
)

// Kind of a value.
type Kind uint8

const (
	String Kind = iota // a quoted string or a bare number (libxlu keeps both as text)
	List
)

// Value is a setting's value: a string (numbers are kept as written) or a
// list of values.
type Value struct {
	Kind   Kind
	Text   string // String: the decoded text
	Number bool   // String: written as a bare number
	Items  []Value
}

// Entry is one `key = value` (or `key += value`) statement.
type Entry struct {
	Key    string
	Value  Value
	Append bool
	Line   int
}

// File is a parsed xl.cfg: its statements in order.
type File struct {
	Name    string
	Entries []Entry
}

// Get returns the effective value of key: the last assignment wins, and
// `+=` statements after it append (strings concatenate, lists extend).
func (f *File) Get(key string) (Value, int, bool) {
	var v Value
	line, found := 0, false
	for _, e := range f.Entries {
		if e.Key != key {
			continue
		}
		if e.Append && found {
			if v.Kind == List && e.Value.Kind == List {
				v.Items = append(append([]Value(nil), v.Items...), e.Value.Items...)
			} else if v.Kind == String && e.Value.Kind == String {
				v.Text += e.Value.Text
				v.Number = false
			} else {
				v = e.Value
			}
		} else {
			v = e.Value
		}
		line, found = e.Line, true
	}
	return v, line, found
}

// Keys lists the distinct keys in first-appearance order.
func (f *File) Keys() []string {
	seen := map[string]bool{}
	var out []string
	for _, e := range f.Entries {
		if !seen[e.Key] {
			seen[e.Key] = true
			out = append(out, e.Key)
		}
	}
	return out
}

// SyntaxError is a file that is not xl.cfg: the file, line and what was
// expected.
type SyntaxError struct {
	File string
	Line int
	Msg  string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("xl %s: line %d: %s", e.File, e.Line, e.Msg)
}

// parser is a hand-written scanner for libxlu's grammar.
type parser struct {
	name string
	s    string
	pos  int
	line int
}

func (p *parser) errf(format string, args ...any) error {
	return &SyntaxError{File: p.name, Line: p.line, Msg: fmt.Sprintf(format, args...)}
}

// Parse reads an xl.cfg. name is used in errors.
func Parse(name string, data []byte) (*File, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("xl %s: %d bytes is larger than the %d allowed for a domain configuration", name, len(data), MaxFileSize)
	}
	p := &parser{name: name, s: string(data), line: 1}
	f := &File{Name: name}
	for {
		p.skipBlank(true)
		if p.pos >= len(p.s) {
			return f, nil
		}
		e, err := p.statement()
		if err != nil {
			return nil, err
		}
		f.Entries = append(f.Entries, e)
	}
}

// skipBlank skips spaces, tabs, comments and, if newlines, newlines and
// ';' statement separators.
func (p *parser) skipBlank(newlines bool) {
	for p.pos < len(p.s) {
		switch c := p.s[p.pos]; {
		case c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v':
			p.pos++
		case c == '#':
			for p.pos < len(p.s) && p.s[p.pos] != '\n' {
				p.pos++
			}
		case (c == '\n' || c == ';') && newlines:
			if c == '\n' {
				p.line++
			}
			p.pos++
		default:
			return
		}
	}
}

func isIdentStart(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isIdent(c byte) bool      { return isIdentStart(c) || c >= '0' && c <= '9' }

// statement reads `IDENT = value` or `IDENT += value` up to its end.
func (p *parser) statement() (Entry, error) {
	e := Entry{Line: p.line}
	start := p.pos
	if !isIdentStart(p.s[p.pos]) {
		return e, p.errf("expected a setting name, got %q (xl.cfg holds `name = value` lines; Python xm configs are not supported)", p.peekText())
	}
	for p.pos < len(p.s) && isIdent(p.s[p.pos]) {
		p.pos++
	}
	e.Key = p.s[start:p.pos]
	p.skipBlank(false)
	switch {
	case strings.HasPrefix(p.s[p.pos:], "+="):
		e.Append = true
		p.pos += 2
	case strings.HasPrefix(p.s[p.pos:], "="):
		p.pos++
	default:
		return e, p.errf("%s: expected '=' after the name, got %q", e.Key, p.peekText())
	}
	p.skipBlank(false)
	v, err := p.value(0)
	if err != nil {
		return e, err
	}
	e.Value = v
	p.skipBlank(false)
	if p.pos < len(p.s) && p.s[p.pos] != '\n' && p.s[p.pos] != ';' {
		return e, p.errf("%s: unexpected %q after the value", e.Key, p.peekText())
	}
	return e, nil
}

func (p *parser) peekText() string {
	end := min(p.pos+20, len(p.s))
	t := p.s[p.pos:end]
	if i := strings.IndexByte(t, '\n'); i >= 0 {
		t = t[:i]
	}
	if t == "" {
		return "end of line"
	}
	return t
}

// value reads a string, a number or a list.
func (p *parser) value(depth int) (Value, error) {
	if p.pos >= len(p.s) {
		return Value{}, p.errf("expected a value, got the end of the file")
	}
	switch c := p.s[p.pos]; {
	case c == '"' || c == '\'':
		t, err := p.quoted()
		return Value{Kind: String, Text: t}, err
	case c == '[':
		return p.list(depth)
	case c >= '0' && c <= '9' || c == '-' || c == '+':
		return p.number()
	}
	return Value{}, p.errf("expected a value (a quoted string, a number or a [list]), got %q", p.peekText())
}

// number reads a decimal, 0-octal or 0x-hex number, kept as written
// (libxlu stores it as text and converts where a number is wanted).
func (p *parser) number() (Value, error) {
	start := p.pos
	if p.s[p.pos] == '-' || p.s[p.pos] == '+' {
		p.pos++
	}
	for p.pos < len(p.s) && (isIdent(p.s[p.pos]) || p.s[p.pos] == '.') {
		p.pos++
	}
	t := p.s[start:p.pos]
	if _, err := strconv.ParseFloat(t, 64); err != nil {
		if _, err := strconv.ParseInt(t, 0, 64); err != nil {
			return Value{}, p.errf("%q is not a number", clip(t))
		}
	}
	return Value{Kind: String, Text: t, Number: true}, nil
}

// quoted reads a '…' or "…" string with libxlu's backslash escapes.
func (p *parser) quoted() (string, error) {
	q := p.s[p.pos]
	p.pos++
	var b strings.Builder
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		switch {
		case c == q:
			p.pos++
			return b.String(), nil
		case c == '\n':
			return "", p.errf("string not closed before the end of the line")
		case c == '\\' && p.pos+1 < len(p.s):
			p.pos++
			e := p.s[p.pos]
			p.pos++
			switch e {
			case 'a':
				b.WriteByte('\a')
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'v':
				b.WriteByte('\v')
			case 'x':
				// libxlu consumes \xHH but drops the byte; so do we.
				for n := 0; n < 2 && p.pos < len(p.s) && isHexDigit(p.s[p.pos]); n++ {
					p.pos++
				}
			case '\n':
				return "", p.errf("string not closed before the end of the line")
			default:
				if e >= '0' && e <= '7' {
					for n := 0; n < 2 && p.pos < len(p.s) && p.s[p.pos] >= '0' && p.s[p.pos] <= '7'; n++ {
						p.pos++
					}
					continue
				}
				b.WriteByte(e)
			}
		default:
			b.WriteByte(c)
			p.pos++
		}
	}
	return "", p.errf("string not closed before the end of the file")
}

func isHexDigit(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// list reads [ v, v, … ]; newlines and a trailing comma are allowed.
func (p *parser) list(depth int) (Value, error) {
	if depth >= maxNesting {
		return Value{}, p.errf("lists nested more than %d deep", maxNesting)
	}
	p.pos++ // '['
	v := Value{Kind: List}
	start := p.line
	for {
		p.skipListBlank()
		if p.pos >= len(p.s) {
			p.line = start
			return v, p.errf("list not closed before the end of the file")
		}
		if p.s[p.pos] == ']' {
			p.pos++
			return v, nil
		}
		if len(v.Items) >= maxListItems {
			return v, p.errf("more than %d items in a list", maxListItems)
		}
		item, err := p.value(depth + 1)
		if err != nil {
			return v, err
		}
		v.Items = append(v.Items, item)
		p.skipListBlank()
		if p.pos < len(p.s) && p.s[p.pos] == ',' {
			p.pos++
			continue
		}
		if p.pos < len(p.s) && p.s[p.pos] == ']' {
			p.pos++
			return v, nil
		}
		return v, p.errf("in a list: expected ',' or ']', got %q", p.peekText())
	}
}

// skipListBlank skips blanks, comments and newlines inside a list.
func (p *parser) skipListBlank() {
	for p.pos < len(p.s) {
		switch c := p.s[p.pos]; {
		case c == ' ' || c == '\t' || c == '\r':
			p.pos++
		case c == '\n':
			p.line++
			p.pos++
		case c == '#':
			for p.pos < len(p.s) && p.s[p.pos] != '\n' {
				p.pos++
			}
		default:
			return
		}
	}
}

// clip shortens untrusted text for messages.
func clip(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}
