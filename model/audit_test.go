package model_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/dbtest"
)

func TestAuditChain(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		log := model.NewAuditLog(db)

		rep, err := log.Verify(ctx)
		if err != nil || !rep.OK || rep.Rows != 0 || rep.HeadHash != model.GenesisHash {
			t.Fatalf("empty chain: %+v, %v", rep, err)
		}

		// Concurrent appends from many goroutines form one gapless chain.
		const writers, each = 8, 25
		var wg sync.WaitGroup
		errs := make(chan error, writers*each)
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					errs <- log.Append(ctx, model.AuditEntry{Door: "api", Subject: fmt.Sprintf("user:w%d", w),
						Action: "read", Object: "root/x", NodeID: "x", Decision: model.AuditAllow,
						Rule: "p, level:read, *, (stat|read)", Remote: "127.0.0.1:1", RequestID: fmt.Sprintf("r%d-%d", w, i)})
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
		rep, err = log.Verify(ctx)
		if err != nil || !rep.OK || rep.Rows != writers*each || rep.HeadSeq != writers*each {
			t.Fatalf("after appends: %+v, %v", rep, err)
		}

		if err := log.Append(ctx, model.AuditEntry{Subject: "user:a", Action: "read", Object: "*", Decision: "maybe"}); err == nil {
			t.Fatal("an entry with a bad decision was appended")
		}

		rows, err := log.Query(ctx, model.AuditFilter{Subject: "user:w3", Limit: 10})
		if err != nil || len(rows) != 10 {
			t.Fatalf("query: %d rows, %v", len(rows), err)
		}
		for i, r := range rows {
			if r.Subject != "user:w3" || (i > 0 && r.Seq >= rows[i-1].Seq) {
				t.Fatalf("query row %d: %+v", i, r)
			}
		}
		older, err := log.Query(ctx, model.AuditFilter{Subject: "user:w3", Before: rows[9].Seq, Limit: 100})
		if err != nil || len(older) != each-10 {
			t.Fatalf("older page: %d rows, %v", len(older), err)
		}

		// The database refuses to change audit rows.
		if _, err := db.ExecContext(ctx, "UPDATE audit SET decision = 'deny' WHERE seq = 5"); err == nil {
			t.Fatal("UPDATE of an audit row succeeded")
		}
		if _, err := db.ExecContext(ctx, "DELETE FROM audit WHERE seq = 5"); err == nil {
			t.Fatal("DELETE of an audit row succeeded")
		}

		// Someone with the database's owner rights drops the guard and
		// edits a row: verify names the row.
		dropGuards(t, db)
		if _, err := db.ExecContext(ctx, "UPDATE audit SET decision = 'deny' WHERE seq = 57"); err != nil {
			t.Fatal(err)
		}
		rep, err = log.Verify(ctx)
		if err != nil || rep.OK || rep.BadSeq != 57 || !strings.Contains(rep.Problem, "hash") {
			t.Fatalf("edited row: %+v, %v", rep, err)
		}
	})
}

// dropGuards removes the append-only triggers, as an attacker with owner
// rights could.
func dropGuards(t *testing.T, db *bun.DB) {
	t.Helper()
	stmts := []string{"DROP TRIGGER audit_no_update", "DROP TRIGGER audit_no_delete"}
	if model.IsPostgres(db) {
		stmts = []string{"DROP TRIGGER audit_no_change ON audit", "DROP TRIGGER audit_no_truncate ON audit"}
	}
	for _, s := range stmts {
		if _, err := db.ExecContext(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAuditVerifyCatchesRewrites(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		log := model.NewAuditLog(db)
		for i := 0; i < 5; i++ {
			if err := log.Append(ctx, model.AuditEntry{Subject: "user:a", Action: "stat", Object: "*", Decision: model.AuditDeny}); err != nil {
				t.Fatal(err)
			}
		}
		dropGuards(t, db)

		// A row edited together with its own hash breaks the next link.
		var e model.AuditEntry
		if err := db.NewSelect().Model(&e).Where("seq = 2").Scan(ctx); err != nil {
			t.Fatal(err)
		}
		e.Subject = "user:b"
		e.Hash = e.ComputeHash(e.PrevHash)
		if _, err := db.NewUpdate().Model(&e).WherePK().Exec(ctx); err != nil {
			t.Fatal(err)
		}
		rep, _ := log.Verify(ctx)
		if rep.OK || rep.BadSeq != 3 {
			t.Fatalf("rehashed row: %+v", rep)
		}

		// A removed row is a gap.
		if _, err := db.ExecContext(ctx, "DELETE FROM audit WHERE seq = 1"); err != nil {
			t.Fatal(err)
		}
		rep, _ = log.Verify(ctx)
		if rep.OK || rep.BadSeq != 1 || !strings.Contains(rep.Problem, "missing") {
			t.Fatalf("deleted row: %+v", rep)
		}
	})
}

func TestAuditTailTruncation(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		log := model.NewAuditLog(db)
		for i := 0; i < 3; i++ {
			if err := log.Append(ctx, model.AuditEntry{Subject: "user:a", Action: "stat", Object: "*", Decision: model.AuditAllow}); err != nil {
				t.Fatal(err)
			}
		}
		dropGuards(t, db)
		if _, err := db.ExecContext(ctx, "DELETE FROM audit WHERE seq = 3"); err != nil {
			t.Fatal(err)
		}
		rep, _ := log.Verify(ctx)
		if rep.OK || !strings.Contains(rep.Problem, "head") {
			t.Fatalf("truncated tail: %+v", rep)
		}
	})
}

// BenchmarkAuditAppend measures appends to the hash chain, one caller at
// a time and many at once (where group commit shares transactions).
func BenchmarkAuditAppend(b *testing.B) {
	for _, kind := range dbtest.Kinds {
		db := dbtest.Open(b, kind)
		log := model.NewAuditLog(db)
		e := model.AuditEntry{Door: "api", Subject: "user:bench", Action: "read", Object: "root/x", NodeID: "x",
			Decision: model.AuditAllow, Rule: "p, level:read, *, (stat|read)", Remote: "127.0.0.1:1", RequestID: "r"}
		b.Run(string(kind)+"/serial", func(b *testing.B) {
			for b.Loop() {
				if err := log.Append(context.Background(), e); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(string(kind)+"/parallel", func(b *testing.B) {
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := log.Append(context.Background(), e); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// TestAuditChainAcrossInstances appends through three AuditLogs on one
// database, as three filegate instances do: each assumes the head its own
// last append left, and must notice when another instance moved it. The
// result is still one gapless chain holding every acknowledged entry
// exactly once.
func TestAuditChainAcrossInstances(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		logs := []*model.AuditLog{model.NewAuditLog(db), model.NewAuditLog(db), model.NewAuditLog(db)}
		const writers, each = 6, 30
		var wg sync.WaitGroup
		var acked atomic.Int64
		errs := make(chan error, writers*each)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					// Alternate instances so that heads go stale both
					// between batches and in the middle of them.
					log := logs[(w+i)%len(logs)]
					id := fmt.Sprintf("r%d-%d", w, i)
					e := []model.AuditEntry{{Door: "dav", Subject: fmt.Sprintf("user:w%d", w), Action: "write",
						Object: "root/x", Decision: model.AuditAllow, RequestID: id}}
					wait := log.AppendAsync(ctx, e...)
					if err := wait(); err != nil {
						errs <- err
						return
					}
					acked.Add(1)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		rep, err := logs[0].Verify(ctx)
		if err != nil || !rep.OK || rep.Rows != writers*each || rep.HeadSeq != writers*each {
			t.Fatalf("chain after appends from three instances: %+v, %v", rep, err)
		}
		var distinct int
		if err := db.NewRaw("SELECT COUNT(DISTINCT request_id) FROM audit").Scan(ctx, &distinct); err != nil {
			t.Fatal(err)
		}
		if distinct != writers*each || acked.Load() != writers*each {
			t.Fatalf("%d distinct entries stored, %d acknowledged; want %d of each", distinct, acked.Load(), writers*each)
		}
	})
}

// TestAuditTakesHostileText appends a row whose object holds a NUL byte
// and invalid UTF-8, as a request path decoded from %00%ff does. PostgreSQL
// refuses both in text, and a row that cannot be written refuses its
// request, so the row is stored with U+FFFD in their place and the chain
// still verifies.
func TestAuditTakesHostileText(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		log := model.NewAuditLog(db)
		err := log.Append(ctx, model.AuditEntry{Door: "admin", Subject: "user:admin\x00", Action: "admin",
			Object: "GET /api/v1/users/\x00\xff", Decision: model.AuditAllow})
		if err != nil {
			t.Fatalf("append: %v", err)
		}
		rows, err := log.Query(ctx, model.AuditFilter{})
		if err != nil || len(rows) != 1 {
			t.Fatalf("query: %d rows, %v", len(rows), err)
		}
		if got, want := rows[0].Object, "GET /api/v1/users/\uFFFD\uFFFD"; got != want {
			t.Fatalf("object %q, want %q", got, want)
		}
		if rep, err := log.Verify(ctx); err != nil || !rep.OK {
			t.Fatalf("verify: %+v, %v", rep, err)
		}
	})
}
