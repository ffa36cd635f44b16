package gateway_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/gateway"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/policy"
	"github.com/filegate/filegate/tus"
)

// tusGW is a real server (gateway, password authentication, the Casbin
// authorizer, a local blob folder) with the tus door mounted as
// cmd/filegate mounts it.
type tusGW struct {
	t     *testing.T
	ts    *httptest.Server
	repo  *model.Repo
	authz *policy.Authorizer
}

func newTusGW(t *testing.T, db *bun.DB) *tusGW {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	env := newTestServer(t, db, "", gateway.Config{}, nil)
	srv, repo, authz := env.srv, env.repo, env.authz
	door, err := srv.MountTus(ctx, tus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { door.Close() })
	g := &tusGW{t: t, ts: httptest.NewServer(srv.Handler()), repo: repo, authz: authz}
	t.Cleanup(g.ts.Close)
	return g
}

func (g *tusGW) apply(ch policy.Change) {
	g.t.Helper()
	if err := g.authz.Apply(context.Background(), ch); err != nil {
		g.t.Fatal(err)
	}
}

func (g *tusGW) send(user, method, url string, hdr map[string]string, body []byte) *http.Response {
	g.t.Helper()
	if !strings.HasPrefix(url, "http") {
		url = g.ts.URL + url
	}
	r, _ := http.NewRequest(method, url, bytes.NewReader(body))
	if user != "" {
		r.SetBasicAuth(user, "pw-"+user)
	}
	r.Header.Set("Tus-Resumable", "1.0.0")
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		g.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func tusMeta(name, folder string) string {
	b := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	return "filename " + b(name) + ",folder " + b(folder)
}

func (g *tusGW) create(user, folder, name string, size int) *http.Response {
	return g.send(user, "POST", gateway.TusPrefix, map[string]string{
		"Upload-Length": strconv.Itoa(size), "Upload-Metadata": tusMeta(name, folder)}, nil)
}

func (g *tusGW) patch(user, loc string, off int, b []byte) *http.Response {
	return g.send(user, "PATCH", loc, map[string]string{"Upload-Offset": strconv.Itoa(off),
		"Content-Type": "application/offset+octet-stream"}, b)
}

func want(t *testing.T, what string, resp *http.Response, status int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s: %s, want %d", what, resp.Status, status)
	}
}

func TestTusThroughGateway(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		g := newTusGW(t, db)
		ctx := context.Background()
		for _, u := range []string{"alice", "bob", "carol"} {
			if _, err := g.repo.CreateUser(ctx, u, "pw-"+u); err != nil {
				t.Fatal(err)
			}
		}
		root, _ := g.repo.LiveByPath(ctx, "/")
		bobdir, err := g.repo.CreateFolder(ctx, root, "bob", "")
		if err != nil {
			t.Fatal(err)
		}
		grant := policy.Grant(policy.User("bob"), policy.Level(model.LevelFull), bobdir.ID)
		g.apply(policy.Change{Add: [][]string{policy.Membership(policy.User("alice"), policy.AdminRole), grant,
			policy.Grant(policy.User("carol"), policy.Level(model.LevelFull), root.ID)}})

		// Anonymous callers are challenged; OPTIONS (CORS preflight) is not.
		resp := g.create("", "/", "anon", 1)
		want(t, "anonymous", resp, 401)
		if resp.Header.Get("WWW-Authenticate") == "" {
			t.Fatal("no challenge")
		}
		want(t, "OPTIONS", g.send("", "OPTIONS", gateway.TusPrefix, nil, nil), 200)
		want(t, "wrong password", g.send("alice", "POST", gateway.TusPrefix, map[string]string{
			"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:nope"))}, nil), 401)

		// Write on the target folder decides.
		want(t, "bob into /", g.create("bob", "/", "x", 10), 403)
		resp = g.create("bob", "/bob", "scan.dcm", 100)
		want(t, "bob into /bob", resp, 201)
		loc := resp.Header.Get("Location")
		body := bytes.Repeat([]byte("ct"), 50)
		want(t, "bob PATCH", g.patch("bob", loc, 0, body[:40]), 204)

		// Nobody else reaches bob's upload, not even an admin.
		want(t, "alice HEAD", g.send("alice", "HEAD", loc, nil, nil), 404)
		want(t, "alice PATCH", g.patch("alice", loc, 40, body[40:]), 404)
		want(t, "carol DELETE", g.send("carol", "DELETE", loc, nil, nil), 404)
		if _, err := g.repo.LiveByPath(ctx, "/bob/scan.dcm"); err == nil {
			t.Fatal("an unfinished upload is visible in the namespace")
		}

		// Revoking bob's grant stops his next PATCH.
		g.apply(policy.Change{Remove: [][]string{grant}})
		want(t, "bob after revoke", g.patch("bob", loc, 40, body[40:]), 403)
		g.apply(policy.Change{Add: [][]string{grant}})
		want(t, "bob after re-grant", g.patch("bob", loc, 40, body[40:]), 204)
		n, err := g.repo.LiveByPath(ctx, "/bob/scan.dcm")
		if err != nil || n.Size != 100 || n.Status != model.StatusCompleted {
			t.Fatalf("finished file: %+v %v", n, err)
		}
		bob, _ := g.repo.UserByName(ctx, "bob")
		if n.CreatorID != bob.ID {
			t.Fatalf("creator %q, want bob's id %q", n.CreatorID, bob.ID)
		}

		// The quota of the account counts at creation.
		if _, err := db.NewUpdate().Table("users").Set("quota_bytes = 150").Where("name = ?", "carol").Exec(ctx); err != nil {
			t.Fatal(err)
		}
		want(t, "carol within quota", g.create("carol", "/", "c1", 100), 201)
		want(t, "carol over quota", g.create("carol", "/", "c2", 100), 413)
	})
}
