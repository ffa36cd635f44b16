// Package bunadapter keeps Casbin policy lines in the casbin_rule table
// through Bun, with the same SQL on SQLite and PostgreSQL.
//
// A line is a []string whose first element is the ptype ("p", "g", "g2")
// followed by up to six values, the shape Casbin's CSV files and
// persist.LoadPolicyArray use. Unused value columns hold ” rather than NULL
// so that the unique index on (ptype, v0..v5) makes every line unique and
// adding a line twice is a no-op.
//
// The package-level functions take a bun.IDB, so a caller can write policy
// lines in the same transaction as its own rows. Adapter wraps them in the
// persist.Adapter, BatchAdapter and UpdatableAdapter interfaces (and their
// context variants) for code that drives a casbin.Enforcer.
package bunadapter

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/uptrace/bun"
)

// MaxValues is the number of value columns (v0..v5) a line may use.
const MaxValues = 6

// chunk is how many lines go into one INSERT or DELETE statement: large
// enough that 100,000 grants load in a few hundred statements, small enough
// to stay far below either database's statement size limits.
const chunk = 500

// ErrBadLine means a line has no ptype or more than MaxValues values.
var ErrBadLine = errors.New("bad policy line")

// Rule is one row of casbin_rule.
type Rule struct {
	bun.BaseModel `bun:"table:casbin_rule"`

	ID    int64  `bun:"id,pk,autoincrement"`
	Ptype string `bun:"ptype"`
	V0    string `bun:"v0"`
	V1    string `bun:"v1"`
	V2    string `bun:"v2"`
	V3    string `bun:"v3"`
	V4    string `bun:"v4"`
	V5    string `bun:"v5"`
}

// Line returns the rule as ptype followed by its values, without trailing
// empty values.
func (r *Rule) Line() []string {
	vals := [MaxValues]string{r.V0, r.V1, r.V2, r.V3, r.V4, r.V5}
	n := MaxValues
	for n > 0 && vals[n-1] == "" {
		n--
	}
	line := make([]string, 0, n+1)
	line = append(line, r.Ptype)
	return append(line, vals[:n]...)
}

// Filter selects lines. An empty Ptype matches every ptype; Values are
// compared position by position with v0, v1, ..., and an empty value
// matches anything (valid lines never hold an empty value).
type Filter struct {
	Ptype  string
	Values []string
}

// FieldFilter turns Casbin's (ptype, fieldIndex, fieldValues...) filter
// into a Filter.
func FieldFilter(ptype string, fieldIndex int, fieldValues ...string) Filter {
	if fieldIndex < 0 {
		fieldIndex = 0
	}
	vals := make([]string, fieldIndex, fieldIndex+len(fieldValues))
	return Filter{Ptype: ptype, Values: append(vals, fieldValues...)}
}

// IsEmpty reports whether the filter matches every line.
func (f Filter) IsEmpty() bool {
	if f.Ptype != "" {
		return false
	}
	for _, v := range f.Values {
		if v != "" {
			return false
		}
	}
	return true
}

// Matches reports whether line passes the filter.
func (f Filter) Matches(line []string) bool {
	if len(line) == 0 || (f.Ptype != "" && line[0] != f.Ptype) {
		return false
	}
	for i, v := range f.Values {
		if v == "" {
			continue
		}
		if i+1 >= len(line) || line[i+1] != v {
			return false
		}
	}
	return true
}

// where adds the filter's conditions to q. It returns ErrBadLine for more
// than MaxValues values.
func (f Filter) where(q bun.QueryBuilder) (bun.QueryBuilder, error) {
	if len(f.Values) > MaxValues {
		return q, fmt.Errorf("%w: filter has %d values, at most %d", ErrBadLine, len(f.Values), MaxValues)
	}
	if f.Ptype != "" {
		q = q.Where("ptype = ?", f.Ptype)
	}
	for i, v := range f.Values {
		if v != "" {
			q = q.Where("? = ?", bun.Ident(fmt.Sprintf("v%d", i)), v)
		}
	}
	return q, nil
}

// padded returns ptype and exactly MaxValues values, or ErrBadLine.
func padded(line []string) ([MaxValues + 1]string, error) {
	var row [MaxValues + 1]string
	if len(line) == 0 || line[0] == "" || len(line) > MaxValues+1 {
		return row, fmt.Errorf("%w: %q", ErrBadLine, line)
	}
	copy(row[:], line)
	return row, nil
}

const columns = "ptype, v0, v1, v2, v3, v4, v5"
const tuple = "(?, ?, ?, ?, ?, ?, ?)"

// tuples renders up to chunk lines as a VALUES list and its arguments.
func tuples(lines [][]string) (string, []any, error) {
	var sb strings.Builder
	args := make([]any, 0, len(lines)*(MaxValues+1))
	for i, line := range lines {
		row, err := padded(line)
		if err != nil {
			return "", nil, err
		}
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(tuple)
		for _, v := range row {
			args = append(args, v)
		}
	}
	return sb.String(), args, nil
}

// Insert adds lines that are not stored yet, in statements of a few hundred
// lines, and returns how many rows it inserted. Lines already present are
// skipped, so Insert is idempotent. It returns ErrBadLine (and writes
// nothing of the bad statement) for a malformed line; run it in a
// transaction to make a multi-statement insert atomic.
func Insert(ctx context.Context, db bun.IDB, lines [][]string) (int64, error) {
	return inChunks(ctx, db, lines, "insert", func(values string) string {
		return "INSERT INTO casbin_rule (" + columns + ") VALUES " + values + " ON CONFLICT DO NOTHING"
	})
}

// Delete removes the given lines, matching every column exactly, and
// returns how many rows it removed. Lines that are not stored are skipped.
// It returns ErrBadLine for a malformed line.
func Delete(ctx context.Context, db bun.IDB, lines [][]string) (int64, error) {
	return inChunks(ctx, db, lines, "delete", func(values string) string {
		return "DELETE FROM casbin_rule WHERE (" + columns + ") IN (VALUES " + values + ")"
	})
}

// inChunks runs the statement built around a VALUES list for each chunk of
// lines and adds up the rows affected.
func inChunks(ctx context.Context, db bun.IDB, lines [][]string, verb string, stmt func(values string) string) (int64, error) {
	var total int64
	for start := 0; start < len(lines); start += chunk {
		end := min(start+chunk, len(lines))
		values, args, err := tuples(lines[start:end])
		if err != nil {
			return total, err
		}
		res, err := db.NewRaw(stmt(values), args...).Exec(ctx)
		if err != nil {
			return total, fmt.Errorf("%s policy lines: %w", verb, err)
		}
		n, _ := res.RowsAffected()
		total += n
	}
	return total, nil
}

// DeleteMatching removes every line that passes f and returns the removed
// lines. An empty filter removes everything, like DeleteAll. It returns
// ErrBadLine for a filter with too many values.
func DeleteMatching(ctx context.Context, db bun.IDB, f Filter) ([][]string, error) {
	q := db.NewDelete().Model((*Rule)(nil))
	qb, err := f.where(q.QueryBuilder())
	if err != nil {
		return nil, err
	}
	q = qb.Unwrap().(*bun.DeleteQuery)
	if f.IsEmpty() {
		q = q.Where("1 = 1")
	}
	var rows []Rule
	if err := q.Returning(columns).Scan(ctx, &rows); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("delete policy lines: %w", err)
	}
	return linesOf(rows), nil
}

// DeleteAll removes every line.
func DeleteAll(ctx context.Context, db bun.IDB) error {
	if _, err := db.NewRaw("DELETE FROM casbin_rule").Exec(ctx); err != nil {
		return fmt.Errorf("delete policy lines: %w", err)
	}
	return nil
}

// Select returns the lines that pass f in the order they were added. It
// returns ErrBadLine for a filter with too many values.
func Select(ctx context.Context, db bun.IDB, f Filter) ([][]string, error) {
	var out [][]string
	err := Each(ctx, db, f, func(line []string) error {
		out = append(out, line)
		return nil
	})
	return out, err
}

// Each streams the lines that pass f, in the order they were added, to fn
// without holding them all in memory, and stops at fn's first error, which
// it returns. It returns ErrBadLine for a filter with too many values.
func Each(ctx context.Context, db bun.IDB, f Filter, fn func(line []string) error) error {
	q := db.NewSelect().Model((*Rule)(nil)).Column("ptype", "v0", "v1", "v2", "v3", "v4", "v5")
	qb, err := f.where(q.QueryBuilder())
	if err != nil {
		return err
	}
	rows, err := qb.Unwrap().(*bun.SelectQuery).Order("id").Rows(ctx)
	if err != nil {
		return fmt.Errorf("read policy lines: %w", err)
	}
	defer rows.Close()
	var r Rule
	for rows.Next() {
		if err := rows.Scan(&r.Ptype, &r.V0, &r.V1, &r.V2, &r.V3, &r.V4, &r.V5); err != nil {
			return fmt.Errorf("read policy lines: %w", err)
		}
		if err := fn(r.Line()); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read policy lines: %w", err)
	}
	return nil
}

func linesOf(rows []Rule) [][]string {
	out := make([][]string, len(rows))
	for i := range rows {
		out[i] = rows[i].Line()
	}
	return out
}
