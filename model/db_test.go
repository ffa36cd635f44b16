package model_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/filegate/filegate/model"
)

// TestSQLiteCommitsAreDurable checks the settings every pooled SQLite
// connection runs with: WAL, and a WAL sync at every commit (FULL), so an
// acknowledged write survives a power cut and not only a crash of the
// process; and journals of savepoints in memory.
func TestSQLiteCommitsAreDurable(t *testing.T) {
	ctx := context.Background()
	db, err := model.OpenDB(ctx, model.DBOptions{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Hold several connections at once so the pool opens more than one.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			conn, err := db.Conn(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			var mode string
			var sync int
			if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
				t.Error(err)
				return
			}
			if err := conn.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
				t.Error(err)
				return
			}
			if mode != "wal" || sync != 2 {
				t.Errorf("journal_mode %q synchronous %d, want wal and 2 (FULL)", mode, sync)
			}
			// Savepoint journals stay in memory (see openSQLite).
			var temp int
			if err := conn.QueryRowContext(ctx, "PRAGMA temp_store").Scan(&temp); err != nil || temp != 2 {
				t.Errorf("temp_store %d (%v), want 2 (MEMORY)", temp, err)
			}
			// No mmap, which every write elsewhere makes readers unmap
			// (see openSQLite).
			var mmap int64
			if err := conn.QueryRowContext(ctx, "PRAGMA mmap_size").Scan(&mmap); err != nil || mmap != 0 {
				t.Errorf("mmap_size %d (%v), want 0", mmap, err)
			}
		})
	}
	wg.Wait()
}

// TestSQLiteTransactionsTakeTurns runs many writers at once on SQLite:
// each transaction waits for its turn in the process instead of in
// SQLite's busy handler, every one of them commits, and a writer whose
// context ends while it waits gets the context's error.
func TestSQLiteTransactionsTakeTurns(t *testing.T) {
	ctx := context.Background()
	db, err := model.OpenDB(ctx, model.DBOptions{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE TABLE counter (n INTEGER NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 20 {
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := tx.ExecContext(ctx, "INSERT INTO counter (n) VALUES (1)"); err != nil {
					t.Error(err)
					tx.Rollback()
					return
				}
				if err := tx.Commit(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM counter").Scan(&n); err != nil || n != 320 {
		t.Fatalf("rows %d (%v), want 320", n, err)
	}

	held, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if tx, err := db.BeginTx(waitCtx, nil); !errors.Is(err, context.DeadlineExceeded) {
		if err == nil {
			tx.Rollback()
		}
		t.Fatalf("second transaction while one is open: %v, want the context's deadline", err)
	}
	if err := held.Rollback(); err != nil {
		t.Fatal(err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatalf("after the first ended: %v", err)
	}
	tx.Rollback()
}
