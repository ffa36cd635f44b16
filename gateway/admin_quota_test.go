package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/gateway"
	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/policy"
)

// quotaUser is userJSON as the tests read it.
type quotaUser struct {
	Name       string `json:"name"`
	Disabled   bool   `json:"disabled"`
	QuotaBytes int64  `json:"quota_bytes"`
	UsedBytes  int64  `json:"used_bytes"`
}

// TestAdminUserQuota sets, shows and removes a quota through the admin
// API: PATCH takes quota_bytes alone or with disabled and leaves one
// audit row, GET shows what alice's WebDAV upload counts for, and bad
// values, non-admins and refused disables change nothing. Every answer is
// checked against openapi.json.
func TestAdminUserQuota(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		e := newAdmEnv(t, db)
		e.user("alice", false)
		e.user("bob", false)
		e.apply(policy.Change{Add: [][]string{policy.Grant("user:alice", policy.LevelFull, e.reports.ID)}})
		oa := loadOpenAPI(t)
		do := func(q admReq) admResp {
			t.Helper()
			r := e.do(q)
			if strings.HasPrefix(q.path, gateway.APIPrefix) {
				oa.check(t, q.method, q.path, result{status: r.status, header: r.header, body: r.body})
			}
			return r
		}
		root := func(method, path string, body any) admResp {
			t.Helper()
			return do(admReq{method: method, path: path, body: body, key: e.rootKey})
		}
		user := func(name string) quotaUser {
			t.Helper()
			var u quotaUser
			r := root("GET", "/api/v1/users/"+name, nil)
			r.json(t, &u)
			if r.status != http.StatusOK || u.Name != name {
				t.Fatalf("GET %s: %d %s", name, r.status, r.body)
			}
			var list struct{ Users []quotaUser }
			root("GET", "/api/v1/users", nil).json(t, &list)
			for _, lu := range list.Users {
				if lu.Name == name && lu != u {
					t.Errorf("the list shows %+v, the user's own GET %+v", lu, u)
				}
			}
			return u
		}
		audited := func(n int) {
			t.Helper()
			if got := len(e.auditRows()); got != n {
				t.Fatalf("%d audit rows, want %d", got, n)
			}
		}

		var u quotaUser
		r := root("PATCH", "/api/v1/users/alice", map[string]any{"quota_bytes": 1 << 20})
		r.json(t, &u)
		if r.status != http.StatusOK || u != (quotaUser{Name: "alice", QuotaBytes: 1 << 20}) {
			t.Fatalf("setting the quota: %d %s", r.status, r.body)
		}

		// What alice stores through WebDAV counts; once archived it no
		// longer does.
		const size = 5000
		put := do(admReq{method: "PUT", path: gateway.DAVPrefix + "/reports/scan.bin", basic: "alice", body: strings.Repeat("x", size)})
		if put.status != http.StatusCreated {
			t.Fatalf("alice's PUT: %d %s", put.status, put.body)
		}
		if u := user("alice"); u.QuotaBytes != 1<<20 || u.UsedBytes != size {
			t.Errorf("alice after her upload: %+v, want quota %d and used %d", u, 1<<20, size)
		}
		if u := user("bob"); u.QuotaBytes != 0 || u.UsedBytes != 0 {
			t.Errorf("bob: %+v, want no quota and nothing used", u)
		}
		if s := do(admReq{method: "DELETE", path: gateway.DAVPrefix + "/reports/scan.bin", basic: "alice"}).status; s != http.StatusNoContent {
			t.Fatalf("alice's DELETE: %d", s)
		}
		if u := user("alice"); u.UsedBytes != 0 {
			t.Errorf("alice's archived file still counts: %+v", u)
		}

		// Bad values change nothing, and leave no audit row since they
		// never reach a change; non-admins are refused, and recorded, at
		// the door.
		rows := len(e.auditRows())
		for _, bad := range []any{
			map[string]any{"quota_bytes": -1},
			map[string]any{"quota_bytes": -1, "disabled": true},
			map[string]any{"quota_bytes": nil},
			map[string]any{},
			map[string]any{"quota_bytes": 1.5},
			map[string]any{"quota_bytes": "1GiB"},
			map[string]any{"quota_bytes": 1e19},
			map[string]any{"quota": 5},
		} {
			if r := root("PATCH", "/api/v1/users/alice", bad); r.status != http.StatusBadRequest || r.code() != "invalid" {
				t.Errorf("PATCH %v: %d %s, want 400 invalid", bad, r.status, r.body)
			}
		}
		audited(rows)
		for _, name := range []string{"alice", "bob"} {
			r := do(admReq{method: "PATCH", path: "/api/v1/users/" + name, basic: "alice", body: map[string]any{"quota_bytes": 0}})
			if r.status != http.StatusForbidden || r.code() != "forbidden" {
				t.Errorf("alice sets %s's quota: %d %s, want 403", name, r.status, r.body)
			}
		}
		audited(rows + 2)
		if r := root("PATCH", "/api/v1/users/nobody", map[string]any{"quota_bytes": 1}); r.status != http.StatusNotFound {
			t.Errorf("PATCH nobody: %d %s, want 404", r.status, r.body)
		}
		if r := root("PATCH", "/api/v1/users/root", map[string]any{"disabled": true, "quota_bytes": 7}); r.status != http.StatusConflict || r.code() != "last_admin" {
			t.Errorf("disabling the last admin with a quota: %d %s, want 409", r.status, r.body)
		}
		if u := user("alice"); u.QuotaBytes != 1<<20 || u.Disabled {
			t.Errorf("alice after the refusals: %+v", u)
		}
		if u := user("root"); u.QuotaBytes != 0 || u.Disabled {
			t.Errorf("root after the refused disable: %+v", u)
		}

		// Both fields at once; 0 removes the quota.
		rows = len(e.auditRows())
		r = root("PATCH", "/api/v1/users/alice", map[string]any{"disabled": true, "quota_bytes": 0})
		r.json(t, &u)
		if r.status != http.StatusOK || !u.Disabled || u.QuotaBytes != 0 {
			t.Fatalf("disable and remove the quota: %d %s", r.status, r.body)
		}
		audited(rows + 1)
		if got, err := e.repo.UserByName(ctx, "alice"); err != nil || got.QuotaBytes != 0 || !got.Disabled {
			t.Errorf("alice as stored: %+v, %v", got, err)
		}

		// The audit trail has who changed which quota, from what to what.
		want := map[string][2]string{
			"user.quota":   {`{"quota_bytes":0}`, `{"quota_bytes":1048576}`},
			"user.disable": {`{"disabled":false,"quota_bytes":1048576}`, `{"disabled":true,"quota_bytes":0}`},
		}
		for _, row := range e.auditRows() {
			w, ok := want[row.Action]
			if !ok || row.Object != "user:alice" || row.Decision != "allow" || row.Subject != "user:root" {
				continue
			}
			var d struct{ Before, After json.RawMessage }
			if err := json.Unmarshal([]byte(row.Rule), &d); err != nil {
				t.Fatal(err)
			}
			if string(d.Before) == w[0] && string(d.After) == w[1] {
				delete(want, row.Action)
			}
		}
		if len(want) > 0 {
			t.Errorf("the audit trail lacks %v", want)
		}
	})
}

// TestAdminReadOfAHostileName asks an admin route for a user whose name,
// decoded, holds a NUL byte and invalid UTF-8. No such user can exist:
// 404, not the 503 it got when the audit row of the read, which named
// the decoded path, was refused by PostgreSQL.
func TestAdminReadOfAHostileName(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newAdmEnv(t, db)
		if r := e.do(admReq{method: "GET", path: "/api/v1/users/%00%ff", key: e.rootKey}); r.status != http.StatusNotFound {
			t.Fatalf("GET a hostile name: %d %s, want 404", r.status, r.body)
		}
	})
}
