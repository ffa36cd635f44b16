package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/gateway"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/dbtest"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

// syncBuffer collects log output from concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// probe is a door that records which subject reached it.
type probe struct {
	mu       sync.Mutex
	subjects []string
}

func (p *probe) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.subjects = append(p.subjects, gateway.PrincipalFrom(r.Context()).Subject)
	p.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (p *probe) reached() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.subjects
	p.subjects = nil
	return out
}

func TestAuthentication(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		logs := &syncBuffer{}
		log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		env := newTestServer(t, db, "", gateway.Config{}, log)
		srv, repo := env.srv, env.repo
		p := &probe{}
		srv.Handle("/probe/", p)
		ts := httptest.NewServer(srv.Handler())
		t.Cleanup(ts.Close)

		const alicePW, bobPW = "alice-password-1", "bob-password-22"
		if _, err := repo.CreateUser(ctx, "alice", alicePW); err != nil {
			t.Fatal(err)
		}
		if _, err := repo.CreateUser(ctx, "bob", bobPW); err != nil {
			t.Fatal(err)
		}
		if err := repo.SetDisabled(ctx, "bob", true); err != nil {
			t.Fatal(err)
		}
		_, liveKey, err := repo.CreateAPIKey(ctx, "alice", "live", nil)
		if err != nil {
			t.Fatal(err)
		}
		revoked, revokedKey, err := repo.CreateAPIKey(ctx, "alice", "old", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := repo.RevokeAPIKey(ctx, revoked.ID); err != nil {
			t.Fatal(err)
		}
		root, _ := repo.LiveByPath(ctx, "/")
		file, _, _, err := repo.PutFile(ctx, root, "f.txt", model.Content{BlobKey: "k", SHA256: strings.Repeat("0", 64)}, model.FileMeta{}, "", model.Cond{})
		if err != nil {
			t.Fatal(err)
		}
		var token string
		err = repo.InTx(ctx, func(ctx context.Context, tx bun.Tx) error {
			_, token, err = repo.InsertToken(ctx, tx, file.ID, model.LevelRead, "", nil)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}

		tests := []struct {
			name        string
			auth        func(r *http.Request)
			wantStatus  int
			wantSubject string // empty: the door must not be reached
		}{
			{"no credentials reach the door as anonymous", func(r *http.Request) {}, 204, "anonymous"},
			{"right password", func(r *http.Request) { r.SetBasicAuth("alice", alicePW) }, 204, "user:alice"},
			{"wrong password", func(r *http.Request) { r.SetBasicAuth("alice", "wrong-password") }, 401, ""},
			{"unknown user", func(r *http.Request) { r.SetBasicAuth("mallory", alicePW) }, 401, ""},
			{"disabled user", func(r *http.Request) { r.SetBasicAuth("bob", bobPW) }, 401, ""},
			{"live API key", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+liveKey) }, 204, "user:alice"},
			{"revoked API key", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+revokedKey) }, 401, ""},
			{"garbage bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer fgk_nonsense") }, 401, ""},
			{"unknown scheme", func(r *http.Request) { r.Header.Set("Authorization", "Digest abc") }, 401, ""},
			{"file token as bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }, 204, "token:"},
			{"file token as basic password", func(r *http.Request) { r.SetBasicAuth("anything", token) }, 204, "token:"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				req, _ := http.NewRequest("GET", ts.URL+"/probe/x", nil)
				tt.auth(req)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tt.wantStatus {
					t.Fatalf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
				}
				got := p.reached()
				if tt.wantSubject == "" {
					if len(got) != 0 {
						t.Fatalf("request with bad credentials reached the door as %v", got)
					}
					if h := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(h, `Basic realm="filegate"`) {
						t.Fatalf("WWW-Authenticate = %q", h)
					}
					return
				}
				if len(got) != 1 || !strings.HasPrefix(got[0], tt.wantSubject) {
					t.Fatalf("door reached as %v, want %s", got, tt.wantSubject)
				}
			})
		}

		t.Run("disabling a user stops a cached password", func(t *testing.T) {
			if err := repo.SetDisabled(ctx, "alice", true); err != nil {
				t.Fatal(err)
			}
			defer repo.SetDisabled(ctx, "alice", false)
			req, _ := http.NewRequest("GET", ts.URL+"/probe/x", nil)
			req.SetBasicAuth("alice", alicePW)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 401 || len(p.reached()) != 0 {
				t.Fatalf("disabled user: status %d", resp.StatusCode)
			}
		})

		t.Run("health, readiness and metrics", func(t *testing.T) {
			for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready", "/metrics": "filegate_http_requests_total"} {
				resp, err := http.Get(ts.URL + path)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
					t.Fatalf("%s: %d %q", path, resp.StatusCode, body)
				}
			}
		})

		t.Run("a refused Expect: 100-continue request is answered without its body", func(t *testing.T) {
			c, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write([]byte("PUT /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n"))
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "HTTP/1.1 404") {
				t.Fatalf("status line = %q, %v; the server waited for a body it never asked for", line, err)
			}
		})

		t.Run("no secret reaches the log", func(t *testing.T) {
			out := logs.String()
			if !strings.Contains(out, `"request_id"`) {
				t.Fatal("access log lines carry no request id")
			}
			for _, secret := range []string{alicePW, bobPW, "wrong-password", liveKey, revokedKey, token} {
				if strings.Contains(out, secret) {
					t.Fatalf("log contains a secret")
				}
			}
		})
	})
}
