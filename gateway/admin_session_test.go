package gateway_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/policy"
)

// TestAdminSessionAndCSRF signs in through the page's endpoint and checks
// the cookie's flags, that every mutating request needs the CSRF token,
// that cross-site requests are refused and that signing out ends the
// session.
func TestAdminSessionAndCSRF(t *testing.T) {
	e := newAdmEnv(t, dbtest.Open(t, dbtest.SQLite))
	e.user("alice", false)
	form := func(name, pw string) string {
		return url.Values{"name": {name}, "password": {pw}}.Encode()
	}
	signIn := func(body string, hdr map[string]string) admResp {
		h := map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
		for k, v := range hdr {
			h[k] = v
		}
		return e.doRaw(admReq{method: "POST", path: "/admin/session", header: h}, body)
	}
	if r := signIn(form("root", "wrong password"), nil); r.status != http.StatusUnauthorized {
		t.Errorf("wrong password: %d", r.status)
	}
	if r := signIn(form("alice", admPassword), nil); r.status != http.StatusForbidden {
		t.Errorf("a non-admin signs in: %d", r.status)
	}
	if r := signIn(form("root", admPassword), map[string]string{"Origin": "https://evil.example"}); r.status != http.StatusForbidden {
		t.Errorf("cross-site sign-in: %d", r.status)
	}
	r := signIn(form("root", admPassword), map[string]string{"Origin": e.ts.URL, "Sec-Fetch-Site": "same-origin"})
	if r.status != http.StatusOK {
		t.Fatalf("sign in: %d %s", r.status, r.body)
	}
	var sess struct{ User, CSRF string }
	r.json(t, &sess)
	cookies := (&http.Response{Header: r.header}).Cookies()
	if len(cookies) != 1 || sess.CSRF == "" || sess.User != "root" {
		t.Fatalf("sign-in answer: %s, cookies %v", r.body, cookies)
	}
	c := cookies[0]
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure || c.Path != "/" {
		t.Errorf("cookie flags: %+v (Secure only on TLS)", c)
	}
	withCookie := func(extra map[string]string) map[string]string {
		h := map[string]string{"Cookie": c.Name + "=" + c.Value}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	var got struct{ User, CSRF string }
	e.do(admReq{method: "GET", path: "/admin/session", header: withCookie(nil)}).json(t, &got)
	if got.CSRF != sess.CSRF {
		t.Errorf("GET /admin/session: %+v", got)
	}
	if r := e.do(admReq{method: "GET", path: "/api/v1/users", header: withCookie(nil)}); r.status != 200 {
		t.Errorf("reading with the session: %d", r.status)
	}
	batch := map[string]any{"add": [][]string{policy.Membership("user:alice", "group:staff")}}
	for _, tok := range []string{"", "wrong"} {
		r := e.do(admReq{method: "POST", path: "/api/v1/policies", body: batch, header: withCookie(map[string]string{"X-CSRF-Token": tok})})
		if r.status != http.StatusForbidden || r.code() != "csrf" {
			t.Errorf("change with CSRF token %q: %d %s", tok, r.status, r.body)
		}
	}
	if len(e.authz.RolesOf("user:alice")) != 0 {
		t.Fatal("a change without the CSRF token was applied")
	}
	if r := e.do(admReq{method: "POST", path: "/api/v1/policies", body: batch, header: withCookie(map[string]string{"X-CSRF-Token": sess.CSRF})}); r.status != 200 {
		t.Errorf("change with the CSRF token: %d %s", r.status, r.body)
	}

	// Basic credentials, which browsers replay by themselves, may not
	// change anything from another site or with a form's content type.
	if r := e.do(admReq{method: "POST", path: "/api/v1/policies", basic: "root", body: batch,
		header: map[string]string{"Sec-Fetch-Site": "cross-site"}}); r.status != http.StatusForbidden {
		t.Errorf("cross-site change with Basic: %d", r.status)
	}
	if r := e.doRaw(admReq{method: "POST", path: "/api/v1/policies", basic: "root",
		header: map[string]string{"Content-Type": "text/plain"}}, `{"add":[["g","user:alice","group:x"]]}`); r.status != http.StatusForbidden {
		t.Errorf("text/plain change with Basic: %d", r.status)
	}

	// The page itself is served with a strict content security policy.
	page := e.do(admReq{method: "GET", path: "/admin/"})
	if page.status != 200 || !strings.Contains(string(page.body), "filegate administration") ||
		!strings.Contains(page.header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Errorf("admin page: %d %v", page.status, page.header)
	}

	if r := e.do(admReq{method: "DELETE", path: "/admin/session", header: withCookie(nil)}); r.status != http.StatusForbidden {
		t.Errorf("sign out without the token: %d", r.status)
	}
	if r := e.do(admReq{method: "DELETE", path: "/admin/session", header: withCookie(map[string]string{"X-CSRF-Token": sess.CSRF})}); r.status != http.StatusNoContent {
		t.Errorf("sign out: %d", r.status)
	}
	if r := e.do(admReq{method: "GET", path: "/api/v1/users", header: withCookie(map[string]string{"X-Filegate-UI": "1"})}); r.status != http.StatusUnauthorized {
		t.Errorf("the session outlived sign-out: %d", r.status)
	}
}
