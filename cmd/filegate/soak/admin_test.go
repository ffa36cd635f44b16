package soak

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// adminRound signs in to the admin page with the admin's password, uses
// the session cookie for the audit trail and the user list, and signs
// out with the CSRF token, so the secret scan has a session cookie and a
// CSRF token to look for.
func (c *client) adminRound(password string) error {
	var cookie, csrf string
	form := url.Values{"name": {"admin"}, "password": {password}}.Encode()
	err := c.do(req{kind: "admin POST session", door: "admin", auth: "-", subject: "user:admin",
		build: func(base string) (*http.Request, error) {
			r, err := http.NewRequest(http.MethodPost, base+"/admin/session", strings.NewReader(form))
			if err == nil {
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				r.Header.Set("Accept", "application/json")
			}
			return r, err
		},
		handle: func(resp *http.Response, _ bool) error {
			if err := want(resp, "admin sign-in", http.StatusOK); err != nil {
				return err
			}
			for _, ck := range resp.Cookies() {
				if ck.Name == "filegate_admin" {
					cookie = ck.Value
				}
			}
			var s struct {
				CSRF string `json:"csrf"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
				return fmt.Errorf("%w: %v", errRetry, err)
			}
			csrf = s.CSRF
			return nil
		}})
	if err != nil {
		return err
	}
	if cookie == "" {
		return fmt.Errorf("admin sign-in set no session cookie")
	}
	c.h.sec.add("admin session cookie", cookie)
	c.h.sec.add("admin CSRF token", csrf)
	withCookie := func(method, path string) func(string) (*http.Request, error) {
		return func(base string) (*http.Request, error) {
			r, err := http.NewRequest(method, base+path, nil)
			if err == nil {
				r.AddCookie(&http.Cookie{Name: "filegate_admin", Value: cookie})
				r.Header.Set("X-CSRF-Token", csrf)
			}
			return r, err
		}
	}
	err = c.do(req{kind: "admin GET users (session)", door: "admin", auth: "-", subject: "user:admin",
		build:  withCookie(http.MethodGet, "/api/v1/users"),
		handle: func(resp *http.Response, _ bool) error { return want(resp, "admin GET users", http.StatusOK) }})
	if err != nil {
		return err
	}
	// The audit trail is part of the files API, which takes credentials
	// rather than the admin page's session.
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+password))
	c.h.sec.addAuthorization(basic)
	err = c.do(req{kind: "api GET audit", door: "api", auth: basic, subject: "user:admin",
		build: func(base string) (*http.Request, error) {
			return http.NewRequest(http.MethodGet, base+"/api/v1/audit?limit=5", nil)
		},
		handle: func(resp *http.Response, _ bool) error { return want(resp, "api GET audit", http.StatusOK) }})
	if err != nil {
		return err
	}
	return c.do(req{kind: "admin DELETE session", door: "admin", auth: "-", subject: "user:admin",
		build: withCookie(http.MethodDelete, "/admin/session"),
		handle: func(resp *http.Response, ambiguous bool) error {
			if ambiguous && resp.StatusCode == http.StatusForbidden {
				return nil // the dropped attempt ended the session
			}
			return want(resp, "admin sign-out", http.StatusNoContent)
		}})
}
