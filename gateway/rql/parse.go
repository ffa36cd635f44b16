// Package rql parses the subset of the Resource Query Language that the
// files API accepts and compiles it to a SQL condition with placeholders,
// for SQLite and PostgreSQL alike. Values never become SQL text: every one
// is returned as an argument, and field names only select entries of a
// fixed schema, so a query cannot inject SQL.
//
// The grammar (whitespace around tokens is ignored):
//
//	query   := [or]
//	or      := and ('|' and)*
//	and     := primary (('&' | ',') primary)*
//	primary := call | '(' or ')' | NAME '=' [op '='] value
//	call    := NAME '(' [arg (',' arg)*] ')'
//	arg     := call | '(' [value (',' value)*] ')' | value
//
// Calls: eq ne lt le gt ge in out like contains match and or, and at the
// top level only sort(+f,-f) limit(n[,offset]) select(f,...). Values may be
// percent-encoded, so a literal comma or parenthesis is written %2C, %28;
// "string:5" forces a string, "*" is the wildcard of like.
package rql

import (
	"fmt"
	"net/url"
	"strings"
)

// Limits that keep hostile queries cheap to reject.
const (
	MaxLength = 4096
	MaxDepth  = 32
	MaxArgs   = 256
)

// SyntaxError is a malformed or unsupported query. Pos is the 0-based byte
// offset in the query where the problem was found.
type SyntaxError struct {
	Pos int
	Msg string
}

// Error says what is wrong and where.
func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%s at position %d", e.Msg, e.Pos)
}

// Value is one argument as written, after percent-decoding.
type Value struct {
	Raw string
	// Prefix is the type prefix ("string", "number", "boolean", "date"),
	// or "" when none was written.
	Prefix string
	Pos    int
}

// Node is one condition: a comparison (Field and Values set) or and/or
// (Children set).
type Node struct {
	Op       string
	Field    string
	FieldPos int
	Values   []Value
	Children []*Node
	Pos      int
	// chain marks a conjunction written with '&' or ',' rather than and().
	chain bool
}

// SortKey is one sort(...) term.
type SortKey struct {
	Field string
	Desc  bool
	Pos   int
}

// Query is a parsed query.
type Query struct {
	// Filter is nil when the query has no condition.
	Filter *Node
	Sort   []SortKey
	// Limit is -1 when the query has no limit(...).
	Limit  int
	Offset int
	Select []string
}

// comparisons are the operators that take a field and values.
var comparisons = map[string]bool{
	"eq": true, "ne": true, "lt": true, "le": true, "gt": true, "ge": true,
	"in": true, "out": true, "like": true, "contains": true, "match": true,
}

type tokKind int

const (
	tEOF tokKind = iota
	tWord
	tLParen
	tRParen
	tComma
	tAmp
	tPipe
	tEq
)

type token struct {
	kind tokKind
	text string // raw, still percent-encoded, for tWord
	pos  int
}

// delimKind returns the token kind of a delimiter byte, tEOF for others.
func delimKind(c byte) tokKind {
	switch c {
	case '(':
		return tLParen
	case ')':
		return tRParen
	case ',':
		return tComma
	case '&':
		return tAmp
	case '|':
		return tPipe
	case '=':
		return tEq
	}
	return tEOF
}

func isDelim(c byte) bool { return delimKind(c) != tEOF }

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

type parser struct {
	src   string
	toks  []token
	i     int
	depth int
}

func lex(src string) ([]token, error) {
	var toks []token
	i := 0
	for {
		for i < len(src) && isSpace(src[i]) {
			i++
		}
		if i >= len(src) {
			return append(toks, token{kind: tEOF, pos: len(src)}), nil
		}
		if k := delimKind(src[i]); k != tEOF {
			toks = append(toks, token{kind: k, text: src[i : i+1], pos: i})
			i++
			continue
		}
		start := i
		for i < len(src) && !isDelim(src[i]) {
			if src[i] < 0x20 || src[i] == 0x7f {
				return nil, &SyntaxError{Pos: i, Msg: "control character"}
			}
			i++
		}
		toks = append(toks, token{kind: tWord, text: strings.TrimRight(src[start:i], " \t\r\n"), pos: start})
	}
}

// Parse parses a query. An empty query is valid and matches everything. It
// returns a *SyntaxError.
func Parse(src string) (*Query, error) {
	if len(src) > MaxLength {
		return nil, &SyntaxError{Pos: MaxLength, Msg: fmt.Sprintf("query longer than %d bytes", MaxLength)}
	}
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{src: src, toks: toks}
	q := &Query{Limit: -1}
	if p.peek().kind == tEOF {
		return q, nil
	}
	root, err := p.or()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, p.unexpected(t)
	}
	if err := q.hoist(root); err != nil {
		return nil, err
	}
	return q, nil
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *parser) unexpected(t token) error {
	if t.kind == tEOF {
		return &SyntaxError{Pos: t.pos, Msg: "unexpected end of query"}
	}
	return &SyntaxError{Pos: t.pos, Msg: fmt.Sprintf("unexpected %q", clip(t.text))}
}

func (p *parser) expect(k tokKind, what string) (token, error) {
	t := p.next()
	if t.kind != k {
		if t.kind == tEOF {
			return t, &SyntaxError{Pos: t.pos, Msg: "expected " + what + " before the end of the query"}
		}
		return t, &SyntaxError{Pos: t.pos, Msg: fmt.Sprintf("expected %s, found %q", what, clip(t.text))}
	}
	return t, nil
}

func clip(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}

func (p *parser) enter(pos int) error {
	p.depth++
	if p.depth > MaxDepth {
		return &SyntaxError{Pos: pos, Msg: fmt.Sprintf("nesting deeper than %d", MaxDepth)}
	}
	return nil
}

func (p *parser) or() (*Node, error) {
	pos := p.peek().pos
	first, err := p.and()
	if err != nil {
		return nil, err
	}
	if p.peek().kind != tPipe {
		return first, nil
	}
	n := &Node{Op: "or", Children: []*Node{first}, Pos: pos}
	for p.peek().kind == tPipe {
		p.next()
		c, err := p.and()
		if err != nil {
			return nil, err
		}
		n.Children = append(n.Children, c)
	}
	return n, nil
}

func (p *parser) and() (*Node, error) {
	pos := p.peek().pos
	first, err := p.primary()
	if err != nil {
		return nil, err
	}
	if k := p.peek().kind; k != tAmp && k != tComma {
		return first, nil
	}
	n := &Node{Op: "and", Children: []*Node{first}, Pos: pos, chain: true}
	for k := p.peek().kind; k == tAmp || k == tComma; k = p.peek().kind {
		p.next()
		c, err := p.primary()
		if err != nil {
			return nil, err
		}
		n.Children = append(n.Children, c)
	}
	return n, nil
}

func (p *parser) primary() (*Node, error) {
	t := p.peek()
	switch t.kind {
	case tLParen:
		p.next()
		if err := p.enter(t.pos); err != nil {
			return nil, err
		}
		n, err := p.or()
		if err != nil {
			return nil, err
		}
		if _, err := p.expect(tRParen, "')'"); err != nil {
			return nil, err
		}
		p.depth--
		return n, nil
	case tWord:
		p.next()
		switch p.peek().kind {
		case tLParen:
			return p.call(t)
		case tEq:
			return p.fiql(t)
		}
		return nil, &SyntaxError{Pos: t.pos, Msg: fmt.Sprintf("expected a call like eq(field,value), found %q", clip(t.text))}
	}
	return nil, p.unexpected(t)
}

// fiql parses name=value and name=op=value after the name.
func (p *parser) fiql(name token) (*Node, error) {
	p.next() // '='
	v, err := p.expect(tWord, "a value")
	if err != nil {
		return nil, err
	}
	op := "eq"
	if p.peek().kind == tEq {
		p.next()
		op = v.text
		if !comparisons[op] {
			return nil, &SyntaxError{Pos: v.pos, Msg: fmt.Sprintf("unknown operator %q", clip(op))}
		}
		if v, err = p.expect(tWord, "a value"); err != nil {
			return nil, err
		}
	}
	field, err := decode(name)
	if err != nil {
		return nil, err
	}
	val, err := value(v)
	if err != nil {
		return nil, err
	}
	return &Node{Op: op, Field: field, FieldPos: name.pos, Values: []Value{val}, Pos: name.pos}, nil
}

// rawCall is a call before its meaning is known: arguments are nested
// calls, value lists or values.
type rawArg struct {
	call   *Node
	list   []Value
	isList bool
	val    Value
	pos    int
	isWord bool
}

func (p *parser) call(name token) (*Node, error) {
	p.next() // '('
	if err := p.enter(name.pos); err != nil {
		return nil, err
	}
	var args []rawArg
	if p.peek().kind != tRParen {
		for {
			a, err := p.arg()
			if err != nil {
				return nil, err
			}
			args = append(args, a)
			if len(args) > MaxArgs {
				return nil, &SyntaxError{Pos: a.pos, Msg: fmt.Sprintf("more than %d arguments", MaxArgs)}
			}
			if p.peek().kind != tComma {
				break
			}
			p.next()
		}
	}
	if _, err := p.expect(tRParen, "',' or ')'"); err != nil {
		return nil, err
	}
	p.depth--
	return build(name, args)
}

func (p *parser) arg() (rawArg, error) {
	t := p.peek()
	switch t.kind {
	case tLParen:
		p.next()
		a := rawArg{isList: true, pos: t.pos}
		if p.peek().kind != tRParen {
			for {
				w, err := p.expect(tWord, "a value")
				if err != nil {
					return a, err
				}
				v, err := value(w)
				if err != nil {
					return a, err
				}
				a.list = append(a.list, v)
				if len(a.list) > MaxArgs {
					return a, &SyntaxError{Pos: w.pos, Msg: fmt.Sprintf("more than %d values", MaxArgs)}
				}
				if p.peek().kind != tComma {
					break
				}
				p.next()
			}
		}
		_, err := p.expect(tRParen, "',' or ')'")
		return a, err
	case tWord:
		p.next()
		if p.peek().kind == tLParen {
			n, err := p.call(t)
			return rawArg{call: n, pos: t.pos}, err
		}
		v, err := value(t)
		return rawArg{val: v, pos: t.pos, isWord: true}, err
	}
	return rawArg{}, p.unexpected(t)
}

func build(name token, args []rawArg) (*Node, error) {
	op := name.text
	switch {
	case op == "and" || op == "or":
		n := &Node{Op: op, Pos: name.pos}
		for _, a := range args {
			if a.call == nil {
				return nil, &SyntaxError{Pos: a.pos, Msg: op + "() takes conditions"}
			}
			n.Children = append(n.Children, a.call)
		}
		if len(n.Children) == 0 {
			return nil, &SyntaxError{Pos: name.pos, Msg: op + "() needs at least one condition"}
		}
		return n, nil
	case op == "sort" || op == "select" || op == "limit":
		n := &Node{Op: op, Pos: name.pos}
		for _, a := range args {
			if !a.isWord {
				return nil, &SyntaxError{Pos: a.pos, Msg: op + "() takes plain values"}
			}
			n.Values = append(n.Values, a.val)
		}
		return n, nil
	case comparisons[op]:
		if len(args) == 0 || !args[0].isWord {
			return nil, &SyntaxError{Pos: name.pos, Msg: op + "() needs a field name first"}
		}
		n := &Node{Op: op, Field: args[0].val.Raw, FieldPos: args[0].pos, Pos: name.pos}
		for _, a := range args[1:] {
			switch {
			case a.call != nil:
				return nil, &SyntaxError{Pos: a.pos, Msg: op + "() takes values, not conditions"}
			case a.isList:
				n.Values = append(n.Values, a.list...)
			default:
				n.Values = append(n.Values, a.val)
			}
		}
		return n, checkArity(n)
	}
	return nil, &SyntaxError{Pos: name.pos, Msg: fmt.Sprintf("unknown operator %q", clip(op))}
}

func checkArity(n *Node) error {
	switch n.Op {
	case "in", "out":
		return nil
	}
	if len(n.Values) != 1 {
		return &SyntaxError{Pos: n.Pos, Msg: n.Op + "() takes a field and one value"}
	}
	return nil
}

func decode(t token) (string, error) {
	s, err := url.PathUnescape(t.text)
	if err != nil {
		return "", &SyntaxError{Pos: t.pos, Msg: "bad percent-encoding"}
	}
	return s, checkDecoded(s, t.pos)
}

// checkDecoded refuses NUL and other control characters that percent
// decoding produced: no field holds them, and a NUL would end the
// statement early in some drivers.
func checkDecoded(s string, pos int) error {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return &SyntaxError{Pos: pos, Msg: "control character in value"}
		}
	}
	return nil
}

// value decodes a word and splits off a type prefix.
func value(t token) (Value, error) {
	raw := t.text
	prefix := ""
	for _, p := range []string{"string", "number", "boolean", "date"} {
		if rest, ok := strings.CutPrefix(raw, p+":"); ok {
			prefix, raw = p, rest
			break
		}
	}
	s, err := url.PathUnescape(raw)
	if err != nil {
		return Value{}, &SyntaxError{Pos: t.pos, Msg: "bad percent-encoding"}
	}
	if err := checkDecoded(s, t.pos); err != nil {
		return Value{}, err
	}
	return Value{Raw: s, Prefix: prefix, Pos: t.pos}, nil
}

// hoist moves sort, limit and select out of the top-level conjunction into
// the query, and rejects them anywhere else.
func (q *Query) hoist(root *Node) error {
	var conds []*Node
	top := []*Node{root}
	if root.Op == "and" && root.chain {
		top = root.Children
	}
	for _, n := range top {
		switch n.Op {
		case "sort":
			if err := q.setSort(n); err != nil {
				return err
			}
		case "limit":
			if err := q.setLimit(n); err != nil {
				return err
			}
		case "select":
			if len(n.Values) == 0 {
				return &SyntaxError{Pos: n.Pos, Msg: "select() needs at least one field"}
			}
			for _, v := range n.Values {
				q.Select = append(q.Select, v.Raw)
			}
		default:
			if err := checkNested(n); err != nil {
				return err
			}
			conds = append(conds, n)
		}
	}
	switch len(conds) {
	case 0:
	case 1:
		q.Filter = conds[0]
	default:
		q.Filter = &Node{Op: "and", Children: conds, Pos: conds[0].Pos}
	}
	return nil
}

func checkNested(n *Node) error {
	switch n.Op {
	case "sort", "limit", "select":
		return &SyntaxError{Pos: n.Pos, Msg: n.Op + "() is only allowed at the top level"}
	}
	for _, c := range n.Children {
		if err := checkNested(c); err != nil {
			return err
		}
	}
	return nil
}

func (q *Query) setSort(n *Node) error {
	if len(n.Values) == 0 {
		return &SyntaxError{Pos: n.Pos, Msg: "sort() needs at least one field"}
	}
	for _, v := range n.Values {
		f, desc := v.Raw, false
		switch {
		case strings.HasPrefix(f, "-"):
			f, desc = f[1:], true
		case strings.HasPrefix(f, "+"):
			f = f[1:]
		case strings.HasPrefix(f, " "): // a '+' that URL decoding turned into a space
			f = strings.TrimLeft(f, " ")
		}
		q.Sort = append(q.Sort, SortKey{Field: f, Desc: desc, Pos: v.Pos})
	}
	return nil
}

func (q *Query) setLimit(n *Node) error {
	if len(n.Values) < 1 || len(n.Values) > 2 {
		return &SyntaxError{Pos: n.Pos, Msg: "limit() takes a count and an optional offset"}
	}
	var nums [2]int
	for i, v := range n.Values {
		x, ok := atoi(v.Raw)
		if !ok {
			return &SyntaxError{Pos: v.Pos, Msg: "limit() takes non-negative integers"}
		}
		nums[i] = x
	}
	q.Limit, q.Offset = nums[0], nums[1]
	return nil
}

// atoi parses a small non-negative decimal integer.
func atoi(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}
