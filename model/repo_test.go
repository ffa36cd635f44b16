package model_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/blob/s3test"
	"github.com/filegate/filegate/model/dbtest"
)

func TestMain(m *testing.M) {
	code := dbtest.Main(m)
	s3test.Cleanup()
	os.Exit(code)
}

// tree builds folders and files from paths ("/a/", "/a/f.txt") and returns
// the nodes by path.
func tree(t *testing.T, repo *model.Repo, paths ...string) map[string]*model.Node {
	t.Helper()
	ctx := context.Background()
	root, err := repo.LiveByPath(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	nodes := map[string]*model.Node{"/": root}
	for _, p := range paths {
		isDir := strings.HasSuffix(p, "/")
		clean, err := model.CleanPath(p)
		if err != nil {
			t.Fatal(err)
		}
		parentPath, name := model.SplitPath(clean)
		parent := nodes[parentPath]
		if parent == nil {
			t.Fatalf("tree: parent of %s not built", p)
		}
		var n *model.Node
		if isDir {
			n, err = repo.CreateFolder(ctx, parent, name, "u1")
		} else {
			n, _, _, err = repo.PutFile(ctx, parent, name, model.Content{BlobKey: "k" + model.NewID(), Size: 3, SHA256: strings.Repeat("ab", 32)},
				model.FileMeta{MimeType: "text/plain", Tags: []string{"ecg", "ecg", " "}}, "u1", model.Cond{})
		}
		if err != nil {
			t.Fatalf("tree: %s: %v", p, err)
		}
		nodes[clean] = n
	}
	return nodes
}

func TestRepoNodes(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		repo := model.NewRepo(db)
		n := tree(t, repo, "/a/", "/a/b/", "/a/b/scan.dcm", "/a-b/", "/c/")

		t.Run("read by path and id", func(t *testing.T) {
			got, err := repo.LiveByPath(ctx, "/a/b/scan.dcm")
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != n["/a/b/scan.dcm"].ID || got.Lineage != n["/a/b"].Lineage+"/"+got.ID || got.Size != 3 {
				t.Fatalf("unexpected node %+v", got)
			}
			if len(got.Tags) != 1 || got.Tags[0] != "ecg" {
				t.Fatalf("tags = %q, want [ecg]", got.Tags)
			}
			byID, err := repo.NodeByID(ctx, got.ID)
			if err != nil || byID.Path != "/a/b/scan.dcm" {
				t.Fatalf("NodeByID = %+v, %v", byID, err)
			}
			if _, err := repo.LiveByPath(ctx, "/a/nope"); !errors.Is(err, model.ErrNotFound) {
				t.Fatalf("missing path: err = %v, want ErrNotFound", err)
			}
		})

		t.Run("children are listed by name", func(t *testing.T) {
			kids, err := repo.Children(ctx, model.RootID, model.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, k := range kids {
				names = append(names, k.Name)
			}
			if strings.Join(names, ",") != "a,a-b,c" {
				t.Fatalf("children = %v", names)
			}
			page, _ := repo.Children(ctx, model.RootID, model.ListOptions{After: "a", Limit: 1})
			if len(page) != 1 || page[0].Name != "a-b" {
				t.Fatalf("page after a = %+v", page)
			}
		})

		t.Run("sibling names conflict", func(t *testing.T) {
			if _, err := repo.CreateFolder(ctx, n["/a"], "b", "u1"); !errors.Is(err, model.ErrExists) {
				t.Fatalf("duplicate folder: err = %v, want ErrExists", err)
			}
			_, _, _, err := repo.PutFile(ctx, n["/a"], "b", model.Content{BlobKey: "x"}, model.FileMeta{}, "u1", model.Cond{})
			if !errors.Is(err, model.ErrConflict) {
				t.Fatalf("file over folder: err = %v, want ErrConflict", err)
			}
			_, _, _, err = repo.PutFile(ctx, n["/a/b"], "scan.dcm", model.Content{BlobKey: "y"}, model.FileMeta{}, "u1", model.Cond{NoOverwrite: true})
			if !errors.Is(err, model.ErrExists) {
				t.Fatalf("no-overwrite put: err = %v, want ErrExists", err)
			}
			if _, err := repo.CreateFolder(ctx, n["/a/b/scan.dcm"], "x", "u1"); !errors.Is(err, model.ErrConflict) {
				t.Fatalf("folder under file: err = %v, want ErrConflict", err)
			}
			if _, err := repo.CreateFolder(ctx, n["/a"], "..", "u1"); !errors.Is(err, model.ErrInvalid) {
				t.Fatalf("bad name: err = %v, want ErrInvalid", err)
			}
		})

		t.Run("put replaces content and keeps identity", func(t *testing.T) {
			before, _ := repo.LiveByPath(ctx, "/a/b/scan.dcm")
			after, created, old, err := repo.PutFile(ctx, n["/a/b"], "scan.dcm",
				model.Content{BlobKey: "new", Size: 9, SHA256: strings.Repeat("cd", 32)}, model.FileMeta{}, "u2", model.Cond{IfMatch: before.ETag})
			if err != nil || created || old != before.BlobKey || after.ID != before.ID || after.ETag == before.ETag {
				t.Fatalf("replace: created=%v old=%q err=%v node=%+v", created, old, err, after)
			}
			_, _, _, err = repo.PutFile(ctx, n["/a/b"], "scan.dcm", model.Content{BlobKey: "z"}, model.FileMeta{}, "u2", model.Cond{IfMatch: before.ETag})
			if !errors.Is(err, model.ErrPrecondition) {
				t.Fatalf("stale If-Match: err = %v, want ErrPrecondition", err)
			}
		})

		t.Run("move renames a subtree without touching siblings", func(t *testing.T) {
			moved, replaced, err := repo.Move(ctx, n["/a"], n["/c"], "moved", false)
			if err != nil || replaced != nil {
				t.Fatalf("move: %v %v", err, replaced)
			}
			if moved.Path != "/c/moved" || moved.ID != n["/a"].ID {
				t.Fatalf("moved = %+v", moved)
			}
			deep, err := repo.LiveByPath(ctx, "/c/moved/b/scan.dcm")
			if err != nil {
				t.Fatalf("descendant path not updated: %v", err)
			}
			if deep.Lineage != moved.Lineage+"/"+n["/a/b"].ID+"/"+deep.ID {
				t.Fatalf("descendant lineage = %s", deep.Lineage)
			}
			if sib, err := repo.LiveByPath(ctx, "/a-b"); err != nil || sib.Lineage != n["/a-b"].Lineage {
				t.Fatalf("sibling /a-b changed: %+v %v", sib, err)
			}
			if _, _, err := repo.Move(ctx, moved, n["/a/b"], "x", false); !errors.Is(err, model.ErrConflict) {
				t.Fatalf("move into own subtree: err = %v, want ErrConflict", err)
			}
			if _, _, err := repo.Move(ctx, moved, n["/"], "a-b", false); !errors.Is(err, model.ErrExists) {
				t.Fatalf("move onto existing without overwrite: err = %v, want ErrExists", err)
			}
			_, replaced, err = repo.Move(ctx, moved, n["/"], "a-b", true)
			if err != nil || replaced == nil || replaced.ID != n["/a-b"].ID {
				t.Fatalf("overwrite move: replaced=%v err=%v", replaced, err)
			}
			if got, _ := repo.NodeByID(ctx, n["/a-b"].ID); !got.Archived() {
				t.Fatal("overwritten destination was not archived")
			}
		})

		t.Run("archive hides a subtree and restore brings it back", func(t *testing.T) {
			folder, err := repo.LiveByPath(ctx, "/a-b")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := repo.Archive(ctx, folder.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := repo.LiveByPath(ctx, "/a-b/b/scan.dcm"); !errors.Is(err, model.ErrNotFound) {
				t.Fatalf("archived descendant still visible: %v", err)
			}
			if _, err := repo.CreateFolder(ctx, n["/"], "a-b", "u1"); err != nil {
				t.Fatalf("archived node still holds its name: %v", err)
			}
			if _, err := repo.Restore(ctx, folder.ID); !errors.Is(err, model.ErrExists) {
				t.Fatalf("restore over a taken name: err = %v, want ErrExists", err)
			}
			taken, _ := repo.LiveByPath(ctx, "/a-b")
			if _, err := repo.Purge(ctx, taken.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := repo.Restore(ctx, folder.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := repo.LiveByPath(ctx, "/a-b/b/scan.dcm"); err != nil {
				t.Fatalf("restored descendant missing: %v", err)
			}
		})

		t.Run("purge returns blob keys and removes rows", func(t *testing.T) {
			folder, _ := repo.LiveByPath(ctx, "/a-b")
			keys, err := repo.Purge(ctx, folder.ID)
			if err != nil || len(keys) != 1 || keys[0] != "new" {
				t.Fatalf("purge keys = %v, err = %v", keys, err)
			}
			if _, err := repo.NodeByID(ctx, folder.ID); !errors.Is(err, model.ErrNotFound) {
				t.Fatalf("purged node still there: %v", err)
			}
		})

		t.Run("a failed transaction changes nothing", func(t *testing.T) {
			boom := errors.New("boom")
			err := repo.InTx(ctx, func(ctx context.Context, tx bun.Tx) error {
				if _, err := tx.NewUpdate().Table("nodes").Set("title = 'changed'").Where("id = ?", n["/c"].ID).Exec(ctx); err != nil {
					return err
				}
				return boom
			})
			if !errors.Is(err, boom) {
				t.Fatalf("InTx err = %v", err)
			}
			c, _ := repo.NodeByID(ctx, n["/c"].ID)
			if c.Title != "" {
				t.Fatalf("rolled-back change is visible: title %q", c.Title)
			}
		})
	})
}

func TestRepoTokens(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		repo := model.NewRepo(db)
		n := tree(t, repo, "/f.txt")
		var creds []string
		var ids []string
		for _, lvl := range []string{model.LevelFull, model.LevelFull, model.LevelRead} {
			var tok *model.FileToken
			err := repo.InTx(ctx, func(ctx context.Context, tx bun.Tx) error {
				var cred string
				var err error
				tok, cred, err = repo.InsertToken(ctx, tx, n["/f.txt"].ID, lvl, "u1", nil)
				creds = append(creds, cred)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, tok.ID)
		}
		got, err := repo.TokenByCredential(ctx, creds[2])
		if err != nil || got.Level != model.LevelRead {
			t.Fatalf("TokenByCredential = %+v, %v", got, err)
		}
		if _, err := repo.TokenByCredential(ctx, creds[2][:len(creds[2])-1]+"x"); !errors.Is(err, model.ErrNotFound) {
			t.Fatalf("tampered token: err = %v", err)
		}
		var stored []string
		db.NewSelect().Table("file_tokens").Column("secret_hash").Scan(ctx, &stored)
		for _, h := range stored {
			for _, c := range creds {
				_, secret, _ := model.ParseSecret(model.TokenPrefix, c)
				if strings.Contains(h, secret) || h == secret {
					t.Fatal("a token secret is stored in clear")
				}
			}
		}
		del := func(id string) error {
			return repo.InTx(ctx, func(ctx context.Context, tx bun.Tx) error {
				_, err := repo.DeleteToken(ctx, tx, n["/f.txt"].ID, id)
				return err
			})
		}
		if err := del(ids[0]); err != nil {
			t.Fatal(err)
		}
		if err := del(ids[1]); !errors.Is(err, model.ErrConflict) {
			t.Fatalf("deleting the last full token: err = %v, want ErrConflict", err)
		}
		if err := del(ids[2]); err != nil {
			t.Fatalf("deleting a read token: %v", err)
		}
	})
}

func TestRepoAccounts(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		repo := model.NewRepo(db)
		u, err := repo.CreateUser(ctx, "alice", "correct horse")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := repo.CreateUser(ctx, "alice", "x"); !errors.Is(err, model.ErrExists) {
			t.Fatalf("duplicate user: %v", err)
		}
		if _, err := repo.CreateUser(ctx, "Bad Name", "x"); !errors.Is(err, model.ErrInvalid) {
			t.Fatalf("bad user name: %v", err)
		}
		if !strings.HasPrefix(u.PasswordHash, "$argon2id$") || !model.CheckPassword(u.PasswordHash, "correct horse") ||
			model.CheckPassword(u.PasswordHash, "wrong") {
			t.Fatal("argon2id hash does not verify as it should")
		}
		_, cred, err := repo.CreateAPIKey(ctx, "alice", "ci", nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := repo.UserByAPIKey(ctx, cred); err != nil || got.ID != u.ID {
			t.Fatalf("UserByAPIKey = %v, %v", got, err)
		}
		id, _, _ := model.ParseSecret(model.APIKeyPrefix, cred)
		if err := repo.RevokeAPIKey(ctx, id); err != nil {
			t.Fatal(err)
		}
		if _, err := repo.UserByAPIKey(ctx, cred); !errors.Is(err, model.ErrNotFound) {
			t.Fatalf("revoked key still works: %v", err)
		}
		if err := repo.SetDisabled(ctx, "alice", true); err != nil {
			t.Fatal(err)
		}
		if got, _ := repo.UserByName(ctx, "alice"); !got.Disabled {
			t.Fatal("user not disabled")
		}
	})
}

func TestCleanPath(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{in: "/", want: "/"},
		{in: "", want: "/"},
		{in: "/a/b/", want: "/a/b"},
		{in: "//a//./b", want: "/a/b"},
		{in: "/caf\u0065\u0301", want: "/caf\u00e9"}, // NFD becomes NFC
		{in: "/a/../b", bad: true},
		{in: "/a/..", bad: true},
		{in: "/a\\b", bad: true},
		{in: "/a\x00b", bad: true},
		{in: "/%2e%2e/x", bad: true},
		{in: "/..%2fetc", bad: true},
		{in: "/\xff", bad: true},
		{in: "/" + strings.Repeat("n", 256), bad: true},
		{in: "/100%.txt", want: "/100%.txt"},
	}
	for _, tt := range tests {
		got, err := model.CleanPath(tt.in)
		if tt.bad {
			if !errors.Is(err, model.ErrInvalid) {
				t.Errorf("CleanPath(%q) = %q, %v; want ErrInvalid", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("CleanPath(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if model.IsWithin("/a-b", "/a") || !model.IsWithin("/a/b", "/a") || !model.IsWithin("/a", "/a") {
		t.Error("IsWithin treats a sibling prefix as a child")
	}
}
