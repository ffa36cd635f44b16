package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/davfs"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/policy"
)

// APIPrefix is where the files REST API is mounted.
const APIPrefix = "/api/v1/"

// APIConfig tunes the files API. The zero value is ready to use.
type APIConfig struct {
	// BaseURL is the public origin signed link URLs start with, e.g.
	// "https://files.example.org"; empty means the request's own host.
	BaseURL string
	// LinkKey, when set, is the HMAC key of signed links (from config);
	// otherwise keys live in the database and rotate there. Changing
	// LinkKey kills every link signed with the old one.
	LinkKey []byte
	// DefaultLinkTTL is a link's lifetime when the request names none;
	// zero means 15 minutes.
	DefaultLinkTTL time.Duration
	// MaxLinkTTL caps a link's lifetime (the files settings may lower
	// it); zero means 24 hours.
	MaxLinkTTL time.Duration
	// SignedLinkRedirect answers a signed link's GET with a redirect to
	// a short-lived pre-signed URL of the blob store, when the store can
	// make one (S3), so the bytes flow from the bucket rather than through
	// filegate. The pre-signed URL forces a download
	// (Content-Disposition: attachment, Content-Type
	// application/octet-stream). Clients must be able to reach the
	// bucket's endpoint.
	SignedLinkRedirect bool
	// MaxPageSize caps list and search pages; zero means 1000.
	MaxPageSize int
	// Clock tells the time for signed links; nil means time.Now. Tests
	// set it to expire links without waiting.
	Clock func() time.Time
}

// policyStore is what the files API needs of the authorizer beyond
// decisions: explanations for the audit trail, and writing grants (with
// the token rows they belong to) in one transaction. *policy.Authorizer
// implements it.
type policyStore interface {
	Authorizer
	Explain(ctx context.Context, sub, act, obj string) policy.Decision
	Apply(ctx context.Context, ch policy.Change) error
	ApplyTx(ctx context.Context, db bun.IDB, ch policy.Change) (commit func(), err error)
	Rules(ctx context.Context, f policy.Filter) ([][]string, error)
}

// api is the files API's state. MountAPI keeps it in the server's
// authorizer slot, wrapped around the authorizer, so that Server methods
// (Authorize) reach it; Decide passes straight through.
type api struct {
	Authorizer
	s     *Server
	pol   policyStore
	audit *model.AuditLog
	cfg   APIConfig
	// locks are the WebDAV door's, which API writes honour too.
	locks *davfs.LockSystem

	trgmOnce sync.Once
	trgm     bool
}

// MountAPI mounts the files API at APIPrefix behind authentication and
// turns on auditing for Authorize. The server's authorizer must be a
// *policy.Authorizer (or implement the same administration methods). It
// returns an error when it is not, or when the API is already mounted.
func (s *Server) MountAPI(cfg APIConfig) error {
	if _, ok := s.authz.(*api); ok {
		return errors.New("gateway: the files API is already mounted")
	}
	pol, ok := s.authz.(policyStore)
	if !ok {
		return fmt.Errorf("gateway: the files API needs an authorizer with Explain, Apply, ApplyTx and Rules, not %T", s.authz)
	}
	if cfg.DefaultLinkTTL <= 0 {
		cfg.DefaultLinkTTL = 15 * time.Minute
	}
	if cfg.MaxLinkTTL <= 0 {
		cfg.MaxLinkTTL = 24 * time.Hour
	}
	if cfg.MaxPageSize <= 0 {
		cfg.MaxPageSize = 1000
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	a := &api{Authorizer: s.authz, s: s, pol: pol, audit: s.repo.NewAuditLog(), cfg: cfg, locks: s.davLocks}
	s.authz = a
	routes := []struct {
		pattern string
		h       http.HandlerFunc
	}{
		{"POST /api/v1/files", a.createFile},
		{"GET /api/v1/files", a.listFiles},
		{"GET /api/v1/files/first", a.findFirst},
		{"GET /api/v1/files/{id}", a.getFile},
		{"PATCH /api/v1/files/{id}", a.patchFile},
		{"DELETE /api/v1/files/{id}", a.deleteFile},
		{"POST /api/v1/files/{id}/restore", a.restoreFile},
		{"GET /api/v1/files/{id}/content", a.getContent},
		{"PUT /api/v1/files/{id}/content", a.putContent},
		{"GET /api/v1/files/{id}/tokens", a.listTokens},
		{"POST /api/v1/files/{id}/tokens", a.createToken},
		{"DELETE /api/v1/files/{id}/tokens/{tokenId}", a.deleteToken},
		{"GET /api/v1/files/{id}/grants", a.listGrants},
		{"POST /api/v1/files/{id}/grants", a.addGrant},
		{"DELETE /api/v1/files/{id}/grants", a.removeGrant},
		{"PUT /api/v1/files/{id}/public", a.setPublic},
		{"POST /api/v1/files/{id}/links", a.createLink},
		{"GET /api/v1/links/{id}", a.serveLink},
		{"GET /api/v1/settings/files", a.getSettings},
		{"PUT /api/v1/settings/files", a.putSettings},
		{"POST /api/v1/settings/links/rotate", a.rotateLinkKey},
		{"GET /api/v1/audit", a.listAudit},
		{"GET /api/v1/openapi.json", a.openAPI},
		{"/api/v1/", a.noRoute},
	}
	for _, rt := range routes {
		s.Handle(rt.pattern, rt.h)
	}
	return nil
}

// apiOf returns the files API state, nil when MountAPI has not run.
func (s *Server) apiOf() *api {
	a, _ := s.authz.(*api)
	return a
}

func (a *api) noRoute(w http.ResponseWriter, r *http.Request) {
	writeJSONError(w, http.StatusNotFound, "not_found", "No such endpoint or method.")
}

// writeJSON answers with a JSON body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// maxJSONBody bounds request bodies of JSON endpoints.
const maxJSONBody = 1 << 20

// readJSON decodes a JSON request body into v, refusing unknown fields so
// that a typo is an error rather than a silent no-op. An empty body leaves
// v as it is. It returns model.ErrInvalid.
func readJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return fmt.Errorf("%w: body: %v", model.ErrInvalid, err)
	}
	return nil
}

// apiBadRequest answers 400 with a message meant for the client. Messages
// name fields and values the client sent, never paths or internals.
func apiBadRequest(w http.ResponseWriter, code, msg string) {
	writeJSONError(w, http.StatusBadRequest, code, msg)
}

// node loads the node named by the {id} path value. It answers 404 and
// returns nil when there is none.
func (a *api) node(w http.ResponseWriter, r *http.Request) *model.Node {
	n, err := a.s.repo.NodeByID(r.Context(), r.PathValue("id"))
	if err != nil || n.ID == model.RootID {
		if err == nil {
			err = model.ErrNotFound
		}
		a.s.writeError(w, r, err)
		return nil
	}
	return n
}

// allow decides and audits act on n for the request's principal. When
// the request is refused or the audit trail cannot be written it answers
// (403/401, or 503) and returns false.
func (a *api) allow(w http.ResponseWriter, r *http.Request, n *model.Node, acts ...string) bool {
	d, err := a.s.authorizeFirst(r.Context(), requestSource(r), PrincipalFrom(r.Context()).Subject, n, acts...)
	if err != nil {
		a.s.writeError(w, r, err)
		return false
	}
	if !d.Allowed {
		Deny(w, r)
		return false
	}
	return true
}

// may reports, without auditing, whether the principal may do act on n.
// It only shapes responses (whether tokens are shown, which rows a
// listing keeps); every access itself goes through allow.
func (a *api) may(r *http.Request, act string, n *model.Node) bool {
	obj := policy.AnyObject
	if n != nil {
		obj = n.Lineage
	}
	return a.pol.Decide(r.Context(), PrincipalFrom(r.Context()).Subject, act, obj).Allowed
}

// isAdmin reports, without auditing, whether the principal is an admin.
func (a *api) isAdmin(r *http.Request) bool { return a.may(r, policy.ActAdmin, nil) }

// parseDuration reads a lifetime given as seconds (a JSON number or a
// numeric string) or as a Go duration string such as "15m". It returns
// model.ErrInvalid.
func parseDuration(raw json.RawMessage) (time.Duration, error) {
	var secs float64
	if err := json.Unmarshal(raw, &secs); err == nil {
		if secs <= 0 || secs > 1e9 {
			return 0, fmt.Errorf("%w: a lifetime must be positive and below 1e9 seconds", model.ErrInvalid)
		}
		return time.Duration(secs * float64(time.Second)), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return 0, fmt.Errorf("%w: a lifetime is seconds or a duration string", model.ErrInvalid)
	}
	return parseDurationString(s)
}

func parseDurationString(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if secs, err := strconv.ParseFloat(s, 64); err == nil {
		if secs <= 0 || secs > 1e9 {
			return 0, fmt.Errorf("%w: a lifetime must be positive", model.ErrInvalid)
		}
		return time.Duration(secs * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%w: %q is not a positive duration", model.ErrInvalid, s)
	}
	return d, nil
}
