package gateway_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/filegate/filegate/migrations"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/policy"
)

// TestPolicyChangeReachesOtherInstance runs two servers on one PostgreSQL
// database, each with its own connection pool and authorizer following
// changes (Run: LISTEN/NOTIFY and polling). A grant and its revocation
// made through instance A's admin API show in WebDAV decisions on
// instance B; on A they apply to the very next request. The time B took
// is logged; BenchmarkPolicyPropagation measures it.
func TestPolicyChangeReachesOtherInstance(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url := dbtest.URL(t, dbtest.Postgres)
	blobDir := t.TempDir()
	var envs [2]*admEnv
	for i := range envs {
		db, err := model.OpenDB(ctx, model.DBOptions{URL: url})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		if _, err := migrations.Up(ctx, db); err != nil {
			t.Fatal(err)
		}
		envs[i] = newAdmServer(t, db, blobDir)
		go envs[i].authz.Run(ctx)
	}
	a, b := envs[0], envs[1]
	a.seed()
	b.reports, b.aTxt = a.reports, a.aTxt
	a.user("alice", false)
	a.apply(policy.Change{Add: [][]string{
		policy.Membership("user:alice", "group:staff"),
		policy.Grant("group:staff", policy.LevelMetadata, a.reports.ID),
	}})
	waitStatus(t, b, "/reports/a.txt", http.StatusForbidden)

	grant := map[string]any{"add": [][]string{{"g2", "group:staff", "level:read", "/reports"}}}
	if r := a.root("POST", "/api/v1/policies", grant); r.status != http.StatusOK {
		t.Fatalf("grant through A: %d %s", r.status, r.body)
	}
	if s := a.davGet("alice", "/reports/a.txt"); s != http.StatusOK {
		t.Errorf("A's next request after the grant: %d, want 200", s)
	}
	t.Logf("the grant reached B after %v", waitStatus(t, b, "/reports/a.txt", http.StatusOK))

	revoke := map[string]any{"remove": [][]string{policy.Grant("group:staff", policy.LevelRead, a.reports.ID)}}
	if r := a.root("POST", "/api/v1/policies", revoke); r.status != http.StatusOK {
		t.Fatalf("revoke through A: %d %s", r.status, r.body)
	}
	if s := a.davGet("alice", "/reports/a.txt"); s != http.StatusForbidden {
		t.Errorf("A's next request after the revocation: %d, want 403", s)
	}
	t.Logf("the revocation reached B after %v", waitStatus(t, b, "/reports/a.txt", http.StatusForbidden))
}

// waitStatus polls alice's WebDAV GET on e until it answers want, failing
// after 10 s (a bound on correctness, not the latency being measured).
func waitStatus(t *testing.T, e *admEnv, path string, want int) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := e.davGet("alice", path)
		if got == want {
			return time.Since(start)
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("GET %s on the other instance is still %d, want %d", path, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
