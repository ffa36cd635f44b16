package gateway_test

import (
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/gateway"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/policy"
)

// TestDAVThroughGateway checks what the door gets from the gateway:
// anonymous OPTIONS for the Windows and macOS probes, the Basic challenge,
// every way of logging in, and the one authorizer.
func TestDAVThroughGateway(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		env := newDAVEnv(t, db, gateway.Config{})
		env.user("alice", "alice-password")
		home := env.folder(env.root, "alice")
		env.apply(policy.Grant(policy.User("alice"), policy.LevelFull, home.ID))
		doc := env.file(home, "doc.txt", "hello")
		readTok := env.token(doc, model.LevelRead)
		alice := davAuth{user: "alice", pass: "alice-password"}

		code, hdr, _ := env.do(davAuth{}, "OPTIONS", "/", nil, nil)
		if code != 200 || hdr.Get("DAV") != "1, 2" || hdr.Get("MS-Author-Via") != "DAV" || !strings.Contains(hdr.Get("Allow"), "PROPFIND") {
			t.Fatalf("anonymous OPTIONS: %d %v", code, hdr)
		}
		code, hdr, _ = env.do(davAuth{}, "PROPFIND", "/", nil, map[string]string{"Depth": "0"})
		if code != 401 || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Basic ") {
			t.Fatalf("anonymous PROPFIND: %d %v", code, hdr)
		}
		if code, _, _ := env.do(davAuth{user: "alice", pass: "wrong"}, "PROPFIND", "/", nil, map[string]string{"Depth": "0"}); code != 401 {
			t.Fatalf("wrong password: %d", code)
		}
		code, _, body := env.do(alice, "PROPFIND", "/", nil, map[string]string{"Depth": "1"})
		if code != 207 || !strings.Contains(body, "/dav/alice/") {
			t.Fatalf("alice's root: %d %s", code, body)
		}
		if code, _, _ := env.do(alice, "PUT", "/alice/new.txt", strings.NewReader("x"), nil); code != 201 {
			t.Fatalf("alice PUT: %d", code)
		}
		if n, err := env.repo.LiveByPath(t.Context(), "/alice/new.txt"); err != nil || n.CreatorID == "" {
			t.Fatalf("creator not recorded: %v %+v", err, n)
		}
		for _, a := range []davAuth{{bearer: readTok}, {user: "anything", pass: readTok}} {
			if code, _, body := env.do(a, "GET", "/alice/doc.txt", nil, nil); code != 200 || body != "hello" {
				t.Fatalf("token GET: %d %q", code, body)
			}
			if code, _, _ := env.do(a, "PUT", "/alice/doc.txt", strings.NewReader("no"), nil); code != 403 {
				t.Fatalf("read token PUT: %d", code)
			}
		}
		for _, p := range []string{"/%2e%2e/x", "/alice/..%2f..%2fx", "/alice/%252e%252e/x", "/a%00b"} {
			if code, _, _ := env.do(alice, "PROPFIND", p, nil, map[string]string{"Depth": "0"}); code != 400 {
				t.Errorf("PROPFIND %s: %d, want 400", p, code)
			}
		}
	})
}
