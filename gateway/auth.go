package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/filegate/filegate/model"
)

// Principal is who a request acts as. Subject is the Casbin subject the
// authorizer decides on: "user:<name>", "token:<id>" or "anonymous".
type Principal struct {
	Subject string
	// User is set for password and API-key logins.
	User *model.User
	// Token is set when a per-file token authenticated the request.
	Token *model.FileToken
	// Method says how the request authenticated: "password", "apikey",
	// "token" or "" for anonymous.
	Method string
}

// Anonymous is the principal of a request without credentials.
var Anonymous = Principal{Subject: "anonymous"}

// IsAnonymous reports whether no credentials were presented.
func (p Principal) IsAnonymous() bool { return p.Method == "" }

// ActorID is the id recorded as creator: the user id, or the token id.
func (p Principal) ActorID() string {
	switch {
	case p.User != nil:
		return p.User.ID
	case p.Token != nil:
		return "token:" + p.Token.ID
	}
	return ""
}

// Quota is the storage quota the principal's writes are checked against:
// the user's own, or none for a token (whose files count against no
// user: "token:<id>" creates them) and for anonymous requests.
func (p Principal) Quota() model.Quota {
	if p.User == nil {
		return model.Quota{}
	}
	return model.Quota{Account: p.User.ID, Bytes: p.User.QuotaBytes}
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the request's principal, Anonymous if none.
func PrincipalFrom(ctx context.Context) Principal {
	if p, ok := ctx.Value(principalKey{}).(Principal); ok {
		return p
	}
	return Anonymous
}

// errBadCredentials is returned for credentials that were presented but
// are wrong, revoked, expired or belong to a disabled user; the answer is
// always the same 401 so it reveals nothing.
var errBadCredentials = errors.New("bad credentials")

// authenticator turns credentials into a Principal. Verified passwords are
// remembered for a while, keyed by an HMAC under a per-process key of the
// user id, the stored hash and the password, so WebDAV clients that send
// Basic on every request pay argon2id once; a password change alters the
// stored hash and so misses the cache. Disabled users are checked on every
// request against the database.
type authenticator struct {
	repo   *model.Repo
	key    [32]byte
	ttl    time.Duration
	mu     sync.Mutex
	cached map[[32]byte]time.Time
	// verifying bounds the argon2id verifications running at once: each
	// takes 19 MiB, and a burst of Basic logins (every WebDAV client
	// after a restart, or someone guessing) must not take the memory.
	verifying chan struct{}
	// released is when verification memory was last handed back to the
	// operating system (see releaseArgon).
	released atomic.Int64
	// limits block password guessing (see model.SignInLimits); the counts
	// are in the database, shared by every instance.
	limits model.SignInLimits
	// audit, when set, receives a row for each failed password sign-in
	// and each block it starts.
	audit func() *model.AuditLog
	log   func(ctx context.Context) *slog.Logger
	// checked counts a password check by outcome (see metrics).
	checked func(outcome string)
	// decoy is what unknown names are checked against (see decoyHash).
	decoyOnce sync.Once
	decoy     string
}

func newAuthenticator(repo *model.Repo, limits model.SignInLimits) *authenticator {
	a := &authenticator{repo: repo, ttl: 10 * time.Minute, cached: map[[32]byte]time.Time{},
		verifying: make(chan struct{}, max(2, runtime.GOMAXPROCS(0))), limits: limits,
		audit: func() *model.AuditLog { return nil }, log: func(context.Context) *slog.Logger { return slog.Default() },
		checked: func(string) {}}
	rand.Read(a.key[:])
	return a
}

// throttled is the error of a password sign-in refused, unchecked,
// because its account name or client address failed too often.
type throttled struct{ until time.Time }

func (t *throttled) Error() string { return "too many failed sign-ins" }

// retryAfter is the Retry-After value of a throttled answer: whole
// seconds until the block ends, at least 1.
func (t *throttled) retryAfter(now time.Time) string {
	return strconv.FormatInt(max(1, int64(math.Ceil(t.until.Sub(now).Seconds()))), 10)
}

// writeThrottled answers a throttled sign-in with 429 and Retry-After.
func writeThrottled(w http.ResponseWriter, t *throttled) {
	w.Header().Set("Retry-After", t.retryAfter(time.Now()))
	writeJSONError(w, http.StatusTooManyRequests, "too_many_attempts",
		"Too many failed sign-ins for this account or address; try again later.")
}

// guessingSource is what failed sign-ins from addr count against: the
// address itself, or for IPv6 its /64, which one host or home network is
// usually given whole and could otherwise walk through an address per
// guess.
func guessingSource(addr string) string {
	ip := net.ParseIP(addr)
	if ip == nil || ip.To4() != nil {
		return addr
	}
	return (&net.IPNet{IP: ip.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
}

// clientAddr is the client's address without port from a RemoteAddr as
// the server keeps it ("IP:PORT", or "CLIENT via PROXY" behind a trusted
// proxy).
func clientAddr(remote string) string {
	if client, _, ok := strings.Cut(remote, " via "); ok {
		return client
	}
	if host, _, err := net.SplitHostPort(remote); err == nil {
		return host
	}
	return remote
}

// authenticate inspects the Authorization header. No header gives
// Anonymous. It returns errBadCredentials, a *throttled for a password
// sign-in refused after too many failures, or model.ErrUnavailable when
// the database cannot say.
func (a *authenticator) authenticate(r *http.Request) (Principal, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return Anonymous, nil
	}
	ctx := r.Context()
	scheme, cred, _ := strings.Cut(h, " ")
	cred = strings.TrimSpace(cred)
	switch strings.ToLower(scheme) {
	case "bearer":
		return a.bearer(ctx, cred)
	case "basic":
		user, pass, ok := r.BasicAuth()
		if !ok {
			return Anonymous, errBadCredentials
		}
		if strings.HasPrefix(pass, model.TokenPrefix+"_") || strings.HasPrefix(pass, model.APIKeyPrefix+"_") {
			return a.bearer(ctx, pass)
		}
		return a.password(ctx, user, pass, r)
	}
	return Anonymous, errBadCredentials
}

func (a *authenticator) bearer(ctx context.Context, cred string) (Principal, error) {
	switch {
	case strings.HasPrefix(cred, model.APIKeyPrefix+"_"):
		u, err := a.repo.UserByAPIKey(ctx, cred)
		if err != nil {
			return Anonymous, credErr(err)
		}
		return Principal{Subject: "user:" + u.Name, User: u, Method: "apikey"}, nil
	case strings.HasPrefix(cred, model.TokenPrefix+"_"):
		t, err := a.repo.TokenByCredential(ctx, cred)
		if err != nil {
			return Anonymous, credErr(err)
		}
		return Principal{Subject: "token:" + t.ID, Token: t, Method: "token"}, nil
	}
	return Anonymous, errBadCredentials
}

// password checks a name and password. A password verified in the last
// ttl is accepted from the cache, so a block set by someone guessing does
// not cut off a user already signed in; any other check is refused with a
// *throttled while the name or the client's address is blocked. A wrong
// password, or an unknown name, counts a failure against both.
func (a *authenticator) password(ctx context.Context, name, pass string, r *http.Request) (Principal, error) {
	if name == "" || pass == "" || len(pass) > 1024 {
		return Anonymous, errBadCredentials
	}
	u, err := a.repo.UserByName(ctx, name)
	if err != nil && !errors.Is(err, model.ErrNotFound) && !errors.Is(err, model.ErrInvalid) {
		return Anonymous, credErr(err)
	}
	var k [32]byte
	if u != nil {
		if u.Disabled || u.PasswordHash == "" {
			return Anonymous, errBadCredentials
		}
		k = a.cacheKey(u, pass)
		a.mu.Lock()
		exp, hit := a.cached[k]
		a.mu.Unlock()
		if hit && time.Now().Before(exp) {
			return Principal{Subject: "user:" + u.Name, User: u, Method: "password"}, nil
		}
	}
	account, address := model.SignInKeys(name, guessingSource(clientAddr(r.RemoteAddr)))
	if until, err := a.repo.SignInBlockedUntil(ctx, time.Now(), account, address); err != nil {
		return Anonymous, credErr(err)
	} else if !until.IsZero() {
		a.checked("blocked")
		return Anonymous, &throttled{until: until}
	}
	// An unknown name is checked against a hash of nothing, taking as
	// long as a known one: the time of a 401 tells no one which names
	// exist.
	var hash string
	if u != nil {
		hash = u.PasswordHash
	} else {
		hash = a.decoyHash()
	}
	select {
	case a.verifying <- struct{}{}:
	case <-ctx.Done():
		return Anonymous, credErr(ctx.Err())
	}
	ok := model.CheckPassword(hash, pass) && u != nil
	<-a.verifying
	a.releaseArgon()
	if ok {
		a.checked("right")
	} else {
		a.checked("wrong")
	}
	if !ok {
		return Anonymous, a.failed(ctx, r, name, account, address)
	}
	if err := a.repo.SignInSucceeded(ctx, account); err != nil {
		return Anonymous, credErr(err)
	}
	a.mu.Lock()
	if len(a.cached) > 10000 {
		clear(a.cached) // bounded memory beats perfect hit rates
	}
	a.cached[k] = time.Now().Add(a.ttl)
	a.mu.Unlock()
	return Principal{Subject: "user:" + u.Name, User: u, Method: "password"}, nil
}

// decoyHash is an argon2id hash of a random password nobody knows, made
// on first use, which unknown names are checked against.
func (a *authenticator) decoyHash() string {
	a.decoyOnce.Do(func() { a.decoy = model.HashPassword(randomToken()) })
	return a.decoy
}

// failed counts a failed password sign-in as name, records it in the audit
// trail, and returns errBadCredentials; or the error that kept it from
// being counted, so a guess is never answered without being counted.
func (a *authenticator) failed(ctx context.Context, r *http.Request, name, account, address string) error {
	ctx = context.WithoutCancel(ctx)
	until, err := a.repo.SignInFailed(ctx, a.limits, time.Now(), account, address)
	if err != nil {
		return credErr(err)
	}
	e := model.AuditEntry{Door: door(r.URL.Path), Subject: "user:" + name, Action: actSignInFailed,
		Object: "*", Decision: model.AuditDeny, Remote: r.RemoteAddr, RequestID: RequestID(ctx)}
	entries := []model.AuditEntry{e}
	if !until.IsZero() {
		e.Action, e.Rule = actSignInBlocked, "until "+until.Format(time.RFC3339)
		entries = append(entries, e)
		a.log(ctx).Warn("sign-ins blocked after repeated failures", "name", name, "remote", r.RemoteAddr, "until", until)
	}
	if log := a.audit(); log != nil {
		if err := log.Append(ctx, entries...); err != nil {
			return credErr(err)
		}
	}
	return errBadCredentials
}

// Audit actions of password sign-ins.
const (
	actSignInFailed  = "sign_in.failed"
	actSignInBlocked = "sign_in.blocked"
)

// releaseArgon hands the memory of finished argon2id verifications back
// to the operating system once none is running. Go's scavenger would keep
// those 19 MiB blocks for minutes, and a server that streams gigabytes in
// a few MiB should not sit at three times that after each login. At most
// once a second, so a burst of logins costs one forced collection.
func (a *authenticator) releaseArgon() {
	now := time.Now().UnixNano()
	last := a.released.Load()
	if len(a.verifying) > 0 || now-last < int64(time.Second) || !a.released.CompareAndSwap(last, now) {
		return
	}
	go debug.FreeOSMemory()
}

func (a *authenticator) cacheKey(u *model.User, pass string) [32]byte {
	m := hmac.New(sha256.New, a.key[:])
	m.Write([]byte(u.ID))
	m.Write([]byte{0})
	m.Write([]byte(u.PasswordHash))
	m.Write([]byte{0})
	m.Write([]byte(pass))
	var out [32]byte
	copy(out[:], m.Sum(nil))
	return out
}

// credErr keeps "no such user, key or token" apart from every other
// failure: only the first is a bad credential (401). A database that
// failed, a cancelled request or any unexpected error answers through the
// error table (503, 499) instead of telling a client with valid
// credentials that they are wrong.
func credErr(err error) error {
	if errors.Is(err, model.ErrNotFound) || errors.Is(err, model.ErrInvalid) {
		return errBadCredentials
	}
	if errors.Is(err, model.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: checking credentials: %v", model.ErrUnavailable, err)
}

// challenge answers 401 with the Basic challenge WebDAV clients need.
// Windows' Mini-Redirector and Finder both accept a plain Basic realm.
func challenge(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Basic realm="filegate", charset="UTF-8"`)
	writeJSONError(w, http.StatusUnauthorized, "unauthorized", "Authentication is required.")
}
