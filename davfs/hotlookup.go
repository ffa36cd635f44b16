package davfs

import (
	"context"
	"database/sql"
	"strings"
	"sync"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model"
)

// hotLookup runs the lookup every write makes (the target and its folder,
// with a count of the locks that bear on them) as one prepared statement
// on PostgreSQL. Built by Bun it is new SQL text each time, because the
// paths are inlined, and PostgreSQL parsed and planned it on every request:
// a subquery and two IN lists, more work than running it. With arrays as
// parameters the text never changes and the plan is kept.
type hotLookup struct {
	db *bun.DB

	mu   sync.Mutex
	stmt *sql.Stmt // nil until prepared, and on SQLite
}

const hotLookupQuery = `SELECT n.*, (SELECT COUNT(*) FROM dav_locks AS l
	WHERE l.expires_ms > $1 AND l.root = ANY($2::text[])) AS lock_count
FROM nodes AS n
WHERE n.path = ANY($3::text[]) AND n.archived_at IS NULL AND n.status = '` + model.StatusCompleted + `'`

// statement returns the prepared statement, preparing it on first use; nil
// on SQLite or when preparing failed (the next call tries again, as the
// database may be back).
func (h *hotLookup) statement(ctx context.Context) *sql.Stmt {
	if !model.IsPostgres(h.db) {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stmt == nil {
		if s, err := h.db.DB.PrepareContext(ctx, hotLookupQuery); err == nil {
			h.stmt = s
		}
	}
	return h.stmt
}

// run is lookup's query for paths with no locks below them. ok is false
// when there is no prepared statement to run; the caller then builds the
// query with Bun.
func (h *hotLookup) run(ctx context.Context, nowMs int64, paths []string) (rows []nodeRow, ok bool, err error) {
	stmt := h.statement(ctx)
	if stmt == nil {
		return nil, false, nil
	}
	r, err := stmt.QueryContext(ctx, nowMs, textArray(lockRoots(paths)), textArray(paths))
	if err != nil {
		return nil, true, err
	}
	defer r.Close()
	if err := h.db.ScanRows(ctx, r, &rows); err != nil {
		return nil, true, err
	}
	return rows, true, nil
}

// textArray writes ss as a PostgreSQL array literal for a text[]
// parameter: every element quoted, with backslashes and quotes escaped.
func textArray(ss []string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, s := range ss {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		for _, c := range []byte(s) {
			if c == '"' || c == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(c)
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}
