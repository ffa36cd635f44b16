package gateway_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/gateway"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/dbtest"
)

// TestPasswordGuessingIsBlocked signs in with wrong passwords until the
// account is blocked, on both databases: every failure is in the audit
// trail, the block is announced once, the right password is then refused
// with 429 and Retry-After without being checked, on a second instance
// sharing the database too, while a client that signed in before the block
// keeps working. API keys are not affected.
func TestPasswordGuessingIsBlocked(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newAPIEnv(t, db)
		// A second instance on the same database.
		second := newTestServer(t, db, e.blobDir, gateway.Config{}, nil)
		if err := second.srv.MountAPI(gateway.APIConfig{}); err != nil {
			t.Fatal(err)
		}
		second.srv.Handle(gateway.DAVPrefix+"/", second.srv.DAVHandler())
		ts2 := httptest.NewServer(second.srv.Handler())
		defer ts2.Close()

		// alice's client signs in before anything happens.
		e.want(e.do(as("alice"), "PROPFIND", "/dav/", nil, "Depth", "0"), http.StatusMultiStatus)
		_, key, err := e.repo.CreateAPIKey(context.Background(), "alice", "client", nil)
		if err != nil {
			t.Fatal(err)
		}

		wrong := func(r *http.Request) { r.SetBasicAuth("Alice", "not her password") }
		for i := range 9 {
			if r := e.do(wrong, "PROPFIND", "/dav/", nil, "Depth", "0"); r.status != http.StatusUnauthorized {
				t.Fatalf("wrong password %d: status %d, want 401", i+1, r.status)
			}
		}
		// The tenth failure, through the files API, starts the block.
		e.want(e.do(func(r *http.Request) { r.SetBasicAuth("alice", "still wrong") }, http.MethodGet, "/api/v1/files", nil), http.StatusUnauthorized)

		// The second instance never verified alice's password: even the
		// right one is refused, unchecked, until the block ends.
		req, _ := http.NewRequest("PROPFIND", ts2.URL+"/dav/", nil)
		req.Header.Set("Depth", "0")
		as("alice")(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("right password on the second instance during the block: %d, want 429", resp.StatusCode)
		}
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || secs < 1 || secs > 60 {
			t.Fatalf("Retry-After %q, want 1..60 seconds", resp.Header.Get("Retry-After"))
		}
		// The first instance verified alice's password before the block:
		// her client goes on.
		e.want(e.do(as("alice"), "PROPFIND", "/dav/", nil, "Depth", "0"), http.StatusMultiStatus)
		// Another guess is refused unchecked, and is not counted.
		r := e.do(func(r *http.Request) { r.SetBasicAuth("alice", "guess eleven") }, "PROPFIND", "/dav/", nil, "Depth", "0")
		e.want(r, http.StatusTooManyRequests)
		var body struct {
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		if err := json.Unmarshal(r.body, &body); err != nil || body.Error.Code != "too_many_attempts" {
			t.Fatalf("429 body %s, want code too_many_attempts", r.body)
		}
		// API keys are random secrets, not passwords: no block.
		e.want(e.do(bearer(key), http.MethodGet, "/api/v1/files", nil), http.StatusOK)
		// Another account from the same address is not blocked.
		e.want(e.do(as("bob"), "PROPFIND", "/dav/", nil, "Depth", "0"), http.StatusMultiStatus)

		var page struct {
			Data []struct {
				Action, Subject, Decision, Door, Remote, Rule string
			} `json:"data"`
		}
		r = e.do(as("admin"), http.MethodGet, "/api/v1/audit?action=sign_in.failed&limit=50", nil)
		e.want(r, http.StatusOK)
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatal(err)
		}
		if len(page.Data) != 10 {
			t.Fatalf("%d sign_in.failed rows, want 10 (the refused guess during the block is not a row)", len(page.Data))
		}
		doors := map[string]int{}
		for _, row := range page.Data {
			if row.Decision != "deny" || row.Remote == "" || (row.Subject != "user:alice" && row.Subject != "user:Alice") {
				t.Fatalf("failed sign-in row %+v", row)
			}
			doors[row.Door]++
		}
		if doors["dav"] != 9 || doors["api"] != 1 {
			t.Fatalf("failed sign-ins by door %v, want 9 dav and 1 api", doors)
		}
		r = e.do(as("admin"), http.MethodGet, "/api/v1/audit?action=sign_in.blocked", nil)
		e.want(r, http.StatusOK)
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatal(err)
		}
		if len(page.Data) != 1 || page.Data[0].Rule == "" {
			t.Fatalf("sign_in.blocked rows %+v, want one naming when it ends", page.Data)
		}

		// After the block, the right password works again and clears
		// the count.
		if _, err := db.ExecContext(context.Background(), "UPDATE sign_in_failures SET blocked_until_ms = ?", time.Now().Add(-time.Second).UnixMilli()); err != nil {
			t.Fatal(err)
		}
		req, _ = http.NewRequest(http.MethodGet, ts2.URL+"/api/v1/files", nil)
		as("alice")(req)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("right password after the block: %d", resp.StatusCode)
		}
		var left int
		if err := db.NewSelect().Table("sign_in_failures").ColumnExpr("COUNT(*)").Where("key = 'name:alice'").Scan(context.Background(), &left); err != nil {
			t.Fatal(err)
		}
		if left != 0 {
			t.Fatal("the account's failures were kept after a successful sign-in")
		}
	})
}

// TestUnknownNamesAreCheckedLikeKnownOnes checks that a sign-in as a name
// that does not exist runs a password check like one with a wrong
// password, so how long a 401 takes tells no one which names exist, and
// that the checks are counted in /metrics by outcome.
func TestUnknownNamesAreCheckedLikeKnownOnes(t *testing.T) {
	e := newAPIEnv(t, dbtest.Open(t, dbtest.SQLite))
	checks := func() map[string]float64 {
		t.Helper()
		resp, err := http.Get(e.ts.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		out := map[string]float64{}
		for _, m := range regexp.MustCompile(`(?m)^filegate_password_checks_total\{outcome="(\w+)"\} (\S+)$`).FindAllStringSubmatch(string(b), -1) {
			out[m[1]], _ = strconv.ParseFloat(m[2], 64)
		}
		return out
	}
	e.want(e.do(func(r *http.Request) { r.SetBasicAuth("nobody.here", "any password") }, http.MethodGet, "/api/v1/files", nil), http.StatusUnauthorized)
	e.want(e.do(func(r *http.Request) { r.SetBasicAuth("alice", "wrong password") }, http.MethodGet, "/api/v1/files", nil), http.StatusUnauthorized)
	e.want(e.do(as("alice"), http.MethodGet, "/api/v1/files", nil), http.StatusOK)
	e.want(e.do(as("alice"), http.MethodGet, "/api/v1/files", nil), http.StatusOK) // from the cache
	if got := checks(); got["wrong"] != 2 || got["right"] != 1 || got["blocked"] != 0 {
		t.Fatalf("password checks %v, want 2 wrong (the unknown name included), 1 right, 0 blocked", got)
	}
}

// TestAdminEndsASignInBlock checks the admin API's view of a block: the
// account shows when it ends, {"unblock": true} ends it at once with a
// user.unblock audit row, and the right password works again.
func TestAdminEndsASignInBlock(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newAdmEnv(t, db)
		e.user("bob", false)
		guess := map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("bob:guess"))}
		for range 10 {
			if r := e.do(admReq{method: http.MethodGet, path: "/api/v1/users/bob", header: guess}); r.status != http.StatusUnauthorized {
				t.Fatalf("a guess: %d", r.status)
			}
		}
		var u struct {
			Name               string     `json:"name"`
			SignInBlockedUntil *time.Time `json:"sign_in_blocked_until"`
		}
		r := e.root(http.MethodGet, "/api/v1/users/bob", nil)
		if r.json(t, &u); r.status != http.StatusOK || u.SignInBlockedUntil == nil || !u.SignInBlockedUntil.After(time.Now()) {
			t.Fatalf("bob after 10 failures: %d %s", r.status, r.body)
		}
		var list struct {
			Users []struct {
				Name               string     `json:"name"`
				SignInBlockedUntil *time.Time `json:"sign_in_blocked_until"`
			} `json:"users"`
		}
		e.root(http.MethodGet, "/api/v1/users", nil).json(t, &list)
		for _, lu := range list.Users {
			if (lu.SignInBlockedUntil != nil) != (lu.Name == "bob") {
				t.Errorf("user list: %s blocked until %v; only bob is blocked", lu.Name, lu.SignInBlockedUntil)
			}
		}
		if r := e.do(admReq{method: http.MethodGet, path: "/api/v1/users/bob", basic: "bob"}); r.status != http.StatusTooManyRequests {
			t.Fatalf("bob's right password during the block: %d, want 429", r.status)
		}

		r = e.root(http.MethodPatch, "/api/v1/users/bob", map[string]any{"unblock": true})
		u.SignInBlockedUntil = nil
		if r.json(t, &u); r.status != http.StatusOK || u.SignInBlockedUntil != nil {
			t.Fatalf("bob after unblock: %d %s", r.status, r.body)
		}
		// Signed in, and refused only because bob is no admin.
		if r := e.do(admReq{method: http.MethodGet, path: "/api/v1/users/bob", basic: "bob"}); r.status != http.StatusForbidden {
			t.Fatalf("bob's right password after the unblock: %d, want 403 (signed in, no admin)", r.status)
		}
		var unblocks []string
		for _, row := range e.auditRows() {
			if row.Action == "user.unblock" {
				unblocks = append(unblocks, row.Object+" "+row.Rule)
			}
		}
		if len(unblocks) != 1 || !strings.HasPrefix(unblocks[0], "user:bob ") || !strings.Contains(unblocks[0], "sign_in_blocked_until") {
			t.Fatalf("user.unblock rows %q, want one of user:bob naming the block", unblocks)
		}
	})
}

// TestGuessesFromOneIPv6NetworkCountTogether sends failed sign-ins under
// different names from different addresses of one IPv6 /64 (through a
// trusted proxy's X-Forwarded-For): they count against the /64 as a
// whole, which is then blocked, while another /64 and IPv4 clients are
// not.
func TestGuessesFromOneIPv6NetworkCountTogether(t *testing.T) {
	db := dbtest.Open(t, dbtest.SQLite)
	env := newTestServer(t, db, "", gateway.Config{TrustForwardedHeaders: true,
		SignInLimits: model.SignInLimits{PerAddress: 3}}, nil)
	env.srv.Handle(gateway.DAVPrefix+"/", env.srv.DAVHandler())
	ts := httptest.NewServer(env.srv.Handler())
	defer ts.Close()
	try := func(from, name string) int {
		t.Helper()
		req, _ := http.NewRequest("PROPFIND", ts.URL+"/dav/", nil)
		req.Header.Set("Depth", "0")
		req.Header.Set("X-Forwarded-For", from)
		req.SetBasicAuth(name, "a guess")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i, from := range []string{"2001:db8:0:1::a", "2001:db8:0:1::b", "2001:db8:0:1:ffff::c"} {
		if got := try(from, fmt.Sprintf("name%d", i)); got != http.StatusUnauthorized {
			t.Fatalf("guess %d from %s: %d, want 401", i+1, from, got)
		}
	}
	if got := try("2001:db8:0:1::d", "fresh.name"); got != http.StatusTooManyRequests {
		t.Fatalf("a fourth address of the same /64: %d, want 429", got)
	}
	if got := try("2001:db8:0:2::a", "fresh.name"); got != http.StatusUnauthorized {
		t.Fatalf("another /64: %d, want 401", got)
	}
	if got := try("192.0.2.10", "other.name"); got != http.StatusUnauthorized {
		t.Fatalf("an IPv4 client: %d, want 401", got)
	}
}

// TestHostileSignInNamesAreCountedNotFailed signs in with names no column
// could hold as they are (a NUL, invalid UTF-8, 5,000 bytes), on both
// databases: each is an ordinary 401 and counted, never a 503.
func TestHostileSignInNamesAreCountedNotFailed(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newAPIEnv(t, db)
		for _, name := range []string{"nurse\x00jo", "\xff\xfe", strings.Repeat("n", 5000)} {
			r := e.do(func(r *http.Request) { r.SetBasicAuth(name, "a guess") }, "PROPFIND", "/dav/", nil, "Depth", "0")
			if r.status != http.StatusUnauthorized {
				t.Fatalf("name of %d bytes: %d, want 401: %s", len(name), r.status, r.body)
			}
		}
		var n int
		if err := db.NewSelect().Table("sign_in_failures").ColumnExpr("COUNT(*)").Where("key LIKE 'name:%'").Scan(context.Background(), &n); err != nil || n != 3 {
			t.Fatalf("%d name keys counted (%v), want 3", n, err)
		}
	})
}
