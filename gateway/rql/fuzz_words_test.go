package rql

import (
	"regexp"
	"strings"
	"testing"
)

// sqlWords are the only words compiled SQL may contain besides the
// schema's expressions: the compiler's own keywords and functions.
var sqlWords = map[string]bool{
	"AND": true, "OR": true, "NOT": true, "IN": true, "LIKE": true, "ILIKE": true, "ESCAPE": true,
	"EXISTS": true, "SELECT": true, "FROM": true, "WHERE": true, "AS": true, "CAST": true,
	"json_each": true, "json_each.value": true, "jsonb": true, "jsonb_build_array": true,
	"jsonb_array_elements_text": true, "text": true, "t": true, "v": true, "t.v": true, "lower": true,
	"0": true, "1": true,
}

var sqlWord = regexp.MustCompile(`[A-Za-z0-9_][A-Za-z0-9_.]*`)

// assertBoundWords checks that compiled SQL holds no text of the query's
// own: every word is a schema expression or one of the compiler's, every
// character is one the compiler writes, and the sort names schema
// expressions only. User values travel as arguments.
func assertBoundWords(t *testing.T, in string, s Schema, c *Compiled) {
	t.Helper()
	exprs := map[string]bool{}
	for _, f := range s {
		exprs[f.Expr] = true
	}
	for _, w := range sqlWord.FindAllString(c.Where, -1) {
		if !sqlWords[w] && !exprs[w] {
			t.Fatalf("%q compiled to %q, which holds the unbound word %q", in, c.Where, w)
		}
	}
	if i := strings.IndexFunc(c.Where, func(r rune) bool {
		return !strings.ContainsRune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_. ()?,=<>!@%:'", r)
	}); i >= 0 {
		t.Fatalf("%q compiled to %q with character %q", in, c.Where, c.Where[i:])
	}
	for _, o := range c.Order {
		if f, ok := s[o.Field]; !ok || f.Expr != o.Expr {
			t.Fatalf("%q sorts by %+v, not a schema field", in, o)
		}
	}
}
