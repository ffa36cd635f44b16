package gateway_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/davfs/davtest"
	"github.com/filegate/filegate/gateway"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/policy"
)

// davEnv is a real filegate server (gateway, authentication, authorizer,
// store on a local blob folder) on 127.0.0.1 with the WebDAV door mounted.
type davEnv struct {
	t     testing.TB
	ts    *httptest.Server
	db    *bun.DB
	repo  *model.Repo
	store *model.Store
	authz *policy.Authorizer
	root  *model.Node
}

func newDAVEnv(t testing.TB, db *bun.DB, cfg gateway.Config) *davEnv {
	t.Helper()
	ctx := context.Background()
	env := newTestServer(t, db, "", cfg, nil)
	srv, repo, store, authz := env.srv, env.repo, env.store, env.authz
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	if !davMounted(ts.URL) {
		srv.Handle(gateway.DAVPrefix+"/", srv.DAVHandler())
	}
	root, err := repo.LiveByPath(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	return &davEnv{t: t, ts: ts, db: db, repo: repo, store: store, authz: authz, root: root}
}

// davMounted reports whether the server already serves the WebDAV door
// (once the gateway mounts it itself, tests must not mount it twice).
func davMounted(base string) bool {
	req, _ := http.NewRequest(http.MethodOptions, base+gateway.DAVPrefix+"/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.Header.Get("DAV") != ""
}

func (e *davEnv) url(p string) string { return e.ts.URL + gateway.DAVPrefix + p }

func (e *davEnv) user(name, password string) *model.User {
	e.t.Helper()
	u, err := e.repo.CreateUser(context.Background(), name, password)
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

func (e *davEnv) apply(add ...[]string) {
	e.t.Helper()
	if err := e.authz.Apply(context.Background(), policy.Change{Add: add}); err != nil {
		e.t.Fatal(err)
	}
}

// token makes a per-file token of level on node and grants it.
func (e *davEnv) token(node *model.Node, level string) string {
	e.t.Helper()
	ctx := context.Background()
	var cred string
	var tok *model.FileToken
	err := e.repo.InTx(ctx, func(ctx context.Context, tx bun.Tx) error {
		var err error
		tok, cred, err = e.repo.InsertToken(ctx, tx, node.ID, level, "", nil)
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.apply(policy.Grant(policy.Token(tok.ID), policy.Level(level), node.ID))
	return cred
}

// folder creates a folder (as the store, bypassing the door).
func (e *davEnv) folder(parent *model.Node, name string) *model.Node {
	e.t.Helper()
	n, err := e.repo.CreateFolder(context.Background(), parent, name, "")
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// file stores content (as the store, bypassing the door).
func (e *davEnv) file(parent *model.Node, name, content string) *model.Node {
	e.t.Helper()
	n, _, err := e.store.Put(context.Background(), model.PutRequest{Parent: parent, Name: name, Body: strings.NewReader(content)})
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// davAuth is how a request authenticates: Basic user/password, or a bearer
// credential, or nothing.
type davAuth struct{ user, pass, bearer string }

func (a davAuth) set(r *http.Request) {
	switch {
	case a.bearer != "":
		r.Header.Set("Authorization", "Bearer "+a.bearer)
	case a.user != "":
		r.SetBasicAuth(a.user, a.pass)
	}
}

// do sends a request and returns the status, headers and body.
func (e *davEnv) do(a davAuth, method, p string, body io.Reader, hdr map[string]string) (int, http.Header, string) {
	e.t.Helper()
	return davtest.Do(e.t, method, e.url(p), body, hdr, a.set)
}
