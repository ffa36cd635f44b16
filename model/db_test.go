package model_test

import (
	"context"
	"sync"
	"testing"

	"github.com/filegate/filegate/model"
)

// TestSQLiteCommitsAreDurable checks the settings every pooled SQLite
// connection runs with: WAL, and a WAL sync at every commit (FULL), so an
// acknowledged write survives a power cut and not only a crash of the
// process.
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
		})
	}
	wg.Wait()
}
