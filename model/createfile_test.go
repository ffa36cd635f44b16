package model_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/dbtest"
)

// TestNewFileIsRecordedWhole checks the one-statement create that most
// writes take: every field the caller gives lands in the row, read back
// the way every other query reads nodes, and the conditions that only the
// transaction can tell apart still get their errors.
func TestNewFileIsRecordedWhole(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		r := model.NewRepo(db)
		nodes := tree(t, r, "/ward/")
		root, ward := nodes["/"], nodes["/ward"]
		mod := time.Date(2026, 3, 4, 5, 6, 7, 891011000, time.UTC)
		meta := model.FileMeta{MimeType: "application/dicom", Tags: []string{"ct", " ct", "chest "}, Title: "Chest CT",
			Description: "follow-up", Source: "scanner-3", PHI: true, ModTime: mod}
		c := model.Content{BlobKey: "b1", Size: 4096, SHA256: strings.Repeat("c", 64)}
		made, created, old, err := r.PutFile(ctx, ward, "scan.dcm", c, meta, "u1", model.Cond{IfNoneMatch: "*"})
		if err != nil || !created || old != "" {
			t.Fatalf("create: created %v old %q, %v", created, old, err)
		}
		read, err := r.LiveByPath(ctx, "/ward/scan.dcm")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(utc(*made), utc(*read)) {
			t.Fatalf("returned node differs from the stored one:\n returned %+v\n stored   %+v", *made, *read)
		}
		want := model.Node{ID: read.ID, ParentID: ward.ID, Name: "scan.dcm", Path: "/ward/scan.dcm",
			Lineage: ward.Lineage + "/" + read.ID, Size: 4096, MimeType: "application/dicom", SHA256: c.SHA256,
			ETag: `"` + strings.Repeat("c", 32) + `"`, BlobKey: "b1", CreatorID: "u1", OwnerID: "u1",
			Tags: []string{"ct", "chest"}, Title: "Chest CT", Description: "follow-up", Source: "scanner-3",
			PHI: true, Status: model.StatusCompleted, Version: 1, CreatedAt: read.CreatedAt, UpdatedAt: read.CreatedAt, ModTime: mod}
		if !reflect.DeepEqual(utc(*read), utc(want)) {
			t.Fatalf("stored node:\n got  %+v\n want %+v", *read, want)
		}

		cases := []struct {
			name   string
			parent *model.Node
			file   string
			cond   model.Cond
			want   error
		}{
			{"If-None-Match * over a file", ward, "scan.dcm", model.Cond{IfNoneMatch: "*"}, model.ErrPrecondition},
			{"no overwrite over a file", ward, "scan.dcm", model.Cond{NoOverwrite: true}, model.ErrExists},
			{"over a folder", root, "ward", model.Cond{}, model.ErrConflict},
			{"into a file", read, "x", model.Cond{}, model.ErrConflict},
			{"into a missing folder", &model.Node{ID: "gone", Path: "/gone", Lineage: "/gone", IsDir: true}, "x", model.Cond{}, model.ErrNotFound},
		}
		for _, k := range cases {
			if _, _, _, err := r.PutFile(ctx, k.parent, k.file, c, model.FileMeta{}, "u1", k.cond); !errors.Is(err, k.want) {
				t.Errorf("%s: %v, want %v", k.name, err, k.want)
			}
		}
	})
}

// TestNewFileFollowsAMovedFolder writes into a folder through a stale copy
// of its row, as a request does when the folder is renamed between the
// request's lookup and its write: the file must land under the folder's
// new path, not recreate the old one.
func TestNewFileFollowsAMovedFolder(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		r := model.NewRepo(db)
		nodes := tree(t, r, "/inbox/")
		root, stale := nodes["/"], nodes["/inbox"]
		if _, _, err := r.Move(ctx, stale, root, "filed", false); err != nil {
			t.Fatal(err)
		}
		c := model.Content{BlobKey: "b2", Size: 1, SHA256: strings.Repeat("d", 64)}
		n, created, _, err := r.PutFile(ctx, stale, "ecg.xml", c, model.FileMeta{}, "u1", model.Cond{})
		if err != nil || !created {
			t.Fatalf("write: created %v, %v", created, err)
		}
		if n.Path != "/filed/ecg.xml" {
			t.Fatalf("path = %q, want /filed/ecg.xml", n.Path)
		}
		if _, err := r.LiveByPath(ctx, "/filed/ecg.xml"); err != nil {
			t.Fatalf("lookup at the new path: %v", err)
		}
		if _, err := r.LiveByPath(ctx, "/inbox/ecg.xml"); !errors.Is(err, model.ErrNotFound) {
			t.Fatalf("lookup at the old path: %v, want ErrNotFound", err)
		}
	})
}

// utc gives a node's times one representation, so that rows read back
// from either engine compare equal to what was written.
func utc(n model.Node) model.Node {
	n.CreatedAt, n.UpdatedAt, n.ModTime = n.CreatedAt.UTC(), n.UpdatedAt.UTC(), n.ModTime.UTC()
	return n
}

// TestConcurrentWritesOfNewFiles has many writers create files in one
// folder at once, two writers per name, as a sync client does: every
// write succeeds, each name ends up as one live file, and each writer gets
// back a node that is stored (created by it, or replaced on top of the
// other's).
func TestConcurrentWritesOfNewFiles(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		r := model.NewRepo(db)
		root := tree(t, r)["/"]
		const names, writers = 40, 80
		created := make([]bool, writers)
		nodes := make([]*model.Node, writers)
		errs := make([]error, writers)
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := model.Content{BlobKey: fmt.Sprintf("b%d", w), Size: 1, SHA256: strings.Repeat("e", 64)}
				nodes[w], created[w], _, errs[w] = r.PutFile(ctx, root, fmt.Sprintf("f%02d", w%names), c, model.FileMeta{}, "u1", model.Cond{})
			}()
		}
		wg.Wait()
		creations := 0
		for w := range writers {
			if errs[w] != nil {
				t.Fatalf("writer %d: %v", w, errs[w])
			}
			if created[w] {
				creations++
			}
			if nodes[w].Path != fmt.Sprintf("/f%02d", w%names) {
				t.Fatalf("writer %d got a node at %q", w, nodes[w].Path)
			}
			if _, err := r.NodeByID(ctx, nodes[w].ID); err != nil {
				t.Fatalf("writer %d's node is not stored: %v", w, err)
			}
		}
		var live int
		if err := db.NewRaw("SELECT COUNT(*) FROM nodes WHERE parent_id = ? AND archived_at IS NULL", root.ID).Scan(ctx, &live); err != nil {
			t.Fatal(err)
		}
		if creations != names || live != names {
			t.Fatalf("%d creations and %d live files for %d names", creations, live, names)
		}
	})
}
