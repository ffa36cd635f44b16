package davfs_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/uptrace/bun"

	filegate "github.com/filegate/filegate"
	"github.com/filegate/filegate/davfs"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/blob/localblob"
	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/policy"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

// env is the WebDAV handler over a real store (database and local blob
// folder) and the real authorizer, served on 127.0.0.1. Requests log in
// with Basic credentials checked against the accounts table; the gateway
// does the same with more ways to log in.
type env struct {
	t     testing.TB
	ts    *httptest.Server
	db    *bun.DB
	repo  *model.Repo
	store *model.Store
	authz *policy.Authorizer
	fs    *davfs.FS
	root  *model.Node
}

const prefix = "/dav"

func newEnv(t testing.TB, db *bun.DB) *env {
	t.Helper()
	ctx := context.Background()
	repo := model.NewRepo(db)
	blobs, err := localblob.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	authz, err := policy.New(ctx, db, filegate.CasbinModel, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	store := model.NewStore(repo, blobs, slog.New(slog.DiscardHandler))
	fs := davfs.New(store, nil, nil)
	h := davfs.NewHandler(fs, davfs.Config{
		Prefix: prefix,
		Decide: func(ctx context.Context, sub, act, obj string) bool { return authz.Decide(ctx, sub, act, obj).Allowed },
	})
	mux := http.NewServeMux()
	mux.Handle(prefix+"/", basicAuth(repo, h))
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	root, err := repo.LiveByPath(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, ts: ts, db: db, repo: repo, store: store, authz: authz, fs: fs, root: root}
}

// basicAuth puts the Actor of valid Basic credentials in the context;
// no credentials give the anonymous actor and wrong ones a 401.
func basicAuth(repo *model.Repo, next http.Handler) http.Handler {
	var mu sync.Mutex
	verified := map[[2]string]*model.User{} // argon2id is slow; tests log in thousands of times
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, pass, ok := r.BasicAuth()
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		mu.Lock()
		u := verified[[2]string{name, pass}]
		mu.Unlock()
		if u == nil {
			var err error
			u, err = repo.UserByName(r.Context(), name)
			if err != nil || !model.CheckPassword(u.PasswordHash, pass) {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, "bad credentials", http.StatusUnauthorized)
				return
			}
			mu.Lock()
			verified[[2]string{name, pass}] = u
			mu.Unlock()
		}
		ctx := davfs.WithActor(r.Context(), davfs.Actor{Subject: "user:" + u.Name, ID: u.ID})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func (e *env) url(p string) string { return e.ts.URL + prefix + p }

func (e *env) user(name, password string) {
	e.t.Helper()
	if _, err := e.repo.CreateUser(context.Background(), name, password); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) grant(sub, level string, n *model.Node) {
	e.t.Helper()
	if err := e.authz.Apply(context.Background(), policy.Change{Add: [][]string{policy.Grant(sub, level, n.ID)}}); err != nil {
		e.t.Fatal(err)
	}
}

// admin makes a user with full access to everything and returns its auth.
func (e *env) admin(name string) auth {
	e.user(name, name+"-password")
	e.grant(policy.User(name), policy.LevelFull, e.root)
	return auth{user: name, pass: name + "-password"}
}

func (e *env) folder(parent *model.Node, name string) *model.Node {
	e.t.Helper()
	n, err := e.repo.CreateFolder(context.Background(), parent, name, "")
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *env) file(parent *model.Node, name, content string) *model.Node {
	e.t.Helper()
	n, _, err := e.store.Put(context.Background(), model.PutRequest{Parent: parent, Name: name, Body: strings.NewReader(content)})
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *env) live(p string) *model.Node {
	e.t.Helper()
	n, err := e.repo.LiveByPath(context.Background(), p)
	if err != nil {
		e.t.Fatalf("%s: %v", p, err)
	}
	return n
}

func (e *env) content(n *model.Node) string {
	e.t.Helper()
	r, err := e.store.Open(context.Background(), n)
	if err != nil {
		e.t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

type auth struct{ user, pass string }

// do sends a request and returns the status, headers and body.
func (e *env) do(a auth, method, p string, body io.Reader, hdr map[string]string) (int, http.Header, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url(p), body)
	if err != nil {
		e.t.Fatal(err)
	}
	if a.user != "" {
		req.SetBasicAuth(a.user, a.pass)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}
