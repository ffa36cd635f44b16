package model_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/dbtest"
)

// race runs n calls of f at once and returns their errors by index.
func race(n int, f func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = f(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

// TestRacingWritersOfOneFile checks what concurrent writers of one file
// get on both databases. PostgreSQL's transactions read rows without
// locking them, so without a check at update time two writers holding the
// same ETag could both pass If-Match, and two replacements could both
// count the same version.
func TestRacingWritersOfOneFile(t *testing.T) {
	const writers = 8
	content := func(i int) model.Content {
		return model.Content{BlobKey: fmt.Sprintf("race-%d", i), Size: int64(i), SHA256: strings.Repeat(fmt.Sprintf("%02x", i), 32)}
	}
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		repo := model.NewRepo(db)
		n := tree(t, repo, "/r/", "/r/put.dcm", "/r/replace.dcm", "/r/cond.dcm", "/r/cond2.dcm")

		t.Run("unconditional PUTs count every version", func(t *testing.T) {
			errs := race(writers, func(i int) error {
				_, _, _, err := repo.PutFile(ctx, n["/r"], "put.dcm", content(i), model.FileMeta{}, "u1", model.Cond{})
				return err
			})
			for i, err := range errs {
				if err != nil {
					t.Fatalf("writer %d: %v", i, err)
				}
			}
			got, err := repo.LiveByPath(ctx, "/r/put.dcm")
			if err != nil {
				t.Fatal(err)
			}
			if got.Version != 1+writers {
				t.Fatalf("version %d after %d replacements of version 1; want %d", got.Version, writers, 1+writers)
			}
		})

		t.Run("unconditional replacements by id count every version", func(t *testing.T) {
			errs := race(writers, func(i int) error {
				_, _, err := repo.ReplaceContent(ctx, n["/r/replace.dcm"].ID, content(i), "", model.Cond{})
				return err
			})
			for i, err := range errs {
				if err != nil {
					t.Fatalf("writer %d: %v", i, err)
				}
			}
			got, err := repo.LiveByPath(ctx, "/r/replace.dcm")
			if err != nil {
				t.Fatal(err)
			}
			if got.Version != 1+writers {
				t.Fatalf("version %d; want %d", got.Version, 1+writers)
			}
		})

		for _, c := range []struct {
			name  string
			path  string
			write func(i int, etag string) error
		}{
			{"PUT with one If-Match: one wins", "/r/cond.dcm", func(i int, etag string) error {
				_, _, _, err := repo.PutFile(ctx, n["/r"], "cond.dcm", content(i), model.FileMeta{}, "u1", model.Cond{IfMatch: etag})
				return err
			}},
			{"replacement with one If-Match: one wins", "/r/cond2.dcm", func(i int, etag string) error {
				_, _, err := repo.ReplaceContent(ctx, n["/r/cond2.dcm"].ID, content(i), "", model.Cond{IfMatch: etag})
				return err
			}},
		} {
			t.Run(c.name, func(t *testing.T) {
				etag := n[c.path].ETag
				errs := race(writers, func(i int) error { return c.write(i, etag) })
				won := -1
				for i, err := range errs {
					switch {
					case err == nil && won >= 0:
						t.Fatalf("writers %d and %d both passed If-Match %s", won, i, etag)
					case err == nil:
						won = i
					case !errors.Is(err, model.ErrPrecondition):
						t.Fatalf("writer %d: %v, want ErrPrecondition", i, err)
					}
				}
				if won < 0 {
					t.Fatal("no writer passed If-Match against the file's own ETag")
				}
				got, err := repo.LiveByPath(ctx, c.path)
				if err != nil {
					t.Fatal(err)
				}
				if got.BlobKey != content(won).BlobKey || got.Version != 2 {
					t.Fatalf("file holds %s at version %d; want the winner's %s at version 2", got.BlobKey, got.Version, content(won).BlobKey)
				}
			})
		}

		t.Run("racing moves of one folder keep its subtree with it", func(t *testing.T) {
			m := tree(t, repo, "/m/", "/m/src/", "/m/src/deep/", "/m/src/deep/f.dcm")
			errs := race(writers, func(i int) error {
				_, _, err := repo.Move(ctx, m["/m/src"], m["/m"], fmt.Sprintf("dst%d", i), false)
				return err
			})
			for i, err := range errs {
				if err != nil {
					t.Fatalf("move %d: %v", i, err)
				}
			}
			dir, err := repo.NodeByID(ctx, m["/m/src"].ID)
			if err != nil {
				t.Fatal(err)
			}
			f, err := repo.NodeByID(ctx, m["/m/src/deep/f.dcm"].ID)
			if err != nil {
				t.Fatal(err)
			}
			if want := dir.Path + "/deep/f.dcm"; f.Path != want {
				t.Fatalf("the folder is at %s but its file at %s; want %s", dir.Path, f.Path, want)
			}
			if dir.Version != 1+writers {
				t.Fatalf("folder version %d after %d moves; want %d", dir.Version, writers, 1+writers)
			}
		})
	})
}

// TestRacingTreeChanges moves a folder, moves a folder inside it, and
// writes new files into the inner one, all at once, round after round.
// Every node stores its path and lineage, so each of these writes derives
// rows from other rows; on PostgreSQL, without locks, a file written while
// its folder moved kept the folder's old path, and a folder moved while
// its parent moved was rewritten from a stale picture. After every round
// each row's path and lineage must follow from its parent's.
func TestRacingTreeChanges(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		repo := model.NewRepo(db)
		m := tree(t, repo, "/n/", "/n/a/", "/n/a/b/", "/n/a/b/f.dcm", "/n/x/")
		for round := range 15 {
			top, err := repo.LiveByPath(ctx, "/n")
			if err != nil {
				t.Fatal(err)
			}
			x, err := repo.LiveByPath(ctx, "/n/x")
			if err != nil {
				t.Fatal(err)
			}
			a, _ := repo.NodeByID(ctx, m["/n/a"].ID)
			b, _ := repo.NodeByID(ctx, m["/n/a/b"].ID)
			errs := race(5, func(i int) error {
				var err error
				switch i {
				case 0:
					_, _, err = repo.Move(ctx, a, top, fmt.Sprintf("a%d", round), false)
				case 1:
					_, _, err = repo.Move(ctx, b, x, fmt.Sprintf("b%d", round), false)
				default:
					_, _, _, err = repo.PutFile(ctx, b, fmt.Sprintf("new%d-%d.dcm", round, i),
						model.Content{BlobKey: model.NewID(), Size: 1, SHA256: strings.Repeat("ab", 32)}, model.FileMeta{}, "u1", model.Cond{})
				}
				return err
			})
			for i, err := range errs {
				if err != nil {
					t.Fatalf("round %d, writer %d: %v", round, i, err)
				}
			}
			var rows []*model.Node
			if err := db.NewSelect().Model(&rows).Scan(ctx); err != nil {
				t.Fatal(err)
			}
			byID := map[string]*model.Node{}
			for _, r := range rows {
				byID[r.ID] = r
			}
			for _, r := range rows {
				p := byID[r.ParentID]
				if r.ID == model.RootID || p == nil {
					continue
				}
				if r.Path != model.JoinPath(p.Path, r.Name) || r.Lineage != p.Lineage+"/"+r.ID {
					t.Fatalf("round %d: %s (lineage %s) sits under %s (lineage %s)", round, r.Path, r.Lineage, p.Path, p.Lineage)
				}
			}
			// Put the inner folder back for the next round.
			b, _ = repo.NodeByID(ctx, m["/n/a/b"].ID)
			a, _ = repo.NodeByID(ctx, m["/n/a"].ID)
			if _, _, err := repo.Move(ctx, b, a, "b", false); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestArchiveRacingWrites archives a folder while files are written into
// a folder inside it: each write either lands before and is archived with
// the rest, or fails because the folder is gone. None may stay live under
// an archived folder, where no path or listing could reach it.
func TestArchiveRacingWrites(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		repo := model.NewRepo(db)
		for round := range 10 {
			top := fmt.Sprintf("/z%d", round)
			m := tree(t, repo, top+"/", top+"/sub/")
			errs := race(6, func(i int) error {
				if i == 0 {
					_, err := repo.Archive(ctx, m[top].ID)
					return err
				}
				_, _, _, err := repo.PutFile(ctx, m[top+"/sub"], fmt.Sprintf("f%d.dcm", i),
					model.Content{BlobKey: model.NewID(), Size: 1, SHA256: strings.Repeat("ab", 32)}, model.FileMeta{}, "u1", model.Cond{})
				return err
			})
			if errs[0] != nil {
				t.Fatalf("round %d: archive: %v", round, errs[0])
			}
			for i, err := range errs[1:] {
				if err != nil && !errors.Is(err, model.ErrNotFound) {
					t.Fatalf("round %d, writer %d: %v, want success or ErrNotFound", round, i+1, err)
				}
			}
			live, err := db.NewSelect().Table("nodes").Where("path LIKE ?", top+"/%").Where("archived_at IS NULL").Count(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if live != 0 {
				t.Fatalf("round %d: %d nodes stay live under the archived %s", round, live, top)
			}
		}
	})
}

// TestRacingMetadataPatches patches different fields of one file at once,
// as a tagging tool and a viewer setting the title do: every field must
// keep the value its patch set.
func TestRacingMetadataPatches(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		repo := model.NewRepo(db)
		for round := range 10 {
			path := fmt.Sprintf("/meta%d.dcm", round)
			f := tree(t, repo, path)[path]
			title, source, desc, tags, phi := "T", "scanner-3", "D", []string{"ct"}, true
			patches := []model.MetaPatch{{Title: &title}, {Source: &source}, {Description: &desc}, {Tags: &tags}, {PHI: &phi}}
			errs := race(len(patches), func(i int) error {
				_, err := repo.UpdateMeta(ctx, f.ID, patches[i])
				return err
			})
			for i, err := range errs {
				if err != nil {
					t.Fatalf("patch %d: %v", i, err)
				}
			}
			got, err := repo.NodeByID(ctx, f.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Title != title || got.Source != source || got.Description != desc || len(got.Tags) != 1 || got.Tags[0] != "ct" || !got.PHI {
				t.Fatalf("round %d: a patch was lost: title %q source %q description %q tags %v phi %v",
					round, got.Title, got.Source, got.Description, got.Tags, got.PHI)
			}
			if got.MimeType != "text/plain" {
				t.Fatalf("round %d: mime type %q; no patch named it", round, got.MimeType)
			}
		}
	})
}
