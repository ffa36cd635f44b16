package gateway

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/policy"
)

// adminCookie names the admin page's session cookie. It is HttpOnly,
// SameSite=Strict and, on TLS, Secure.
const adminCookie = "filegate_admin"

// csrfHeader carries the session's CSRF token on mutating requests.
const csrfHeader = "X-CSRF-Token"

// adminSession is a row of admin_sessions: a signed-in admin page.
type adminSession struct {
	bun.BaseModel `bun:"table:admin_sessions"`

	IDHash    string    `bun:"id_hash,pk"`
	UserID    string    `bun:"user_id"`
	CSRF      string    `bun:"csrf"`
	CreatedAt time.Time `bun:"created_at"`
	ExpiresAt time.Time `bun:"expires_at"`
}

func (s *adminSession) csrfMatches(token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.CSRF)) == 1
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// withSession signs the request in through the session cookie when it
// carries no Authorization header. An unknown or expired cookie, or one of
// a disabled user, leaves the request anonymous. It returns the database's
// error (ErrUnavailable) when the session cannot be read.
func (ad *admin) withSession(r *http.Request) (*http.Request, *adminSession, error) {
	if !PrincipalFrom(r.Context()).IsAnonymous() {
		return r, nil, nil
	}
	c, err := r.Cookie(adminCookie)
	if err != nil || c.Value == "" || len(c.Value) > 128 {
		return r, nil, nil
	}
	ctx := r.Context()
	sess := new(adminSession)
	err = ad.s.repo.DB().NewSelect().Model(sess).
		Where("id_hash = ?", model.HashSecret(c.Value)).Where("expires_at > ?", time.Now().UTC()).Scan(ctx)
	if err != nil {
		if ad.s.repo.Ping(ctx) != nil {
			return r, nil, model.ErrUnavailable
		}
		return r, nil, nil
	}
	u, err := ad.s.repo.UserByID(ctx, sess.UserID)
	if errors.Is(err, model.ErrNotFound) || (err == nil && u.Disabled) {
		return r, nil, nil
	}
	if err != nil {
		return r, nil, err
	}
	p := Principal{Subject: policy.User(u.Name), User: u, Method: "session"}
	ctx = WithPrincipal(ctx, p)
	setLogAttr(ctx, "subject", p.Subject)
	return r.WithContext(ctx), sess, nil
}

type sessionJSON struct {
	User string `json:"user"`
	CSRF string `json:"csrf"`
}

// getSession tells the page who is signed in, and the CSRF token to send;
// another site cannot read the answer (no CORS), so the token stays with
// the page.
func (ad *admin) getSession(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	r, sess, err := ad.withSession(r)
	if err != nil {
		ad.s.writeError(w, r, err)
		return
	}
	if sess == nil {
		writeJSONError(w, http.StatusUnauthorized, "unauthorized", "Not signed in.")
		return
	}
	adminJSON(w, http.StatusOK, sessionJSON{User: PrincipalFrom(r.Context()).User.Name, CSRF: sess.CSRF})
}

// signIn checks an admin's name and password from the page's form and
// starts a session. Cross-site posts are refused, so another site cannot
// sign a browser in to an account of its choosing.
func (ad *admin) signIn(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if !sameSite(r) {
		writeJSONError(w, http.StatusForbidden, "csrf", "Sign in from the admin page.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		writeJSONError(w, http.StatusBadRequest, "invalid", "The sign-in form is malformed.")
		return
	}
	ctx := r.Context()
	p, err := ad.s.authn.password(ctx, strings.TrimSpace(r.PostForm.Get("name")), r.PostForm.Get("password"), r)
	if err != nil {
		var t *throttled
		if errors.As(err, &t) {
			writeThrottled(w, t)
			return
		}
		if errors.Is(err, model.ErrUnavailable) {
			ad.s.writeError(w, r, err)
			return
		}
		ad.s.logger(ctx).Info("admin sign-in failed", "remote", r.RemoteAddr)
		writeJSONError(w, http.StatusUnauthorized, "unauthorized", "Wrong name or password.")
		return
	}
	ctx = WithPrincipal(ctx, p)
	if !ad.pol.Decide(ctx, p.Subject, policy.ActAdmin, policy.AnyObject).Allowed {
		writeJSONError(w, http.StatusForbidden, "forbidden", "Only administrators may sign in here.")
		return
	}
	secret, now := randomToken(), time.Now().UTC()
	sess := &adminSession{IDHash: model.HashSecret(secret), UserID: p.User.ID, CSRF: randomToken(),
		CreatedAt: now, ExpiresAt: now.Add(ad.ttl)}
	db := ad.s.repo.DB()
	if _, err := db.NewInsert().Model(sess).Exec(ctx); err != nil {
		ad.s.writeError(w, r, model.ErrUnavailable)
		return
	}
	// Expired sessions are pruned here rather than by a timer: sign-ins
	// are rare and every instance does them.
	db.NewDelete().Model((*adminSession)(nil)).Where("expires_at < ?", now).Exec(context.WithoutCancel(ctx))
	if err := ad.record(ctx, r, "admin.sign_in", p.Subject, true, auditDetail{}); err != nil {
		db.NewDelete().Model(sess).WherePK().Exec(context.WithoutCancel(ctx))
		ad.s.writeError(w, r, model.ErrUnavailable)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: adminCookie, Value: secret, Path: "/", MaxAge: int(ad.ttl.Seconds()),
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
	if strings.Contains(r.Header.Get("Accept"), "application/json") {
		adminJSON(w, http.StatusOK, sessionJSON{User: p.User.Name, CSRF: sess.CSRF})
		return
	}
	http.Redirect(w, r, "/admin/", http.StatusSeeOther)
}

// signOut ends the session everywhere (the row goes) and clears the
// cookie. It needs the CSRF token like every other change.
func (ad *admin) signOut(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	r, sess, err := ad.withSession(r)
	if err != nil {
		ad.s.writeError(w, r, err)
		return
	}
	if sess == nil || !sess.csrfMatches(r.Header.Get(csrfHeader)) {
		writeJSONError(w, http.StatusForbidden, "csrf", "Not signed in, or the CSRF token is missing.")
		return
	}
	if _, err := ad.s.repo.DB().NewDelete().Model(sess).WherePK().Exec(r.Context()); err != nil {
		ad.s.writeError(w, r, model.ErrUnavailable)
		return
	}
	// The session is gone either way; a failed row is logged by record.
	ad.record(r.Context(), r, "admin.sign_out", PrincipalFrom(r.Context()).Subject, true, auditDetail{})
	http.SetCookie(w, &http.Cookie{
		Name: adminCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
	w.WriteHeader(http.StatusNoContent)
}

// endSessions signs a user out of every admin page, e.g. when disabled.
func (ad *admin) endSessions(ctx context.Context, userID string) error {
	_, err := ad.s.repo.DB().NewDelete().Model((*adminSession)(nil)).Where("user_id = ?", userID).Exec(ctx)
	return err
}
