package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/policy"
)

// AdminDeps are what the administration API and page need beyond the
// server's own dependencies.
type AdminDeps struct {
	// Policy is the authorizer changes are applied, previewed and
	// explained through. It must be the one the server decides with
	// (Deps.Authz), so that a change applies to this instance's very next
	// request; other instances follow through Policy.Run.
	Policy *policy.Authorizer
	// Audit receives one row per change and sign-in; nil means an audit
	// log on the store's database.
	Audit *model.AuditLog
	// SessionTTL is how long an admin page sign-in lasts; zero means 8
	// hours.
	SessionTTL time.Duration
}

// admin is the state of the administration API and page.
type admin struct {
	s     *Server
	pol   *policy.Authorizer
	audit *model.AuditLog
	ttl   time.Duration
	// mu serialises check-then-apply on this instance, so that two
	// concurrent removals cannot each pass the last-admin check.
	mu sync.Mutex
}

// MountAdmin mounts the administration API (/api/v1/policies,
// /api/v1/groups, /api/v1/users; admins only) and the admin page
// (/admin/) behind authentication. Call it once, after New. It returns an
// error when d.Policy is missing.
func (s *Server) MountAdmin(d AdminDeps) error {
	ad, err := s.newAdmin(d)
	if err != nil {
		return err
	}
	for _, rt := range ad.routes() {
		s.Handle(rt.pattern, ad.adminsOnly(rt.h))
	}
	s.Handle("GET /admin/session", http.HandlerFunc(ad.getSession))
	s.Handle("POST /admin/session", http.HandlerFunc(ad.signIn))
	s.Handle("DELETE /admin/session", http.HandlerFunc(ad.signOut))
	s.Handle("GET /admin/", adminPage())
	return nil
}

// LocalAdmin returns the administration API as a handler for `filegate
// policy` working straight on the database: the same validation,
// guardrails, what-if and audit as MountAdmin's, for an operator who
// already holds the database. Its requests are not authenticated; they act
// as subject (e.g. "cli:alice", recorded in the audit trail) without the
// admin check, so it must never be served on a listener. It returns an
// error when d.Policy is missing.
func (s *Server) LocalAdmin(d AdminDeps, subject string) (http.Handler, error) {
	ad, err := s.newAdmin(d)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	for _, rt := range ad.routes() {
		mux.Handle(rt.pattern, rt.h)
	}
	p := Principal{Subject: subject, Method: "local"}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	}), nil
}

func (s *Server) newAdmin(d AdminDeps) (*admin, error) {
	if d.Policy == nil {
		return nil, errors.New("gateway: the admin API needs the policy authorizer")
	}
	if d.Audit == nil {
		d.Audit = s.repo.NewAuditLog()
	}
	if d.SessionTTL <= 0 {
		d.SessionTTL = 8 * time.Hour
	}
	return &admin{s: s, pol: d.Policy, audit: d.Audit, ttl: d.SessionTTL}, nil
}

type adminRoute struct {
	pattern string
	h       http.HandlerFunc
}

func (ad *admin) routes() []adminRoute {
	return []adminRoute{
		{"GET /api/v1/policies", ad.listPolicies},
		{"POST /api/v1/policies", ad.applyBatch},
		{"GET /api/v1/policies/export", ad.exportPolicies},
		{"POST /api/v1/policies/import", ad.importPolicies},
		{"GET /api/v1/policies/explain", ad.explain},
		{"POST /api/v1/policies/what-if", ad.whatIf},
		{"GET /api/v1/users", ad.listUsers},
		{"POST /api/v1/users", ad.createUser},
		{"GET /api/v1/users/{name}", ad.getUser},
		{"PATCH /api/v1/users/{name}", ad.patchUser},
		{"GET /api/v1/groups", ad.listGroups},
		{"POST /api/v1/groups", ad.createGroup},
		{"POST /api/v1/groups/{name}/members", ad.addMember},
		{"DELETE /api/v1/groups/{name}/members/{member}", ad.removeMember},
		{"GET /api/v1/audit/verify", ad.verifyAudit},
		{"GET /api/v1/integrity-checks", ad.listIntegrityChecks},
		{"POST /api/v1/integrity-checks", ad.startIntegrityCheck},
		{"GET /api/v1/integrity-checks/{id}", ad.getIntegrityCheck},
	}
}

// uiHeader marks requests made by the admin page's script: they get a
// plain 401 rather than a Basic challenge, which would pop up the
// browser's own password dialog over the page's sign-in form.
const uiHeader = "X-Filegate-UI"

// adminsOnly lets h run only for admins. A request without an
// Authorization header may be signed in through the page's session
// cookie; mutating requests must then carry the session's CSRF token.
// Mutating requests with Basic credentials, which a browser replays on
// its own, must not come from another site.
func (ad *admin) adminsOnly(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		r, sess, err := ad.withSession(r)
		if err != nil {
			ad.s.writeError(w, r, err)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !csrfSafe(r, sess) {
			writeJSONError(w, http.StatusForbidden, "csrf", "The request lacks a valid CSRF token or comes from another site.")
			return
		}
		p := PrincipalFrom(r.Context())
		allowed := ad.pol.Decide(r.Context(), p.Subject, policy.ActAdmin, policy.AnyObject).Allowed
		// Changes are audited by their handlers, with before and after;
		// reads and refusals are audited here, so every request leaves
		// exactly one row. The path is recorded as sent, escaped: a
		// decoded one may hold bytes no text column takes.
		if !allowed || r.Method == http.MethodGet || r.Method == http.MethodHead {
			d := auditDetail{}
			if !allowed {
				d.Reason = "not an administrator"
			}
			if err := ad.record(r.Context(), r, policy.ActAdmin, r.Method+" "+r.URL.EscapedPath(), allowed, d); err != nil && allowed {
				ad.s.writeError(w, r, fmt.Errorf("%w: audit trail: %v", model.ErrUnavailable, err))
				return
			}
		}
		if !allowed {
			if p.IsAnonymous() && r.Header.Get(uiHeader) == "" {
				challenge(w)
				return
			}
			status := http.StatusForbidden
			if p.IsAnonymous() {
				status = http.StatusUnauthorized
			}
			writeJSONError(w, status, "forbidden", "Only administrators may do that.")
			return
		}
		h(w, r)
	})
}

// csrfSafe reports whether a mutating request may proceed: with a session
// it must echo the session's token; with Basic credentials it must not be
// a cross-site request nor carry a body a cross-site form could send.
// Bearer API keys are never sent by a browser on its own.
func csrfSafe(r *http.Request, sess *adminSession) bool {
	if sess != nil {
		return sess.csrfMatches(r.Header.Get(csrfHeader))
	}
	if PrincipalFrom(r.Context()).Method != "password" {
		return true
	}
	if !sameSite(r) {
		return false
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "application/x-www-form-urlencoded", "multipart/form-data", "text/plain":
		return false
	}
	return true
}

// sameSite reports whether the browser says the request comes from this
// site, or says nothing (a non-browser client).
func sameSite(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return false
		}
	}
	return true
}

// badRequestError is a malformed admin request; it is model.ErrInvalid
// (400) and its message, which only quotes the request, is shown.
type badRequestError struct{ msg string }

func (e *badRequestError) Error() string { return e.msg }
func (e *badRequestError) Unwrap() error { return model.ErrInvalid }

func badRequest(format string, args ...any) error {
	return &badRequestError{fmt.Sprintf(format, args...)}
}

// adminErrorBody is writeJSONError's shape plus the guardrails' risks.
type adminErrorBody struct {
	Error struct {
		Code    string        `json:"code"`
		Message string        `json:"message"`
		Risks   []policy.Risk `json:"risks,omitempty"`
	} `json:"error"`
}

// fail answers err. Validation and guardrail errors carry their message,
// which only ever quotes the admin's own input; everything else goes
// through the server's status table.
func (ad *admin) fail(w http.ResponseWriter, r *http.Request, err error, risks []policy.Risk) {
	var b adminErrorBody
	status := http.StatusBadRequest
	switch {
	case errors.Is(err, policy.ErrLastAdmin):
		status, b.Error.Code = http.StatusConflict, "last_admin"
		b.Error.Message = "Refused: " + err.Error() + ". Make someone else an administrator first."
	case errors.Is(err, policy.ErrUnsafe):
		status, b.Error.Code = http.StatusConflict, "unsafe"
		b.Error.Message = "Refused: " + err.Error() + ". Apply it with force (force=true) to go ahead."
		b.Error.Risks = risks
	case errors.Is(err, policy.ErrInvalid), errors.Is(err, model.ErrInvalid):
		b.Error.Code, b.Error.Message = "invalid", err.Error()
	default:
		ad.s.writeError(w, r, err)
		return
	}
	adminJSON(w, status, b)
}

// adminJSON answers with a JSON body.
func adminJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// decodeJSON reads a JSON body of at most limit bytes into v, refusing
// unknown fields so that a typo is an error rather than a silent no-op.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return fmt.Errorf("%w: the body is larger than %d bytes", model.ErrTooLarge, limit)
		}
		return badRequest("the body is not the expected JSON: %v", err)
	}
	if dec.More() {
		return badRequest("the body holds more than one JSON value")
	}
	return nil
}

// auditDetail is what an admin audit row's rule column holds, as JSON:
// the change and the state of the lines or account it touched.
type auditDetail struct {
	Change *changeJSON   `json:"change,omitempty"`
	Before any           `json:"before"`
	After  any           `json:"after"`
	Risks  []policy.Risk `json:"forced_risks,omitempty"`
	Reason string        `json:"refused,omitempty"`
}

// record appends one row to the audit trail: who (the principal), what
// (action and object) and, in the rule column, the change with before and
// after. It is the admin side's one call site of the audit log.
func (ad *admin) record(ctx context.Context, r *http.Request, action, object string, allowed bool, d auditDetail) error {
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	e := model.AuditEntry{
		Door: "admin", Subject: PrincipalFrom(ctx).Subject, Action: action, Object: object,
		Decision: model.AuditAllow, Rule: string(b), Remote: r.RemoteAddr, RequestID: RequestID(ctx),
	}
	if !allowed {
		e.Decision = model.AuditDeny
	}
	if err := ad.audit.Append(context.WithoutCancel(ctx), e); err != nil {
		ad.s.logger(ctx).Error("admin: audit append failed", "action", action, "object", object, "err", err)
		return err
	}
	return nil
}

// applied answers a change that was made: 200 with body, or 500 when it
// could not be audited (it was applied all the same, and the answer says
// so rather than pretend it failed).
func (ad *admin) applied(w http.ResponseWriter, auditErr error, status int, body any) {
	if auditErr != nil {
		writeJSONError(w, http.StatusInternalServerError, "audit_failed",
			"The change was applied but could not be written to the audit trail; see the server log.")
		return
	}
	adminJSON(w, status, body)
}
