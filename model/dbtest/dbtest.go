// Package dbtest gives tests real databases: a fresh SQLite file in the
// test's temp folder, and a fresh database in a throwaway PostgreSQL cluster
// that the package starts from the installed server binaries
// (/usr/lib/postgresql/*/bin), or in the server DATABASE_URL names.
//
// A test package that uses PostgreSQL calls Main from its TestMain, so the
// cluster is stopped and its folder removed when the tests end; the server
// also gets SIGKILL from the kernel if the test binary dies first, so no
// process is left behind even after a panic.
package dbtest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/migrations"
	"github.com/filegate/filegate/model"
)

// Kind names a database engine under test.
type Kind string

// The engines every store and policy test runs on.
const (
	SQLite   Kind = "sqlite"
	Postgres Kind = "postgres"
)

// Kinds lists the engines in the order tests run them.
var Kinds = []Kind{SQLite, Postgres}

var dbCounter atomic.Int64

// Main runs the tests and then stops the shared PostgreSQL cluster, if one
// was started. Call it from TestMain: os.Exit(dbtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	shared.stop()
	return code
}

// URL returns the URL of a new, empty database of the given kind that lives
// until the test ends. PostgreSQL that cannot be started fails the test
// under CI=true and skips it otherwise, saying why.
func URL(t testing.TB, kind Kind) string {
	t.Helper()
	switch kind {
	case SQLite:
		return "sqlite://" + t.TempDir() + "/filegate.db"
	case Postgres:
		return postgresURL(t)
	}
	t.Fatalf("dbtest: unknown kind %q", kind)
	return ""
}

// Open opens a new, migrated database of the given kind that is closed when
// the test ends.
func Open(t testing.TB, kind Kind) *bun.DB {
	t.Helper()
	ctx := context.Background()
	db, err := model.OpenDB(ctx, model.DBOptions{URL: URL(t, kind)})
	if err != nil {
		t.Fatalf("dbtest: open %s: %v", kind, err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := migrations.Up(ctx, db); err != nil {
		t.Fatalf("dbtest: migrate %s: %v", kind, err)
	}
	return db
}

// Each runs fn as a subtest on a fresh migrated database of every kind.
func Each(t *testing.T, fn func(t *testing.T, db *bun.DB)) {
	t.Helper()
	for _, kind := range Kinds {
		t.Run(string(kind), func(t *testing.T) {
			fn(t, Open(t, kind))
		})
	}
}

func postgresURL(t testing.TB) string {
	t.Helper()
	base, err := shared.adminURL()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("dbtest: PostgreSQL is required under CI: %v", err)
		}
		t.Skipf("dbtest: PostgreSQL not available (run `make test`, which installs it): %v", err)
	}
	name := fmt.Sprintf("fg_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e6, dbCounter.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := model.OpenDB(ctx, model.DBOptions{URL: base, MaxConns: 1})
	if err != nil {
		t.Fatalf("dbtest: connect to PostgreSQL: %v", err)
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("dbtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := model.OpenDB(ctx, model.DBOptions{URL: base, MaxConns: 1})
		if err != nil {
			return
		}
		defer admin.Close()
		admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return withDatabase(base, name)
}

// withDatabase replaces the database name in a postgres URL.
func withDatabase(url, name string) string {
	rest, query, _ := strings.Cut(url, "?")
	schemeEnd := strings.Index(rest, "://") + 3
	if slash := strings.Index(rest[schemeEnd:], "/"); slash >= 0 {
		rest = rest[:schemeEnd+slash]
	}
	out := rest + "/" + name
	if query != "" {
		out += "?" + query
	}
	return out
}
