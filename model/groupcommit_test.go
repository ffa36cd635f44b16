package model_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/dbtest"
)

// TestGroupCommitIsolatesChanges runs many changes through SQLite's group
// commit while a transaction holds the writer, so that they pile up into
// shared batches: a change that fails leaves nothing behind, a change
// whose request ended before its turn is skipped, and every other change
// is committed.
func TestGroupCommitIsolatesChanges(t *testing.T) {
	ctx := context.Background()
	db := dbtest.Open(t, dbtest.SQLite)
	r := model.NewRepo(db)
	if _, err := db.ExecContext(ctx, "CREATE TABLE scratch (k TEXT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	hold, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hold.ExecContext(ctx, "INSERT INTO scratch (k) VALUES ('held')"); err != nil {
		t.Fatal(err)
	}
	// One change goes first and alone: it starts a batch that blocks on
	// the held writer, so that every later change must queue behind it.
	first := make(chan error, 1)
	go func() {
		first <- r.RunGrouped(ctx, func(ctx context.Context, tx bun.Tx) error {
			_, err := tx.ExecContext(ctx, "INSERT INTO scratch (k) VALUES ('first')")
			return err
		})
	}()
	for b, _ := r.GroupPending(); b != 1; b, _ = r.GroupPending() {
		runtime.Gosched()
	}
	const changes = 40
	errFailed := errors.New("change failed after writing")
	ended, cancel := context.WithCancel(ctx)
	cancel()
	results := make([]error, changes)
	var wg sync.WaitGroup
	for i := range changes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := ctx
			if i%10 == 7 {
				c = ended
			}
			results[i] = r.RunGrouped(c, func(ctx context.Context, tx bun.Tx) error {
				if _, err := tx.ExecContext(ctx, "INSERT INTO scratch (k) VALUES (?)", fmt.Sprint(i)); err != nil {
					return err
				}
				if i%3 == 0 {
					return errFailed
				}
				if i%10 == 5 {
					// A second row with a taken key: the statement fails,
					// and the change's first row must go with it.
					_, err := tx.ExecContext(ctx, "INSERT INTO scratch (k) VALUES ('held')")
					return err
				}
				return nil
			})
		}()
	}
	// Let the changes queue up behind the blocked first batch, then free
	// the writer.
	for _, q := r.GroupPending(); q < changes; _, q = r.GroupPending() {
		runtime.Gosched()
	}
	if err := hold.Commit(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatalf("the first change: %v", err)
	}
	var kept []string
	if err := db.NewRaw("SELECT k FROM scratch WHERE k NOT IN ('held', 'first') ORDER BY k").Scan(ctx, &kept); err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	for _, k := range kept {
		stored[k] = true
	}
	for i := range changes {
		err, k := results[i], fmt.Sprint(i)
		switch {
		case i%10 == 7:
			if !errors.Is(err, context.Canceled) || stored[k] {
				t.Errorf("change %d with an ended request: %v, stored %v; want skipped", i, err, stored[k])
			}
		case i%3 == 0:
			if !errors.Is(err, errFailed) || stored[k] {
				t.Errorf("failing change %d: %v, stored %v; want its error and nothing stored", i, err, stored[k])
			}
		case i%10 == 5:
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), "unique") || stored[k] {
				t.Errorf("change %d with a duplicate key: %v, stored %v; want the violation and nothing stored", i, err, stored[k])
			}
		default:
			if err != nil || !stored[k] {
				t.Errorf("change %d: %v, stored %v; want it committed", i, err, stored[k])
			}
		}
	}
	if n := r.GroupCommits(); n != 2 {
		t.Fatalf("%d transactions for %d changes, want 2: the first change's, and one for all that queued behind it", n, changes)
	}
}
