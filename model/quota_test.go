package model_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/dbtest"
)

// TestRacingWritersWithinAQuota starts writers of one account at once,
// each adding 300 bytes against a 1,000-byte quota, new files and growing
// replacements of one file alike. PostgreSQL's transactions would all read
// the same sum and all pass; the account's row lock makes them check one
// after the other, so exactly as many fit as the quota holds, every round.
func TestRacingWritersWithinAQuota(t *testing.T) {
	const writers, rounds = 12, 5
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		repo := model.NewRepo(db)
		for round := range rounds {
			u, err := repo.CreateUser(ctx, fmt.Sprintf("q%d", round), "")
			if err != nil {
				t.Fatal(err)
			}
			n := tree(t, repo, fmt.Sprintf("/q%d/", round))
			dir := n[fmt.Sprintf("/q%d", round)]
			quota := model.Cond{Quota: model.Quota{Account: u.ID, Bytes: 1000}}
			errs := race(writers, func(i int) error {
				c := model.Content{BlobKey: fmt.Sprintf("q%d-%d", round, i), Size: 300, SHA256: fmt.Sprintf("%064x", i)}
				_, _, _, err := repo.PutFile(ctx, dir, fmt.Sprintf("f%d", i), c, model.FileMeta{}, u.ID, quota)
				return err
			})
			ok := 0
			for i, err := range errs {
				switch {
				case err == nil:
					ok++
				case !errors.Is(err, model.ErrQuota):
					t.Fatalf("round %d writer %d: %v, want nil or ErrQuota", round, i, err)
				}
			}
			used, err := repo.QuotaUsed(ctx, u.ID)
			if err != nil {
				t.Fatal(err)
			}
			if ok != 3 || used != 900 {
				t.Fatalf("round %d: %d writes passed, %d bytes used; want 3 and 900", round, ok, used)
			}
		}
	})
}

// TestQuotaCountsLiveFilesOfTheirCreator pins down what a quota counts:
// live files the account created, at their current size; not folders,
// not archived files, not files of others it replaced, which count
// against their creators' quotas.
func TestQuotaCountsLiveFilesOfTheirCreator(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		repo := model.NewRepo(db)
		u, err := repo.CreateUser(ctx, "quser", "")
		if err != nil {
			t.Fatal(err)
		}
		n := tree(t, repo, "/d/")
		put := func(name, actor string, size int64, cond model.Cond) (*model.Node, error) {
			c := model.Content{BlobKey: model.NewID(), Size: size, SHA256: fmt.Sprintf("%064x", size)}
			f, _, _, err := repo.PutFile(ctx, n["/d"], name, c, model.FileMeta{}, actor, cond)
			return f, err
		}
		q := model.Cond{Quota: model.Quota{Account: u.ID, Bytes: 100}}
		mine, err := put("mine", u.ID, 60, q)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := put("theirs", "someone", 500, model.Cond{}); err != nil {
			t.Fatal(err)
		}
		if _, err := repo.CreateFolder(ctx, n["/d"], "sub", u.ID); err != nil {
			t.Fatal(err)
		}
		// Growing someone else's file charges them, not u: nothing for a
		// creator without a quota, and within their quota for one with.
		if _, err := put("theirs", u.ID, 900, q); err != nil {
			t.Fatalf("replacing another's file: %v", err)
		}
		v, err := repo.CreateUser(ctx, "vuser", "")
		if err != nil {
			t.Fatal(err)
		}
		if err := repo.SetQuota(ctx, "vuser", 500); err != nil {
			t.Fatal(err)
		}
		if _, err := put("vs", v.ID, 400, model.Cond{}); err != nil {
			t.Fatal(err)
		}
		if _, err := put("vs", u.ID, 501, q); !errors.Is(err, model.ErrQuota) {
			t.Fatalf("growing another's file past their quota: %v, want ErrQuota", err)
		}
		if _, err := put("vs", u.ID, 500, q); err != nil {
			t.Fatalf("growing another's file within their quota: %v", err)
		}
		if _, err := put("mine", u.ID, 101, q); !errors.Is(err, model.ErrQuota) {
			t.Fatalf("growing past the quota: %v, want ErrQuota", err)
		}
		if _, err := put("mine", u.ID, 100, q); err != nil {
			t.Fatalf("growing to the quota: %v", err)
		}
		if used, err := repo.QuotaUsed(ctx, u.ID); err != nil || used != 100 {
			t.Fatalf("used %d, %v; want 100", used, err)
		}
		if _, err := repo.Archive(ctx, mine.ID); err != nil {
			t.Fatal(err)
		}
		if used, err := repo.QuotaUsed(ctx, u.ID); err != nil || used != 0 {
			t.Fatalf("used %d after archiving, %v; want 0", used, err)
		}
		if err := repo.SetQuota(ctx, "quser", -1); !errors.Is(err, model.ErrInvalid) {
			t.Fatalf("negative quota: %v, want ErrInvalid", err)
		}
		if err := repo.SetQuota(ctx, "nobody", 5); !errors.Is(err, model.ErrNotFound) {
			t.Fatalf("unknown user: %v, want ErrNotFound", err)
		}
	})
}

// TestRestoreWithinQuota archives a file, which frees its room, fills the
// room again, and checks that restoring the file (alone, or with the
// folder it was archived with) is refused while it would not fit, and
// works once it does.
func TestRestoreWithinQuota(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		repo := model.NewRepo(db)
		u, err := repo.CreateUser(ctx, "ruser", "")
		if err != nil {
			t.Fatal(err)
		}
		if err := repo.SetQuota(ctx, "ruser", 100); err != nil {
			t.Fatal(err)
		}
		n := tree(t, repo, "/r/", "/r/sub/")
		q := model.Cond{Quota: model.Quota{Account: u.ID, Bytes: 100}}
		put := func(dir *model.Node, name string, size int64) *model.Node {
			t.Helper()
			c := model.Content{BlobKey: model.NewID(), Size: size, SHA256: fmt.Sprintf("%064x", size)}
			f, _, _, err := repo.PutFile(ctx, dir, name, c, model.FileMeta{}, u.ID, q)
			if err != nil {
				t.Fatalf("put %s: %v", name, err)
			}
			return f
		}
		old := put(n["/r"], "old", 80)
		if _, err := repo.Archive(ctx, old.ID); err != nil {
			t.Fatal(err)
		}
		filler := put(n["/r"], "filler", 60)
		if _, err := repo.Restore(ctx, old.ID); !errors.Is(err, model.ErrQuota) {
			t.Fatalf("restore past the quota: %v, want ErrQuota", err)
		}
		if _, err := repo.LiveByPath(ctx, "/r/old"); err == nil {
			t.Fatal("a refused restore brought the file back")
		}
		// A folder brings back what was archived with it.
		if _, err := repo.Archive(ctx, filler.ID); err != nil {
			t.Fatal(err)
		}
		put(n["/r/sub"], "deep", 50)
		if _, err := repo.Archive(ctx, n["/r/sub"].ID); err != nil {
			t.Fatal(err)
		}
		put(n["/r"], "again", 60)
		if _, err := repo.Restore(ctx, n["/r/sub"].ID); !errors.Is(err, model.ErrQuota) {
			t.Fatalf("restoring a folder past the quota: %v, want ErrQuota", err)
		}
		if _, err := repo.Restore(ctx, old.ID); !errors.Is(err, model.ErrQuota) {
			t.Fatalf("restore past the quota: %v, want ErrQuota", err)
		}
		again, err := repo.LiveByPath(ctx, "/r/again")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := repo.Archive(ctx, again.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := repo.Restore(ctx, n["/r/sub"].ID); err != nil {
			t.Fatalf("restoring a folder that fits: %v", err)
		}
		if used, err := repo.QuotaUsed(ctx, u.ID); err != nil || used != 50 {
			t.Fatalf("used %d, %v; want 50", used, err)
		}
	})
}
