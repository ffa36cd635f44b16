package rql

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/sqliteshim"
)

var testSchema = Schema{
	"id":                {Expr: "n.id", Type: String},
	"name":              {Expr: "n.name", Type: String},
	"size":              {Expr: "n.size", Type: Int},
	"phi":               {Expr: "n.phi", Type: Bool},
	"title":             {Expr: "n.title", Type: Text},
	"tags":              {Expr: "n.tags", Type: Tags},
	"creationTimestamp": {Expr: "n.created_at", Type: Time},
}

func TestParseAndCompile(t *testing.T) {
	tests := []struct {
		in    string
		where string
		args  []any
		pg    string // PostgreSQL form when it differs
	}{
		{"", "", nil, ""},
		{"eq(name,a.txt)", "(n.name = ?)", []any{"a.txt"}, ""},
		{"name=a.txt", "(n.name = ?)", []any{"a.txt"}, ""},
		{"size=gt=10", "(n.size > ?)", []any{int64(10)}, ""},
		{"and(eq(name,a),ne(size,3))", "((n.name = ?) AND (n.size <> ?))", []any{"a", int64(3)}, ""},
		{"eq(name,a)&lt(size,3)", "((n.name = ?) AND (n.size < ?))", []any{"a", int64(3)}, ""},
		{"or(eq(name,a),ge(size,3),le(size,1))", "((n.name = ?) OR (n.size >= ?) OR (n.size <= ?))",
			[]any{"a", int64(3), int64(1)}, ""},
		{"eq(name,a)|eq(name,b)", "((n.name = ?) OR (n.name = ?))", []any{"a", "b"}, ""},
		{"in(name,a,b)", "(n.name IN (?, ?))", []any{"a", "b"}, ""},
		{"in(name,(a,b))", "(n.name IN (?, ?))", []any{"a", "b"}, ""},
		{"out(size,(1,2))", "(n.size NOT IN (?, ?))", []any{int64(1), int64(2)}, ""},
		{"in(name,())", "(1 = 0)", nil, ""},
		{"eq(phi,true)", "(n.phi = ?)", []any{true}, ""},
		{"like(name,*.pdf)", "(n.name LIKE ? ESCAPE '!')", []any{"%.pdf"}, "(n.name ILIKE ? ESCAPE '!')"},
		{"like(name,50%25_off*)", "(n.name LIKE ? ESCAPE '!')", []any{"50!%!_off%"}, "(n.name ILIKE ? ESCAPE '!')"},
		{"contains(name,x)", "(n.name LIKE ? ESCAPE '!')", []any{"%x%"}, "(n.name ILIKE ? ESCAPE '!')"},
		{"eq(name,a%2Cb)", "(n.name = ?)", []any{"a,b"}, ""},
		{"eq(name,string:12)", "(n.name = ?)", []any{"12"}, ""},
		{"eq(tags,ecg)", "EXISTS (SELECT 1 FROM json_each(n.tags) WHERE json_each.value = ?)", []any{"ecg"},
			"((n.tags)::jsonb @> jsonb_build_array(CAST(? AS text)))"},
		{"gt(creationTimestamp,2024-01-02)", "(n.created_at > ?)", []any{time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)}, ""},
		{"gt(creationTimestamp,0)", "(n.created_at > ?)", []any{time.UnixMilli(0).UTC()}, ""},
		{"match(title,heart rate)", "((lower(n.title) LIKE ? ESCAPE '!' AND lower(n.title) LIKE ? ESCAPE '!'))",
			[]any{"%heart%", "%rate%"}, "((n.title ILIKE ? ESCAPE '!' AND n.title ILIKE ? ESCAPE '!'))"},
		{" eq( name , a b ) ", "(n.name = ?)", []any{"a b"}, ""},
	}
	for _, tt := range tests {
		q, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		for _, pg := range []bool{false, true} {
			c, err := Compile(q, testSchema, Dialect{Postgres: pg})
			if err != nil {
				t.Errorf("Compile(%q, pg=%v): %v", tt.in, pg, err)
				continue
			}
			want := tt.where
			if pg && tt.pg != "" {
				want = tt.pg
			}
			if c.Where != want {
				t.Errorf("Compile(%q, pg=%v).Where = %q, want %q", tt.in, pg, c.Where, want)
			}
			if len(c.Args) != len(tt.args) {
				t.Errorf("Compile(%q).Args = %#v, want %#v", tt.in, c.Args, tt.args)
				continue
			}
			for i := range c.Args {
				if c.Args[i] != tt.args[i] {
					t.Errorf("Compile(%q).Args[%d] = %#v, want %#v", tt.in, i, c.Args[i], tt.args[i])
				}
			}
		}
	}
}

func TestTrigram(t *testing.T) {
	q, err := Parse("match(title,hart)")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Compile(q, testSchema, Dialect{Postgres: true, Trigram: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := "(? <% n.title OR (n.title ILIKE ? ESCAPE '!'))"; c.Where != want {
		t.Fatalf("Where = %q, want %q", c.Where, want)
	}
}

func TestSortLimitSelect(t *testing.T) {
	q, err := Parse("eq(name,a)&sort(+name,-size)&limit(10,20)&select(id,name)")
	if err != nil {
		t.Fatal(err)
	}
	if q.Limit != 10 || q.Offset != 20 {
		t.Errorf("limit = %d,%d", q.Limit, q.Offset)
	}
	if len(q.Select) != 2 || q.Select[0] != "id" || q.Select[1] != "name" {
		t.Errorf("select = %v", q.Select)
	}
	c, err := Compile(q, testSchema, Dialect{})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Order) != 2 || c.Order[0].Expr != "n.name" || c.Order[0].Desc || !c.Order[1].Desc {
		t.Errorf("order = %+v", c.Order)
	}
	if c.Where != "(n.name = ?)" {
		t.Errorf("where = %q", c.Where)
	}
	// A '+' decoded to a space by query-string decoding still sorts ascending.
	q, err = Parse("sort( name)")
	if err != nil || len(q.Sort) != 1 || q.Sort[0].Field != "name" || q.Sort[0].Desc {
		t.Errorf("sort( name) = %+v, %v", q, err)
	}
	if err := CheckSelect(&Query{Select: []string{"tokens"}}, testSchema, "tokens"); err != nil {
		t.Errorf("CheckSelect(tokens): %v", err)
	}
	if err := CheckSelect(&Query{Select: []string{"password"}}, testSchema); err == nil {
		t.Error("CheckSelect(password) passed")
	}
}

func TestErrorsHavePositions(t *testing.T) {
	tests := []struct {
		in  string
		pos int
	}{
		{"eq(name,a", 9},
		{"eq(name,a))", 10},
		{"foo(name,a)", 0},
		{"eq(nope,a)", 3},
		{"eq(size,abc)", 8},
		{"eq(name)", 0},
		{"and(eq(name,a),sort(name))", 15},
		{"or(sort(name))", 3},
		{"eq(name,a)&&eq(name,b)", 11},
		{"limit(x)", 6},
		{"sort(tags)", 5},
		{"sort(bogus)", 5},
		{"lt(phi,true)", 0},
		{"match(name,x)", 0},
		{"eq(name,%zz)", 8},
		{"name", 0},
		{"eq(name,a\x00)", 9},
		{strings.Repeat("and(", 40) + "eq(name,a)" + strings.Repeat(")", 40), 128},
	}
	for _, tt := range tests {
		q, err := Parse(tt.in)
		if err == nil {
			_, err = Compile(q, testSchema, Dialect{})
		}
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("%q: err = %v, want a SyntaxError", tt.in, err)
			continue
		}
		if se.Pos != tt.pos {
			t.Errorf("%q: position %d (%v), want %d", tt.in, se.Pos, se, tt.pos)
		}
		if !strings.Contains(se.Error(), "position") {
			t.Errorf("%q: message %q does not say where", tt.in, se.Error())
		}
	}
	if _, err := Parse(strings.Repeat("a", MaxLength+1)); err == nil {
		t.Error("an over-long query parsed")
	}
}

// injections are attempts to smuggle SQL through values and field names.
// Each must either fail to parse or compile to SQL that holds none of the
// attacker's text, with the text passed as an argument.
var injections = []string{
	"eq(name,x' OR '1'='1)",
	"eq(name,x%27%20OR%201%3D1%20--)",
	"eq(name,a);DROP TABLE nodes;--)",
	"eq(name%3B%20DROP%20TABLE%20nodes,a)",
	"eq(n.name,a)",
	"eq(name) OR 1=1,a)",
	"like(name,%25' OR ''=')",
	"in(name,a,b') OR ('1'='1)",
	"eq(tags,x')) OR 1=1 --)",
	"match(title,' OR 1=1 --)",
	"sort(name;DROP TABLE nodes)",
	"sort(-name%20DESC%3B%20DROP%20TABLE%20nodes)",
	"eq(title,\\' OR 1=1 --)",
	"eq(size,1 OR 1=1)",
	"eq(name,$1)",
	"eq(name,?)",
	"eq(name,? OR 1=1)",
}

func TestInjectionAttempts(t *testing.T) {
	db := openTestDB(t)
	for _, in := range injections {
		for _, pg := range []bool{false, true} {
			q, err := Parse(in)
			if err != nil {
				continue
			}
			c, err := Compile(q, testSchema, Dialect{Postgres: pg, Trigram: pg})
			if err != nil {
				continue
			}
			assertSafeSQL(t, in, c)
			if !pg {
				// The statement runs, finds nothing, and the table survives.
				if n := countWhere(t, db, c); n != 0 {
					t.Errorf("%q matched %d rows", in, n)
				}
			}
		}
	}
	var n int
	if err := db.NewRaw("SELECT count(*) FROM nodes").Scan(context.Background(), &n); err != nil || n != 3 {
		t.Fatalf("nodes table damaged: n=%d err=%v", n, err)
	}
}

// assertSafeSQL checks that compiled SQL contains nothing but schema
// expressions, fixed keywords and placeholders: no quote other than the
// ESCAPE literal, no statement separator, no comment, and one placeholder
// per argument.
func assertSafeSQL(t *testing.T, in string, c *Compiled) {
	t.Helper()
	s := strings.ReplaceAll(c.Where, "ESCAPE '!'", "")
	if strings.ContainsAny(s, "';\"\\$") || strings.Contains(s, "--") || strings.Contains(s, "/*") {
		t.Errorf("%q compiled to unsafe SQL %q", in, c.Where)
	}
	if got := strings.Count(s, "?"); got != len(c.Args) {
		t.Errorf("%q: %d placeholders for %d args in %q", in, got, len(c.Args), c.Where)
	}
	for _, word := range []string{"DROP", "1=1", "1 = 1)"} {
		if strings.Contains(c.Where, word) && !strings.HasPrefix(c.Where, "(1 = 1)") {
			t.Errorf("%q compiled to %q containing %q", in, c.Where, word)
		}
	}
}

var (
	testDBOnce sync.Once
	testDB     *bun.DB
	testDBErr  error
)

// openTestDB opens an in-memory SQLite with a table shaped like nodes and
// three rows, shared by the tests and the fuzz target of this process.
func openTestDB(t testing.TB) *bun.DB {
	testDBOnce.Do(func() {
		sqldb, err := sql.Open(sqliteshim.ShimName, "file::memory:?cache=shared")
		if err != nil {
			testDBErr = err
			return
		}
		sqldb.SetMaxOpenConns(1)
		testDB = bun.NewDB(sqldb, sqlitedialect.New())
		ctx := context.Background()
		for _, stmt := range []string{
			`CREATE TABLE nodes (id TEXT, name TEXT, size BIGINT, phi BOOLEAN, title TEXT, tags TEXT, created_at TIMESTAMP)`,
			`INSERT INTO nodes VALUES ('1', 'a.txt', 5, FALSE, 'Heart rate', '["ecg"]', '2024-01-01 00:00:00+00:00')`,
			`INSERT INTO nodes VALUES ('2', 'b.pdf', 50, TRUE, 'Report', '["ecg","x"]', '2024-02-01 00:00:00+00:00')`,
			`INSERT INTO nodes VALUES ('3', 'c''d', 500, FALSE, '', '[]', '2024-03-01 00:00:00+00:00')`,
		} {
			if _, err := testDB.ExecContext(ctx, stmt); err != nil {
				testDBErr = err
				return
			}
		}
	})
	if testDBErr != nil {
		t.Fatalf("test database: %v", testDBErr)
	}
	return testDB
}

func countWhere(t testing.TB, db *bun.DB, c *Compiled) int {
	t.Helper()
	q := db.NewSelect().TableExpr("nodes AS n").ColumnExpr("count(*)")
	if c.Where != "" {
		q = q.Where(c.Where, c.Args...)
	}
	for _, o := range c.Order {
		if o.Desc {
			q = q.OrderExpr(o.Expr + " DESC")
		} else {
			q = q.OrderExpr(o.Expr)
		}
	}
	var n int
	if err := q.Scan(context.Background(), &n); err != nil {
		t.Fatalf("compiled SQL %q (args %#v) failed: %v", c.Where, c.Args, err)
	}
	return n
}

func TestQueriesRunOnSQLite(t *testing.T) {
	db := openTestDB(t)
	tests := []struct {
		in   string
		want int
	}{
		{"eq(name,a.txt)", 1},
		{"eq(name,c'd)", 1},
		{"eq(tags,ecg)", 2},
		{"contains(tags,x)", 1},
		{"out(tags,(ecg))", 1},
		{"ne(tags,x)", 2},
		{"like(tags,e*)", 2},
		{"like(name,*.PDF)", 1},
		{"gt(size,10)&lt(size,100)", 1},
		{"eq(phi,true)", 1},
		{"match(title,HEART)", 1},
		{"match(title,rate heart)", 1},
		{"ge(creationTimestamp,2024-02-01)", 2},
		{"in(size,5,500)", 2},
		{"or(eq(name,a.txt),eq(size,50))", 2},
	}
	for _, tt := range tests {
		q, err := Parse(tt.in)
		if err != nil {
			t.Fatalf("%q: %v", tt.in, err)
		}
		c, err := Compile(q, testSchema, Dialect{})
		if err != nil {
			t.Fatalf("%q: %v", tt.in, err)
		}
		if n := countWhere(t, db, c); n != tt.want {
			t.Errorf("%q matched %d rows, want %d", tt.in, n, tt.want)
		}
	}
}

// FuzzParse checks that no input panics the parser or compiler, that every
// compiled query is safe SQL with one placeholder per argument, and that
// SQLite accepts it.
func FuzzParse(f *testing.F) {
	for _, s := range injections {
		f.Add(s)
	}
	for _, s := range []string{"", "eq(name,a)", "and(eq(tags,x),or(gt(size,1),lt(size,9)))&sort(-name)&limit(5,1)",
		"name=a&size=ge=3", "in(tags,(a,b))", "like(name,*a*)", "match(title,x y)", "select(id,name)"} {
		f.Add(s)
	}
	db := openTestDB(f)
	f.Fuzz(func(t *testing.T, in string) {
		q, err := Parse(in)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || se.Pos < 0 || se.Pos > len(in) {
				t.Fatalf("Parse(%q) = %v, want a SyntaxError inside the input", in, err)
			}
			return
		}
		for _, pg := range []bool{false, true} {
			c, err := Compile(q, testSchema, Dialect{Postgres: pg, Trigram: pg})
			if err != nil {
				var se *SyntaxError
				if !errors.As(err, &se) {
					t.Fatalf("Compile(%q) = %v, want a SyntaxError", in, err)
				}
				return
			}
			assertSafeSQL(t, in, c)
			assertBoundWords(t, in, testSchema, c)
			if !pg {
				countWhere(t, db, c)
			}
		}
	})
}
