package davfs

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/dbtest"
)

// TestWriteLookupAgreesWithBun checks the prepared lookup every write makes
// on PostgreSQL against the same question built by Bun: the same nodes and
// the same verdict on locks, with locks on the target, on a folder above
// it (shallow and infinite), beside it, and expired.
func TestWriteLookupAgreesWithBun(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		repo := model.NewRepo(db)
		root, err := repo.LiveByPath(ctx, "/")
		if err != nil {
			t.Fatal(err)
		}
		ward, err := repo.CreateFolder(ctx, root, "ward", "")
		if err != nil {
			t.Fatal(err)
		}
		c := model.Content{BlobKey: "k", Size: 1, SHA256: strings.Repeat("a", 64)}
		// The second name has what an array literal must quote or escape
		// (backslashes are refused in names).
		odd := `q "x" y,{z} NULL.txt`
		for _, name := range []string{"ecg.xml", odd} {
			if _, _, _, err := repo.PutFile(ctx, ward, name, c, model.FileMeta{}, "", model.Cond{}); err != nil {
				t.Fatal(err)
			}
		}
		now := time.Now()
		locks := &LockSystem{db: db, now: func() time.Time { return now }}
		f := &FS{db: db, locks: locks, hot: &hotLookup{db: db}}

		steps := []struct {
			name string
			lock *Lock // taken before the lookups, nil for none
			age  time.Duration
		}{
			{name: "no locks"},
			{name: "lock beside", lock: &Lock{Root: "/other"}},
			{name: "expired lock on the target", lock: &Lock{Root: "/ward/ecg.xml", Timeout: time.Minute}, age: 2 * time.Minute},
			{name: "shallow lock on the folder", lock: &Lock{Root: "/ward"}},
			{name: "infinite lock on the root", lock: &Lock{Root: "/", Infinite: true}},
		}
		for _, s := range steps {
			if s.lock != nil {
				s.lock.Subject, s.lock.Shared = "user:a", true
				if s.lock.Timeout == 0 {
					s.lock.Timeout = time.Hour
				}
				if _, err := locks.Acquire(ctx, *s.lock); err != nil {
					t.Fatalf("%s: %v", s.name, err)
				}
			}
			now = now.Add(s.age)
			for _, paths := range [][]string{{"/ward/ecg.xml", "/ward"}, {"/ward/new.txt", "/ward"}, {"/ward/" + odd, "/ward"}, {"/gone/x", "/gone"}} {
				nodes, noLocks, err := f.lookup(ctx, paths, nil, true)
				if err != nil {
					t.Fatalf("%s %v: %v", s.name, paths, err)
				}
				rows, err := f.lookupQuery(ctx, paths, nil, true)
				if err != nil {
					t.Fatal(err)
				}
				want, wantNoLocks := map[string]*model.Node{}, len(rows) > 0
				for i := range rows {
					want[rows[i].Path] = &rows[i].Node
					wantNoLocks = wantNoLocks && rows[i].LockCount == 0
				}
				if !reflect.DeepEqual(nodes, want) || noLocks != wantNoLocks {
					t.Fatalf("%s %v: lookup gives %d nodes, noLocks %v; Bun's query %d nodes, noLocks %v",
						s.name, paths, len(nodes), noLocks, len(want), wantNoLocks)
				}
			}
		}
		// The verdicts themselves, so that agreeing on nothing fails too.
		if _, noLocks, _ := f.lookup(ctx, []string{"/ward/ecg.xml", "/ward"}, nil, true); noLocks {
			t.Fatal("locks on the folder and the root went unseen")
		}
		if nodes, _, err := f.lookup(ctx, []string{"/ward/" + odd, "/ward"}, nil, true); err != nil || len(nodes) != 2 {
			t.Fatalf("lookup of %q: %d nodes, %v; want the file and its folder", odd, len(nodes), err)
		}
		if prepared := f.hot.statement(ctx) != nil; prepared != model.IsPostgres(db) {
			t.Fatalf("prepared = %v on %s", prepared, db.Dialect().Name())
		}
	})
}
