package boot

import (
	"fmt"
	"strings"
)

// A small parser for the GRUB 2 script language: enough of its shell-like
// grammar (quoting, variables, if/elif/else, functions, menuentry and submenu
// blocks, loops skipped) to run a grub.cfg the way GRUB would to build its menu.

// segment is a piece of a word: literal text or a variable reference.
type segment struct {
	text   string
	isVar  bool
	quoted bool
}

type word struct {
	segs   []segment
	quoted bool // some part was quoted: the word is a field even when empty
}

// literal returns the word's text when it has no variables.
func (w word) literal() (string, bool) {
	var b strings.Builder
	for _, s := range w.segs {
		if s.isVar {
			return "", false
		}
		b.WriteString(s.text)
	}
	return b.String(), true
}

func (w word) is(s string) bool {
	l, ok := w.literal()
	return ok && !w.quoted && l == s
}

type node interface{}

type cmdNode struct {
	words []word
	line  int
}

type ifNode struct {
	conds  [][]node
	bodies [][]node
	els    []node
}

type funcNode struct {
	name string
	body []node
}

type menuNode struct {
	submenu bool
	args    []word
	body    []node
	line    int
}

type tokKind int

const (
	tokWord tokKind = iota
	tokSep          // ; or newline
	tokEOF
)

type token struct {
	kind tokKind
	w    word
	line int
}

const maxScriptTokens = 1 << 20

func isVarChar(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// lex splits a script into words and separators.
func lex(src string) ([]token, error) {
	var toks []token
	line := 1
	i := 0
	n := len(src)
	for i < n {
		if len(toks) > maxScriptTokens {
			return nil, fmt.Errorf("line %d: more than %d tokens", line, maxScriptTokens)
		}
		c := src[i]
		switch {
		case c == '\n':
			toks = append(toks, token{kind: tokSep, line: line})
			line++
			i++
			continue
		case c == ';':
			toks = append(toks, token{kind: tokSep, line: line})
			i++
			continue
		case c == ' ' || c == '\t' || c == '\r':
			i++
			continue
		case c == '\\' && i+1 < n && src[i+1] == '\n':
			line++
			i += 2
			continue
		case c == '#':
			for i < n && src[i] != '\n' {
				i++
			}
			continue
		}
		// A word: runs until unquoted whitespace, ; or newline.
		var w word
		var lit strings.Builder
		flush := func(quoted bool) {
			if lit.Len() > 0 {
				w.segs = append(w.segs, segment{text: lit.String(), quoted: quoted})
				lit.Reset()
			}
		}
		readVar := func(quoted bool) error {
			// at '$'
			i++
			if i < n && src[i] == '{' {
				end := strings.IndexByte(src[i:], '}')
				if end < 0 {
					return fmt.Errorf("line %d: unterminated ${", line)
				}
				flush(quoted)
				w.segs = append(w.segs, segment{text: src[i+1 : i+end], isVar: true, quoted: quoted})
				i += end + 1
				return nil
			}
			j := i
			if j < n && (src[j] == '?' || src[j] == '#' || src[j] == '@' || src[j] == '*') {
				j++
			} else {
				for j < n && isVarChar(src[j]) {
					j++
				}
			}
			if j == i {
				lit.WriteByte('$')
				return nil
			}
			flush(quoted)
			w.segs = append(w.segs, segment{text: src[i:j], isVar: true, quoted: quoted})
			i = j
			return nil
		}
	word:
		for i < n {
			c := src[i]
			switch {
			case c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ';':
				break word
			case c == '\\':
				if i+1 < n {
					if src[i+1] == '\n' {
						line++
					} else {
						lit.WriteByte(src[i+1])
					}
					i += 2
				} else {
					i++
				}
			case c == '\'':
				flush(false)
				end := strings.IndexByte(src[i+1:], '\'')
				if end < 0 {
					return nil, fmt.Errorf("line %d: unterminated single quote", line)
				}
				s := src[i+1 : i+1+end]
				line += strings.Count(s, "\n")
				w.segs = append(w.segs, segment{text: s, quoted: true})
				w.quoted = true
				i += end + 2
			case c == '"':
				flush(false)
				w.quoted = true
				i++
				closed := false
				for i < n {
					d := src[i]
					if d == '"' {
						i++
						closed = true
						break
					}
					if d == '\\' && i+1 < n && strings.IndexByte("\\\"$\n", src[i+1]) >= 0 {
						if src[i+1] != '\n' {
							lit.WriteByte(src[i+1])
						} else {
							line++
						}
						i += 2
						continue
					}
					if d == '$' {
						if err := readVar(true); err != nil {
							return nil, err
						}
						continue
					}
					if d == '\n' {
						line++
					}
					lit.WriteByte(d)
					i++
				}
				if !closed {
					return nil, fmt.Errorf("line %d: unterminated double quote", line)
				}
				// Keep an empty quoted string as an (empty) literal segment.
				w.segs = append(w.segs, segment{text: lit.String(), quoted: true})
				lit.Reset()
			case c == '$':
				if err := readVar(false); err != nil {
					return nil, err
				}
			default:
				lit.WriteByte(c)
				i++
			}
		}
		flush(false)
		toks = append(toks, token{kind: tokWord, w: w, line: line})
	}
	toks = append(toks, token{kind: tokEOF, line: line})
	return toks, nil
}

type parser struct {
	toks  []token
	pos   int
	depth int
}

const maxScriptDepth = 64

// parseScript parses a whole script.
func parseScript(src string) ([]node, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	nodes, term, err := p.list(nil)
	if err != nil {
		return nil, err
	}
	if term != "" {
		return nil, fmt.Errorf("line %d: unexpected %q", p.toks[p.pos].line, term)
	}
	return nodes, nil
}

func (p *parser) peek() token { return p.toks[p.pos] }

// list parses commands until one of the terminator words starts a command (or
// EOF); it returns the terminator found ("" at EOF) without consuming it.
func (p *parser) list(terms []string) ([]node, string, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxScriptDepth {
		return nil, "", fmt.Errorf("line %d: blocks nested deeper than %d", p.peek().line, maxScriptDepth)
	}
	var out []node
	for {
		t := p.peek()
		switch t.kind {
		case tokEOF:
			return out, "", nil
		case tokSep:
			p.pos++
			continue
		}
		for _, term := range append(terms, "then", "elif", "else", "fi", "do", "done", "}") {
			if t.w.is(term) {
				return out, term, nil
			}
		}
		n, err := p.command()
		if err != nil {
			return nil, "", err
		}
		if n != nil {
			out = append(out, n)
		}
	}
}

func (p *parser) expect(term string) error {
	t := p.peek()
	if t.kind != tokWord || !t.w.is(term) {
		return fmt.Errorf("line %d: expected %q", t.line, term)
	}
	p.pos++
	return nil
}

func (p *parser) command() (node, error) {
	t := p.peek()
	first := t.w
	switch {
	case first.is("if"):
		p.pos++
		in := &ifNode{}
		for {
			cond, _, err := p.list([]string{"then"})
			if err != nil {
				return nil, err
			}
			if err := p.expect("then"); err != nil {
				return nil, err
			}
			body, term, err := p.list(nil)
			if err != nil {
				return nil, err
			}
			in.conds = append(in.conds, cond)
			in.bodies = append(in.bodies, body)
			if term != "elif" && term != "else" && term != "fi" {
				return nil, fmt.Errorf("line %d: if without fi", t.line)
			}
			p.pos++ // the terminator
			switch term {
			case "elif":
				continue
			case "else":
				els, term, err := p.list(nil)
				if err != nil {
					return nil, err
				}
				if term != "fi" {
					return nil, fmt.Errorf("line %d: if without fi", t.line)
				}
				p.pos++
				in.els = els
				return in, nil
			case "fi":
				return in, nil
			}
			return nil, fmt.Errorf("line %d: if without fi", t.line)
		}
	case first.is("for") || first.is("while") || first.is("until"):
		// Loops are parsed and skipped: grub.cfg files use them for
		// nothing that decides the kernel.
		p.pos++
		if _, _, err := p.list([]string{"do"}); err != nil {
			return nil, err
		}
		if err := p.expect("do"); err != nil {
			return nil, err
		}
		_, term, err := p.list(nil)
		if err != nil {
			return nil, err
		}
		if term != "done" {
			return nil, fmt.Errorf("line %d: loop without done", t.line)
		}
		p.pos++
		return nil, nil
	case first.is("function"):
		p.pos++
		nt := p.peek()
		name, ok := nt.w.literal()
		if nt.kind != tokWord || !ok {
			return nil, fmt.Errorf("line %d: function without a name", t.line)
		}
		p.pos++
		for p.peek().kind == tokSep {
			p.pos++
		}
		body, err := p.block(t.line)
		if err != nil {
			return nil, err
		}
		return &funcNode{name: name, body: body}, nil
	case first.is("menuentry") || first.is("submenu"):
		p.pos++
		mn := &menuNode{submenu: first.is("submenu"), line: t.line}
		for {
			nt := p.peek()
			if nt.kind != tokWord {
				return nil, fmt.Errorf("line %d: %s without a { block", t.line, map[bool]string{true: "submenu", false: "menuentry"}[mn.submenu])
			}
			if nt.w.is("{") {
				break
			}
			mn.args = append(mn.args, nt.w)
			p.pos++
		}
		body, err := p.block(t.line)
		if err != nil {
			return nil, err
		}
		mn.body = body
		return mn, nil
	}
	c := &cmdNode{line: t.line}
	// A bare "}" ends the command too: GRUB accepts "{ linux /k }" on one line.
	for p.peek().kind == tokWord && !(len(c.words) > 0 && p.peek().w.is("}")) {
		c.words = append(c.words, p.peek().w)
		p.pos++
	}
	return c, nil
}

// block parses "{ list }".
func (p *parser) block(line int) ([]node, error) {
	if err := p.expect("{"); err != nil {
		return nil, err
	}
	body, term, err := p.list(nil)
	if err != nil {
		return nil, err
	}
	if term != "}" {
		return nil, fmt.Errorf("line %d: block without }", line)
	}
	p.pos++
	return body, nil
}
