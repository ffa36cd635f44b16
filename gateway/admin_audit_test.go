package gateway_test

import (
	"net/http"
	"testing"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model/dbtest"
)

// Every request to the administration API leaves exactly one audit row:
// changes through their handlers (with before and after), reads and
// refusals at the door, so an auditor sees who looked at accounts and
// policies, and who tried to.
func TestAdminReadsAndRefusalsAreAudited(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newAdmEnv(t, db)
		e.user("nurse", false)
		before := len(e.auditRows())
		cases := []struct {
			req      admReq
			status   int
			subject  string
			decision string
		}{
			{admReq{method: http.MethodGet, path: "/api/v1/users", key: e.rootKey}, 200, "user:root", "allow"},
			{admReq{method: http.MethodGet, path: "/api/v1/policies", key: e.rootKey}, 200, "user:root", "allow"},
			{admReq{method: http.MethodGet, path: "/api/v1/users", basic: "nurse"}, 403, "user:nurse", "deny"},
			{admReq{method: http.MethodPost, path: "/api/v1/groups", basic: "nurse", body: map[string]any{"name": "x"}}, 403, "user:nurse", "deny"},
		}
		for i, c := range cases {
			if r := e.do(c.req); r.status != c.status {
				t.Fatalf("%s %s: %d, want %d: %s", c.req.method, c.req.path, r.status, c.status, r.body)
			}
			rows := e.auditRows()
			if len(rows) != before+i+1 {
				t.Fatalf("%s %s as %s left %d rows, want 1", c.req.method, c.req.path, c.subject, len(rows)-before-i)
			}
			last := rows[len(rows)-1]
			if last.Subject != c.subject || last.Decision != c.decision || last.Object != c.req.method+" "+c.req.path {
				t.Fatalf("row %+v", last)
			}
		}
	})
}
