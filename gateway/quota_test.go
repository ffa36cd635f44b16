package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/policy"
)

// newQuotaEnv is an API environment where user has full access to folder
// and a quota of bytes.
func newQuotaEnv(t *testing.T, db *bun.DB, folder, user string, bytes int64) *apiEnv {
	t.Helper()
	e := newAPIEnv(t, db)
	dirs := e.folders(folder)
	e.grant(as("admin"), dirs[folder], map[string]any{"user": user, "level": "full"})
	if err := e.repo.SetQuota(context.Background(), user, bytes); err != nil {
		t.Fatal(err)
	}
	return e
}

// chunked hides a body's length, so the request goes out without
// Content-Length and the server learns the size only at its end.
func chunked(s string) io.Reader { return io.MultiReader(strings.NewReader(s)) }

// TestQuotaHoldsAtEveryDoor gives alice a 1,000-byte quota and checks that
// WebDAV and the files API both refuse the write that would pass it (507,
// with the RFC 4331 DAV:quota-not-exceeded condition or the JSON code
// quota_exceeded), whether the size is announced or only known at the end
// of the body, and leave nothing behind: no new file, the old content of a
// replaced one. Files someone else created in her folder do not count
// against her, and WebDAV reports what she has left.
func TestQuotaHoldsAtEveryDoor(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		e := newAPIEnv(t, db)
		dirs := e.folders("/q")
		e.grant(as("admin"), dirs["/q"], map[string]any{"user": "alice", "level": "full"})
		e.grant(as("admin"), dirs["/q"], map[string]any{"user": "bob", "level": "full"})
		if err := e.repo.SetQuota(ctx, "alice", 1000); err != nil {
			t.Fatal(err)
		}
		davQuota := func(r result) {
			t.Helper()
			e.want(r, http.StatusInsufficientStorage)
			if !strings.Contains(string(r.body), "<D:quota-not-exceeded/>") {
				t.Fatalf("no DAV:quota-not-exceeded condition: %s", r.body)
			}
		}
		apiQuota := func(r result) {
			t.Helper()
			e.want(r, http.StatusInsufficientStorage)
			if code := errorCode(r.body); code != "quota_exceeded" {
				t.Fatalf("code %q, want quota_exceeded: %s", code, r.body)
			}
		}
		absent := func(path string) {
			t.Helper()
			if _, err := e.repo.LiveByPath(ctx, path); err == nil {
				t.Fatalf("%s exists after a refused write", path)
			}
		}
		content := func(path, want string) {
			t.Helper()
			r := e.do(as("alice"), http.MethodGet, "/dav"+path, nil)
			if r.status != http.StatusOK || string(r.body) != want {
				t.Fatalf("%s: %d %.40q, want %.40q", path, r.status, r.body, want)
			}
		}
		x := func(n int) string { return strings.Repeat("x", n) }

		e.want(e.do(as("alice"), http.MethodPut, "/dav/q/a.bin", strings.NewReader(x(600))), http.StatusCreated)
		// Bob's bytes are his: they do not count against alice.
		e.want(e.do(as("bob"), http.MethodPut, "/dav/q/bob.bin", strings.NewReader(x(900))), http.StatusCreated)

		davQuota(e.do(as("alice"), http.MethodPut, "/dav/q/b.bin", strings.NewReader(x(600))))
		absent("/q/b.bin")
		davQuota(e.do(as("alice"), http.MethodPut, "/dav/q/b.bin", chunked(x(600))))
		absent("/q/b.bin")
		// Replacing her own file counts only the growth.
		e.want(e.do(as("alice"), http.MethodPut, "/dav/q/a.bin", strings.NewReader(x(950))), http.StatusNoContent)
		davQuota(e.do(as("alice"), http.MethodPut, "/dav/q/a.bin", chunked(x(1001))))
		content("/q/a.bin", x(950))
		// Replacing bob's file charges bob, not her.
		e.want(e.do(as("alice"), http.MethodPut, "/dav/q/bob.bin", strings.NewReader(x(990))), http.StatusNoContent)
		davQuota(e.do(as("alice"), "COPY", "/dav/q/a.bin", nil, "Destination", e.ts.URL+"/dav/q/copy.bin"))
		absent("/q/copy.bin")

		// RFC 4331: what she may still store, on folders.
		r := e.do(as("alice"), "PROPFIND", "/dav/q", strings.NewReader(
			`<D:propfind xmlns:D="DAV:"><D:prop><D:quota-available-bytes/></D:prop></D:propfind>`), "Depth", "0")
		if !strings.Contains(string(r.body), "<D:quota-available-bytes>50</D:quota-available-bytes>") {
			t.Fatalf("quota-available-bytes: %s", r.body)
		}

		// The files API: announced raw body, multipart body, replacement.
		apiQuota(e.do(as("alice"), http.MethodPost, "/api/v1/files?name=raw.bin&folder=/q", strings.NewReader(x(100)),
			"Content-Type", "application/octet-stream"))
		absent("/q/raw.bin")
		apiQuota(e.uploadRaw(as("alice"), "multi.bin", x(100), "folder", "/q"))
		absent("/q/multi.bin")
		a, err := e.repo.LiveByPath(ctx, "/q/a.bin")
		if err != nil {
			t.Fatal(err)
		}
		apiQuota(e.do(as("alice"), http.MethodPut, "/api/v1/files/"+a.ID+"/content", chunked(x(1100))))
		content("/q/a.bin", x(950))
		e.want(e.do(as("alice"), http.MethodPut, "/api/v1/files/"+a.ID+"/content", strings.NewReader(x(400))), http.StatusOK)

		// Room made is room to use; a quota of zero is none.
		e.want(e.do(as("alice"), http.MethodPut, "/dav/q/b.bin", strings.NewReader(x(600))), http.StatusCreated)
		if err := e.repo.SetQuota(ctx, "alice", 0); err != nil {
			t.Fatal(err)
		}
		e.want(e.do(as("alice"), http.MethodPut, "/dav/q/big.bin", strings.NewReader(x(5000))), http.StatusCreated)
	})
}

// TestQuotaHoldsUnderConcurrentWrites sends eight 300-byte PUTs at once for
// a user with room for three: the early check before each body passes for
// all of them, and the check made as each file is recorded lets exactly
// three through. (model's TestRacingWritersWithinAQuota races the records
// themselves, which HTTP requests rarely manage to do.)
func TestQuotaHoldsUnderConcurrentWrites(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		e := newQuotaEnv(t, db, "/race", "carol", 1000)
		var wg sync.WaitGroup
		statuses := make([]int, 8)
		for i := range statuses {
			wg.Go(func() {
				req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/dav/race/f%d.bin", e.ts.URL, i), strings.NewReader(strings.Repeat("r", 300)))
				as("carol")(req)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				statuses[i] = resp.StatusCode
			})
		}
		wg.Wait()
		created := 0
		for _, s := range statuses {
			switch s {
			case http.StatusCreated:
				created++
			case http.StatusInsufficientStorage:
			default:
				t.Fatalf("statuses %v: want only 201 and 507", statuses)
			}
		}
		carol, err := e.repo.UserByName(ctx, "carol")
		if err != nil {
			t.Fatal(err)
		}
		used, err := e.repo.QuotaUsed(ctx, carol.ID)
		if err != nil {
			t.Fatal(err)
		}
		if created != 3 || used != 900 {
			t.Fatalf("%d files created holding %d bytes (statuses %v), want 3 holding 900", created, used, statuses)
		}
	})
}

// TestTusQuotaAtTheEnd creates a tus upload within carol's quota, lets
// other files fill it meanwhile, and checks that the upload's last PATCH
// is refused (413 ERR_QUOTA_EXCEEDED) and publishes nothing.
func TestTusQuotaAtTheEnd(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		g := newTusGW(t, db)
		if _, err := g.repo.CreateUser(ctx, "carol", "pw-carol"); err != nil {
			t.Fatal(err)
		}
		root, err := g.repo.LiveByPath(ctx, "/")
		if err != nil {
			t.Fatal(err)
		}
		g.apply(policy.Change{Add: [][]string{policy.Grant(policy.User("carol"), policy.Level(model.LevelFull), root.ID)}})
		if err := g.repo.SetQuota(ctx, "carol", 150); err != nil {
			t.Fatal(err)
		}
		resp := g.create("carol", "/", "late.bin", 100)
		want(t, "create within quota", resp, 201)
		loc := resp.Header.Get("Location")
		carol, err := g.repo.UserByName(ctx, "carol")
		if err != nil {
			t.Fatal(err)
		}
		// A file recorded meanwhile (by another door) takes the room.
		if _, _, _, err := g.repo.PutFile(ctx, root, "other.bin", model.Content{BlobKey: model.NewID(), Size: 100},
			model.FileMeta{}, carol.ID, model.Cond{}); err != nil {
			t.Fatal(err)
		}
		resp = g.patch("carol", loc, 0, []byte(strings.Repeat("t", 100)))
		want(t, "last PATCH over quota", resp, 413)
		if _, err := g.repo.LiveByPath(ctx, "/late.bin"); err == nil {
			t.Fatal("the upload was published past the quota")
		}
	})
}

// TestRestorePastQuotaIsRefused deletes a file over WebDAV, which archives
// it and frees its room, fills the room, and checks that restoring it
// through the files API answers 507 quota_exceeded.
func TestRestorePastQuotaIsRefused(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		e := newQuotaEnv(t, db, "/q", "alice", 100)
		e.want(e.do(as("alice"), http.MethodPut, "/dav/q/old.bin", strings.NewReader(strings.Repeat("o", 80))), http.StatusCreated)
		old, err := e.repo.LiveByPath(ctx, "/q/old.bin")
		if err != nil {
			t.Fatal(err)
		}
		e.want(e.do(as("alice"), http.MethodDelete, "/dav/q/old.bin", nil), http.StatusNoContent)
		e.want(e.do(as("alice"), http.MethodPut, "/dav/q/new.bin", strings.NewReader(strings.Repeat("n", 60))), http.StatusCreated)
		r := e.do(as("alice"), http.MethodPost, "/api/v1/files/"+old.ID+"/restore", nil)
		if r.status != http.StatusInsufficientStorage || errorCode(r.body) != "quota_exceeded" {
			t.Fatalf("restore past the quota: %d %s, want 507 quota_exceeded", r.status, r.body)
		}
	})
}
