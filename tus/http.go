package tus

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/filegate/filegate/model"
)

// Extensions the door adds to those tusd announces: checksum and
// expiration are enforced here, not by tusd.
const (
	extraExtensions    = "checksum,expiration"
	checksumAlgorithms = "sha1,sha256,sha512,md5"
)

// reqState travels in the context of one request, from ServeHTTP into the
// DataStore and Locker that tusd calls, and back into the response.
type reqState struct {
	caller Caller
	method string
	// meta is the validated Upload-Metadata.
	meta map[string]string
	// sum is the expected checksum of this request's body, if any.
	sum *checksum
	// body watches the request body for overruns and read errors.
	body *bodyGuard
	// hasBody: the request carries upload bytes (tus creation-with-upload,
	// PATCH, or any IETF draft upload request).
	hasBody bool
	// contentLength is the request's Content-Length, -1 when unknown.
	contentLength int64
	// interrupt: a lock held elsewhere is asked to let go (HEAD, DELETE).
	interrupt bool
	// expires is when the upload expires, for the Upload-Expires header.
	expires time.Time
	// ietf: the request speaks the IETF resumable upload draft.
	ietf bool
	// freshID is the upload this request created without a row yet; its
	// lock needs no database (nobody else knows the id).
	freshID string
	// finished: the upload is complete (or gone), so its lock need not
	// linger for a next request.
	finished bool
	// sess is the upload's row as this request holds it under the lock;
	// sessStale is set when a change to it may not have reached the
	// database, so the lock must not hand it on.
	sess      *Session
	sessStale bool
	// lockedSess is the row the lock handed over from the previous
	// request on this upload in this process, or nil.
	lockedSess *Session
	// auth is the PATCH's authorization, running while the body comes.
	auth *pendingAuth
	// created is the upload this request created and stored; an error
	// answer still carries its Location, so the client can resume it.
	created string
	base    string
}

type reqStateKey struct{}

func stateFrom(ctx context.Context) *reqState {
	rs, _ := ctx.Value(reqStateKey{}).(*reqState)
	return rs
}

// ServeHTTP checks what tusd lets through (the caller, the upload's owner,
// malformed headers), then hands the request to tusd.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, ok := callerFrom(r.Context())
	if !ok && r.Method != http.MethodOptions {
		sendError(w, r, http.StatusUnauthorized, "ERR_UNAUTHORIZED", "authentication is required")
		return
	}
	rs := &reqState{caller: c, method: r.Method, contentLength: r.ContentLength, base: h.uploadBase(r)}
	if o := r.Header.Get("X-HTTP-Method-Override"); r.Method == http.MethodPost && o != "" {
		rs.method = strings.ToUpper(o)
	}
	ietf := isIETF(r)
	rs.ietf = ietf
	if status, code, msg := rs.parseHeaders(r, ietf); status != 0 {
		sendError(w, r, status, code, msg)
		return
	}
	id := strings.Trim(strings.TrimPrefix(r.URL.Path, pathOnly(h.cfg.BasePath)), "/")
	if r.URL.Path+"/" == pathOnly(h.cfg.BasePath) {
		id = ""
	}
	limit := int64(-1)
	switch {
	case rs.method == http.MethodOptions:
	case id == "":
		rs.hasBody = ietf || r.Header.Get("Content-Type") == "application/offset+octet-stream"
		if n, err := strconv.ParseInt(r.Header.Get("Upload-Length"), 10, 64); err == nil && n >= 0 {
			limit = n
		}
	default:
		if !validID(id) {
			sendError(w, r, http.StatusNotFound, "ERR_UPLOAD_NOT_FOUND", "upload not found")
			return
		}
		// Check the owner before tusd takes the lock, so a stranger's
		// request can neither wait for nor interrupt the owner's. Owners
		// and declared lengths never change, so those seen lately need
		// no query; whether the upload still exists is for the store to
		// say, under the lock.
		s := &Session{ID: id}
		var err error
		if k, ok := h.locks.knownUpload(id); ok {
			s.Owner, s.Size = k.owner, k.size
		} else if s, err = h.loadSession(r.Context(), id); err == nil {
			h.locks.remember(s)
		}
		if err != nil || s.Owner != c.Subject {
			if err != nil && !errors.Is(err, model.ErrNotFound) {
				h.log.Warn("tus: load upload", "id", id, "err", err)
				sendError(w, r, http.StatusServiceUnavailable, "ERR_UNAVAILABLE", "the upload cannot be read now; retry later")
				return
			}
			sendError(w, r, http.StatusNotFound, "ERR_UPLOAD_NOT_FOUND", "upload not found")
			return
		}
		rs.hasBody = rs.method == http.MethodPatch
		rs.interrupt = rs.method == http.MethodHead || rs.method == http.MethodDelete
		if rs.method == http.MethodPatch && !s.SizeDeferred {
			if off, err := strconv.ParseInt(r.Header.Get("Upload-Offset"), 10, 64); err == nil && off >= 0 && off <= s.Size {
				limit = s.Size - off
			}
		}
	}
	if rs.hasBody && r.Body != nil {
		rs.body = &bodyGuard{rc: r.Body, limit: limit}
		r.Body = rs.body
	}
	rw := &respWriter{ResponseWriter: w, rs: rs, options: rs.method == http.MethodOptions}
	h.tusd.ServeHTTP(rw, r.WithContext(context.WithValue(r.Context(), reqStateKey{}, rs)))
}

// uploadBase is the absolute URL upload ids are appended to, built as
// tusd builds its Location headers.
func (h *Handler) uploadBase(r *http.Request) string {
	if strings.Contains(h.cfg.BasePath, "://") {
		return h.cfg.BasePath
	}
	proto, host := "http", r.Host
	if r.TLS != nil {
		proto = "https"
	}
	if h.cfg.RespectForwardedHeaders {
		if v := r.Header.Get("X-Forwarded-Host"); v != "" {
			host = v
		}
		if v := r.Header.Get("X-Forwarded-Proto"); v == "http" || v == "https" {
			proto = v
		}
	}
	return proto + "://" + host + h.cfg.BasePath
}

// validID accepts the ids dataStore makes: 32 lowercase hex digits.
func validID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func isIETF(r *http.Request) bool {
	switch r.Header.Get("Upload-Draft-Interop-Version") {
	case "3", "4", "5", "6":
		return true
	}
	return false
}

// parseHeaders validates the headers tusd is lenient about. It returns a
// status, an error code and a message for a malformed request, or 0.
func (rs *reqState) parseHeaders(r *http.Request, ietf bool) (int, string, string) {
	if v := r.Header.Get("Upload-Offset"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err != nil || n < 0 {
			return http.StatusBadRequest, "ERR_INVALID_OFFSET", "Upload-Offset must be a decimal number from 0 to 2^63-1"
		}
	}
	if v := r.Header.Get("Upload-Length"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err != nil || n < 0 {
			return http.StatusBadRequest, "ERR_INVALID_UPLOAD_LENGTH", "Upload-Length must be a decimal number from 0 to 2^63-1"
		}
	}
	if vs := r.Header.Values("Upload-Metadata"); len(vs) > 0 {
		if len(vs) > 1 {
			return http.StatusBadRequest, "ERR_INVALID_METADATA", "send one Upload-Metadata header"
		}
		if len(vs[0]) > MaxMetadataBytes {
			return http.StatusBadRequest, "ERR_METADATA_TOO_LARGE", "Upload-Metadata is longer than 8 KiB"
		}
		meta, err := parseMetadata(vs[0])
		if err != nil {
			return http.StatusBadRequest, "ERR_INVALID_METADATA", err.Error()
		}
		rs.meta = meta
	}
	if v := r.Header.Get("Upload-Checksum"); v != "" {
		sum, err := parseChecksum(v)
		if err != nil {
			return http.StatusBadRequest, "ERR_INVALID_CHECKSUM", err.Error()
		}
		rs.sum = sum
	}
	if !ietf && rs.method != http.MethodOptions && rs.method != http.MethodGet && rs.method != http.MethodHead {
		if v := r.Header.Get("Tus-Resumable"); v != "1.0.0" {
			return http.StatusPreconditionFailed, "ERR_UNSUPPORTED_VERSION", "missing or unsupported Tus-Resumable header; this server speaks 1.0.0"
		}
	}
	return 0, "", ""
}

// sendError answers in tusd's plain-text error format, so clients see one
// style whichever layer refused.
func sendError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	w.Header().Set("Tus-Resumable", "1.0.0")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	body := code + ": " + msg + "\n"
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		io.WriteString(w, body)
	}
}

// tusError makes an error tusd sends with the given status.
func tusError(status int, code, msg string) error {
	return handler.NewError(code, msg, status)
}

// bodyGuard sits between the request body and tusd. tusd turns body read
// errors into a clean end of the chunk, so the DataStore learns here
// whether the chunk really ended, and whether it ran past the upload's
// length (which tusd only sees after the bytes are stored).
type bodyGuard struct {
	rc    io.ReadCloser
	limit int64 // bytes allowed, -1 for no limit
	n     int64
	over  bool
	err   error
}

func (g *bodyGuard) Read(p []byte) (int, error) {
	n, err := g.rc.Read(p)
	g.n += int64(n)
	if g.limit >= 0 && g.n > g.limit {
		g.over = true
	}
	if err != nil && err != io.EOF && g.err == nil {
		g.err = err
	}
	// tusd answers a body cut by the network with 500; none of these is
	// the server's fault, and the client resumes from the stored offset.
	var ne net.Error
	switch {
	case err == nil || err == io.EOF:
	case errors.Is(err, net.ErrClosed): // the shutdown grace ran out
		return n, errShuttingDown
	case errors.Is(err, syscall.ECONNRESET):
		return n, errConnReset
	case errors.As(err, &ne) && ne.Timeout(): // a stalled body
		return n, errBodyTimeout
	}
	return n, err
}

var (
	errShuttingDown = tusError(http.StatusServiceUnavailable, "ERR_SHUTTING_DOWN", "the server is shutting down; resume the upload later")
	errConnReset    = tusError(http.StatusBadRequest, "ERR_CONNECTION_RESET", "the connection was reset before the body ended")
	errBodyTimeout  = tusError(http.StatusRequestTimeout, "ERR_READ_TIMEOUT", "the body stalled; resume the upload")
)

func (g *bodyGuard) Close() error { return g.rc.Close() }

// respWriter adds what tusd does not send: Upload-Expires, and the
// checksum and expiration extensions in OPTIONS answers.
type respWriter struct {
	http.ResponseWriter
	rs      *reqState
	options bool
	wrote   bool
}

func (w *respWriter) WriteHeader(code int) {
	if code >= 200 && !w.wrote {
		w.wrote = true
		hd := w.Header()
		if w.options {
			if ext := hd.Get("Tus-Extension"); ext != "" {
				hd.Set("Tus-Extension", ext+","+extraExtensions)
				hd.Set("Tus-Checksum-Algorithm", checksumAlgorithms)
			}
		}
		if !w.rs.expires.IsZero() && code < 300 {
			hd.Set("Upload-Expires", w.rs.expires.UTC().Format(http.TimeFormat))
		}
		if w.rs.created != "" && hd.Get("Location") == "" {
			hd.Set("Location", w.rs.base+w.rs.created)
		}
		if code == http.StatusServiceUnavailable && hd.Get("Retry-After") == "" {
			hd.Set("Retry-After", "5") // as every other door's 503
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *respWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController (tusd's read deadlines) reach the
// connection.
func (w *respWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
