package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/policy"
)

func TestAdminAPIIsForAdminsOnly(t *testing.T) {
	db := dbtest.Open(t, dbtest.SQLite)
	e := newAdmEnv(t, db)
	e.user("alice", false)
	r := e.do(admReq{method: "GET", path: "/api/v1/policies"})
	if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") == "" {
		t.Errorf("anonymous: %d %q, want 401 with a challenge", r.status, r.header.Get("WWW-Authenticate"))
	}
	r = e.do(admReq{method: "GET", path: "/api/v1/policies", header: map[string]string{"X-Filegate-UI": "1"}})
	if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") != "" {
		t.Errorf("anonymous from the page: %d %q, want 401 without a challenge", r.status, r.header.Get("WWW-Authenticate"))
	}
	for _, path := range []string{"/api/v1/policies", "/api/v1/users", "/api/v1/groups", "/api/v1/policies/export"} {
		if r := e.do(admReq{method: "GET", path: path, basic: "alice"}); r.status != http.StatusForbidden {
			t.Errorf("GET %s as a non-admin: %d, want 403", path, r.status)
		}
		if r := e.root("GET", path, nil); r.status != http.StatusOK {
			t.Errorf("GET %s as admin: %d %s", path, r.status, r.body)
		}
	}
	r = e.do(admReq{method: "POST", path: "/api/v1/policies", basic: "alice",
		body: map[string]any{"add": [][]string{policy.Membership("user:alice", policy.AdminRole)}}})
	if r.status != http.StatusForbidden || e.authz.Decide(context.Background(), "user:alice", "admin", "*").Allowed {
		t.Errorf("a non-admin made herself admin: %d %s", r.status, r.body)
	}
}

// TestPolicyBatches applies a batch with a path in it, refuses an invalid
// batch whole, and lists and filters what is stored.
func TestPolicyBatches(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newAdmEnv(t, db)
		e.user("alice", false)
		// Staff may see that /reports exists (metadata), so WebDAV
		// answers a refused GET with 403 rather than hiding it with 404.
		e.apply(policy.Change{Add: [][]string{
			policy.Membership("user:alice", "group:staff"),
			policy.Grant("group:staff", policy.LevelMetadata, e.reports.ID),
		}})
		if s := e.davGet("alice", "/reports/a.txt"); s != http.StatusForbidden {
			t.Fatalf("GET before the grant: %d, want 403", s)
		}
		r := e.root("POST", "/api/v1/policies", map[string]any{
			"add": [][]string{{"g2", "group:staff", "level:read", "/reports"}}})
		if r.status != http.StatusOK {
			t.Fatalf("batch: %d %s", r.status, r.body)
		}
		var out struct {
			Revision int64
			Change   struct{ Add [][]string }
			Before   [][]string
			After    [][]string
		}
		r.json(t, &out)
		grant := policy.Grant("group:staff", policy.LevelRead, e.reports.ID)
		if len(out.Change.Add) != 1 || !slices.Equal(out.Change.Add[0], grant) || len(out.Before) != 0 || len(out.After) != 1 {
			t.Errorf("batch answer %s: the path must be resolved to %s", r.body, e.reports.ID)
		}
		if s := e.davGet("alice", "/reports/a.txt"); s != http.StatusOK {
			t.Errorf("GET after the grant: %d, want 200", s)
		}

		// One bad line spoils the batch: 400 and nothing applied.
		before, rev := e.rules(), e.authz.Revision()
		for _, bad := range []map[string]any{
			{"add": [][]string{policy.Grant("group:x", policy.LevelRead, e.other.ID), {"g2", "group:x", "level:bogus", e.other.ID}}},
			{"add": [][]string{policy.Grant("group:x", policy.LevelRead, e.other.ID)}, "remove": [][]string{policy.Builtin()[0]}},
			{"add": [][]string{{"p", "group:x", "/no/such/folder", "read"}}},
			{"add": [][]string{{"g", "user:x"}}},
			{"removeMatching": []map[string]any{{"ptype": "g2"}}},
			{"add": [][]string{policy.Grant("group:x", policy.LevelRead, e.other.ID)}, "typo": true},
			{},
		} {
			r := e.root("POST", "/api/v1/policies", bad)
			if r.status != http.StatusBadRequest || r.code() != "invalid" {
				t.Errorf("batch %v: %d %s, want 400 invalid", bad, r.status, r.body)
			}
		}
		if after := e.rules(); !slices.EqualFunc(before, after, slices.Equal) || e.authz.Revision() != rev {
			t.Errorf("an invalid batch changed the policy:\n%q\n%q", before, after)
		}

		// Removing through a filter, then listing with a filter.
		r = e.root("POST", "/api/v1/policies", map[string]any{
			"removeMatching": []map[string]any{{"ptype": "g2", "values": []string{"", "level:read", e.reports.ID}}}})
		if r.status != http.StatusOK {
			t.Fatalf("removeMatching: %d %s", r.status, r.body)
		}
		r.json(t, &out)
		if len(out.Before) != 1 || len(out.After) != 0 {
			t.Errorf("removeMatching before/after: %s", r.body)
		}
		if s := e.davGet("alice", "/reports/a.txt"); s != http.StatusForbidden {
			t.Errorf("GET after the removal: %d, want 403", s)
		}
		var list struct {
			Total int
			Rules []struct {
				Line    []string
				Builtin bool
			}
		}
		e.root("GET", "/api/v1/policies?ptype=g&v1=group:staff", nil).json(t, &list)
		if list.Total != 1 || !slices.Equal(list.Rules[0].Line, policy.Membership("user:alice", "group:staff")) {
			t.Errorf("memberships of staff: %+v", list)
		}
		e.root("GET", "/api/v1/policies?ptype=p", nil).json(t, &list)
		if list.Total != len(policy.Builtin()) || !list.Rules[0].Builtin {
			t.Errorf("p lines: %+v, want the built-in ones marked", list)
		}
	})
}

func TestExplainEndpoint(t *testing.T) {
	db := dbtest.Open(t, dbtest.SQLite)
	e := newAdmEnv(t, db)
	e.apply(policy.Change{Add: [][]string{
		policy.Membership("user:alice", "group:staff"),
		policy.Grant("group:staff", policy.LevelRead, e.reports.ID),
	}})
	type explained struct {
		Allowed bool
		Object  string
		Path    string
		Rule    []string
		Via     [][]string
		Roles   []string
	}
	for _, obj := range []string{"/reports/a.txt", e.aTxt.ID, e.aTxt.Lineage} {
		var x explained
		r := e.root("GET", "/api/v1/policies/explain?subject=alice&action=read&object="+obj, nil)
		r.json(t, &x)
		want := [][]string{policy.Membership("user:alice", "group:staff"), policy.Grant("group:staff", policy.LevelRead, e.reports.ID)}
		if r.status != 200 || !x.Allowed || x.Object != e.aTxt.Lineage || x.Path != "/reports/a.txt" ||
			!slices.Equal(x.Rule, []string{"p", "level:read", "*", "(stat|read)"}) || !slices.EqualFunc(x.Via, want, slices.Equal) {
			t.Errorf("explain alice read %s: %d %s", obj, r.status, r.body)
		}
	}
	var x explained
	e.root("GET", "/api/v1/policies/explain?subject=user:alice&action=write&object=/reports", nil).json(t, &x)
	if x.Allowed || x.Rule != nil || len(x.Via) != 0 || !slices.Equal(x.Roles, []string{"group:staff"}) {
		t.Errorf("explain alice write: %+v, want denied with her group listed", x)
	}
	e.root("GET", "/api/v1/policies/explain?subject=root&action=admin&object=*", nil).json(t, &x)
	if !x.Allowed || !slices.EqualFunc(x.Via, [][]string{policy.Membership("user:root", policy.AdminRole)}, slices.Equal) {
		t.Errorf("explain root admin: %+v", x)
	}
	for _, q := range []string{"subject=alice&action=fly&object=*", "subject=&action=read&object=*",
		"subject=alice&action=read&object=/nowhere", "subject=alice&action=read&object=deadbeef"} {
		if r := e.root("GET", "/api/v1/policies/explain?"+q, nil); r.status != http.StatusBadRequest {
			t.Errorf("explain %s: %d, want 400", q, r.status)
		}
	}
}

type whatIfOut struct {
	Diffs []struct {
		Subject, Action, Object, Path string
		Before, After                 struct{ Allowed bool }
	}
	Refusal *struct{ Code string }
	Sample  struct {
		Subjects []string
		Queries  int
	}
}

// TestWhatIfEndpoint previews a grant to a group over the real tree: the
// diffs are exactly its members' stat and read on the folder and its
// file, and nothing is applied.
func TestWhatIfEndpoint(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newAdmEnv(t, db)
		e.user("alice", false)
		e.user("bob", false)
		e.apply(policy.Change{Add: [][]string{
			policy.Membership("user:alice", "group:staff"),
			policy.Allow("user:bob", e.other.ID, "read"),
		}})
		before, rev := e.rules(), e.authz.Revision()
		var out whatIfOut
		r := e.root("POST", "/api/v1/policies/what-if", map[string]any{
			"add":    [][]string{{"g2", "group:staff", "level:read", "/reports"}},
			"remove": [][]string{policy.Allow("user:bob", e.other.ID, "read")},
		})
		r.json(t, &out)
		if r.status != http.StatusOK || out.Refusal != nil {
			t.Fatalf("what-if: %d %s", r.status, r.body)
		}
		var got []string
		for _, d := range out.Diffs {
			if d.Before.Allowed == d.After.Allowed {
				t.Errorf("diff %+v changes nothing", d)
			}
			got = append(got, d.Subject+" "+d.Action+" "+d.Path)
		}
		sort.Strings(got)
		want := []string{
			"user:alice read /reports", "user:alice read /reports/a.txt",
			"user:alice stat /reports", "user:alice stat /reports/a.txt",
			"user:bob read /other", "user:bob read /other/b.txt",
		}
		if !slices.Equal(got, want) {
			t.Errorf("diffs\n got %q\nwant %q", got, want)
		}
		if after := e.rules(); !slices.EqualFunc(before, after, slices.Equal) || e.authz.Revision() != rev {
			t.Error("what-if applied something")
		}
		if e.authz.Decide(context.Background(), "user:alice", "read", e.aTxt.Lineage).Allowed || e.davGet("bob", "/other/b.txt") != http.StatusOK {
			t.Error("what-if changed a decision")
		}

		// A membership change: the member gains what the group holds.
		e.apply(policy.Change{Add: [][]string{policy.Grant("group:staff", policy.LevelRead, e.reports.ID)}})
		e.root("POST", "/api/v1/policies/what-if", map[string]any{
			"add": [][]string{policy.Membership("user:bob", "group:staff")}}).json(t, &out)
		got = got[:0]
		for _, d := range out.Diffs {
			got = append(got, d.Subject+" "+d.Action+" "+d.Path)
		}
		sort.Strings(got)
		want = []string{"user:bob read /reports", "user:bob read /reports/a.txt", "user:bob stat /reports", "user:bob stat /reports/a.txt"}
		if !slices.Equal(got, want) {
			t.Errorf("membership diffs\n got %q\nwant %q", got, want)
		}

		// The preview says when the guardrails would refuse.
		e.root("POST", "/api/v1/policies/what-if", map[string]any{
			"add": [][]string{policy.Grant(policy.Anyone, policy.LevelRead, e.reports.ID)}}).json(t, &out)
		if out.Refusal == nil || out.Refusal.Code != "unsafe" || !slices.Contains(out.Sample.Subjects, "anonymous") || len(out.Diffs) == 0 {
			t.Errorf("public grant preview: %+v", out)
		}
		if r := e.root("POST", "/api/v1/policies/what-if", map[string]any{"add": [][]string{{"g2", "x"}}}); r.status != http.StatusBadRequest {
			t.Errorf("invalid what-if: %d, want 400", r.status)
		}
	})
}

func TestGuardrails(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		e := newAdmEnv(t, db)
		e.user("alice", false)
		isAdmin := func(u string) bool { return e.authz.Decide(ctx, policy.User(u), "admin", "*").Allowed }

		// The last admin stays, whichever way one tries.
		lastAdmin := []map[string]any{
			{"remove": [][]string{policy.Membership("user:root", policy.AdminRole)}},
			{"removeMatching": []map[string]any{{"ptype": "g", "values": []string{"", policy.AdminRole}}}},
			{"remove": [][]string{policy.Membership("user:root", policy.AdminRole)}, "force": true},
		}
		for _, b := range lastAdmin {
			if r := e.root("POST", "/api/v1/policies", b); r.status != http.StatusConflict || r.code() != "last_admin" {
				t.Errorf("batch %v: %d %s, want 409 last_admin", b, r.status, r.body)
			}
		}
		if r := e.root("PATCH", "/api/v1/users/root", map[string]any{"disabled": true}); r.status != http.StatusConflict || r.code() != "last_admin" {
			t.Errorf("disabling the last admin: %d %s", r.status, r.body)
		}
		if r := e.root("POST", "/api/v1/policies/import?replace=true", "g, user:alice, group:staff\n"); r.status != http.StatusConflict || r.code() != "last_admin" {
			t.Errorf("importing a policy without admins: %d %s", r.status, r.body)
		}
		if !isAdmin("root") {
			t.Fatal("root lost admin")
		}

		// Public or store-wide access needs force.
		risky := [][]string{
			policy.Grant(policy.Anyone, policy.LevelRead, e.reports.ID),
			policy.Allow(policy.Anonymous, e.reports.ID, "stat"),
			policy.Allow("group:staff", "*", "read"),
			{"g2", "group:staff", "level:read", "/"},
			policy.Membership(policy.Anonymous, "group:staff"),
		}
		before := e.rules()
		for _, l := range risky {
			r := e.root("POST", "/api/v1/policies", map[string]any{"add": [][]string{l}})
			var b struct {
				Error struct {
					Code  string
					Risks []policy.Risk
				}
			}
			r.json(t, &b)
			if r.status != http.StatusConflict || b.Error.Code != "unsafe" || len(b.Error.Risks) != 1 {
				t.Errorf("adding %q: %d %s, want 409 unsafe with the risk", l, r.status, r.body)
			}
		}
		if r := e.root("POST", "/api/v1/policies/import", "g2, anyone, level:read, "+e.reports.ID+"\n"); r.status != http.StatusConflict {
			t.Errorf("importing a public grant: %d %s", r.status, r.body)
		}
		if !slices.EqualFunc(before, e.rules(), slices.Equal) {
			t.Fatal("a refused change was applied")
		}
		r := e.root("POST", "/api/v1/policies?force=true", map[string]any{"add": [][]string{risky[0]}})
		if r.status != http.StatusOK || !e.authz.Decide(ctx, "anonymous", "read", e.aTxt.Lineage).Allowed {
			t.Errorf("forced public grant: %d %s", r.status, r.body)
		}

		// With a second admin, the first can go.
		if r := e.root("POST", "/api/v1/policies", map[string]any{"add": [][]string{policy.Membership("user:alice", policy.AdminRole)}}); r.status != 200 {
			t.Fatalf("second admin: %d %s", r.status, r.body)
		}
		if r := e.root("PATCH", "/api/v1/users/root", map[string]any{"disabled": true}); r.status != 200 {
			t.Errorf("disabling one of two admins: %d %s", r.status, r.body)
		}
		if r := e.do(admReq{method: "PATCH", path: "/api/v1/users/alice", basic: "alice", body: map[string]any{"disabled": true}}); r.status != http.StatusConflict {
			t.Errorf("disabling the last enabled admin: %d %s", r.status, r.body)
		}

		// Every change and refusal is in the audit trail, with who, what,
		// before and after.
		var sawRefusal, sawGrant, sawDisable bool
		for _, row := range e.auditRows() {
			var d struct {
				Before, After json.RawMessage
				Refused       string
			}
			if err := json.Unmarshal([]byte(row.Rule), &d); err != nil {
				t.Errorf("audit row %d rule is not JSON: %q", row.Seq, row.Rule)
			}
			switch {
			case row.Action == "policy.change" && row.Decision == "deny" && strings.Contains(d.Refused, "no administrator"):
				sawRefusal = row.Subject == "user:root"
			case row.Action == "policy.change" && row.Decision == "allow" && strings.Contains(string(d.After), "anyone"):
				sawGrant = string(d.Before) == "[]"
			case row.Action == "user.disable" && row.Decision == "allow" && row.Object == "user:root":
				sawDisable = string(d.Before) == `{"disabled":false}` && string(d.After) == `{"disabled":true}`
			}
		}
		if !sawRefusal || !sawGrant || !sawDisable {
			t.Errorf("audit trail misses rows: refusal %v, grant %v, disable %v", sawRefusal, sawGrant, sawDisable)
		}
	})
}

// TestCSVExportImportRoundTrip exports a policy, imports it into another
// database and exports that: the same lines. A bad file changes nothing.
func TestCSVExportImportRoundTrip(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newAdmEnv(t, db)
		e.apply(policy.Change{Add: [][]string{
			policy.Membership("user:alice", "group:staff"),
			policy.Grant("group:staff", policy.LevelRead, e.reports.ID),
			policy.Allow("group:staff", e.other.ID, "(stat|read|write)"),
			policy.Grant("token:t1", policy.LevelFull, e.aTxt.ID),
		}})
		r := e.root("GET", "/api/v1/policies/export", nil)
		if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/csv") {
			t.Fatalf("export: %d %s", r.status, r.header)
		}
		exported := string(r.body)

		other := newAdmEnv(t, dbtest.Open(t, dbtest.SQLite))
		if r := other.root("POST", "/api/v1/policies/import?replace=true", exported); r.status != 200 {
			t.Fatalf("import: %d %s", r.status, r.body)
		}
		again := other.root("GET", "/api/v1/policies/export", nil)
		if sortedCSV(string(again.body)) != sortedCSV(exported) {
			t.Errorf("round trip differs:\n%s\n---\n%s", exported, again.body)
		}

		before := e.rules()
		r = e.root("POST", "/api/v1/policies/import?replace=true", "g, user:bob, group:staff\ng2, group:staff, level:nope, x\n")
		if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "line 2") {
			t.Errorf("bad import: %d %s, want 400 naming line 2", r.status, r.body)
		}
		if !slices.EqualFunc(before, e.rules(), slices.Equal) {
			t.Error("a bad import changed the policy")
		}
	})
}

func sortedCSV(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func TestUsersAndGroups(t *testing.T) {
	e := newAdmEnv(t, dbtest.Open(t, dbtest.SQLite))
	if r := e.root("POST", "/api/v1/users", map[string]any{"name": "carol", "password": admPassword}); r.status != http.StatusCreated {
		t.Fatalf("create user: %d %s", r.status, r.body)
	}
	for _, bad := range []map[string]any{{"name": "Carol!", "password": "long enough pw"}, {"name": "dave", "password": "short"}} {
		if r := e.root("POST", "/api/v1/users", bad); r.status != http.StatusBadRequest {
			t.Errorf("create %v: %d, want 400", bad, r.status)
		}
	}
	if r := e.root("POST", "/api/v1/users", map[string]any{"name": "carol"}); r.status != http.StatusConflict {
		t.Errorf("duplicate user: %d, want 409", r.status)
	}
	if r := e.root("POST", "/api/v1/groups", map[string]any{"name": "staff", "description": "Ward staff"}); r.status != http.StatusCreated {
		t.Fatalf("create group: %d %s", r.status, r.body)
	}
	if r := e.root("POST", "/api/v1/groups/staff/members", map[string]any{"member": "carol"}); r.status != 200 {
		t.Fatalf("add member: %d %s", r.status, r.body)
	}
	if r := e.root("POST", "/api/v1/groups/nobody/members", map[string]any{"member": "carol"}); r.status != http.StatusNotFound {
		t.Errorf("add to a missing group: %d, want 404", r.status)
	}
	var groups struct {
		Groups []struct {
			Name    string
			Members []string
		}
	}
	e.root("GET", "/api/v1/groups", nil).json(t, &groups)
	if len(groups.Groups) != 1 || !slices.Equal(groups.Groups[0].Members, []string{"user:carol"}) {
		t.Errorf("groups: %+v", groups)
	}
	var users struct {
		Users []struct {
			Name   string
			Admin  bool
			Groups []string
		}
	}
	e.root("GET", "/api/v1/users", nil).json(t, &users)
	if len(users.Users) != 2 || users.Users[0].Name != "carol" || !slices.Equal(users.Users[0].Groups, []string{"group:staff"}) || !users.Users[1].Admin {
		t.Errorf("users: %+v", users)
	}
	if r := e.root("DELETE", "/api/v1/groups/staff/members/user:carol", nil); r.status != 200 {
		t.Errorf("remove member: %d %s", r.status, r.body)
	}
	if len(e.authz.RolesOf("user:carol")) != 0 {
		t.Error("carol is still in staff")
	}
	if r := e.root("PATCH", "/api/v1/users/carol", map[string]any{"disabled": true}); r.status != 200 {
		t.Errorf("disable: %d %s", r.status, r.body)
	}
	if s := e.do(admReq{method: "GET", path: "/api/v1/policies", basic: "carol"}).status; s != http.StatusUnauthorized {
		t.Errorf("a disabled user authenticates: %d", s)
	}
}
