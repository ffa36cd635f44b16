package davfs_test

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/policy"
)

// TestAuthorizationMatrix runs every WebDAV method as two users (one in a
// group with a grant), a user with no grants at all, a read token and a
// full token on single files, and an anonymous caller, against the one
// authorizer. Refusals are 401 for anonymous callers, 404 where the caller
// may not even see the node (or its parent), and 403 otherwise; a refused
// request changes nothing.
func TestAuthorizationMatrix(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db)
		ctx := context.Background()
		for _, u := range []string{"alice", "bob", "carol"} {
			e.user(u, u+"-password")
		}
		if err := e.authz.Apply(ctx, policy.Change{Add: [][]string{policy.Membership(policy.User("alice"), policy.Group("staff"))}}); err != nil {
			t.Fatal(err)
		}
		team := e.folder(e.root, "team")
		plan := e.file(team, "plan.txt", "plan")
		home := e.folder(e.root, "alice")
		mine := e.file(home, "a.txt", "mine")
		bobs := e.folder(e.root, "bob")
		e.file(bobs, "b.txt", "bob's")
		e.grant(policy.Group("staff"), policy.LevelFull, team)
		e.grant(policy.User("alice"), policy.LevelFull, home)
		e.grant(policy.User("bob"), policy.LevelFull, bobs)
		readTok := e.token(plan, "read")
		fullTok := e.token(mine, "full")

		alice := auth{"alice", "alice-password"}
		bob := auth{"bob", "bob-password"}
		carol := auth{"carol", "carol-password"}
		anon := auth{}
		d0 := map[string]string{"Depth": "0"}
		d1 := map[string]string{"Depth": "1"}
		dest := func(p string) map[string]string { return map[string]string{"Destination": "/dav" + p} }
		lock := strings.Replace(lockBody, "%s", "exclusive", 1)
		prop := `<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><x xmlns="y:">1</x></D:prop></D:set></D:propertyupdate>`

		cases := []struct {
			who    string
			a      auth
			method string
			path   string
			hdr    map[string]string
			body   string
			want   int
		}{
			// Anonymous: OPTIONS only; everything else asks for credentials.
			{"anon", anon, "OPTIONS", "/", nil, "", 200},
			{"anon", anon, "PROPFIND", "/", d0, "", 401},
			{"anon", anon, "GET", "/team/plan.txt", nil, "", 401},
			{"anon", anon, "GET", "/no/such/file", nil, "", 401},
			{"anon", anon, "PUT", "/team/x.txt", nil, "x", 401},
			{"anon", anon, "DELETE", "/team/plan.txt", nil, "", 401},
			// Default deny: a user without grants sees nothing.
			{"carol", carol, "GET", "/team/plan.txt", nil, "", 404},
			{"carol", carol, "PROPFIND", "/team/", d1, "", 404},
			{"carol", carol, "PUT", "/team/x.txt", nil, "x", 404},
			{"carol", carol, "MKCOL", "/team/sub", nil, "", 404},
			{"carol", carol, "DELETE", "/team/plan.txt", nil, "", 404},
			// bob has his own folder only.
			{"bob", bob, "PROPFIND", "/team/plan.txt", d0, "", 404},
			{"bob", bob, "PUT", "/team/plan.txt", nil, "x", 404},
			{"bob", bob, "PROPPATCH", "/team/plan.txt", nil, prop, 404},
			{"bob", bob, "LOCK", "/team/plan.txt", nil, lock, 404},
			{"bob", bob, "COPY", "/team/plan.txt", dest("/bob/stolen.txt"), "", 404},
			{"bob", bob, "MOVE", "/bob/b.txt", dest("/team/b.txt"), "", 404},
			{"bob", bob, "PUT", "/bob/new.txt", nil, "x", 201},
			// alice reaches the team folder through her group.
			{"alice", alice, "PROPFIND", "/team/", d1, "", 207},
			{"alice", alice, "GET", "/team/plan.txt", nil, "", 200},
			{"alice", alice, "HEAD", "/team/plan.txt", nil, "", 200},
			{"alice", alice, "PUT", "/team/plan.txt", nil, "plan v2", 204},
			{"alice", alice, "PUT", "/team/new.txt", nil, "x", 201},
			{"alice", alice, "MKCOL", "/team/sub", nil, "", 201},
			{"alice", alice, "PROPPATCH", "/team/plan.txt", nil, prop, 207},
			{"alice", alice, "LOCK", "/team/locked.txt", nil, lock, 201},
			{"alice", alice, "COPY", "/team/plan.txt", dest("/team/copy.txt"), "", 201},
			{"alice", alice, "MOVE", "/team/copy.txt", dest("/alice/copy.txt"), "", 201},
			{"alice", alice, "DELETE", "/alice/copy.txt", nil, "", 204},
			{"alice", alice, "GET", "/bob/b.txt", nil, "", 404},
			{"alice", alice, "COPY", "/team/plan.txt", dest("/bob/x.txt"), "", 404},
			{"alice", alice, "MOVE", "/team/new.txt", dest("/bob/x.txt"), "", 404},
			// A read token: content and metadata of its file, nothing else.
			{"read token", readTok, "GET", "/team/plan.txt", nil, "", 200},
			{"read token", readTok, "HEAD", "/team/plan.txt", nil, "", 200},
			{"read token", readTok, "PROPFIND", "/team/plan.txt", d0, "", 207},
			{"read token", readTok, "PUT", "/team/plan.txt", nil, "x", 403},
			{"read token", readTok, "PROPPATCH", "/team/plan.txt", nil, prop, 403},
			{"read token", readTok, "LOCK", "/team/plan.txt", nil, lock, 403},
			{"read token", readTok, "DELETE", "/team/plan.txt", nil, "", 403},
			{"read token", readTok, "MOVE", "/team/plan.txt", dest("/team/p2.txt"), "", 403},
			{"read token", readTok, "COPY", "/team/plan.txt", dest("/team/p2.txt"), "", 404},
			{"read token", readTok, "PROPFIND", "/team/", d1, "", 404},
			{"read token", readTok, "GET", "/alice/a.txt", nil, "", 404},
			// A full token: its file only, not its folder.
			{"full token", fullTok, "GET", "/alice/a.txt", nil, "", 200},
			{"full token", fullTok, "PUT", "/alice/a.txt", nil, "mine v2", 204},
			{"full token", fullTok, "PROPPATCH", "/alice/a.txt", nil, prop, 207},
			{"full token", fullTok, "PUT", "/alice/other.txt", nil, "x", 404},
			{"full token", fullTok, "MKCOL", "/alice/sub", nil, "", 404},
			{"full token", fullTok, "MOVE", "/alice/a.txt", dest("/alice/renamed.txt"), "", 404},
			{"full token", fullTok, "GET", "/team/plan.txt", nil, "", 404},
			{"full token", fullTok, "DELETE", "/alice/a.txt", nil, "", 204},
		}
		for _, c := range cases {
			var body io.Reader
			if c.body != "" {
				body = strings.NewReader(c.body)
			}
			before := e.counts()
			code, _, resp := e.do(c.a, c.method, c.path, body, c.hdr)
			if code != c.want {
				t.Errorf("%s %s %s: %d, want %d (%s)", c.who, c.method, c.path, code, c.want, resp)
			}
			if code >= 400 && e.counts() != before {
				t.Errorf("%s %s %s: refused with %d but changed the store", c.who, c.method, c.path, code)
			}
			if code == 403 && !strings.Contains(resp, "need-privileges") {
				t.Errorf("%s %s %s: 403 without a DAV error body: %s", c.who, c.method, c.path, resp)
			}
		}
		if got := e.content(e.live("/team/plan.txt")); got != "plan v2" {
			t.Fatalf("plan.txt = %q", got)
		}

		// The root lists, for each user, only the folders it may read.
		_, _, body := e.do(alice, "PROPFIND", "/", nil, d1)
		if !strings.Contains(body, "/dav/team/") || !strings.Contains(body, "/dav/alice/") || strings.Contains(body, "/dav/bob/") {
			t.Fatalf("alice's root listing: %s", body)
		}
		code, _, body := e.do(carol, "PROPFIND", "/", nil, d1)
		if code != 207 || strings.Contains(body, "/dav/team/") || strings.Contains(body, "/dav/bob/") {
			t.Fatalf("carol's root listing: %d %s", code, body)
		}
		_, _, body = e.do(alice, "PROPFIND", "/", strings.NewReader(`<D:propfind xmlns:D="DAV:"><D:prop><D:quota-used-bytes/></D:prop></D:propfind>`), d0)
		if strings.Contains(body, "<D:quota-used-bytes>") {
			t.Fatalf("a filtered root told its used bytes: %s", body)
		}
	})
}
