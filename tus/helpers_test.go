package tus_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/blob/localblob"
	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/tus"
)

func TestMain(m *testing.M) {
	code := dbtest.Main(m)
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// testAuthz stands in for the policy package, which the gateway tests
// exercise with the real authorizer: every user may write everywhere
// except where a test revoked it.
type testAuthz struct {
	mu      sync.Mutex
	revoked map[string]bool // subject -> no write anywhere
}

func (a *testAuthz) MayWrite(ctx context.Context, c tus.Caller, folder *model.Node) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return !a.revoked[c.Subject]
}

func (a *testAuthz) revoke(subject string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.revoked == nil {
		a.revoked = map[string]bool{}
	}
	a.revoked[subject] = true
}

// env is one filegate-like instance: a store, the door, and a real HTTP
// server on 127.0.0.1 whose callers are named by the Basic user name (the
// gateway's authentication is tested in the gateway package).
type env struct {
	t      testing.TB
	db     *bun.DB
	store  *model.Store
	blobs  *localblob.Store
	door   *tus.Handler
	authz  *testAuthz
	srv    *httptest.Server
	quotas map[string]int64
}

func newEnv(t testing.TB, db *bun.DB, blobRoot string, cfg tus.Config) *env {
	t.Helper()
	if blobRoot == "" {
		blobRoot = t.TempDir()
	}
	blobs, err := localblob.New(blobRoot)
	if err != nil {
		t.Fatal(err)
	}
	repo := model.NewRepo(db)
	e := &env{t: t, db: db, blobs: blobs, store: model.NewStore(repo, blobs, nil), authz: &testAuthz{}, quotas: map[string]int64{}}
	e.door, err = tus.New(cfg, e.store, e.authz)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.door.Close() })
	mux := http.NewServeMux()
	mux.Handle("/uploads/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user, _, ok := r.BasicAuth(); ok {
			r = r.WithContext(tus.WithCaller(r.Context(), tus.Caller{
				Subject: "user:" + user, UserID: "uid-" + user, QuotaBytes: e.quotas[user]}))
		}
		e.door.ServeHTTP(w, r)
	}))
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) url() string { return e.srv.URL + "/uploads/" }

// req sends one request as user with the tus headers most tests need.
func (e *env) req(user, method, url string, hdr map[string]string, body io.Reader) *http.Response {
	e.t.Helper()
	r, err := http.NewRequest(method, url, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if user != "" {
		r.SetBasicAuth(user, "x")
	}
	r.Header.Set("Tus-Resumable", "1.0.0")
	for k, v := range hdr {
		if v == "" {
			r.Header.Del(k)
		} else {
			r.Header.Set(k, v)
		}
	}
	if b, ok := body.(*bytes.Reader); ok {
		r.ContentLength = int64(b.Len())
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		e.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// create starts an upload of size bytes named name in folder.
func (e *env) create(user, folder, name string, size int64) string {
	e.t.Helper()
	resp := e.req(user, "POST", e.url(), map[string]string{
		"Upload-Length": strconv.FormatInt(size, 10), "Upload-Metadata": meta("filename", name, "folder", folder)}, nil)
	if resp.StatusCode != 201 {
		e.t.Fatalf("create %s: %s", name, resp.Status)
	}
	return resp.Header.Get("Location")
}

func (e *env) patch(user, loc string, off int64, data []byte, hdr map[string]string) *http.Response {
	e.t.Helper()
	h := map[string]string{"Upload-Offset": strconv.FormatInt(off, 10), "Content-Type": "application/offset+octet-stream"}
	for k, v := range hdr {
		h[k] = v
	}
	return e.req(user, "PATCH", loc, h, bytes.NewReader(data))
}

// offset returns the upload's offset as HEAD reports it, or -status.
func (e *env) offset(user, loc string) int64 {
	e.t.Helper()
	resp := e.req(user, "HEAD", loc, nil, nil)
	if resp.StatusCode != 200 {
		return -int64(resp.StatusCode)
	}
	n, err := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	if err != nil {
		e.t.Fatalf("HEAD Upload-Offset %q", resp.Header.Get("Upload-Offset"))
	}
	return n
}

// file returns the live node at path and its bytes.
func (e *env) file(path string) (*model.Node, []byte) {
	e.t.Helper()
	n, err := e.store.Repo.LiveByPath(context.Background(), path)
	if err != nil {
		e.t.Fatalf("file %s: %v", path, err)
	}
	r, err := e.store.Open(context.Background(), n)
	if err != nil {
		e.t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		e.t.Fatal(err)
	}
	return n, b
}

func (e *env) absent(path string) {
	e.t.Helper()
	if n, err := e.store.Repo.LiveByPath(context.Background(), path); err == nil {
		e.t.Fatalf("%s exists (status %s) but should not", path, n.Status)
	}
}

func (e *env) mkdir(path string) *model.Node {
	e.t.Helper()
	ctx := context.Background()
	parent, name := model.SplitPath(path)
	p, err := e.store.Repo.LiveByPath(ctx, parent)
	if err != nil {
		e.t.Fatal(err)
	}
	n, err := e.store.Repo.CreateFolder(ctx, p, name, "uid-alice")
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// leftovers lists files under the blob root's partial and tmp folders.
func (e *env) leftovers() []string {
	var out []string
	for _, d := range []string{"partial/data", "partial/state", "tmp"} {
		ents, _ := os.ReadDir(e.blobs.Root() + "/" + d)
		for _, x := range ents {
			out = append(out, d+"/"+x.Name())
		}
	}
	sort.Strings(out)
	return out
}

// meta encodes Upload-Metadata from key, value pairs.
func meta(kv ...string) string {
	var parts []string
	for i := 0; i+1 < len(kv); i += 2 {
		parts = append(parts, kv[i]+" "+base64.StdEncoding.EncodeToString([]byte(kv[i+1])))
	}
	return strings.Join(parts, ",")
}

func sum256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func data(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed) + 1
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return b
}

func wantStatus(t *testing.T, what string, resp *http.Response, want ...int) {
	t.Helper()
	for _, w := range want {
		if resp.StatusCode == w {
			return
		}
	}
	t.Fatalf("%s: got %s, want %v", what, resp.Status, want)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
