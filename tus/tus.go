// Package tus is filegate's resumable upload door: the tus 1.0 protocol
// (creation, creation-with-upload, creation-defer-length, termination,
// concatenation, checksum, expiration) and the IETF resumable upload draft,
// spoken by the tusd v2 handler over a DataStore and a Locker of our own.
//
// An upload is a session row in the database plus a partial blob. It holds
// no name in the namespace while it runs, so WebDAV and folder listings
// never show it; when its last byte arrives the partial blob is published
// and recorded with Repo.PutFile, so the file appears at its path in one
// step, completed, with its size and SHA-256. Only the subject that created
// an upload can reach it: any other caller gets 404 for its URL, whether in
// a request path or an Upload-Concat list.
//
// The package does no authentication. The gateway resolves the caller and
// passes it in the request context (WithCaller); the Authorizer it gives
// New answers whether the caller may write into a folder, asked when an
// upload is created and again on every PATCH, so revoking access stops the
// next chunk.
package tus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model"
)

// Defaults for Config fields left zero.
const (
	DefaultBasePath      = "/uploads/"
	DefaultTTL           = 24 * time.Hour
	DefaultLockLease     = 15 * time.Second
	DefaultSweepInterval = 10 * time.Minute
	// MaxMetadataBytes caps the Upload-Metadata header.
	MaxMetadataBytes = 8 << 10
)

// Config tunes the door.
type Config struct {
	// BasePath is where the door is mounted; uploads live at
	// BasePath+<id>. Default "/uploads/".
	BasePath string
	// MaxSize caps one upload in bytes (413 past it); zero means no cap.
	MaxSize int64
	// TTL is how long an upload may sit idle before the sweep removes it
	// and its bytes, and how long a finished upload's URL keeps answering.
	// Default 24 hours.
	TTL time.Duration
	// LockLease is how long a lock row on PostgreSQL stays valid without
	// a refresh from its holder: after a holder dies, another instance may
	// resume the upload once the lease has run out. Default 15 s.
	LockLease time.Duration
	// SweepInterval is how often Run sweeps expired uploads. Default 10 min.
	SweepInterval time.Duration
	// RespectForwardedHeaders builds upload URLs from X-Forwarded-Host,
	// X-Forwarded-Proto and Forwarded, for servers behind a proxy.
	RespectForwardedHeaders bool
	// Log receives warnings and errors; nil discards them.
	Log *slog.Logger
}

// Caller is who a request acts as, as the gateway authenticated it.
type Caller struct {
	// Subject is the authorizer's subject, e.g. "user:alice". Uploads
	// belong to it.
	Subject string
	// UserID is recorded as the creator of finished files; it is also the
	// account whose quota uploads count against.
	UserID string
	// QuotaBytes, when positive, caps the sum of the sizes of the live
	// files the user created plus the declared sizes of their pending
	// uploads.
	QuotaBytes int64
}

type callerKey struct{}

// WithCaller returns ctx carrying the request's caller. The door refuses
// (401) requests whose context carries none.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

func callerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok && c.Subject != ""
}

// Authorizer decides whether a caller may create files in a folder.
type Authorizer interface {
	// MayWrite reports whether c may write into folder, a live folder
	// node whose Lineage is the object to decide on.
	MayWrite(ctx context.Context, c Caller, folder *model.Node) bool
}

// Seer is an optional interface of an Authorizer: MayStat reports whether
// c may know that the live node n exists. With it, creating an upload in
// a missing folder, or in a path that names a file, answers 409 only to
// callers who may stat the nearest folder above it, and 403 (as if the
// folder existed and they could not write there) to everyone else, so
// that creating uploads cannot probe which paths exist.
type Seer interface {
	MayStat(ctx context.Context, c Caller, n *model.Node) bool
}

// LockGuard is an optional interface of an Authorizer: Unlocked returns
// an error wrapping model.ErrLocked when a lock kept outside the door (a
// WebDAV lock) protects the file name in folder, or folder's membership.
// With it, the door refuses (423) to create an upload aimed at such a
// file, and checks again before a finished upload replaces or adds it.
type LockGuard interface {
	Unlocked(ctx context.Context, folder *model.Node, name string) error
}

// Handler serves the door. It is an http.Handler to mount at
// Config.BasePath with the caller already in the request context.
type Handler struct {
	cfg    Config
	store  *model.Store
	db     *bun.DB
	authz  Authorizer
	log    *slog.Logger
	locks  *Locker
	tusd   http.Handler
	mu     sync.Mutex
	closed bool
}

// New builds the door over the store, creating nothing until requests
// come. Call Close when done (it stops the lock refresher). It returns an
// error when a dependency is missing or the tusd handler rejects the
// configuration.
func New(cfg Config, store *model.Store, authz Authorizer) (*Handler, error) {
	if store == nil || authz == nil {
		return nil, errors.New("tus: store and authorizer are required")
	}
	if cfg.BasePath == "" {
		cfg.BasePath = DefaultBasePath
	}
	if !strings.HasSuffix(cfg.BasePath, "/") {
		cfg.BasePath += "/"
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.LockLease <= 0 {
		cfg.LockLease = DefaultLockLease
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	db := store.Repo.DB()
	h := &Handler{cfg: cfg, store: store, db: db, authz: authz, log: cfg.Log}
	h.locks = NewLocker(db, cfg.LockLease, cfg.Log)
	ds := &dataStore{h: h}
	composer := handler.NewStoreComposer()
	composer.UseCore(ds)
	composer.UseTerminater(ds)
	composer.UseConcater(ds)
	composer.UseLengthDeferrer(ds)
	composer.UseLocker(h.locks)
	th, err := handler.NewHandler(handler.Config{
		StoreComposer:              composer,
		BasePath:                   cfg.BasePath,
		MaxSize:                    cfg.MaxSize,
		EnableExperimentalProtocol: true,
		DisableDownload:            true,
		RespectForwardedHeaders:    cfg.RespectForwardedHeaders,
		Logger:                     bridgeLogger(cfg.Log),
		// A PATCH whose client vanished keeps the lock until a read
		// times out; a HEAD from the resuming client interrupts it
		// sooner (see Locker).
		NetworkTimeout:     60 * time.Second,
		AcquireLockTimeout: 20 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("tus: %w", err)
	}
	h.tusd = http.StripPrefix(strings.TrimSuffix(pathOnly(cfg.BasePath), "/"), th)
	return h, nil
}

// pathOnly drops the scheme and host of an absolute base URL.
func pathOnly(base string) string {
	if i := strings.Index(base, "://"); i >= 0 {
		rest := base[i+3:]
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			return rest[j:]
		}
		return "/"
	}
	return base
}

// Close stops the lock refresher and releases the locks this process
// holds. Requests still running lose their lock refresh.
func (h *Handler) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	return h.locks.Close()
}

// Run sweeps expired uploads every Config.SweepInterval until ctx ends.
func (h *Handler) Run(ctx context.Context) {
	t := time.NewTicker(h.cfg.SweepInterval)
	defer t.Stop()
	for {
		if n, err := h.Sweep(ctx, time.Now()); err != nil && ctx.Err() == nil {
			h.log.Warn("tus: sweep of expired uploads", "err", err)
		} else if n > 0 {
			h.log.Info("tus: swept expired uploads", "removed", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
