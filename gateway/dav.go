package gateway

import (
	"context"
	"net/http"

	"github.com/filegate/filegate/davfs"
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
	fs := davfs.New(s.store, davfs.NewLockSystem(s.repo.DB()), s.log)
	h := davfs.NewHandler(fs, davfs.Config{
		Prefix: DAVPrefix,
		Decide: func(ctx context.Context, sub, act, obj string) bool {
			return s.authz.Decide(ctx, sub, act, obj).Allowed
		},
		Challenge:      func(w http.ResponseWriter, r *http.Request) { challenge(w) },
		MaxUploadBytes: s.cfg.MaxUploadBytes,
		Log:            s.log,
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := PrincipalFrom(r.Context())
		ctx := davfs.WithActor(r.Context(), davfs.Actor{Subject: p.Subject, ID: p.ActorID(), Anonymous: p.IsAnonymous()})
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}
