package policy

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
)

// notifyChannel is the PostgreSQL channel a change is announced on at
// commit; its payload is the new revision.
const notifyChannel = "filegate_policy"

// logKeep is how many revisions of policy_log are kept. An instance that
// falls further behind reloads the whole policy instead.
const logKeep = 10000

// Log operations, see the policy_log migration.
const (
	opAdd    = "add"
	opRemove = "remove"
	opReset  = "reset"
	opNoop   = "noop"
)

// logChunk lines go into one INSERT into policy_log.
const logChunk = 500

type logEntry struct {
	rev  int64
	op   string
	line []string
}

func isPG(db bun.IDB) bool { return db.Dialect().Name() == dialect.PG }

// bumpRevision increments the revision inside tx and returns the new one.
// It runs first in every change, so that on PostgreSQL the row lock orders
// concurrent changes and their log rows.
func bumpRevision(ctx context.Context, tx bun.IDB) (int64, error) {
	var rev int64
	if err := tx.NewRaw("UPDATE policy_revision SET revision = revision + 1 WHERE id = 1 RETURNING revision").
		Scan(ctx, &rev); err != nil {
		return 0, fmt.Errorf("bump policy revision: %w", err)
	}
	return rev, nil
}

func readRevision(ctx context.Context, db bun.IDB) (int64, error) {
	var rev int64
	if err := db.NewRaw("SELECT revision FROM policy_revision WHERE id = 1").Scan(ctx, &rev); err != nil {
		return 0, fmt.Errorf("read policy revision: %w", err)
	}
	return rev, nil
}

// writeLog records what revision rev did, prunes old entries now and then,
// and on PostgreSQL queues the NOTIFY that the commit will deliver.
func writeLog(ctx context.Context, tx bun.IDB, rev int64, remove, add [][]string, reset bool) error {
	var entries []logEntry
	switch {
	case reset:
		entries = []logEntry{{op: opReset}}
	case len(remove)+len(add) == 0:
		entries = []logEntry{{op: opNoop}}
	default:
		for _, l := range remove {
			entries = append(entries, logEntry{op: opRemove, line: l})
		}
		for _, l := range add {
			entries = append(entries, logEntry{op: opAdd, line: l})
		}
	}
	for start := 0; start < len(entries); start += logChunk {
		end := min(start+logChunk, len(entries))
		var sb strings.Builder
		var args []any
		for i, e := range entries[start:end] {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?)")
			var row [7]string
			copy(row[:], e.line)
			args = append(args, rev, e.op)
			for _, v := range row {
				args = append(args, v)
			}
		}
		if _, err := tx.NewRaw("INSERT INTO policy_log (revision, op, ptype, v0, v1, v2, v3, v4, v5) VALUES "+
			sb.String(), args...).Exec(ctx); err != nil {
			return fmt.Errorf("write policy log: %w", err)
		}
	}
	if rev%100 == 0 {
		if _, err := tx.NewRaw("DELETE FROM policy_log WHERE revision <= ?", rev-logKeep).Exec(ctx); err != nil {
			return fmt.Errorf("prune policy log: %w", err)
		}
	}
	if isPG(tx) {
		if _, err := tx.NewRaw("SELECT pg_notify(?, ?)", notifyChannel, strconv.FormatInt(rev, 10)).Exec(ctx); err != nil {
			return fmt.Errorf("notify policy change: %w", err)
		}
	}
	return nil
}

// snapshotTx begins a read-only transaction that sees one consistent state
// of the database: REPEATABLE READ on PostgreSQL, a deferred (WAL
// snapshot) transaction on SQLite.
func snapshotTx(ctx context.Context, db *bun.DB) (bun.Tx, error) {
	opts := &sql.TxOptions{ReadOnly: true}
	if isPG(db) {
		opts.Isolation = sql.LevelRepeatableRead
	}
	return db.BeginTx(ctx, opts)
}

// readLog returns the current revision and the log entries after since,
// from one snapshot. complete is false when the entries do not cover every
// revision from since+1 to rev (the log was pruned) or one of them is a
// reset: the caller must reload everything.
func readLog(ctx context.Context, db *bun.DB, since int64) (rev int64, entries []logEntry, complete bool, err error) {
	tx, err := snapshotTx(ctx, db)
	if err != nil {
		return 0, nil, false, fmt.Errorf("read policy log: %w", err)
	}
	defer tx.Rollback()
	if rev, err = readRevision(ctx, tx); err != nil {
		return 0, nil, false, err
	}
	rows, err := tx.QueryContext(ctx, "SELECT revision, op, ptype, v0, v1, v2, v3, v4, v5 FROM policy_log "+
		"WHERE revision > ? AND revision <= ? ORDER BY revision, id", since, rev)
	if err != nil {
		return 0, nil, false, fmt.Errorf("read policy log: %w", err)
	}
	defer rows.Close()
	next := since + 1
	complete = true
	for rows.Next() {
		var e logEntry
		var f [7]string
		if err := rows.Scan(&e.rev, &e.op, &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6]); err != nil {
			return 0, nil, false, fmt.Errorf("read policy log: %w", err)
		}
		switch {
		case e.rev == next:
			next++
		case e.rev != next-1:
			complete = false
		}
		if e.op == opReset {
			complete = false
		}
		n := len(f)
		for n > 1 && f[n-1] == "" {
			n--
		}
		e.line = append([]string(nil), f[:n]...)
		entries = append(entries, e)
	}
	if err := rows.Err(); err != nil {
		return 0, nil, false, fmt.Errorf("read policy log: %w", err)
	}
	if next != rev+1 {
		complete = false
	}
	return rev, entries, complete, nil
}
