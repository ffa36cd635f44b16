package gateway

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/policy"
)

// AuditSource says where a decision's request came from, for the audit
// trail.
type AuditSource struct {
	// Door is "api", "dav", "tus" or "admin".
	Door string
	// Remote is the client's address (http.Request.RemoteAddr).
	Remote string
}

type auditSourceKey struct{}

// WithAuditSource returns ctx carrying r's door and remote address, for
// doors whose authorization hooks get a context rather than the request
// (see AuthorizeCtx).
func WithAuditSource(ctx context.Context, r *http.Request) context.Context {
	return context.WithValue(ctx, auditSourceKey{}, requestSource(r))
}

func requestSource(r *http.Request) AuditSource {
	return AuditSource{Door: door(r.URL.Path), Remote: r.RemoteAddr}
}

func sourceFrom(ctx context.Context) AuditSource {
	src, _ := ctx.Value(auditSourceKey{}).(AuditSource)
	return src
}

// Authorize decides whether the request's principal may do act on n (nil
// means the object "*", for admin and view_files), appends the decision to
// the audit trail, and returns it. Every door calls it once per operation
// on content, metadata, tokens, grants, settings or policies. When the
// audit row cannot be written the decision is denied and the error wraps
// model.ErrUnavailable (answer 503): nothing happens unaudited. Before
// MountAPI has run there is no audit trail and Authorize only decides.
func (s *Server) Authorize(r *http.Request, act string, n *model.Node) (policy.Decision, error) {
	return s.authorizeFirst(r.Context(), requestSource(r), PrincipalFrom(r.Context()).Subject, n, act)
}

// AuditLog returns the audit trail Authorize appends to, for other
// endpoints that record decisions of their own (sign-ins, policy
// changes); nil before MountAPI.
func (s *Server) AuditLog() *model.AuditLog {
	if a := s.apiOf(); a != nil {
		return a.audit
	}
	return nil
}

// AuthorizeCtx is Authorize for hooks that get a context and a subject:
// the door and remote address come from WithAuditSource, the request id
// from the context.
func (s *Server) AuthorizeCtx(ctx context.Context, sub, act string, n *model.Node) (policy.Decision, error) {
	return s.authorizeFirst(ctx, sourceFrom(ctx), sub, n, act)
}

// AuthorizeObject decides and audits act on an object that is not a node
// (a policy line's subject, "*"), recording nodeID when there is one. It
// is for the policy administration endpoints.
func (s *Server) AuthorizeObject(r *http.Request, act, obj, nodeID string) (policy.Decision, error) {
	ctx := r.Context()
	sub := PrincipalFrom(ctx).Subject
	a := s.apiOf()
	if a == nil {
		return s.authz.Decide(ctx, sub, act, obj), nil
	}
	d := a.pol.Explain(ctx, sub, act, obj)
	return d, a.record(ctx, requestSource(r), sub, act, obj, nodeID, d)
}

// CatchingUp is implemented by authorizers that can check, after a
// denial, whether the shared policy moved on without them
// (policy.Authorizer.CatchUp); it reports whether their memory changed.
type CatchingUp interface {
	CatchUp(ctx context.Context) bool
}

func catchUp(ctx context.Context, pol Authorizer) bool {
	c, ok := pol.(CatchingUp)
	return ok && c.CatchUp(ctx)
}

// authorizeFirst decides the acts in order until one is allowed and
// audits one row for the request: the allowing act, or the first act
// denied. Acts admin and view_files are decided on "*".
func (s *Server) authorizeFirst(ctx context.Context, src AuditSource, sub string, n *model.Node, acts ...string) (policy.Decision, error) {
	objOf := func(act string) string {
		if n == nil || act == policy.ActAdmin || act == policy.ActViewFiles {
			return policy.AnyObject
		}
		return n.Lineage
	}
	// A denial may only mean that this instance has not yet heard of a
	// grant or token made on another one a moment ago: catch up once and
	// decide again, so what one instance allowed the next one allows too.
	first := func(pol Authorizer) (string, bool) {
		for _, act := range acts {
			if pol.Decide(ctx, sub, act, objOf(act)).Allowed {
				return act, true
			}
		}
		return acts[0], false
	}
	a := s.apiOf()
	if a == nil {
		act, ok := first(s.authz)
		if !ok && catchUp(ctx, s.authz) {
			act, ok = first(s.authz)
		}
		if !ok {
			return policy.Decision{}, nil
		}
		return s.authz.Decide(ctx, sub, act, objOf(act)), nil
	}
	act, ok := first(a.pol)
	if !ok && catchUp(ctx, a.pol) {
		act, _ = first(a.pol)
	}
	d := a.pol.Explain(ctx, sub, act, objOf(act))
	nodeID := ""
	if n != nil {
		nodeID = n.ID
	}
	return d, a.record(ctx, src, sub, act, objOf(act), nodeID, d)
}

// record appends one decision. On failure the caller must not proceed.
func (a *api) record(ctx context.Context, src AuditSource, sub, act, obj, nodeID string, d policy.Decision) error {
	e := model.AuditEntry{Door: src.Door, Subject: sub, Action: act, Object: obj, NodeID: nodeID,
		Decision: model.AuditDeny, Remote: src.Remote, RequestID: RequestID(ctx)}
	if d.Allowed {
		e.Decision = model.AuditAllow
		e.Rule = ruleText(d)
	}
	return a.appendAudit(ctx, e)
}

// appendAudit writes e to the audit trail. An allowed decision is written
// while the request goes on: the request's answer waits for the row (see
// recorder), so nothing is answered without it. A denial is written before
// the refusal goes out, as is any decision made once the answer started.
func (a *api) appendAudit(ctx context.Context, e model.AuditEntry) error {
	wait := a.audit.AppendAsync(ctx, e)
	if e.Decision == model.AuditAllow && deferAudit(ctx, wait) {
		return nil
	}
	if err := wait(); err != nil {
		a.s.logger(ctx).Error("audit append failed; refusing the request", "err", err)
		return fmt.Errorf("%w: audit trail: %v", model.ErrUnavailable, err)
	}
	return nil
}

// ruleText renders the deciding rule and the links it applied through:
// "p, level:read, *, (stat|read) via g2, group:staff, level:read, <id>".
func ruleText(d policy.Decision) string {
	s := strings.Join(d.Rule, ", ")
	for i, v := range d.Via {
		if i == 0 {
			s += " via "
		} else {
			s += "; "
		}
		s += strings.Join(v, ", ")
	}
	return s
}

// recordLink audits a signed-link request, which no policy line decides:
// the signature is the credential.
func (a *api) recordLink(r *http.Request, keyID string, n *model.Node, allowed bool, why string) error {
	d := model.AuditEntry{Door: "api", Subject: "link:" + keyID, Action: policy.ActRead, Object: "*",
		Decision: model.AuditDeny, Rule: why, Remote: r.RemoteAddr, RequestID: RequestID(r.Context())}
	if n != nil {
		d.Object, d.NodeID = n.Lineage, n.ID
	}
	if allowed {
		d.Decision = model.AuditAllow
	}
	return a.appendAudit(r.Context(), d)
}

// auditJSON is one audit row as the API shows it.
type auditJSON struct {
	Seq       int64     `json:"seq"`
	Time      time.Time `json:"time"`
	Door      string    `json:"door"`
	Subject   string    `json:"subject"`
	Action    string    `json:"action"`
	Object    string    `json:"object"`
	NodeID    string    `json:"nodeId"`
	Decision  string    `json:"decision"`
	Rule      string    `json:"rule"`
	Remote    string    `json:"remote"`
	RequestID string    `json:"requestId"`
	PrevHash  string    `json:"prevHash"`
	Hash      string    `json:"hash"`
}

// listAudit serves GET /api/v1/audit to admins, newest first, filtered by
// subject, action, decision, nodeId, door, requestId, since, until (RFC
// 3339), and paged with limit and before (the next value of a page).
func (a *api) listAudit(w http.ResponseWriter, r *http.Request) {
	if !a.allow(w, r, nil, policy.ActAdmin) {
		return
	}
	q := r.URL.Query()
	f := model.AuditFilter{Subject: q.Get("subject"), Action: q.Get("action"), Decision: q.Get("decision"),
		NodeID: q.Get("nodeId"), Door: q.Get("door"), RequestID: q.Get("requestId")}
	for name, dst := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if v := q.Get(name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				apiBadRequest(w, "invalid", name+" must be an RFC 3339 time")
				return
			}
			*dst = t
		}
	}
	for name, dst := range map[string]*int64{"before": &f.Before} {
		if v := q.Get(name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				apiBadRequest(w, "invalid", name+" must be a non-negative integer")
				return
			}
			*dst = n
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			apiBadRequest(w, "invalid", "limit must be between 1 and 1000")
			return
		}
		f.Limit = n
	}
	rows, err := a.audit.Query(r.Context(), f)
	if err != nil {
		a.s.writeError(w, r, err)
		return
	}
	out := struct {
		Data []auditJSON `json:"data"`
		Next *string     `json:"next"`
	}{Data: make([]auditJSON, 0, len(rows))}
	for _, e := range rows {
		out.Data = append(out.Data, auditJSON{Seq: e.Seq, Time: e.At, Door: e.Door, Subject: e.Subject, Action: e.Action,
			Object: e.Object, NodeID: e.NodeID, Decision: e.Decision, Rule: e.Rule, Remote: e.Remote,
			RequestID: e.RequestID, PrevHash: e.PrevHash, Hash: e.Hash})
	}
	limit := f.Limit
	if limit == 0 {
		limit = 100
	}
	if len(rows) == limit && len(rows) > 0 {
		next := strconv.FormatInt(rows[len(rows)-1].Seq, 10)
		out.Next = &next
	}
	writeJSON(w, http.StatusOK, out)
}
