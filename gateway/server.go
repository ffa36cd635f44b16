// Package gateway is filegate's HTTP side: the server, authentication,
// routing, the files and admin APIs, and the mounting of the WebDAV and tus
// doors. Every door authenticates here and asks the one authorizer before
// any protocol code runs.
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/filegate/filegate/davfs"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/policy"
)

// Authorizer is the one authorizer every door asks; *policy.Authorizer
// implements it.
type Authorizer interface {
	Decide(ctx context.Context, sub, act, obj string) policy.Decision
}

// Config holds the server's settings.
type Config struct {
	// Listen is the TCP address, e.g. 127.0.0.1:8080.
	Listen string
	// MaxUploadBytes caps a single file; zero means no cap.
	MaxUploadBytes int64
	// ShutdownGrace is how long in-flight requests may take to finish
	// after a shutdown starts.
	ShutdownGrace time.Duration
	// ReadHeaderTimeout closes a connection whose request headers take
	// longer (slowloris); default DefaultReadHeaderTimeout.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that sends no request
	// for this long; default DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxHeaderBytes caps request headers (431 past it); default
	// DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// BodyIdleTimeout ends a request whose body makes no progress for
	// this long, on every door, and an answer the client stops reading;
	// default DefaultBodyIdleTimeout, negative disables it.
	BodyIdleTimeout time.Duration
	// MaxRanges is the most ranges a Range header may ask for; a GET
	// asking for more gets the whole content. Default DefaultMaxRanges.
	MaxRanges int
	// MaxConcurrentStreams bounds the handlers one HTTP/2 connection runs
	// at once; default DefaultMaxConcurrentStreams.
	MaxConcurrentStreams int
	// TrustForwardedHeaders makes the last X-Forwarded-For address the
	// client's in logs and audit rows; set it only behind a proxy that
	// appends it.
	TrustForwardedHeaders bool
	// TLS, when set, makes the server speak HTTPS (HTTP/2 and HTTP/1.1)
	// on its listener, for instance CertFiles.TLSConfig.
	TLS *tls.Config
	// SignInLimits block password guessing; zero fields take
	// model.DefaultSignInLimits.
	SignInLimits model.SignInLimits
	// ListingCacheBytes bounds the rendered WebDAV listings kept between
	// requests (davfs.ListingCache); default DefaultListingCacheBytes,
	// negative disables the cache.
	ListingCacheBytes int64
}

// DefaultListingCacheBytes is the default bound of the WebDAV listing
// cache: a folder of 20,000 files renders to about 15 MiB.
const DefaultListingCacheBytes = 64 << 20

// Deps are the parts the server is wired from, built in cmd/filegate.
type Deps struct {
	Store *model.Store
	Authz Authorizer
	Log   *slog.Logger
}

// Server is filegate's HTTP server.
type Server struct {
	cfg     Config
	store   *model.Store
	repo    *model.Repo
	authz   Authorizer
	log     *slog.Logger
	authn   *authenticator
	metrics *metrics
	mux     *http.ServeMux
	// davLocks are the WebDAV locks, kept in the database, which every
	// door honours.
	davLocks *davfs.LockSystem
	// doors are prefix-mounted protocol handlers that see the raw path
	// (HandleDoor).
	doors    []mountedDoor
	draining atomic.Bool
}

// New builds a server. It returns an error when a dependency is missing.
func New(cfg Config, d Deps) (*Server, error) {
	if d.Store == nil || d.Authz == nil {
		return nil, errors.New("gateway: store and authorizer are required")
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if cfg.ShutdownGrace == 0 {
		cfg.ShutdownGrace = 30 * time.Second
	}
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if cfg.BodyIdleTimeout == 0 {
		cfg.BodyIdleTimeout = DefaultBodyIdleTimeout
	}
	if cfg.MaxRanges <= 0 {
		cfg.MaxRanges = DefaultMaxRanges
	}
	if cfg.MaxConcurrentStreams <= 0 {
		cfg.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	s := &Server{
		cfg: cfg, store: d.Store, repo: d.Store.Repo, authz: d.Authz, log: d.Log,
		authn: newAuthenticator(d.Store.Repo, cfg.SignInLimits), metrics: newMetrics(), mux: http.NewServeMux(),
		davLocks: davfs.NewLockSystem(d.Store.Repo.DB()),
	}
	s.authn.audit, s.authn.log = s.AuditLog, s.logger
	s.authn.checked = func(outcome string) { s.metrics.passwordChecks.WithLabelValues(outcome).Inc() }
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.metrics.reg.MustRegister(newIntegrityCollector(s.repo), newDamageCollector(d.Store))
	s.mux.Handle("GET /metrics", s.metrics.handler())
	return s, nil
}

// Handle mounts an extra handler behind authentication, for doors wired
// after New.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, s.authenticated(h))
}

// HandleDoor mounts a protocol door behind authentication at a path
// prefix ending in "/" (such as "/dav/"). The door receives every request
// under the prefix, and the bare prefix without its slash, with the path
// exactly as sent: ServeMux would answer "/dav/a/../b" with a redirect to
// a cleaned path, where a door must refuse the traversal with a 400.
func (s *Server) HandleDoor(prefix string, h http.Handler) {
	s.doors = append(s.doors, mountedDoor{prefix: prefix, h: s.authenticated(h)})
}

type mountedDoor struct {
	prefix string
	h      http.Handler
}

// route sends door paths to their door and everything else to the mux.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	for _, d := range s.doors {
		if strings.HasPrefix(p, d.prefix) || p == strings.TrimSuffix(d.prefix, "/") {
			d.h.ServeHTTP(w, r)
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

// Handler returns the root handler with request ids, logging, metrics,
// panic recovery and the shared request limits (stalled bodies, Range
// lists) around every route.
func (s *Server) Handler() http.Handler {
	return s.forwarded(s.observe(s.limits(http.HandlerFunc(s.route))))
}

// strictTransport tells browsers to come back over HTTPS only, for a
// year (HSTS, RFC 6797), on a server that speaks TLS itself: a user who
// once opened the admin page cannot be downgraded to plain HTTP later.
func strictTransport(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			w.Header().Set("Strict-Transport-Security", "max-age=31536000")
		}
		next.ServeHTTP(w, r)
	})
}

// Serve answers on l until ctx is cancelled, then stops accepting, answers
// new requests on open connections with 503, and waits up to
// ShutdownGrace for requests in flight. A listener that hands out TLS
// connections negotiating "h2" gets HTTP/2 under the Config's bounds.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	h := s.Handler()
	if s.cfg.TLS != nil {
		h = strictTransport(h)
	}
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		HTTP2:             s.http2Config(),
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	if s.cfg.TLS != nil {
		hs.TLSConfig = s.cfg.TLS.Clone()
		go func() { errc <- hs.ServeTLS(l, "", "") }()
	} else {
		go func() { errc <- hs.Serve(l) }()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.draining.Store(true)
	s.log.Info("shutting down", "grace", s.cfg.ShutdownGrace)
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"status":"ok"}` + "\n"))
}

// readyz answers 200 only while the database answers and the server is not
// draining, so a load balancer stops sending new work first.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		writeJSONError(w, http.StatusServiceUnavailable, "draining", "The server is shutting down.")
		return
	}
	if err := s.repo.Ping(r.Context()); err != nil {
		writeJSONError(w, http.StatusServiceUnavailable, "unavailable", "The database is unreachable.")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"status":"ready"}` + "\n"))
}

// authenticated resolves the request's principal before h runs. Presented
// credentials that are wrong get 401 at once, so they never reach the
// store; no credentials give the anonymous principal, and the door decides
// (through the authorizer) whether anonymous may proceed.
func (s *Server) authenticated(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() {
			writeJSONError(w, http.StatusServiceUnavailable, "draining", "The server is shutting down.")
			return
		}
		p, err := s.authn.authenticate(r)
		if err != nil {
			var t *throttled
			switch {
			case errors.As(err, &t):
				writeThrottled(w, t)
				return
			case errors.Is(err, model.ErrUnavailable):
				s.writeError(w, r, err)
				return
			}
			s.logger(r.Context()).Info("authentication failed", "remote", r.RemoteAddr)
			challenge(w)
			return
		}
		ctx := WithPrincipal(r.Context(), p)
		setLogAttr(ctx, "subject", p.Subject)
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// Decide asks the authorizer whether the request's principal may do act on
// obj (a node lineage, or "*").
func (s *Server) Decide(r *http.Request, act, obj string) policy.Decision {
	return s.authz.Decide(r.Context(), PrincipalFrom(r.Context()).Subject, act, obj)
}

// Deny answers a refused request: 401 with a challenge for anonymous
// callers (they may have credentials that would work), 403 otherwise.
func Deny(w http.ResponseWriter, r *http.Request) {
	if PrincipalFrom(r.Context()).IsAnonymous() {
		challenge(w)
		return
	}
	writeJSONError(w, http.StatusForbidden, "forbidden", "You may not do that.")
}
