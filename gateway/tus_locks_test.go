package gateway_test

import (
	"context"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/davfs"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/policy"
)

// emptySHA is the SHA-256 of no bytes.
const emptySHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// TestTusHonoursWebDAVLocks takes WebDAV locks in the database the
// server shares and checks the tus door against them: an upload aimed at
// a locked file, or a new file in a locked folder, is refused at creation
// (423); an upload whose target was locked while its bytes came is not
// published (423 on the last PATCH, old content kept) and is finished by
// the client's next HEAD once the lock is gone.
func TestTusHonoursWebDAVLocks(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		g := newTusGW(t, db)
		ctx := context.Background()
		if _, err := g.repo.CreateUser(ctx, "alice", "pw-alice"); err != nil {
			t.Fatal(err)
		}
		g.apply(policy.Change{Add: [][]string{policy.Membership(policy.User("alice"), policy.AdminRole)}})
		root, _ := g.repo.LiveByPath(ctx, "/")
		dir, err := g.repo.CreateFolder(ctx, root, "w", "")
		if err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := g.repo.PutFile(ctx, dir, "report.pdf", model.Content{BlobKey: "none", Size: 0, SHA256: emptySHA}, model.FileMeta{}, "", model.Cond{}); err != nil {
			t.Fatal(err)
		}
		ls := davfs.NewLockSystem(db)
		lock := func(path string, infinite bool) string {
			t.Helper()
			l, err := ls.Acquire(ctx, davfs.Lock{Root: path, Infinite: infinite, Subject: "user:editor", Timeout: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			return l.Token
		}
		release := func(tok string) {
			t.Helper()
			if err := ls.Release(ctx, tok); err != nil {
				t.Fatal(err)
			}
		}

		tok := lock("/w/report.pdf", false)
		want(t, "create onto a locked file", g.create("alice", "/w", "report.pdf", 4), 423)
		want(t, "create a sibling", g.create("alice", "/w", "other.pdf", 4), 201)
		release(tok)
		tok = lock("/w", false)
		want(t, "create a new file in a locked folder", g.create("alice", "/w", "new.pdf", 4), 423)
		release(tok)

		// Locked while the bytes come.
		resp := g.create("alice", "/w", "report.pdf", 8)
		want(t, "create", resp, 201)
		loc := resp.Header.Get("Location")
		want(t, "first half", g.patch("alice", loc, 0, []byte("new ")), 204)
		tok = lock("/w/report.pdf", false)
		want(t, "last half while locked", g.patch("alice", loc, 4, []byte("pdf!")), 423)
		if n, err := g.repo.LiveByPath(ctx, "/w/report.pdf"); err != nil || n.Size != 0 {
			t.Fatalf("the locked file changed: %+v %v", n, err)
		}
		want(t, "HEAD while still locked", g.send("alice", "HEAD", loc, nil, nil), 423)
		release(tok)
		resp = g.send("alice", "HEAD", loc, nil, nil)
		want(t, "HEAD once released", resp, 200)
		if resp.Header.Get("Upload-Offset") != "8" {
			t.Fatalf("offset %q after HEAD", resp.Header.Get("Upload-Offset"))
		}
		n, err := g.repo.LiveByPath(ctx, "/w/report.pdf")
		if err != nil || n.Size != 8 || n.SHA256 == emptySHA {
			t.Fatalf("the upload was not published once unlocked: %+v %v", n, err)
		}
	})
}
