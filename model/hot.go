package model

import (
	"context"
	"database/sql"
	"sync"
	"time"

	"github.com/uptrace/bun"
)

// hotStatements are the lookups every small request makes (the caller's
// account, the folder and file a write lands on) and the insert of a new
// file, prepared so that each connection parses them once. Sent as plain
// queries, as Bun sends everything, parsing and planning are most of
// their cost: on PostgreSQL 0.155 ms against 0.059 ms prepared (pgbench
// on this machine), which shares the cores with the server, and preparing
// the insert took 4 KiB PUTs from ~502 to ~572/s; on SQLite, whose parser
// runs in this process, parsing the lookups was a quarter of the server's
// CPU on 4 KiB GETs and the insert 13% on PUTs (pprof).
//
// On SQLite the insert is given its times as the text Bun writes
// (sqliteTime), since SQLite compares times as text.
type hotStatements struct {
	db *bun.DB

	mu       sync.Mutex
	prepared bool
	failed   bool

	userByName    *sql.Stmt
	folderAndLive *sql.Stmt
	liveByPath    *sql.Stmt
	createFile    *sql.Stmt // see Repo.createFile
}

// nodeColumns lists every column of Node in table order.
const nodeColumns = "n.id, n.parent_id, n.name, n.path, n.lineage, n.is_dir, n.size, n.mime_type, n.sha256, " +
	"n.etag, n.blob_key, n.creator_id, n.owner_id, n.tags, n.title, n.description, n.source, n.phi, n.status, " +
	"n.version, n.created_at, n.updated_at, n.mod_time, n.archived_at"

// statements returns the prepared statements, preparing them on first
// use; nil means "use Bun" (SQLite, or a database that refused them, in
// which case the next call tries again).
func (h *hotStatements) statements(ctx context.Context) *hotStatements {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.prepared {
		return h
	}
	if h.failed {
		return nil
	}
	pg := IsPostgres(h.db)
	var err error
	prep := func(q string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var s *sql.Stmt
		s, err = h.db.DB.PrepareContext(ctx, q)
		return s
	}
	h.userByName = prep("SELECT id, name, password_hash, disabled, quota_bytes, created_at, updated_at FROM users WHERE name = $1")
	h.folderAndLive = prep("SELECT " + nodeColumns + " FROM nodes AS n WHERE n.id = $1 OR " +
		"(n.path = $2 AND n.archived_at IS NULL AND n.status = '" + StatusCompleted + "')")
	h.liveByPath = prep("SELECT " + nodeColumns + " FROM nodes AS n WHERE n.path = $1 AND n.archived_at IS NULL AND n.status = '" + StatusCompleted + "'")
	if !pg {
		// The same insert without PostgreSQL's casts and lock; it runs
		// in the group commit's transaction (see Repo.createFile), and
		// its times are passed as the text Bun writes (sqliteTime).
		h.createFile = prep(`INSERT INTO nodes (` + newFileColumns + `)
		SELECT ?1, p.id, ?2, CASE WHEN p.path = '/' THEN '/' || ?2 ELSE p.path || '/' || ?2 END, p.lineage || '/' || ?1,
			FALSE, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, 1, ?16, ?17, ?18
		FROM nodes AS p
		WHERE p.id = ?19 AND p.is_dir AND p.archived_at IS NULL AND p.status = '` + StatusCompleted + `'
		ON CONFLICT DO NOTHING
		RETURNING path, lineage`)
	} else {
		// Parameters of a SELECT list are text unless cast.
		h.createFile = prep(`INSERT INTO nodes (` + newFileColumns + `)
		SELECT $1, p.id, $2, CASE WHEN p.path = '/' THEN '/' || $2 ELSE p.path || '/' || $2 END, p.lineage || '/' || $1,
			FALSE, $3::bigint, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14::boolean, $15, 1,
			$16::timestamptz, $17::timestamptz, $18::timestamptz
		FROM nodes AS p
		WHERE p.id = $19 AND p.is_dir AND p.archived_at IS NULL AND p.status = '` + StatusCompleted + `'
		FOR KEY SHARE OF p
		ON CONFLICT DO NOTHING
		RETURNING path, lineage`)
	}
	if err != nil {
		h.closeLocked()
		return nil // retried on the next call: the database may be back
	}
	h.prepared = true
	return h
}

func (h *hotStatements) closeLocked() {
	for _, s := range []**sql.Stmt{&h.userByName, &h.folderAndLive, &h.liveByPath, &h.createFile} {
		if *s != nil {
			(*s).Close()
			*s = nil
		}
	}
}

// query runs a prepared statement, inside tx when it is not nil, and
// scans every row into dest, a pointer to a slice of models.
func (h *hotStatements) query(ctx context.Context, tx *bun.Tx, stmt *sql.Stmt, dest any, args ...any) error {
	rows, done, err := h.run(ctx, tx, stmt, args)
	if err != nil {
		return err
	}
	defer done()
	return h.db.ScanRows(ctx, rows, dest)
}

// queryOne is query for one row into a model; no row is sql.ErrNoRows.
func (h *hotStatements) queryOne(ctx context.Context, tx *bun.Tx, stmt *sql.Stmt, dest any, args ...any) error {
	rows, done, err := h.run(ctx, tx, stmt, args)
	if err != nil {
		return err
	}
	defer done()
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return err
		}
		return sql.ErrNoRows
	}
	if err := h.db.ScanRow(ctx, rows, dest); err != nil {
		return err
	}
	return rows.Close()
}

// run starts stmt; done releases what it took once the rows are read.
func (h *hotStatements) run(ctx context.Context, tx *bun.Tx, stmt *sql.Stmt, args []any) (rows *sql.Rows, done func(), err error) {
	done = func() {}
	if tx != nil {
		// The transaction's handle on the statement reuses the one
		// prepared on its connection; closing it leaves that in place.
		stmt = tx.StmtContext(ctx, stmt)
		done = func() { stmt.Close() }
	}
	rows, err = stmt.QueryContext(ctx, args...)
	if err != nil {
		done()
		return nil, nil, err
	}
	return rows, done, nil
}

// createFileRow runs the prepared createFile statement for n, a new file
// in the folder parentID, and appends the path and lineage it was placed
// at to placed; nothing is appended when the statement inserted nothing
// (a name taken, or no such live folder).
func (h *hotStatements) createFileRow(ctx context.Context, tx *bun.Tx, n *Node, tags, parentID string, placed *[]placement) error {
	created, updated, mod := any(n.CreatedAt), any(n.UpdatedAt), any(n.ModTime)
	if !IsPostgres(h.db) {
		created, updated, mod = h.sqliteTime(n.CreatedAt), h.sqliteTime(n.UpdatedAt), h.sqliteTime(n.ModTime)
	}
	rows, done, err := h.run(ctx, tx, h.createFile, []any{n.ID, n.Name, n.Size, n.MimeType, n.SHA256,
		n.ETag, n.BlobKey, n.CreatorID, n.OwnerID, tags, n.Title, n.Description, n.Source, n.PHI, n.Status,
		created, updated, mod, parentID})
	if err != nil {
		return err
	}
	defer done()
	defer rows.Close()
	for rows.Next() {
		var p placement
		if err := rows.Scan(&p.Path, &p.Lineage); err != nil {
			return err
		}
		*placed = append(*placed, p)
	}
	return rows.Err()
}

// sqliteTime is t as Bun's SQLite dialect writes a time literal, without
// its quotes, so that rows inserted by a prepared statement sort and
// compare with Bun's.
func (h *hotStatements) sqliteTime(t time.Time) string {
	lit := h.db.Dialect().AppendTime(nil, t)
	return string(lit[1 : len(lit)-1])
}
