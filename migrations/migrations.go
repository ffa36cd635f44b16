// Package migrations holds filegate's schema as timestamped SQL files, one
// step per file, embedded in the binary so that no migration is ever read
// from the source folder at run time.
//
// The files are text/template documents rendered with Dialect, so one file
// serves SQLite and PostgreSQL: {{.Timestamp}} is the column type for
// instants, {{.Key}} the type for indexed text that must sort byte-wise
// (paths), and {{if .PG}} guards PostgreSQL-only statements.
package migrations

import (
	"context"
	"embed"
	"fmt"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

//go:embed *.sql
var sqlFiles embed.FS

// Dialect is the template data every migration file is rendered with.
type Dialect struct {
	PG        bool
	Timestamp string
	Key       string
}

func dialectOf(db *bun.DB) Dialect {
	if db.Dialect().Name().String() == "pg" {
		return Dialect{PG: true, Timestamp: "TIMESTAMPTZ", Key: `TEXT COLLATE "C"`}
	}
	return Dialect{Timestamp: "TIMESTAMP", Key: "TEXT"}
}

// New returns the embedded migrations. It fails only if an embedded file
// name is malformed, which a test catches.
func New() (*migrate.Migrations, error) {
	ms := migrate.NewMigrations()
	if err := ms.Discover(sqlFiles); err != nil {
		return nil, fmt.Errorf("discover migrations: %w", err)
	}
	return ms, nil
}

// Up applies every pending migration and returns the names it applied. On
// PostgreSQL it holds an advisory lock while doing so, so that several
// instances starting together migrate once and the others wait; a crashed
// holder's lock goes with its session.
func Up(ctx context.Context, db *bun.DB) ([]string, error) {
	ms, err := New()
	if err != nil {
		return nil, err
	}
	d := dialectOf(db)
	m := migrate.NewMigrator(db, ms, migrate.WithTemplateData(d), migrate.WithMarkAppliedOnSuccess(true))
	if d.PG {
		conn, err := db.Conn(ctx)
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		const lockKey = 0x66696c6567617465 // "filegate"
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock(?)", lockKey); err != nil {
			return nil, fmt.Errorf("migration lock: %w", err)
		}
		defer func() {
			unlockCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			conn.ExecContext(unlockCtx, "SELECT pg_advisory_unlock(?)", lockKey)
		}()
	}
	if err := m.Init(ctx); err != nil {
		return nil, fmt.Errorf("init migrations: %w", err)
	}
	group, err := m.Migrate(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	var names []string
	for _, mig := range group.Migrations {
		names = append(names, mig.String())
	}
	return names, nil
}
