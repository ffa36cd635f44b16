package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/gateway"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/policy"
)

// admEnv is a real server on 127.0.0.1 with the admin API and page and
// the WebDAV door mounted, an admin "root" with an API key, and a small
// tree: /reports/a.txt and /other/b.txt.
type admEnv struct {
	t       testing.TB
	ts      *httptest.Server
	db      *bun.DB
	repo    *model.Repo
	authz   *policy.Authorizer
	store   *model.Store
	rootKey string
	reports *model.Node
	aTxt    *model.Node
	other   *model.Node
}

const admPassword = "correct horse battery"

func newAdmEnv(t testing.TB, db *bun.DB) *admEnv {
	t.Helper()
	e := newAdmServer(t, db, t.TempDir())
	e.seed()
	return e
}

// newAdmServer starts a server on db and the blob folder without adding
// anything to them, so that several instances can share them.
func newAdmServer(t testing.TB, db *bun.DB, blobDir string) *admEnv {
	t.Helper()
	env := newTestServer(t, db, blobDir, gateway.Config{}, nil)
	srv, repo, authz := env.srv, env.repo, env.authz
	if err := srv.MountAdmin(gateway.AdminDeps{Policy: authz}); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	if !admDAVMounted(ts.URL) {
		srv.Handle(gateway.DAVPrefix+"/", srv.DAVHandler())
	}
	return &admEnv{t: t, ts: ts, db: db, repo: repo, authz: authz, store: env.store}
}

// seed adds the admin "root" with an API key and the tree.
func (e *admEnv) seed() {
	t := e.t
	t.Helper()
	ctx := context.Background()
	e.user("root", true)
	var err error
	_, e.rootKey, err = e.repo.CreateAPIKey(ctx, "root", "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	root, err := e.repo.LiveByPath(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	e.reports = e.folder(root, "reports")
	e.other = e.folder(root, "other")
	put := func(parent *model.Node, name string) *model.Node {
		n, _, err := e.store.Put(ctx, model.PutRequest{Parent: parent, Name: name, Body: strings.NewReader("content of " + name)})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	e.aTxt = put(e.reports, "a.txt")
	put(e.other, "b.txt")
}

func admDAVMounted(base string) bool {
	req, _ := http.NewRequest(http.MethodOptions, base+gateway.DAVPrefix+"/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode != http.StatusNotFound
}

func (e *admEnv) folder(parent *model.Node, name string) *model.Node {
	e.t.Helper()
	n, err := e.repo.CreateFolder(context.Background(), parent, name, "")
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// user creates an account with admPassword, an admin when admin is set.
func (e *admEnv) user(name string, admin bool) {
	e.t.Helper()
	ctx := context.Background()
	if _, err := e.repo.CreateUser(ctx, name, admPassword); err != nil {
		e.t.Fatal(err)
	}
	if admin {
		if err := e.authz.Apply(ctx, policy.Change{Add: [][]string{policy.Membership(policy.User(name), policy.AdminRole)}}); err != nil {
			e.t.Fatal(err)
		}
	}
}

func (e *admEnv) apply(ch policy.Change) {
	e.t.Helper()
	if err := e.authz.Apply(context.Background(), ch); err != nil {
		e.t.Fatal(err)
	}
}

// admReq is one request to the server; key is an API key (bearer), or
// basic is "name" for Basic with admPassword.
type admReq struct {
	method, path string
	body         any // JSON-encoded unless a string
	key, basic   string
	header       map[string]string
}

type admResp struct {
	status int
	header http.Header
	body   []byte
}

func (r admResp) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (r admResp) code() string { return errorCode(r.body) }

// errorCode is the code of a JSON error body, "" for any other body.
func errorCode(body []byte) string {
	var b struct {
		Error struct{ Code string } `json:"error"`
	}
	json.Unmarshal(body, &b)
	return b.Error.Code
}

func (e *admEnv) do(q admReq) admResp {
	e.t.Helper()
	var body io.Reader
	ctype := ""
	switch b := q.body.(type) {
	case nil:
	case string:
		body, ctype = strings.NewReader(b), "text/csv"
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		body, ctype = bytes.NewReader(j), "application/json"
	}
	req, err := http.NewRequest(q.method, e.ts.URL+q.path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	switch {
	case q.key != "":
		req.Header.Set("Authorization", "Bearer "+q.key)
	case q.basic != "":
		req.SetBasicAuth(q.basic, admPassword)
	}
	for k, v := range q.header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return admResp{resp.StatusCode, resp.Header, b}
}

// root sends a request as the admin, through its API key.
func (e *admEnv) root(method, path string, body any) admResp {
	e.t.Helper()
	return e.do(admReq{method: method, path: path, body: body, key: e.rootKey})
}

// davGet fetches a file through WebDAV as a user.
func (e *admEnv) davGet(user, path string) int {
	e.t.Helper()
	return e.do(admReq{method: http.MethodGet, path: gateway.DAVPrefix + path, basic: user}).status
}

// rules returns every stored line, sorted.
func (e *admEnv) rules() [][]string {
	e.t.Helper()
	lines, err := e.authz.Rules(context.Background(), policy.Filter{})
	if err != nil {
		e.t.Fatal(err)
	}
	sort.Slice(lines, func(i, j int) bool { return slices.Compare(lines[i], lines[j]) < 0 })
	return lines
}

// auditRows returns the admin door's audit rows, oldest first.
func (e *admEnv) auditRows() []model.AuditEntry {
	e.t.Helper()
	var rows []model.AuditEntry
	if err := e.db.NewSelect().Model(&rows).Where("door = ?", "admin").Order("seq").Scan(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	return rows
}

// doRaw sends body as is; its Content-Type comes from q.header (text/csv
// when unset).
func (e *admEnv) doRaw(q admReq, body string) admResp {
	e.t.Helper()
	q.body = body
	return e.do(q)
}
