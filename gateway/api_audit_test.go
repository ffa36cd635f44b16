package gateway_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/gateway"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/dbtest"
)

func TestAuditTrail(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newAPIEnv(t, db)
		ctx := context.Background()
		dirs := e.folders("/ward")
		e.grant(as("admin"), dirs["/ward"], map[string]any{"group": "registrationstaff", "level": "read"})
		m, full := e.upload(as("admin"), "chart.pdf", "%PDF-chart", "folder", "/ward")
		tokID, tok := e.mintToken(bearer(full), m.ID, "read")
		var link struct{ Path string }
		r := e.doJSON(bearer(full), http.MethodPost, "/api/v1/files/"+m.ID+"/links", map[string]any{})
		r.json(t, &link)
		lu, _ := url.Parse(link.Path)
		e.secrets = append(e.secrets, lu.Query().Get("signature"))

		type expect struct {
			subject, action, decision, rule string
			node                            bool
		}
		cases := []struct {
			id     string
			a      auth
			method string
			path   string
			body   map[string]any
			want   expect
		}{
			{"r-meta", as("bob"), http.MethodGet, "/api/v1/files/" + m.ID, nil,
				expect{"user:bob", "stat", "allow", "p, level:read, *, (stat|read) via g, user:bob, group:registrationstaff; g2, group:registrationstaff, level:read, " + dirs["/ward"], true}},
			{"r-deny", as("dave"), http.MethodGet, "/api/v1/files/" + m.ID + "/content", nil, expect{"user:dave", "read", "deny", "", true}},
			{"r-token", bearer(tok), http.MethodGet, "/api/v1/files/" + m.ID + "/content", nil,
				expect{"token:" + tokID, "read", "allow", "p, level:read, *, (stat|read) via g2, token:" + tokID + ", level:read, " + m.ID, true}},
			{"r-anon", anonymous, http.MethodGet, "/api/v1/files/" + m.ID + "/content", nil, expect{"anonymous", "read", "deny", "", true}},
			{"r-settings", as("admin"), http.MethodGet, "/api/v1/settings/files", nil, expect{"user:admin", "admin", "allow", "p, role:admin, *, * via g, user:admin, role:admin", false}},
			{"r-settings-deny", as("alice"), http.MethodPut, "/api/v1/settings/files", map[string]any{}, expect{"user:alice", "admin", "deny", "", false}},
			{"r-grant", as("bob"), http.MethodPost, "/api/v1/files/" + m.ID + "/grants", map[string]any{"user": "dave", "level": "read"},
				expect{"user:bob", "share", "deny", "", true}},
			{"r-tokens", bearer(full), http.MethodGet, "/api/v1/files/" + m.ID + "/tokens", nil, expect{"", "share", "allow", "", true}},
			{"r-link", anonymous, http.MethodGet, link.Path, nil, expect{"link:" + lu.Query().Get("key"), "read", "allow", "signed link", true}},
			{"r-badlink", anonymous, http.MethodGet, link.Path + "x", nil, expect{"link:" + lu.Query().Get("key"), "read", "deny", "bad signature or retired key", false}},
			{"r-list", as("bob"), http.MethodGet, "/api/v1/files", nil, expect{"user:bob", "stat", "allow", "search: listing limited to granted subtrees", false}},
			{"r-audit", as("admin"), http.MethodGet, "/api/v1/audit?limit=5", nil, expect{"user:admin", "admin", "allow", "", false}},
			{"r-audit-deny", as("bob"), http.MethodGet, "/api/v1/audit", nil, expect{"user:bob", "admin", "deny", "", false}},
		}
		for _, c := range cases {
			var res result
			if c.body != nil {
				res = e.doJSONWithID(c.a, c.method, c.path, c.body, c.id)
			} else {
				res = e.do(c.a, c.method, c.path, nil, "X-Request-Id", c.id)
			}
			if res.header.Get("X-Request-Id") != c.id {
				t.Fatalf("%s: request id not echoed", c.id)
			}
		}
		for _, c := range cases {
			var rows []model.AuditEntry
			if err := db.NewSelect().Model(&rows).Where("request_id = ?", c.id).Scan(ctx); err != nil {
				t.Fatal(err)
			}
			if len(rows) != 1 {
				t.Fatalf("%s: %d audit rows, want exactly 1: %+v", c.id, len(rows), rows)
			}
			row := rows[0]
			w := c.want
			if (w.subject != "" && row.Subject != w.subject) || row.Action != w.action || row.Decision != w.decision ||
				(w.rule != "" && row.Rule != w.rule) || (w.decision == "deny" && w.rule == "" && row.Rule != "") {
				t.Errorf("%s: row %+v, want %+v", c.id, row, w)
			}
			if w.node && (row.NodeID != m.ID || !strings.HasSuffix(row.Object, "/"+m.ID)) {
				t.Errorf("%s: object %q node %q, want the file", c.id, row.Object, row.NodeID)
			}
			if !strings.HasPrefix(row.Remote, "127.0.0.1:") || row.Door != "api" || row.At.IsZero() {
				t.Errorf("%s: remote %q door %q at %v", c.id, row.Remote, row.Door, row.At)
			}
		}

		t.Run("the audit endpoint filters for admins", func(t *testing.T) {
			e.t = t
			var page struct {
				Data []map[string]any
				Next *string
			}
			r := e.do(as("admin"), http.MethodGet, "/api/v1/audit?requestId=r-deny", nil)
			e.want(r, http.StatusOK)
			r.json(t, &page)
			if len(page.Data) != 1 || page.Data[0]["subject"] != "user:dave" || page.Data[0]["decision"] != "deny" {
				t.Fatalf("by request id: %s", r.body)
			}
			r = e.do(as("admin"), http.MethodGet, "/api/v1/audit?subject=user:bob&decision=deny", nil)
			r.json(t, &page)
			if len(page.Data) != 2 {
				t.Fatalf("bob's denials: %s", r.body)
			}
			r = e.do(as("admin"), http.MethodGet, "/api/v1/audit?nodeId="+m.ID+"&limit=2", nil)
			r.json(t, &page)
			if len(page.Data) != 2 || page.Next == nil {
				t.Fatalf("first page: %s", r.body)
			}
			r = e.do(as("admin"), http.MethodGet, "/api/v1/audit?nodeId="+m.ID+"&limit=2&before="+*page.Next, nil)
			var older struct{ Data []map[string]any }
			r.json(t, &older)
			if len(older.Data) != 2 || older.Data[0]["seq"].(float64) >= page.Data[1]["seq"].(float64) {
				t.Fatalf("second page: %s", r.body)
			}
			e.want(e.do(as("admin"), http.MethodGet, "/api/v1/audit?since=yesterday", nil), http.StatusBadRequest)
		})

		t.Run("no secret reaches an audit row", func(t *testing.T) {
			e.t = t
			var rows []model.AuditEntry
			if err := db.NewSelect().Model(&rows).Scan(ctx); err != nil {
				t.Fatal(err)
			}
			for _, row := range rows {
				all := strings.Join([]string{row.Subject, row.Object, row.Rule, row.Remote, row.RequestID, row.Door, row.Action}, "|")
				for _, s := range e.secrets {
					if strings.Contains(all, s) {
						t.Fatalf("audit row %d holds a secret", row.Seq)
					}
				}
			}
		})

		t.Run("verify passes, then catches an edited row", func(t *testing.T) {
			e.t = t
			log := model.NewAuditLog(db)
			rep, err := log.Verify(ctx)
			if err != nil || !rep.OK || rep.Rows < int64(len(cases)) {
				t.Fatalf("verify: %+v, %v", rep, err)
			}
			if _, err := db.ExecContext(ctx, "UPDATE audit SET decision = 'allow' WHERE request_id = 'r-deny'"); err == nil {
				t.Fatal("the database let an audit row change")
			}
			dropAuditGuards(t, db)
			if _, err := db.ExecContext(ctx, "UPDATE audit SET decision = 'allow' WHERE request_id = 'r-deny'"); err != nil {
				t.Fatal(err)
			}
			var seq int64
			db.NewRaw("SELECT seq FROM audit WHERE request_id = 'r-deny'").Scan(ctx, &seq)
			rep, err = log.Verify(ctx)
			if err != nil || rep.OK || rep.BadSeq != seq {
				t.Fatalf("verify after edit: %+v, %v (edited %d)", rep, err, seq)
			}
		})

		t.Run("without an audit trail nothing is served", func(t *testing.T) {
			e.t = t
			if _, err := db.ExecContext(ctx, "ALTER TABLE audit RENAME TO audit_gone"); err != nil {
				t.Fatal(err)
			}
			r := e.do(bearer(full), http.MethodGet, "/api/v1/files/"+m.ID+"/content", nil)
			if r.status != http.StatusServiceUnavailable || strings.Contains(string(r.body), "%PDF") {
				t.Fatalf("content without audit: %s", r)
			}
			if _, err := db.ExecContext(ctx, "ALTER TABLE audit_gone RENAME TO audit"); err != nil {
				t.Fatal(err)
			}
			e.want(e.do(bearer(full), http.MethodGet, "/api/v1/files/"+m.ID+"/content", nil), http.StatusOK)
		})

		t.Run("other doors audit through Authorize", func(t *testing.T) {
			e.t = t
			req, _ := http.NewRequestWithContext(gateway.WithPrincipal(ctx, gateway.Principal{Subject: "user:bob", Method: "password"}),
				http.MethodGet, "/dav/ward/chart.pdf", nil)
			req.RemoteAddr = "10.0.0.9:4242"
			n, _ := e.repo.NodeByID(ctx, m.ID)
			d, err := e.srv.Authorize(req, "read", n)
			if err != nil || !d.Allowed {
				t.Fatalf("Authorize: %+v, %v", d, err)
			}
			var row model.AuditEntry
			if err := db.NewSelect().Model(&row).Order("seq DESC").Limit(1).Scan(ctx); err != nil {
				t.Fatal(err)
			}
			if row.Door != "dav" || row.Subject != "user:bob" || row.Remote != "10.0.0.9:4242" || row.NodeID != m.ID || row.Decision != "allow" {
				t.Fatalf("dav row: %+v", row)
			}
			dctx := gateway.WithAuditSource(ctx, req)
			if d, err := e.srv.AuthorizeCtx(dctx, "user:dave", "write", n); err != nil || d.Allowed {
				t.Fatalf("AuthorizeCtx: %+v, %v", d, err)
			}
			if err := db.NewSelect().Model(&row).Order("seq DESC").Limit(1).Scan(ctx); err != nil {
				t.Fatal(err)
			}
			if row.Subject != "user:dave" || row.Decision != "deny" || row.Remote != "10.0.0.9:4242" || row.Door != "dav" {
				t.Fatalf("ctx row: %+v", row)
			}
		})

		e.t = t
		e.assertNoSecretsLogged()
	})
}

func (e *apiEnv) doJSONWithID(a auth, method, path string, v map[string]any, id string) result {
	e.t.Helper()
	b := strings.NewReader(mustJSON(e.t, v))
	return e.do(a, method, path, b, "Content-Type", "application/json", "X-Request-Id", id)
}

// dropAuditGuards removes the append-only triggers, as someone with the
// database owner's rights could.
func dropAuditGuards(t *testing.T, db *bun.DB) {
	t.Helper()
	stmts := []string{"DROP TRIGGER audit_no_update", "DROP TRIGGER audit_no_delete"}
	if model.IsPostgres(db) {
		stmts = []string{"DROP TRIGGER audit_no_change ON audit", "DROP TRIGGER audit_no_truncate ON audit"}
	}
	for _, s := range stmts {
		if _, err := db.ExecContext(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
}

// An allowed request's audit row is written while the request works, but
// its answer waits for the row: when the row cannot be written the client
// gets 503 and none of the file's bytes, on every door.
func TestNoAnswerWithoutAuditRow(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newAPIEnv(t, db)
		ctx := context.Background()
		m, _ := e.upload(as("admin"), "secret.txt", "TOP-SECRET-BYTES", "folder", "/")
		if r := e.do(as("admin"), http.MethodGet, "/api/v1/files/"+m.ID+"/content", nil); r.status != 200 || !strings.Contains(string(r.body), "TOP-SECRET-BYTES") {
			t.Fatalf("before: %d %q", r.status, r.body)
		}
		fail := "CREATE TRIGGER audit_fail BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'audit refused'); END"
		if model.IsPostgres(db) {
			if _, err := db.ExecContext(ctx, `CREATE FUNCTION audit_fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$`); err != nil {
				t.Fatal(err)
			}
			fail = "CREATE TRIGGER audit_fail BEFORE INSERT ON audit FOR EACH ROW EXECUTE FUNCTION audit_fail()"
		}
		if _, err := db.ExecContext(ctx, fail); err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{"/api/v1/files/" + m.ID + "/content", "/dav/secret.txt"} {
			r := e.do(as("admin"), http.MethodGet, path, nil)
			if r.status != http.StatusServiceUnavailable || strings.Contains(string(r.body), "TOP-SECRET") {
				t.Errorf("GET %s without audit: %d %q", path, r.status, r.body)
			}
		}
	})
}
