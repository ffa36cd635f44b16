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
	"sync/atomic"
	"testing"
	"time"

	"github.com/uptrace/bun"

	filegate "github.com/filegate/filegate"
	"github.com/filegate/filegate/davfs"
	"github.com/filegate/filegate/davfs/davtest"
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

	finished atomic.Int64
}

const prefix = "/dav"

func newEnv(t testing.TB, db *bun.DB) *env {
	t.Helper()
	return newEnvWith(t, db, davfs.NewListingCache(16<<20))
}

// newEnvWith is newEnv with the listing cache given (nil for none); two
// envs on one database are two instances of filegate.
func newEnvWith(t testing.TB, db *bun.DB, listings *davfs.ListingCache) *env {
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
		Prefix:   prefix,
		Decide:   func(ctx context.Context, sub, act, obj string) bool { return authz.Decide(ctx, sub, act, obj).Allowed },
		Listings: listings,
	})
	e := &env{t: t, db: db, repo: repo, store: store, authz: authz, fs: fs}
	// No ServeMux: it would answer unclean paths with a redirect before
	// the handler could refuse them.
	ts := httptest.NewServer(e.track(basicAuth(repo, h)))
	t.Cleanup(ts.Close)
	root, err := repo.LiveByPath(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	e.ts, e.root = ts, root
	return e
}

// track counts finished requests, so a test that cut a connection can
// wait until the handler has finished with it.
func (e *env) track(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer e.finished.Add(1)
		next.ServeHTTP(w, r)
	})
}

// waitFinished waits until n requests have finished in all.
func (e *env) waitFinished(n int64) {
	deadline := time.Now().Add(30 * time.Second)
	for e.finished.Load() < n {
		if time.Now().After(deadline) {
			e.t.Fatalf("only %d of %d requests finished", e.finished.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// basicAuth puts the Actor of valid Basic credentials (a user's password,
// or a file token as password) in the context; no credentials give the
// anonymous actor and wrong ones a 401.
func basicAuth(repo *model.Repo, next http.Handler) http.Handler {
	var mu sync.Mutex
	verified := map[[2]string]*model.User{} // argon2id is slow; tests log in thousands of times
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, pass, ok := r.BasicAuth()
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		if strings.HasPrefix(pass, model.TokenPrefix+"_") {
			tok, err := repo.TokenByCredential(r.Context(), pass)
			if err != nil {
				http.Error(w, "bad token", http.StatusUnauthorized)
				return
			}
			ctx := davfs.WithActor(r.Context(), davfs.Actor{Subject: "token:" + tok.ID, ID: "token:" + tok.ID})
			next.ServeHTTP(w, r.WithContext(ctx))
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

// token makes a file token of level ("read" or "full") on n, grants it,
// and returns the auth that presents it.
func (e *env) token(n *model.Node, level string) auth {
	e.t.Helper()
	ctx := context.Background()
	var cred string
	var tok *model.FileToken
	err := e.repo.InTx(ctx, func(ctx context.Context, tx bun.Tx) error {
		var err error
		tok, cred, err = e.repo.InsertToken(ctx, tx, n.ID, level, "", nil)
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.grant(policy.Token(tok.ID), policy.Level(level), n)
	return auth{user: "token", pass: cred}
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
	return davtest.Do(e.t, method, e.url(p), body, hdr, func(r *http.Request) {
		if a.user != "" {
			r.SetBasicAuth(a.user, a.pass)
		}
	})
}
