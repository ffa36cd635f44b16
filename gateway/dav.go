package gateway

import (
	"context"
	"net/http"
	"strings"

	"github.com/filegate/filegate/davfs"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/policy"
)

// DAVPrefix is where the WebDAV door is mounted.
const DAVPrefix = "/dav"

// DAVHandler returns the WebDAV door over the server's store, for mounting
// behind authentication at DAVPrefix+"/":
//
//	s.Handle("/dav/", s.DAVHandler())
//
// Locks live in the store's database (shared by every instance). The door
// asks the server's authorizer once per operation with the principal's
// subject; refusals to anonymous callers get the same Basic challenge as
// every other door.
func (s *Server) DAVHandler() http.Handler {
	fs := davfs.New(s.store, s.davLocks, s.log)
	cacheBytes := s.cfg.ListingCacheBytes
	if cacheBytes == 0 {
		cacheBytes = DefaultListingCacheBytes
	}
	h := davfs.NewHandler(fs, davfs.Config{
		Prefix: DAVPrefix,
		// Decisions are audited like every other door's; a decision whose
		// audit row cannot be written counts as a refusal.
		Decide: func(ctx context.Context, sub, act, obj string) bool {
			d, err := s.authorizeLineage(ctx, sub, act, obj)
			return err == nil && d.Allowed
		},
		// Visibility checks (404 or 403 for a refusal, the children a
		// filtered root listing shows) are not operations and are not
		// audited; a listing of the root would otherwise write a row per
		// child.
		Visible: func(ctx context.Context, sub, act, obj string) bool {
			return s.authz.Decide(ctx, sub, act, obj).Allowed
		},
		Challenge:      func(w http.ResponseWriter, r *http.Request) { challenge(w) },
		MaxUploadBytes: s.cfg.MaxUploadBytes,
		Listings:       davfs.NewListingCache(cacheBytes),
		Log:            s.log,
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := PrincipalFrom(r.Context())
		ctx := davfs.WithActor(r.Context(), davfs.Actor{Subject: p.Subject, ID: p.ActorID(), Anonymous: p.IsAnonymous(), Quota: p.Quota()})
		h.ServeHTTP(w, r.WithContext(WithAuditSource(ctx, r)))
	})
}

// authorizeLineage decides and audits for doors that name objects by
// lineage rather than by node (the WebDAV door): the node id recorded is
// the lineage's last element, or none for "*".
func (s *Server) authorizeLineage(ctx context.Context, sub, act, lineage string) (policy.Decision, error) {
	if lineage == "" || lineage == policy.AnyObject {
		return s.AuthorizeCtx(ctx, sub, act, nil)
	}
	id := lineage[strings.LastIndexByte(lineage, '/')+1:]
	return s.AuthorizeCtx(ctx, sub, act, &model.Node{ID: id, Lineage: lineage})
}
