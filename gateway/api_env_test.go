package gateway_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/gateway"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/policy"
)

// apiEnv is a real server on 127.0.0.1 with the files API and the WebDAV
// door, over a local blob folder and a real database, with users:
// admin (role:admin), alice, bob, carol and dave, and the group
// registrationstaff holding bob and carol.
type apiEnv struct {
	t       *testing.T
	db      *bun.DB
	repo    *model.Repo
	authz   *policy.Authorizer
	srv     *gateway.Server
	ts      *httptest.Server
	logs    *syncBuffer
	blobDir string
	oa      *openAPI
	clock   *testClock
	// secrets lists every password, token and signature the test used,
	// for the log scan.
	secrets []string
}

const testPassword = "pw-%s-Secret-42"

func userPW(name string) string { return fmt.Sprintf(testPassword, name) }

func newAPIEnv(t *testing.T, db *bun.DB) *apiEnv {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	env := newTestServer(t, db, dir, gateway.Config{}, log)
	srv, repo, authz := env.srv, env.repo, env.authz
	clock := &testClock{}
	if err := srv.MountAPI(gateway.APIConfig{Clock: clock.now}); err != nil {
		t.Fatal(err)
	}
	srv.Handle(gateway.DAVPrefix+"/", srv.DAVHandler())
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	e := &apiEnv{t: t, db: db, repo: repo, authz: authz, srv: srv, ts: ts, logs: logs, blobDir: dir, oa: loadOpenAPI(t), clock: clock}
	for _, u := range []string{"admin", "alice", "bob", "carol", "dave"} {
		if _, err := repo.CreateUser(ctx, u, userPW(u)); err != nil {
			t.Fatal(err)
		}
		e.secrets = append(e.secrets, userPW(u))
	}
	if _, err := repo.CreateGroup(ctx, "registrationstaff", "Catalyze's registration staff"); err != nil {
		t.Fatal(err)
	}
	err := authz.Apply(ctx, policy.Change{Add: [][]string{
		policy.Membership("user:admin", policy.AdminRole),
		policy.Membership("user:bob", "group:registrationstaff"),
		policy.Membership("user:carol", "group:registrationstaff"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// testClock is the API's clock for signed links: real time plus an
// offset the test moves forward.
type testClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// auth is how a request authenticates.
type auth func(*http.Request)

func as(user string) auth {
	return func(r *http.Request) { r.SetBasicAuth(user, userPW(user)) }
}

func bearer(token string) auth {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }
}

func anonymous(*http.Request) {}

// result is an answer, read in full.
type result struct {
	status int
	header http.Header
	body   []byte
}

func (r result) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("answer is not JSON (%d): %v: %s", r.status, err, r.body)
	}
}

func (r result) String() string { return fmt.Sprintf("%d %s", r.status, r.body) }

// do sends a request and checks the answer against the OpenAPI document:
// the status must be documented for the operation, and a JSON body must
// match the documented schema (required fields and types).
func (e *apiEnv) do(a auth, method, path string, body io.Reader, hdr ...string) result {
	e.t.Helper()
	req, err := http.NewRequest(method, e.ts.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	a(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	res := result{status: resp.StatusCode, header: resp.Header, body: b}
	if strings.HasPrefix(req.URL.Path, gateway.APIPrefix) {
		e.oa.check(e.t, method, req.URL.Path, res)
	}
	return res
}

func (e *apiEnv) doJSON(a auth, method, path string, v any) result {
	e.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.do(a, method, path, bytes.NewReader(b), "Content-Type", "application/json")
}

func (e *apiEnv) want(r result, status int) {
	e.t.Helper()
	if r.status != status {
		e.t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
}

// fileMeta is FileMetadata as the tests read it.
type fileMeta struct {
	ID                string   `json:"id"`
	Name              string   `json:"name"`
	Path              string   `json:"path"`
	MimeType          string   `json:"mimeType"`
	Size              int64    `json:"size"`
	SHA256            string   `json:"sha256"`
	CreatorID         string   `json:"creatorId"`
	Tags              []string `json:"tags"`
	Title             string   `json:"title"`
	Description       string   `json:"description"`
	Source            string   `json:"source"`
	PHI               bool     `json:"phi"`
	Status            string   `json:"status"`
	CreationTimestamp string   `json:"creationTimestamp"`
	UpdateTimestamp   string   `json:"updateTimestamp"`
	Tokens            *[]struct {
		ID          string `json:"id"`
		Token       string `json:"token"`
		AccessLevel string `json:"accessLevel"`
	} `json:"tokens"`
}

// upload posts a multipart upload with fields (before the file part) and
// returns the metadata and the full token.
func (e *apiEnv) upload(a auth, name, content string, fields ...string) (fileMeta, string) {
	e.t.Helper()
	r := e.uploadRaw(a, name, content, fields...)
	e.want(r, http.StatusCreated)
	var m fileMeta
	r.json(e.t, &m)
	if m.Tokens == nil || len(*m.Tokens) != 1 || (*m.Tokens)[0].Token == "" || (*m.Tokens)[0].AccessLevel != "full" {
		e.t.Fatalf("upload did not return one full token: %s", r.body)
	}
	tok := (*m.Tokens)[0].Token
	e.secrets = append(e.secrets, tok)
	return m, tok
}

func (e *apiEnv) uploadRaw(a auth, name, content string, fields ...string) result {
	e.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for i := 0; i+1 < len(fields); i += 2 {
		mw.WriteField(fields[i], fields[i+1])
	}
	fw, err := mw.CreateFormFile("file", name)
	if err != nil {
		e.t.Fatal(err)
	}
	io.WriteString(fw, content)
	mw.Close()
	return e.do(a, http.MethodPost, "/api/v1/files", &buf, "Content-Type", mw.FormDataContentType())
}

// mintToken creates a token on a file and returns its credential.
func (e *apiEnv) mintToken(a auth, fileID, level string) (string, string) {
	e.t.Helper()
	r := e.doJSON(a, http.MethodPost, "/api/v1/files/"+fileID+"/tokens", map[string]any{"accessLevel": level})
	e.want(r, http.StatusCreated)
	var tok struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	}
	r.json(e.t, &tok)
	if tok.Token == "" || tok.ID == "" {
		e.t.Fatalf("token answer without credential: %s", r.body)
	}
	e.secrets = append(e.secrets, tok.Token)
	return tok.ID, tok.Token
}

// assertNoSecretsLogged scans the captured log output for every password,
// token and signature the test used, in clear and in the forms they
// travel in (Basic credentials, URL-encoded).
func (e *apiEnv) assertNoSecretsLogged() {
	e.t.Helper()
	logs := e.logs.String()
	if len(logs) == 0 {
		e.t.Fatal("no log output captured; the scan would prove nothing")
	}
	for _, s := range e.secrets {
		forms := []string{s, url.QueryEscape(s), base64.StdEncoding.EncodeToString([]byte(s))}
		if i := strings.LastIndexByte(s, '_'); i > 0 {
			forms = append(forms, s[i+1:]) // the secret part of fgt_<id>_<secret>
		}
		for _, f := range forms {
			if len(f) >= 8 && strings.Contains(logs, f) {
				e.t.Errorf("a secret (%d bytes) appears in the logs", len(s))
			}
		}
	}
	for _, u := range []string{"admin", "alice", "bob", "carol", "dave"} {
		cred := base64.StdEncoding.EncodeToString([]byte(u + ":" + userPW(u)))
		if strings.Contains(logs, cred) {
			e.t.Errorf("Basic credentials of %s appear in the logs", u)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
