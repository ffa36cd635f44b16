package rql

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Type is how a field compares.
type Type int

// Field types.
const (
	// String compares exactly (like, contains: case-insensitive patterns).
	String Type = iota
	// Text is a String that also allows match(), the approximate search.
	Text
	// Int is a 64-bit integer.
	Int
	// Bool is true or false.
	Bool
	// Time is an instant: RFC 3339, a date (2006-01-02), or milliseconds
	// since the epoch.
	Time
	// Tags is a JSON array of strings: eq and contains test membership.
	Tags
)

// Field is one queryable field. Expr is trusted SQL (a column or an
// expression over columns), never derived from the query.
type Field struct {
	Expr string
	Type Type
}

// Schema maps the field names a query may use to their SQL.
type Schema map[string]Field

// Dialect says which SQL to emit.
type Dialect struct {
	// Postgres selects PostgreSQL syntax (ILIKE, jsonb); otherwise SQLite.
	Postgres bool
	// Trigram enables pg_trgm word similarity for match() on PostgreSQL.
	Trigram bool
}

// Order is one compiled sort term.
type Order struct {
	Field string
	Expr  string
	Desc  bool
}

// Compiled is a query turned into SQL parts for a SELECT over the schema's
// table.
type Compiled struct {
	// Where is a condition with ? placeholders, "" for no condition.
	Where string
	// Args are the values for Where's placeholders, in order.
	Args []any
	// Order is the query's sort, empty when it has none.
	Order []Order
	// Uses is the set of fields the condition mentions.
	Uses map[string]bool
}

// Compile turns a parsed query into SQL for schema. It returns a
// *SyntaxError for an unknown field, an operator the field's type does not
// support, or a value of the wrong type.
func Compile(q *Query, s Schema, d Dialect) (*Compiled, error) {
	c := &Compiled{Uses: map[string]bool{}}
	if q.Filter != nil {
		var b strings.Builder
		if err := c.node(&b, q.Filter, s, d); err != nil {
			return nil, err
		}
		c.Where = b.String()
	}
	for _, k := range q.Sort {
		f, ok := s[k.Field]
		if !ok {
			return nil, &SyntaxError{Pos: k.Pos, Msg: fmt.Sprintf("unknown sort field %q", clip(k.Field))}
		}
		if f.Type == Tags {
			return nil, &SyntaxError{Pos: k.Pos, Msg: fmt.Sprintf("cannot sort by %q", k.Field)}
		}
		c.Order = append(c.Order, Order{Field: k.Field, Expr: f.Expr, Desc: k.Desc})
	}
	return c, nil
}

// CheckSelect verifies that every selected field is in schema or extra.
// It returns a *SyntaxError naming the first unknown one.
func CheckSelect(q *Query, s Schema, extra ...string) error {
	for _, f := range q.Select {
		if _, ok := s[f]; ok {
			continue
		}
		known := false
		for _, e := range extra {
			known = known || e == f
		}
		if !known {
			return &SyntaxError{Pos: 0, Msg: fmt.Sprintf("select() names unknown field %q", clip(f))}
		}
	}
	return nil
}

func (c *Compiled) node(b *strings.Builder, n *Node, s Schema, d Dialect) error {
	if n.Op == "and" || n.Op == "or" {
		b.WriteByte('(')
		for i, ch := range n.Children {
			if i > 0 {
				b.WriteString(map[string]string{"and": " AND ", "or": " OR "}[n.Op])
			}
			if err := c.node(b, ch, s, d); err != nil {
				return err
			}
		}
		b.WriteByte(')')
		return nil
	}
	f, ok := s[n.Field]
	if !ok {
		return &SyntaxError{Pos: n.FieldPos, Msg: fmt.Sprintf("unknown field %q", clip(n.Field))}
	}
	c.Uses[n.Field] = true
	if f.Type == Tags {
		return c.tags(b, n, f, d)
	}
	switch n.Op {
	case "eq", "ne", "lt", "le", "gt", "ge":
		if f.Type == Bool && n.Op != "eq" && n.Op != "ne" {
			return opErr(n, "a boolean")
		}
		v, err := convert(n.Values[0], f.Type)
		if err != nil {
			return err
		}
		ops := map[string]string{"eq": " = ", "ne": " <> ", "lt": " < ", "le": " <= ", "gt": " > ", "ge": " >= "}
		b.WriteString("(" + f.Expr + ops[n.Op] + "?)")
		c.Args = append(c.Args, v)
	case "in", "out":
		if len(n.Values) == 0 {
			b.WriteString(map[string]string{"in": "(1 = 0)", "out": "(1 = 1)"}[n.Op])
			return nil
		}
		b.WriteString("(" + f.Expr + map[string]string{"in": " IN (", "out": " NOT IN ("}[n.Op])
		for i, val := range n.Values {
			v, err := convert(val, f.Type)
			if err != nil {
				return err
			}
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteByte('?')
			c.Args = append(c.Args, v)
		}
		b.WriteString("))")
	case "like", "contains":
		if f.Type != String && f.Type != Text {
			return opErr(n, typeName(f.Type))
		}
		pat := n.Values[0].Raw
		if n.Op == "like" {
			pat = likePattern(pat)
		} else {
			pat = "%" + escapeLike(pat) + "%"
		}
		b.WriteString("(" + f.Expr + likeOp(d) + "? ESCAPE '!')")
		c.Args = append(c.Args, pat)
	case "match":
		if f.Type != Text {
			return opErr(n, typeName(f.Type))
		}
		return c.match(b, n, f, d)
	default:
		return opErr(n, typeName(f.Type))
	}
	return nil
}

func opErr(n *Node, what string) error {
	return &SyntaxError{Pos: n.Pos, Msg: fmt.Sprintf("%s() does not apply to %s field %q", n.Op, what, n.Field)}
}

func typeName(t Type) string {
	switch t {
	case Int:
		return "a number"
	case Bool:
		return "a boolean"
	case Time:
		return "a time"
	case Tags:
		return "a tag list"
	}
	return "a string"
}

func likeOp(d Dialect) string {
	if d.Postgres {
		return " ILIKE "
	}
	return " LIKE "
}

// escapeLike escapes LIKE's wildcards with '!', the ESCAPE character the
// compiled SQL declares (a backslash would mean different things to the
// two databases' string literals).
func escapeLike(s string) string {
	r := strings.NewReplacer("!", "!!", "%", "!%", "_", "!_")
	return r.Replace(s)
}

// likePattern turns an RQL pattern, where * matches any run of characters,
// into a LIKE pattern.
func likePattern(s string) string {
	parts := strings.Split(s, "*")
	for i, p := range parts {
		parts[i] = escapeLike(p)
	}
	return strings.Join(parts, "%")
}

// tags compiles a condition on a tag list: eq and contains mean "has the
// tag", ne "lacks it", in "has any", out "has none", like "has one that
// matches".
func (c *Compiled) tags(b *strings.Builder, n *Node, f Field, d Dialect) error {
	has := func(tag string) {
		if d.Postgres {
			b.WriteString("((" + f.Expr + ")::jsonb @> jsonb_build_array(CAST(? AS text)))")
		} else {
			b.WriteString("EXISTS (SELECT 1 FROM json_each(" + f.Expr + ") WHERE json_each.value = ?)")
		}
		c.Args = append(c.Args, tag)
	}
	anyOf := func(vals []Value) {
		if len(vals) == 0 {
			b.WriteString("(1 = 0)")
			return
		}
		b.WriteByte('(')
		for i, v := range vals {
			if i > 0 {
				b.WriteString(" OR ")
			}
			has(v.Raw)
		}
		b.WriteByte(')')
	}
	switch n.Op {
	case "eq", "contains":
		has(n.Values[0].Raw)
	case "ne":
		b.WriteString("(NOT ")
		has(n.Values[0].Raw)
		b.WriteByte(')')
	case "in":
		anyOf(n.Values)
	case "out":
		b.WriteString("(NOT ")
		anyOf(n.Values)
		b.WriteByte(')')
	case "like":
		if d.Postgres {
			b.WriteString("EXISTS (SELECT 1 FROM jsonb_array_elements_text((" + f.Expr + ")::jsonb) AS t(v) WHERE t.v ILIKE ? ESCAPE '!')")
		} else {
			b.WriteString("EXISTS (SELECT 1 FROM json_each(" + f.Expr + ") WHERE json_each.value LIKE ? ESCAPE '!')")
		}
		c.Args = append(c.Args, likePattern(n.Values[0].Raw))
	default:
		return opErr(n, "a tag list")
	}
	return nil
}

// match is the approximate text search: every word of the value must
// occur in the field, ignoring case; on PostgreSQL with pg_trgm a field
// whose words are similar enough also matches, which tolerates typos.
func (c *Compiled) match(b *strings.Builder, n *Node, f Field, d Dialect) error {
	text := n.Values[0].Raw
	words := strings.Fields(text)
	if len(words) == 0 {
		return &SyntaxError{Pos: n.Values[0].Pos, Msg: "match() needs some text"}
	}
	if len(words) > 16 {
		words = words[:16]
	}
	b.WriteByte('(')
	if d.Postgres && d.Trigram {
		b.WriteString("? <% " + f.Expr + " OR ")
		c.Args = append(c.Args, text)
	}
	b.WriteByte('(')
	for i, w := range words {
		if i > 0 {
			b.WriteString(" AND ")
		}
		if d.Postgres {
			b.WriteString(f.Expr + " ILIKE ? ESCAPE '!'")
		} else {
			b.WriteString("lower(" + f.Expr + ") LIKE ? ESCAPE '!'")
			w = strings.ToLower(w)
		}
		c.Args = append(c.Args, "%"+escapeLike(w)+"%")
	}
	b.WriteString("))")
	return nil
}

// convert turns a value into the Go type the field compares as.
func convert(v Value, t Type) (any, error) {
	bad := func(what string) error {
		return &SyntaxError{Pos: v.Pos, Msg: fmt.Sprintf("%q is not %s", clip(v.Raw), what)}
	}
	if v.Prefix == "string" && t != String && t != Text {
		return nil, bad(typeName(t))
	}
	switch t {
	case Int:
		n, err := strconv.ParseInt(v.Raw, 10, 64)
		if err != nil {
			return nil, bad("an integer")
		}
		return n, nil
	case Bool:
		switch v.Raw {
		case "true", "1":
			return true, nil
		case "false", "0":
			return false, nil
		}
		return nil, bad("true or false")
	case Time:
		return parseTime(v.Raw, bad)
	}
	return v.Raw, nil
}

func parseTime(s string, bad func(string) error) (time.Time, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.UnixMilli(ms).UTC(), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, bad("a time (RFC 3339, 2006-01-02 or epoch milliseconds)")
}
