package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/filegate/filegate/gateway"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/policy"
	"github.com/filegate/filegate/tus"
)

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format must be text or json, not %q", format)
}

func envInt64(name string, def int64) int64 {
	if v, ok := os.LookupEnv(envName(name)); ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	}
	return def
}

func envBool(name string, def bool) bool {
	if v, ok := os.LookupEnv(envName(name)); ok {
		if b, err := strconv.ParseBool(v); err == nil {
			return b
		}
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, ok := os.LookupEnv(envName(name)); ok {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	var sf storeFlags
	sf.register(fs)
	listen := fs.String("listen", envString("listen", "127.0.0.1:8080"), "address to listen on [FILEGATE_LISTEN]")
	logFormat := fs.String("log-format", envString("log-format", "text"), "log format: text or json [FILEGATE_LOG_FORMAT]")
	logLevel := fs.String("log-level", envString("log-level", "info"), "log level: debug, info, warn, error [FILEGATE_LOG_LEVEL]")
	maxUpload := fs.Int64("max-upload-bytes", envInt64("max-upload-bytes", 0), "largest file accepted, 0 for no limit [FILEGATE_MAX_UPLOAD_BYTES]")
	grace := fs.Duration("shutdown-grace", envDuration("shutdown-grace", 30*time.Second), "time in-flight requests get to finish on shutdown [FILEGATE_SHUTDOWN_GRACE]")
	uploadTTL := fs.Duration("upload-ttl", envDuration("upload-ttl", 24*time.Hour), "how long an idle tus upload is kept [FILEGATE_UPLOAD_TTL]")
	uploadLease := fs.Duration("upload-lock-lease", envDuration("upload-lock-lease", tus.DefaultLockLease),
		"how long an upload lock outlives an instance that died holding it (PostgreSQL) [FILEGATE_UPLOAD_LOCK_LEASE]")
	publicURL := fs.String("public-url", envString("public-url", ""), "public origin for signed links, e.g. https://files.example.org; default the request's host [FILEGATE_PUBLIC_URL]")
	debugListen := fs.String("debug-listen", envString("debug-listen", ""), "address for Go's pprof profiler, e.g. 127.0.0.1:6060; empty disables it [FILEGATE_DEBUG_LISTEN]")
	trustForwarded := fs.Bool("trust-forwarded-headers", envBool("trust-forwarded-headers", false),
		"take the client's address from X-Forwarded-For (logs, audit) and build tus upload URLs from X-Forwarded-Host and X-Forwarded-Proto; set it only behind a proxy that sets them [FILEGATE_TRUST_FORWARDED_HEADERS]")
	linkRedirect := fs.Bool("signed-link-redirect", envBool("signed-link-redirect", false),
		"answer signed links with a redirect to a short-lived pre-signed S3 URL (forced download) instead of streaming the bytes; clients must reach the S3 endpoint [FILEGATE_SIGNED_LINK_REDIRECT]")
	sweepEvery := fs.Duration("sweep-interval", envDuration("sweep-interval", time.Hour), "how often orphaned blobs are swept [FILEGATE_SWEEP_INTERVAL]")
	checkEvery := fs.Duration("check-interval", envDuration("check-interval", 7*24*time.Hour),
		"how often every file's stored bytes are read back and checked against their recorded SHA-256, shared by all instances (see filegate check); 0 disables [FILEGATE_CHECK_INTERVAL]")
	checkRate := fs.String("check-max-rate", envString("check-max-rate", "20MB"),
		"most bytes per second the scheduled check reads, e.g. 20MB or 100MiB; none for no cap [FILEGATE_CHECK_MAX_RATE]")
	checkWorkers := fs.Int("check-workers", int(envInt64("check-workers", 1)), "files the scheduled check reads at once [FILEGATE_CHECK_WORKERS]")
	verifyDownloads := fs.Bool("verify-downloads", envBool("verify-downloads", false),
		"check every whole-file download against the file's recorded SHA-256 and cut it short when the stored bytes differ; costs a SHA-256 per byte sent [FILEGATE_VERIFY_DOWNLOADS]")
	readHeaderTimeout := fs.Duration("read-header-timeout", envDuration("read-header-timeout", gateway.DefaultReadHeaderTimeout),
		"time a client gets to send a request's headers; slower connections are closed [FILEGATE_READ_HEADER_TIMEOUT]")
	idleTimeout := fs.Duration("idle-timeout", envDuration("idle-timeout", gateway.DefaultIdleTimeout),
		"how long an idle keep-alive connection stays open [FILEGATE_IDLE_TIMEOUT]")
	maxHeaderBytes := fs.Int64("max-header-bytes", envInt64("max-header-bytes", gateway.DefaultMaxHeaderBytes),
		"largest request header block; larger gets 431 [FILEGATE_MAX_HEADER_BYTES]")
	bodyIdle := fs.Duration("body-idle-timeout", envDuration("body-idle-timeout", gateway.DefaultBodyIdleTimeout),
		"a request body that sends nothing, or an answer the client does not read, for this long is cut off (tus keeps what arrived); negative disables [FILEGATE_BODY_IDLE_TIMEOUT]")
	maxRanges := fs.Int64("max-ranges", envInt64("max-ranges", gateway.DefaultMaxRanges),
		"most byte ranges one GET may ask for; more get the whole file [FILEGATE_MAX_RANGES]")
	listingCache := fs.Int64("listing-cache-bytes", envInt64("listing-cache-bytes", gateway.DefaultListingCacheBytes),
		"memory for rendered WebDAV folder listings, checked against the database on every use; 0 disables [FILEGATE_LISTING_CACHE_BYTES]")
	tlsCert := fs.String("tls-cert", envString("tls-cert", ""),
		"PEM certificate chain to serve HTTPS with (needs --tls-key); reloaded when the file changes [FILEGATE_TLS_CERT]")
	tlsKey := fs.String("tls-key", envString("tls-key", ""), "PEM private key of --tls-cert [FILEGATE_TLS_KEY]")
	d := model.DefaultSignInLimits
	signInAccount := fs.Int64("sign-in-failures", envInt64("sign-in-failures", int64(d.PerAccount)),
		"failed password sign-ins of one account name before its sign-ins are blocked; negative never blocks [FILEGATE_SIGN_IN_FAILURES]")
	signInAddress := fs.Int64("sign-in-failures-per-address", envInt64("sign-in-failures-per-address", int64(d.PerAddress)),
		"failed password sign-ins from one client address, over every name, before its sign-ins are blocked; negative never blocks [FILEGATE_SIGN_IN_FAILURES_PER_ADDRESS]")
	signInBlock := fs.Duration("sign-in-block", envDuration("sign-in-block", d.Block),
		"first block after too many failed sign-ins, doubled with each further failure up to --sign-in-max-block [FILEGATE_SIGN_IN_BLOCK]")
	signInMaxBlock := fs.Duration("sign-in-max-block", envDuration("sign-in-max-block", d.MaxBlock),
		"longest block after failed sign-ins [FILEGATE_SIGN_IN_MAX_BLOCK]")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *signInAccount == 0 || *signInAddress == 0 || *signInBlock <= 0 || *signInMaxBlock <= 0 {
		return errors.New("--sign-in-failures and --sign-in-failures-per-address must not be 0 (negative never blocks), and the sign-in blocks must be positive")
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	checkMaxRate, err := parseQuota(*checkRate)
	if err != nil {
		return fmt.Errorf("--check-max-rate: %w", err)
	}
	if *checkWorkers < 1 {
		return errors.New("--check-workers must be at least 1")
	}
	if *listingCache == 0 {
		*listingCache = -1
	}
	log, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	o, err := sf.open(ctx, log)
	if err != nil {
		return err
	}
	defer o.Close()
	o.store.VerifyReads = *verifyDownloads

	if _, ok := o.store.Blobs.(interface {
		PresignGet(context.Context, string, string, time.Duration) (string, error)
	}); *linkRedirect && !ok {
		log.Warn("--signed-link-redirect needs an s3:// blob store; signed links are served directly")
	}
	adminPassword, err := bootstrapAdmin(ctx, o)
	if err != nil {
		return err
	}
	// Hashing the first admin's password took 19 MiB (argon2id); give it
	// back now rather than serve with it for minutes.
	debug.FreeOSMemory()

	var tlsConfig *tls.Config
	if *tlsCert != "" {
		certs, err := gateway.LoadCertFiles(*tlsCert, *tlsKey, log)
		if err != nil {
			return err
		}
		tlsConfig = certs.TLSConfig()
	}
	srv, err := gateway.New(gateway.Config{
		Listen: *listen, MaxUploadBytes: *maxUpload, ShutdownGrace: *grace,
		ReadHeaderTimeout: *readHeaderTimeout, IdleTimeout: *idleTimeout, MaxHeaderBytes: int(*maxHeaderBytes),
		BodyIdleTimeout: *bodyIdle, MaxRanges: int(*maxRanges), ListingCacheBytes: *listingCache,
		TrustForwardedHeaders: *trustForwarded, TLS: tlsConfig,
		SignInLimits: model.SignInLimits{PerAccount: int(*signInAccount), PerAddress: int(*signInAddress),
			Block: *signInBlock, MaxBlock: *signInMaxBlock, Forget: d.Forget},
	}, gateway.Deps{Store: o.store, Authz: o.authz, Log: log})
	if err != nil {
		return err
	}
	if err := srv.MountAPI(gateway.APIConfig{BaseURL: *publicURL, SignedLinkRedirect: *linkRedirect}); err != nil {
		return err
	}
	if err := srv.MountAdmin(gateway.AdminDeps{Policy: o.authz, Audit: srv.AuditLog()}); err != nil {
		return err
	}
	srv.HandleDoor(gateway.DAVPrefix+"/", srv.DAVHandler())
	door, err := srv.MountTus(ctx, tus.Config{TTL: *uploadTTL, LockLease: *uploadLease, RespectForwardedHeaders: *trustForwarded})
	if err != nil {
		return err
	}
	defer door.Close()
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	go sweepLoop(ctx, o.store, *sweepEvery, log, door.PendingBlobs)
	if *checkEvery > 0 {
		checked := make(chan struct{})
		go func() {
			defer close(checked)
			o.store.CheckPeriodically(ctx, model.ScheduledCheck{Every: *checkEvery, MaxRate: checkMaxRate,
				Workers: *checkWorkers, Holder: instanceName(), Log: log})
		}()
		// On shutdown the check saves where it is before the database
		// closes, so the next instance resumes from there.
		defer func() {
			select {
			case <-checked:
			case <-time.After(5 * time.Second):
			}
		}()
	}
	if *debugListen != "" {
		// pprof registers on http.DefaultServeMux, which only this
		// separate listener serves.
		go func() { log.Warn("debug listener", "err", http.ListenAndServe(*debugListen, nil)) }()
	}
	go o.authz.Run(ctx)

	base := "http://" + l.Addr().String()
	if tlsConfig != nil {
		base = "https://" + l.Addr().String()
	}
	fmt.Fprintf(stdout, "filegate %s is serving on %s\n", version, base)
	fmt.Fprintf(stdout, "  WebDAV       %s/dav/\n", base)
	fmt.Fprintf(stdout, "  tus uploads  %s/uploads/\n", base)
	fmt.Fprintf(stdout, "  files API    %s/api/v1/\n", base)
	fmt.Fprintf(stdout, "  admin page   %s/admin/\n", base)
	fmt.Fprintf(stdout, "  health       %s/healthz  %s/readyz  metrics %s/metrics\n", base, base, base)
	switch {
	case adminPassword != "":
		fmt.Fprintf(stdout, "Created the first user. Log in as admin with password: %s\n", adminPassword)
		fmt.Fprintln(stdout, "(shown once; change it with: filegate user passwd admin)")
	case os.Getenv("FILEGATE_ADMIN_PASSWORD") != "":
		fmt.Fprintln(stdout, "Log in as admin with the password in FILEGATE_ADMIN_PASSWORD.")
	default:
		fmt.Fprintln(stdout, "Log in with an existing account (filegate user list).")
	}
	fmt.Fprintf(stdout, "Example: curl -u admin:PASSWORD %s/readyz\n", base)
	return srv.Serve(ctx, l)
}

// bootstrapAdmin creates the user "admin" with the admin role when there
// are no users at all. The password comes from FILEGATE_ADMIN_PASSWORD, or
// is generated and returned to be printed once. An existing admin whose
// password differs from FILEGATE_ADMIN_PASSWORD is left alone: the
// variable only seeds a fresh install, and an instance that loses the
// race to create the admin to another one starting at the same moment
// leaves it to that one.
func bootstrapAdmin(ctx context.Context, o *opened) (generated string, err error) {
	n, err := o.repo.CountUsers(ctx)
	if err != nil || n > 0 {
		return "", err
	}
	pw := os.Getenv("FILEGATE_ADMIN_PASSWORD")
	if pw == "" {
		b := make([]byte, 18)
		rand.Read(b)
		pw = base64.RawURLEncoding.EncodeToString(b)
		generated = pw
	}
	if _, err := o.repo.CreateUser(ctx, "admin", pw); errors.Is(err, model.ErrExists) {
		// Another instance on the same database, started at the same
		// moment, created it first.
		return "", nil
	} else if err != nil {
		return "", err
	}
	if err := o.authz.Apply(ctx, policy.Change{Add: [][]string{{"g", "user:admin", "role:admin"}}}); err != nil {
		return "", err
	}
	return generated, nil
}

// instanceName names this process in shared tables (the integrity
// check's runs): the host name and the process id.
func instanceName() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return fmt.Sprintf("%s:%d", host, os.Getpid())
}

func sweepLoop(ctx context.Context, store *model.Store, every time.Duration, log *slog.Logger, others ...model.BlobReferences) {
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := store.SweepOrphans(ctx, time.Hour, others...)
			if err != nil {
				log.Warn("orphan sweep", "err", err)
			} else if n > 0 {
				log.Info("orphan sweep", "removed", n)
			}
		}
	}
}
