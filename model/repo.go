package model

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/driver/pgdriver"
)

// Repo is the metadata repository: every read and write of nodes and
// accounts goes through it. Methods take a context, run multi-statement
// changes inside one transaction, and return the package's sentinel errors.
type Repo struct {
	db  *bun.DB
	now func() time.Time
	hot *hotStatements
	// stats keeps the planner's view of nodes current (PostgreSQL only).
	stats *plannerStats
	// group batches short writes (files, folders) into shared
	// transactions (SQLite only); see writeTx.
	group *groupCommit
}

// NewRepo returns a repository over a migrated database.
func NewRepo(db *bun.DB) *Repo {
	r := &Repo{db: db, now: func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }, hot: &hotStatements{db: db}, stats: newPlannerStats(db)}
	if !IsPostgres(db) {
		r.group = &groupCommit{db: db}
	}
	return r
}

// DB returns the underlying database, for packages (policy, tus, davfs)
// that keep their own tables in it.
func (r *Repo) DB() *bun.DB { return r.db }

// Ping checks that the database answers. It returns ErrUnavailable.
func (r *Repo) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := r.db.PingContext(ctx); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	var one int
	if err := r.db.NewRaw("SELECT 1").Scan(ctx, &one); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// InTx runs fn in one transaction, committing if it returns nil.
func (r *Repo) InTx(ctx context.Context, fn func(ctx context.Context, tx bun.Tx) error) error {
	return dbErr(r.db.RunInTx(ctx, nil, fn))
}

// writeTx is InTx for the short writes requests make (a file, a folder):
// on SQLite it joins the group commit, so that concurrent writes share one
// transaction and one WAL fsync, each in its own savepoint.
func (r *Repo) writeTx(ctx context.Context, fn func(ctx context.Context, tx bun.Tx) error) error {
	if r.group == nil {
		return r.InTx(ctx, fn)
	}
	return dbErr(r.group.run(ctx, fn))
}

// dbErr maps driver errors to sentinels: no rows to ErrNotFound, unique
// violations to ErrExists, and lost connections to ErrUnavailable, so that
// callers (and the gateway's status table) never see driver types.
func dbErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrExists), errors.Is(err, ErrConflict),
		errors.Is(err, ErrInvalid), errors.Is(err, ErrNotEmpty), errors.Is(err, ErrPrecondition),
		errors.Is(err, ErrUnavailable), errors.Is(err, ErrNoSpace), errors.Is(err, ErrTooLarge):
		return err
	case errors.Is(err, sql.ErrNoRows):
		return ErrNotFound
	case isUniqueViolation(err):
		return fmt.Errorf("%w: %v", ErrExists, err)
	case isNoSpace(err):
		return fmt.Errorf("%w: %v", ErrNoSpace, err)
	case isBadText(err):
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	case isUnavailable(err):
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return err
}

// DBErr maps an error from a database query to the package's sentinels:
// ErrNotFound for no rows, ErrExists for a unique violation, ErrNoSpace
// for a full disk, ErrUnavailable for a database that cannot be reached;
// other errors pass unchanged. Packages that query their own tables
// through Repo.DB use it, and so do the doors' error tables, so that no
// driver error becomes a 500 by accident.
func DBErr(err error) error { return dbErr(err) }

// isNoSpace reports whether the database could not write because its
// disk or quota is full: SQLITE_FULL, PostgreSQL's disk_full (53100), or
// ENOSPC/EDQUOT from below.
func isNoSpace(err error) bool {
	var pgErr pgdriver.Error
	if errors.As(err, &pgErr) {
		return pgErr.Field('C') == "53100"
	}
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
		strings.Contains(err.Error(), "database or disk is full")
}

// plainText reports whether s can be a value in a query on both
// databases: valid UTF-8 without NUL (PostgreSQL refuses NUL in text, and
// SQLite statements end at it).
func plainText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// checkText returns ErrInvalid when a value a client gave is not plain
// text, before it reaches a query.
func checkText(values ...string) error {
	for _, v := range values {
		if !plainText(v) {
			return fmt.Errorf("%w: text must be UTF-8 without NUL", ErrInvalid)
		}
	}
	return nil
}

// isBadText reports PostgreSQL's refusal of a text value: NUL or bytes
// that are not UTF-8 (character_not_in_repertoire, untranslatable
// character).
func isBadText(err error) bool {
	var pgErr pgdriver.Error
	if errors.As(err, &pgErr) {
		c := pgErr.Field('C')
		return c == "22021" || c == "22P05"
	}
	return false
}

func isUnavailable(err error) bool {
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, sql.ErrConnDone) {
		return true
	}
	msg := err.Error()
	for _, s := range []string{"connection refused", "broken pipe", "connection reset", "bad connection",
		"the database system is shutting down", "the database system is starting up", "terminating connection",
		"database is locked", "i/o timeout", "no such host"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
