package model_test

import (
	"context"
	"database/sql"
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

// TestAuditJoinsGroupCommit checks that on SQLite the audit log a
// repository makes commits its rows in the same transaction as the writes
// queued beside them, and that the chain stays whole: while a first write
// holds the group, an audit append and three folder creations queue up,
// and all four then commit in one transaction.
func TestAuditJoinsGroupCommit(t *testing.T) {
	ctx := context.Background()
	db := dbtest.Open(t, dbtest.SQLite)
	r := model.NewRepo(db)
	log := r.NewAuditLog()
	root, err := r.LiveByPath(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	hold, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hold.ExecContext(ctx, "UPDATE audit_head SET seq = seq WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	first := make(chan error, 1)
	go func() {
		_, err := r.CreateFolder(ctx, root, "first", "u1")
		first <- err
	}()
	for b, _ := r.GroupPending(); b != 1; b, _ = r.GroupPending() {
		runtime.Gosched()
	}
	wait := log.AppendAsync(ctx, model.AuditEntry{Door: "dav", Subject: "user:u1", Action: "write",
		Object: "/first", Decision: model.AuditAllow})
	errs := make(chan error, 3)
	for i := range 3 {
		go func() {
			_, err := r.CreateFolder(ctx, root, fmt.Sprintf("f%d", i), "u1")
			errs <- err
		}()
	}
	for _, q := r.GroupPending(); q < 4; _, q = r.GroupPending() {
		runtime.Gosched()
	}
	if err := hold.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Fatalf("audit append: %v", err)
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := r.GroupCommits(); n != 2 {
		t.Fatalf("%d transactions, want 2: the first folder's, and one for the audit row and the other folders", n)
	}
	rep, err := log.Verify(ctx)
	if err != nil || !rep.OK || rep.Rows != 1 {
		t.Fatalf("chain after the shared commit: %+v, %v; want one row and a whole chain", rep, err)
	}
}

// TestAuditChainThroughRepo appends from many goroutines, together with
// folder creations, through the audit log a repository makes (on SQLite
// both go through the group commit): the chain is gapless and holds every
// entry once.
func TestAuditChainThroughRepo(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		r := model.NewRepo(db)
		log := r.NewAuditLog()
		root, err := r.LiveByPath(ctx, "/")
		if err != nil {
			t.Fatal(err)
		}
		const writers, each = 8, 20
		var wg sync.WaitGroup
		errs := make(chan error, 2*writers*each)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					_, err := r.CreateFolder(ctx, root, fmt.Sprintf("w%d-%d", w, i), "u1")
					errs <- err
					errs <- log.Append(ctx, model.AuditEntry{Door: "dav", Subject: fmt.Sprintf("user:w%d", w),
						Action: "write", Object: fmt.Sprintf("/w%d-%d", w, i), Decision: model.AuditAllow})
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		rep, err := log.Verify(ctx)
		if err != nil || !rep.OK || rep.Rows != writers*each || rep.HeadSeq != writers*each {
			t.Fatalf("chain: %+v, %v; want %d rows, whole", rep, err, writers*each)
		}
	})
}

// TestGroupCommitKeepsItsConnection checks that batches run on one
// connection of their own: a mark left in the first batch's connection
// (a temporary table) is there for the second batch, and on none of the
// pool's other connections, even with all of them taken in between. A
// batch on whichever connection was free found its page cache dropped
// after other connections' writes and read back the pages it updates.
func TestGroupCommitKeepsItsConnection(t *testing.T) {
	ctx := context.Background()
	db := dbtest.Open(t, dbtest.SQLite)
	r := model.NewRepo(db)
	marked := func(ctx context.Context, q interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}) bool {
		var n int
		if err := q.QueryRowContext(ctx, "SELECT COUNT(*) FROM sqlite_temp_master WHERE name = 'batch_mark'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	if err := r.RunGrouped(ctx, func(ctx context.Context, tx bun.Tx) error {
		_, err := tx.ExecContext(ctx, "CREATE TEMP TABLE batch_mark (x)")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// Every other connection the pool may open (SQLite's pool holds 8).
	for range 7 {
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if marked(ctx, c) {
			t.Fatal("the first batch's connection went back to the pool")
		}
	}
	if err := r.RunGrouped(ctx, func(ctx context.Context, tx bun.Tx) error {
		if !marked(ctx, tx) {
			return errors.New("the second batch ran on another connection")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
