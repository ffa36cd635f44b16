package model

import (
	"context"
	"database/sql"
	"errors"
	"sort"
	"strings"

	"github.com/uptrace/bun"
)

// SearchOrder is one ORDER BY term. Expr is trusted SQL over the nodes
// table aliased n (a column or an expression the caller controls), never
// text from a request.
type SearchOrder struct {
	Expr string
	Desc bool
}

// Search selects nodes for the files API's listing and RQL search.
type Search struct {
	// Where is a condition with ? placeholders over alias n, compiled from
	// RQL; Args are its values. "" means no condition.
	Where string
	Args  []any
	// Archived includes archived nodes and uploads in progress; otherwise
	// only live, completed nodes are returned.
	Archived bool
	// Folders includes folders; otherwise only files are returned. The
	// root is never returned.
	Folders bool
	// ParentID, when set, returns only that folder's direct children.
	ParentID string
	// Within restricts the result to the subtrees of these lineages (each
	// node itself and everything below it). Nil means everywhere; an empty
	// non-nil slice means nowhere.
	Within []string
	// Order is the sort; the node id is always the last tie-breaker, so
	// pages are stable.
	Order []SearchOrder
	// After holds, for a keyset page, the values of the Order expressions
	// and then the id of the last node of the previous page.
	After []any
	// Limit caps the result (zero means 100); Offset skips rows (RQL's
	// limit(n, offset)).
	Limit  int
	Offset int
}

// SearchNodes runs a search. It returns ErrInvalid when After does not
// have one value per order term plus the id, and ErrUnavailable.
func (r *Repo) SearchNodes(ctx context.Context, s Search) ([]*Node, error) {
	if s.Within != nil && len(s.Within) == 0 {
		return []*Node{}, nil
	}
	if s.After != nil && len(s.After) != len(s.Order)+1 {
		return nil, ErrInvalid
	}
	var nodes []*Node
	q := r.db.NewSelect().Model(&nodes).Where("n.id <> ?", RootID)
	if !s.Archived {
		q = liveCompleted(q)
	}
	if !s.Folders {
		q = q.Where("n.is_dir = ?", false)
	}
	if s.ParentID != "" {
		q = q.Where("n.parent_id = ?", s.ParentID)
	}
	if s.Within != nil {
		q = q.WhereGroup(" AND ", func(q *bun.SelectQuery) *bun.SelectQuery {
			for _, l := range topLineages(s.Within) {
				lo, hi := descendantRange(l)
				q = q.WhereOr("(n.lineage = ? OR (n.lineage > ? AND n.lineage < ?))", l, lo, hi)
			}
			return q
		})
	}
	if s.Where != "" {
		q = q.Where("("+s.Where+")", s.Args...)
	}
	if s.After != nil {
		cond, args := keyset(s.Order, s.After)
		q = q.Where(cond, args...)
	}
	for _, o := range s.Order {
		q = q.OrderExpr(o.Expr + dir(o.Desc))
	}
	q = q.OrderExpr("n.id" + dir(len(s.Order) > 0 && s.Order[len(s.Order)-1].Desc))
	limit := s.Limit
	if limit <= 0 {
		limit = 100
	}
	q = q.Limit(int64(limit))
	if s.Offset > 0 {
		q = q.Offset(int64(s.Offset))
	}
	if err := q.Scan(ctx); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, dbErr(err)
	}
	if nodes == nil {
		nodes = []*Node{}
	}
	return nodes, nil
}

func dir(desc bool) string {
	if desc {
		return " DESC"
	}
	return " ASC"
}

// keyset returns the condition "the row sorts after the values": for
// terms t1..tk and the id, (t1 > v1) OR (t1 = v1 AND t2 > v2) OR ... with
// < for descending terms. The id follows the direction of the last term.
func keyset(order []SearchOrder, after []any) (string, []any) {
	terms := append(append([]SearchOrder{}, order...), SearchOrder{Expr: "n.id",
		Desc: len(order) > 0 && order[len(order)-1].Desc})
	var b strings.Builder
	var args []any
	b.WriteByte('(')
	for i, t := range terms {
		if i > 0 {
			b.WriteString(" OR ")
		}
		b.WriteByte('(')
		for j := 0; j < i; j++ {
			b.WriteString(terms[j].Expr + " = ? AND ")
			args = append(args, after[j])
		}
		op := " > ?"
		if t.Desc {
			op = " < ?"
		}
		b.WriteString(t.Expr + op + ")")
		args = append(args, after[i])
	}
	b.WriteByte(')')
	return b.String(), args
}

// topLineages drops lineages that lie inside another one of the list, so
// the restriction has one range per disjoint subtree.
func topLineages(ls []string) []string {
	sorted := append([]string{}, ls...)
	sort.Strings(sorted)
	var out []string
	for _, l := range sorted {
		if len(out) > 0 {
			last := out[len(out)-1]
			if l == last || strings.HasPrefix(l, last+"/") {
				continue
			}
		}
		out = append(out, l)
	}
	return out
}

// LineagesOf returns the lineages of the nodes with these ids that still
// exist, archived or not, keyed by id.
func (r *Repo) LineagesOf(ctx context.Context, ids []string) (map[string]string, error) {
	out := make(map[string]string, len(ids))
	for len(ids) > 0 {
		batch := ids[:min(len(ids), 500)]
		ids = ids[len(batch):]
		var rows []struct {
			ID      string `bun:"id"`
			Lineage string `bun:"lineage"`
		}
		if err := r.db.NewSelect().Table("nodes").Column("id", "lineage").
			Where("id IN (?)", bun.In(batch)).Scan(ctx, &rows); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, dbErr(err)
		}
		for _, row := range rows {
			out[row.ID] = row.Lineage
		}
	}
	return out, nil
}

// HasTrigram reports whether the database can do trigram similarity
// (PostgreSQL with the pg_trgm extension installed).
func (r *Repo) HasTrigram(ctx context.Context) bool {
	if !IsPostgres(r.db) {
		return false
	}
	var n int
	err := r.db.NewRaw("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'").Scan(ctx, &n)
	return err == nil && n > 0
}
