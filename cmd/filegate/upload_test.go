package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	filegate "github.com/filegate/filegate"
	"github.com/filegate/filegate/gateway"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/blob/localblob"
	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/policy"
	"github.com/filegate/filegate/tus"
)

// uploadServer is a real gateway with the tus door on 127.0.0.1. hook sees
// every request before the server does.
type uploadServer struct {
	ts    *httptest.Server
	repo  *model.Repo
	store *model.Store
	mu    sync.Mutex
	hook  func(r *http.Request)
	seen  []string
}

func newUploadServer(t *testing.T) *uploadServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	db := dbtest.Open(t, dbtest.SQLite)
	repo := model.NewRepo(db)
	blobs, err := localblob.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	authz, err := policy.New(ctx, db, filegate.CasbinModel, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	store := model.NewStore(repo, blobs, log)
	srv, err := gateway.New(gateway.Config{}, gateway.Deps{Store: store, Authz: authz, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	door, err := srv.MountTus(ctx, tus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { door.Close() })
	if _, err := repo.CreateUser(ctx, "nurse", "pw-nurse"); err != nil {
		t.Fatal(err)
	}
	if err := authz.Apply(ctx, policy.Change{Add: [][]string{policy.Membership(policy.User("nurse"), policy.AdminRole)}}); err != nil {
		t.Fatal(err)
	}
	root, _ := repo.LiveByPath(ctx, "/")
	if _, err := repo.CreateFolder(ctx, root, "scans", ""); err != nil {
		t.Fatal(err)
	}
	u := &uploadServer{repo: repo, store: store}
	h := srv.Handler()
	u.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, r.Method)
		hook := u.hook
		u.mu.Unlock()
		if hook != nil {
			hook(r)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(u.ts.Close)
	return u
}

func (u *uploadServer) count(method string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, m := range u.seen {
		if m == method {
			n++
		}
	}
	return n
}

func (u *uploadServer) sha(t *testing.T, path string) string {
	t.Helper()
	ctx := context.Background()
	n, err := u.repo.LiveByPath(ctx, path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	r, err := u.store.Open(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h := sha256.New()
	io.Copy(h, r)
	if got := hex.EncodeToString(h.Sum(nil)); got != n.SHA256 {
		t.Fatalf("%s: recorded sha256 %s, bytes %s", path, n.SHA256, got)
	}
	return n.SHA256
}

func writeRandom(t *testing.T, n int) (string, string) {
	t.Helper()
	b := make([]byte, n)
	x := uint32(7)
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	p := filepath.Join(t.TempDir(), "ct-series.dcm")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return p, hex.EncodeToString(s[:])
}

// An upload interrupted after a few chunks resumes on the next run of the
// same command, at the same upload, and the file arrives whole.
func TestUploadCommandResumes(t *testing.T) {
	u := newUploadServer(t)
	file, sum := writeRandom(t, 6<<20+123)
	state := filepath.Join(t.TempDir(), "state.json")
	args := []string{file, "--to", u.ts.URL + "/dav/scans", "--user", "nurse", "--password-stdin",
		"--chunk-size", "1048576", "--state", state}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	patches := 0
	u.hook = func(r *http.Request) {
		if r.Method == http.MethodPatch {
			if patches++; patches == 3 {
				cancel() // the client goes away in the middle of its third chunk
			}
		}
	}
	var out, errOut bytes.Buffer
	err := uploadCmd(ctx, args, strings.NewReader("pw-nurse\n"), &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "resume") {
		t.Fatalf("interrupted run: %v", err)
	}
	if st, _ := os.ReadFile(state); !bytes.Contains(st, []byte("/uploads/")) {
		t.Fatalf("state file does not remember the upload: %s", st)
	}
	if _, err := u.repo.LiveByPath(context.Background(), "/scans/ct-series.dcm"); err == nil {
		t.Fatal("a partial upload is visible")
	}

	u.hook = nil
	out.Reset()
	errOut.Reset()
	if err := uploadCmd(context.Background(), args, strings.NewReader("pw-nurse\n"), &out, &errOut); err != nil {
		t.Fatalf("second run: %v\n%s", err, errOut.String())
	}
	if got := u.sha(t, "/scans/ct-series.dcm"); got != sum {
		t.Fatalf("sha256 %s, want %s", got, sum)
	}
	if n := u.count(http.MethodPost); n != 1 {
		t.Fatalf("%d uploads created; the second run should have resumed the first", n)
	}
	if u.count(http.MethodHead) == 0 {
		t.Fatal("the second run did not ask the server where to resume")
	}
	if !strings.Contains(out.String(), "/scans/ct-series.dcm") {
		t.Fatalf("stdout: %q", out.String())
	}
	if !strings.Contains(errOut.String(), "resuming at") || !strings.Contains(errOut.String(), "ETA") {
		t.Fatalf("progress lines: %q", errOut.String())
	}
	if st, _ := os.ReadFile(state); bytes.Contains(st, []byte("/uploads/")) {
		t.Fatalf("state file still holds the finished upload: %s", st)
	}
}

func TestUploadCommandCredentials(t *testing.T) {
	u := newUploadServer(t)
	file, sum := writeRandom(t, 1000)
	state := filepath.Join(t.TempDir(), "state.json")
	base := []string{file, "--to", u.ts.URL + "/scans", "--state", state, "--quiet"}
	var out, errOut bytes.Buffer

	t.Setenv("FILEGATE_API_KEY", "")
	t.Setenv("FILEGATE_TOKEN", "")
	if err := uploadCmd(context.Background(), base, strings.NewReader(""), &out, &errOut); err == nil {
		t.Fatal("no credentials accepted")
	}
	err := uploadCmd(context.Background(), append(base, "--user", "nurse", "--password-stdin"), strings.NewReader("wrong\n"), &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong password: %v", err)
	}
	_, key, err := u.repo.CreateAPIKey(context.Background(), "nurse", "cli", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("FILEGATE_API_KEY", key)
	if err := uploadCmd(context.Background(), base, strings.NewReader(""), &out, &errOut); err != nil {
		t.Fatalf("API key: %v", err)
	}
	if got := u.sha(t, "/scans/ct-series.dcm"); got != sum {
		t.Fatalf("sha256 %s, want %s", got, sum)
	}
	for _, bad := range []string{"ftp://x/y", "not a url", "http:///nohost"} {
		if err := uploadCmd(context.Background(), []string{file, "--to", bad}, strings.NewReader(""), &out, &errOut); err == nil {
			t.Fatalf("--to %q accepted", bad)
		}
	}
}
