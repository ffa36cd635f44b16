package model

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/pgdriver"
	"github.com/uptrace/bun/driver/sqliteshim"
)

// DBOptions says which database to open.
type DBOptions struct {
	// URL is a postgres:// or postgresql:// URL, or sqlite:///path/file.db.
	// Empty means SQLite in DataDir.
	URL string
	// DataDir holds the default SQLite file, filegate.db.
	DataDir string
	// MaxConns caps the PostgreSQL pool; zero means DefaultMaxConns.
	MaxConns int
}

// DefaultMaxConns is the PostgreSQL pool size when DBOptions.MaxConns is
// zero: 4 per CPU the Go runtime may use, and at least 16, so that one
// request holding a transaction never starves the few queries others
// make outside it.
func DefaultMaxConns() int { return max(16, 4*runtime.GOMAXPROCS(0)) }

// OpenDB opens the metadata database and checks that it answers. SQLite
// runs in WAL mode with a busy timeout and immediate write transactions, so
// that concurrent writers queue instead of failing with SQLITE_BUSY. It
// returns ErrInvalid for an unknown URL scheme and ErrUnavailable when the
// database cannot be reached.
func OpenDB(ctx context.Context, o DBOptions) (*bun.DB, error) {
	switch {
	case strings.HasPrefix(o.URL, "postgres://"), strings.HasPrefix(o.URL, "postgresql://"):
		return openPostgres(ctx, o)
	case o.URL == "" || strings.HasPrefix(o.URL, "sqlite://"):
		return openSQLite(ctx, o)
	default:
		return nil, fmt.Errorf("%w: database URL must start with postgres:// or sqlite://", ErrInvalid)
	}
}

func openPostgres(ctx context.Context, o DBOptions) (*bun.DB, error) {
	connector := pgdriver.NewConnector(pgdriver.WithDSN(o.URL),
		pgdriver.WithTimeout(5*time.Second),
		pgdriver.WithDialTimeout(3*time.Second),
		genericPlans)
	sqldb := sql.OpenDB(connector)
	maxConns := o.MaxConns
	if maxConns <= 0 {
		maxConns = DefaultMaxConns()
	}
	sqldb.SetMaxOpenConns(maxConns)
	sqldb.SetMaxIdleConns(maxConns)
	sqldb.SetConnMaxIdleTime(5 * time.Minute)
	db := bun.NewDB(sqldb, pgdialect.New())
	if err := pingDB(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// genericPlans has every connection keep one plan per prepared statement
// (plan_cache_mode force_generic_plan) unless the database URL sets the
// mode. Only filegate's prepared statements (hotStatements, davfs's
// lookup) take parameters on the server, all of them index probes whose
// generic plan is the custom one. Left to choose, PostgreSQL planned the
// WebDAV write lookup afresh on every call, its array parameters making
// the generic plan look dearer: 0.31 ms of planning against 0.05 ms of
// execution per 4 KiB PUT (pg_stat_statements with track_planning).
func genericPlans(c *pgdriver.Config) {
	if _, set := c.ConnParams["plan_cache_mode"]; set {
		return
	}
	params := make(map[string]any, len(c.ConnParams)+1)
	for k, v := range c.ConnParams {
		params[k] = v
	}
	params["plan_cache_mode"] = "force_generic_plan"
	c.ConnParams = params
}

func openSQLite(ctx context.Context, o DBOptions) (*bun.DB, error) {
	path := filepath.Join(o.DataDir, "filegate.db")
	if o.URL != "" {
		u, err := url.Parse(o.URL)
		if err != nil {
			return nil, fmt.Errorf("%w: database URL: %v", ErrInvalid, err)
		}
		path = u.Path
		if u.Host != "" { // sqlite://relative/path.db
			path = filepath.Join(u.Host, u.Path)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create database folder: %w", err)
	}
	// No mmap: SQLite unmaps the whole file from every connection whose
	// read transaction finds that another connection wrote meanwhile (a
	// pager reset), and with an audit row per request that is nearly every
	// read. On 4 KiB GETs munmap alone was 8% of filegate's CPU (pprof);
	// without mmap GETs went from a median of 1,339 to 1,748/s over seven
	// alternating pairs (all seven better), PUTs stayed level, and 20,000-
	// file PROPFINDs (served from the listing cache) did not slow down.
	// synchronous(FULL) syncs the WAL at every
	// commit: with NORMAL a commit survives a crash of the process but not
	// of the machine, and an upload acknowledged before a power cut would
	// lose its row (and the sweep then its bytes). temp_store(MEMORY) keeps
	// statement and savepoint journals in memory: the group commit gives
	// every change a savepoint, and SQLite spilled those journals to temp
	// files past 64 KiB, a write syscall per page inside the one writer's
	// turn (4 KiB GETs, whose audit rows are group-committed, went from
	// 890-1040 to 1100-1270/s, PUTs 360-390 to 380-410/s). The queries
	// that sort have indexes in their order, so no large sort lands in RAM.
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)" +
		"&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)" +
		"&_pragma=temp_store(MEMORY)&_txlock=immediate"
	shim, err := sql.Open(sqliteshim.ShimName, "")
	if err != nil {
		return nil, err
	}
	drv := shim.Driver()
	shim.Close()
	// Transactions take turns in Go rather than in SQLite's busy handler
	// (see writerQueue).
	sqldb := sql.OpenDB(&queuedConnector{drv: drv, dsn: dsn, q: newWriterQueue()})
	// WAL allows many readers and one writer; immediate transactions make
	// writers queue on the busy timeout instead of deadlocking on upgrade.
	sqldb.SetMaxOpenConns(8)
	sqldb.SetMaxIdleConns(8)
	db := bun.NewDB(sqldb, sqlitedialect.New())
	if err := pingDB(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func pingDB(ctx context.Context, db *bun.DB) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("%w: database: %v", ErrUnavailable, err)
	}
	return nil
}

// IsPostgres reports whether db talks to PostgreSQL rather than SQLite.
func IsPostgres(db bun.IDB) bool {
	return db.Dialect().Name().String() == "pg"
}

// isLockConflict reports whether err is PostgreSQL ending a transaction
// to break a deadlock (40P01) or a serialization failure (40001): the
// transaction did nothing and may run again.
func isLockConflict(err error) bool {
	var pgErr pgdriver.Error
	if errors.As(err, &pgErr) {
		c := pgErr.Field('C')
		return c == "40P01" || c == "40001"
	}
	return false
}

// isUniqueViolation reports whether err is a unique-constraint failure on
// either database, so callers can turn it into ErrExists.
func isUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	var pgErr pgdriver.Error
	if errors.As(err, &pgErr) {
		return pgErr.Field('C') == "23505"
	}
	msg := err.Error()
	return strings.Contains(msg, "UNIQUE constraint failed") || strings.Contains(msg, "constraint failed: UNIQUE")
}
