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
	l := &lexer{src: src, line: 1}
	for l.i < len(src) {
		if len(l.toks) > maxScriptTokens {
			return nil, fmt.Errorf("line %d: more than %d tokens", l.line, maxScriptTokens)
		}
		if l.skipBetweenWords() {
			continue
		}
		w, err := l.word()
		if err != nil {
			return nil, err
		}
		l.toks = append(l.toks, token{kind: tokWord, w: w, line: l.line})
	}
	l.toks = append(l.toks, token{kind: tokEOF, line: l.line})
	return l.toks, nil
}

// lexer is lex's position in the script and the word being built.
type lexer struct {
	src  string
	i    int // next byte of src
	line int
	toks []token
	w    word            // the word being read
	lit  strings.Builder // its literal text not yet in w.segs
}

// skipBetweenWords consumes what may stand between words at l.i (blanks,
// separators, escaped newlines, comments), emitting separators, and
// reports whether it consumed anything.
func (l *lexer) skipBetweenWords() bool {
	src, n := l.src, len(l.src)
	switch c := src[l.i]; {
	case c == '\n':
		l.toks = append(l.toks, token{kind: tokSep, line: l.line})
		l.line++
		l.i++
	case c == ';':
		l.toks = append(l.toks, token{kind: tokSep, line: l.line})
		l.i++
	case c == ' ' || c == '\t' || c == '\r':
		l.i++
	case c == '\\' && l.i+1 < n && src[l.i+1] == '\n':
		l.line++
		l.i += 2
	case c == '#':
		for l.i < n && src[l.i] != '\n' {
			l.i++
		}
	default:
		return false
	}
	return true
}

// word reads a word: it runs until unquoted whitespace, ; or newline.
func (l *lexer) word() (word, error) {
	l.w = word{}
	src, n := l.src, len(l.src)
	for l.i < n {
		c := src[l.i]
		var err error
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ';':
			l.flush(false)
			return l.w, nil
		case c == '\\':
			l.escape()
		case c == '\'':
			err = l.singleQuoted()
		case c == '"':
			err = l.doubleQuoted()
		case c == '$':
			err = l.variable(false)
		default:
			l.lit.WriteByte(c)
			l.i++
		}
		if err != nil {
			return word{}, err
		}
	}
	l.flush(false)
	return l.w, nil
}

// flush ends the literal text read so far as a segment of the word.
func (l *lexer) flush(quoted bool) {
	if l.lit.Len() > 0 {
		l.w.segs = append(l.w.segs, segment{text: l.lit.String(), quoted: quoted})
		l.lit.Reset()
	}
}

// escape reads an unquoted backslash: the next byte is literal, and an
// escaped newline joins the lines.
func (l *lexer) escape() {
	if l.i+1 >= len(l.src) {
		l.i++
		return
	}
	if l.src[l.i+1] == '\n' {
		l.line++
	} else {
		l.lit.WriteByte(l.src[l.i+1])
	}
	l.i += 2
}

// singleQuoted reads '...': all literal, newlines included.
func (l *lexer) singleQuoted() error {
	l.flush(false)
	end := strings.IndexByte(l.src[l.i+1:], '\'')
	if end < 0 {
		return fmt.Errorf("line %d: unterminated single quote", l.line)
	}
	s := l.src[l.i+1 : l.i+1+end]
	l.line += strings.Count(s, "\n")
	l.w.segs = append(l.w.segs, segment{text: s, quoted: true})
	l.w.quoted = true
	l.i += end + 2
	return nil
}

// doubleQuoted reads "...": variables expand, a backslash escapes only
// \\, ", $ and newline. An empty "" stays as an empty quoted segment.
func (l *lexer) doubleQuoted() error {
	l.flush(false)
	l.w.quoted = true
	l.i++
	src, n := l.src, len(l.src)
	for l.i < n {
		d := src[l.i]
		switch {
		case d == '"':
			l.i++
			l.w.segs = append(l.w.segs, segment{text: l.lit.String(), quoted: true})
			l.lit.Reset()
			return nil
		case d == '\\' && l.i+1 < n && strings.IndexByte("\\\"$\n", src[l.i+1]) >= 0:
			if src[l.i+1] != '\n' {
				l.lit.WriteByte(src[l.i+1])
			} else {
				l.line++
			}
			l.i += 2
		case d == '$':
			if err := l.variable(true); err != nil {
				return err
			}
		default:
			if d == '\n' {
				l.line++
			}
			l.lit.WriteByte(d)
			l.i++
		}
	}
	return fmt.Errorf("line %d: unterminated double quote", l.line)
}

// variable reads a reference at '$': ${name}, $name or one of $? $# $@ $*.
// A '$' that starts none of them is literal.
func (l *lexer) variable(quoted bool) error {
	l.i++
	src, n := l.src, len(l.src)
	if l.i < n && src[l.i] == '{' {
		end := strings.IndexByte(src[l.i:], '}')
		if end < 0 {
			return fmt.Errorf("line %d: unterminated ${", l.line)
		}
		l.flush(quoted)
		l.w.segs = append(l.w.segs, segment{text: src[l.i+1 : l.i+end], isVar: true, quoted: quoted})
		l.i += end + 1
		return nil
	}
	j := l.i
	if j < n && strings.IndexByte("?#@*", src[j]) >= 0 {
		j++
	} else {
		for j < n && isVarChar(src[j]) {
			j++
		}
	}
	if j == l.i {
		l.lit.WriteByte('$')
		return nil
	}
	l.flush(quoted)
	l.w.segs = append(l.w.segs, segment{text: src[l.i:j], isVar: true, quoted: quoted})
	l.i = j
	return nil
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
