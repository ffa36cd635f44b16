package gateway

import (
	"context"
	"net/http"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/tus"
)

// TusPrefix is where the tus door is mounted.
const TusPrefix = "/uploads/"

// MountTus builds the tus door over the server's store, mounts it at
// TusPrefix behind authentication, and sweeps expired uploads until ctx
// ends. cfg.BasePath defaults to TusPrefix and cfg.MaxSize to the server's
// MaxUploadBytes; cfg.Log to the server's logger. The caller closes the
// returned door when the server has stopped (it releases the door's upload
// locks). It returns the error of tus.New.
func (s *Server) MountTus(ctx context.Context, cfg tus.Config) (*tus.Handler, error) {
	if cfg.BasePath == "" {
		cfg.BasePath = TusPrefix
	}
	if cfg.MaxSize == 0 {
		cfg.MaxSize = s.cfg.MaxUploadBytes
	}
	if cfg.Log == nil {
		cfg.Log = s.log
	}
	door, err := tus.New(cfg, s.store, tusAuthz{s})
	if err != nil {
		return nil, err
	}
	s.Handle(TusPrefix, s.tusHandler(door))
	go door.Run(ctx)
	return door, nil
}

// tusHandler passes the principal to the door. Uploads belong to a
// subject, so anonymous callers are challenged before anything else.
func (s *Server) tusHandler(door *tus.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := PrincipalFrom(r.Context())
		if p.IsAnonymous() {
			if r.Method != http.MethodOptions {
				challenge(w)
				return
			}
			door.ServeHTTP(w, r)
			return
		}
		c := tus.Caller{Subject: p.Subject, UserID: p.ActorID()}
		if p.User != nil {
			c.QuotaBytes = p.User.QuotaBytes
		}
		ctx := WithAuditSource(tus.WithCaller(r.Context(), c), r)
		door.ServeHTTP(w, r.WithContext(ctx))
	})
}

// tusAuthz asks the server's authorizer for write on the target folder.
type tusAuthz struct{ s *Server }

// The decision is audited like every other door's; when the audit row
// cannot be written the upload is refused rather than let through
// unrecorded.
func (a tusAuthz) MayWrite(ctx context.Context, c tus.Caller, folder *model.Node) bool {
	d, err := a.s.AuthorizeCtx(ctx, c.Subject, "write", folder)
	return err == nil && d.Allowed
}

// MayStat tells the tus door whether a caller may know that n exists, so
// that a create into a missing path refuses like WebDAV does (tus.Seer).
func (a tusAuthz) MayStat(ctx context.Context, c tus.Caller, n *model.Node) bool {
	d, err := a.s.AuthorizeCtx(ctx, c.Subject, "stat", n)
	return err == nil && d.Allowed
}

// Unlocked keeps WebDAV locks in force for tus uploads (tus.LockGuard): a
// locked file, a folder with a depth-infinity lock above the file, or a
// lock on the folder when the file is new, refuses the upload with 423.
func (a tusAuthz) Unlocked(ctx context.Context, folder *model.Node, name string) error {
	p := model.JoinPath(folder.Path, name)
	held, err := a.s.davLocks.Protects(ctx, []string{p}, false, []string{folder.Path})
	if err != nil || !held {
		return err
	}
	// Something is locked; only the file's own locks stop a replacement,
	// while the folder's guard its membership, which only a new file
	// changes. This rare path pays the two extra lookups.
	own, err := a.s.davLocks.Protects(ctx, []string{p}, false, nil)
	if err != nil {
		return err
	}
	if !own {
		if _, err := a.s.repo.LiveByPath(ctx, p); err == nil {
			return nil
		}
	}
	return model.ErrLocked
}
