package gateway

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"
)

// requestInfo travels in the context of every request: its id for logs,
// audit rows and the X-Request-Id header, and attributes handlers add for
// the access log line.
type requestInfo struct {
	id    string
	mu    sync.Mutex
	attrs []any

	// audits are the request's audit appends still being committed, and
	// answered is set once the first byte of the answer is on its way.
	audits   []func() error
	answered bool
}

// deferAudit hands wait to the request, which calls it before it answers,
// so the audit row is committed while the request does its work. It
// returns false, leaving the caller to wait itself, when the request is
// already answering or ctx belongs to no request.
func deferAudit(ctx context.Context, wait func() error) bool {
	ri, ok := ctx.Value(requestInfoKey{}).(*requestInfo)
	if !ok {
		return false
	}
	ri.mu.Lock()
	defer ri.mu.Unlock()
	if ri.answered {
		return false
	}
	ri.audits = append(ri.audits, wait)
	return true
}

// settleAudits marks the request as answering and waits for its deferred
// audit appends; it returns the first failure.
func (ri *requestInfo) settleAudits() error {
	ri.mu.Lock()
	ri.answered = true
	waits := ri.audits
	ri.audits = nil
	ri.mu.Unlock()
	var first error
	for _, w := range waits {
		if err := w(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

type requestInfoKey struct{}

var validRequestID = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// RequestID returns the id of the request ctx belongs to.
func RequestID(ctx context.Context) string {
	if ri, ok := ctx.Value(requestInfoKey{}).(*requestInfo); ok {
		return ri.id
	}
	return ""
}

// setLogAttr adds a key and value to the request's access log line.
func setLogAttr(ctx context.Context, key string, value any) {
	if ri, ok := ctx.Value(requestInfoKey{}).(*requestInfo); ok {
		ri.mu.Lock()
		ri.attrs = append(ri.attrs, key, value)
		ri.mu.Unlock()
	}
}

// logger returns the server's logger with the request id attached.
func (s *Server) logger(ctx context.Context) *slog.Logger {
	if id := RequestID(ctx); id != "" {
		return s.log.With("request_id", id)
	}
	return s.log
}

// door names the part of filegate a path belongs to, for metrics labels
// with bounded cardinality.
func door(path string) string {
	switch {
	case strings.HasPrefix(path, "/dav"):
		return "dav"
	case strings.HasPrefix(path, "/uploads"):
		return "tus"
	case strings.HasPrefix(path, "/api/"):
		return "api"
	case strings.HasPrefix(path, "/admin"):
		return "admin"
	}
	return "other"
}

// observe wraps every request: it assigns the request id, recovers panics
// into a 500 (the server never dies of one request), counts bytes and
// latency, and writes one structured access log line. The log line carries
// the path but never headers or query strings, where credentials and
// signatures travel.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !validRequestID.MatchString(id) {
			var b [8]byte
			rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		ri := &requestInfo{id: id}
		w.Header().Set("X-Request-Id", id)
		rec := &recorder{ResponseWriter: w, ri: ri, s: s, sendIdle: max(s.cfg.BodyIdleTimeout, 0)}
		// The body is swapped on a copy: net/http inspects the original
		// request's Body to see whether an Expect: 100-continue body went
		// unread, and without that it waits for a body the client will
		// never send before it answers.
		r = r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, ri))
		body := &countingBody{ReadCloser: r.Body}
		r.Body = body
		d := door(r.URL.Path)
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic in handler", "request_id", id, "panic", v)
				if rec.status == 0 {
					writeJSONError(rec, http.StatusInternalServerError, "internal", "An internal error occurred.")
				}
			}
			if rec.status == 0 {
				// The handler answered nothing; net/http will send 200
				// unless the audit trail failed.
				rec.settle()
			}
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			elapsed := time.Since(start)
			s.metrics.observe(d, r.Method, status, body.n, rec.n, elapsed)
			ri.mu.Lock()
			attrs := append([]any{"request_id", id, "method", r.Method, "path", r.URL.Path,
				"status", status, "bytes_in", body.n, "bytes_out", rec.n,
				"duration_ms", float64(elapsed.Microseconds()) / 1000, "remote", r.RemoteAddr}, ri.attrs...)
			ri.mu.Unlock()
			s.log.Info("request", attrs...)
		}()
		defer rec.clearSendDeadline()
		next.ServeHTTP(rec, r)
	})
}

// recorder counts what a handler answers, and holds the answer back until
// the request's audit rows are committed: no status and no byte leave
// without a durable record of the decision that allowed them.
type recorder struct {
	http.ResponseWriter
	ri     *requestInfo
	s      *Server
	status int
	n      int64
	// sendIdle cuts an answer the client stops reading (a slow-read
	// attack, or a client gone without a FIN): every write moves the
	// connection's write deadline this far ahead. Zero disables it.
	sendIdle time.Duration
	movedAt  time.Time // when the deadline was last moved; zero if never
	// failed is set when the audit trail could not be written: the client
	// got a 503 and whatever the handler writes next is dropped.
	failed bool
}

// errAuditFailed stops a handler that writes after its answer was replaced
// by a 503 because the audit trail failed.
var errAuditFailed = errors.New("gateway: audit trail unavailable; answer replaced by 503")

// settle waits for the request's audit rows before its first answer byte.
// On failure it answers 503 itself and reports false.
func (r *recorder) settle() bool {
	if r.failed {
		return false
	}
	if r.ri == nil || r.status != 0 {
		return true
	}
	if err := r.ri.settleAudits(); err != nil {
		r.s.log.Error("audit append failed; answering 503 instead", "request_id", r.ri.id, "err", err)
		r.failed = true
		r.status = http.StatusServiceUnavailable
		h := r.ResponseWriter.Header()
		for k := range h {
			if k != "X-Request-Id" {
				delete(h, k)
			}
		}
		h.Set("Retry-After", "5")
		writeJSONError(r.ResponseWriter, http.StatusServiceUnavailable, "unavailable",
			"The audit trail could not be written; try again.")
		return false
	}
	return true
}

func (r *recorder) WriteHeader(code int) {
	if code >= 200 && !r.settle() {
		return
	}
	if r.status == 0 && code >= 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.settle() {
		return 0, errAuditFailed
	}
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if r.sendIdle <= 0 {
		n, err := r.ResponseWriter.Write(b)
		r.n += int64(n)
		return n, err
	}
	// In parts, so that the deadline moves with progress: a slow but
	// steady client must not be cut in the middle of one large write.
	written := 0
	for len(b) > 0 {
		part := b[:min(len(b), sendChunk)]
		r.moveSendDeadline()
		n, err := r.ResponseWriter.Write(part)
		written += n
		r.n += int64(n)
		if err != nil {
			return written, err
		}
		b = b[len(part):]
	}
	return written, nil
}

// sendChunk is how much of an answer goes out between two chances to move
// the write deadline (each part of a ReadFrom still goes by sendfile or
// splice): a download keeps going as long as it takes at least sendChunk
// per sendIdle (34 KiB/s with the default minute). nginx's send_timeout
// works the same way, per sendfile_max_chunk, whose default is also 2 MiB.
const sendChunk = 2 << 20

// moveSendDeadline puts the write deadline sendIdle ahead. It moves it
// only when an eighth of sendIdle has passed since the last move, so a
// stream of small writes does not reset a timer for each: an answer is cut
// after between 7/8 and all of sendIdle without progress.
func (r *recorder) moveSendDeadline() {
	if r.sendIdle <= 0 {
		return
	}
	now := time.Now()
	if !r.movedAt.IsZero() && now.Sub(r.movedAt) < r.sendIdle/8 {
		return
	}
	// ErrNotSupported (HTTP/2, which has WriteByteTimeout, or a test's
	// writer) leaves the answer without this bound.
	if err := http.NewResponseController(r.ResponseWriter).SetWriteDeadline(now.Add(r.sendIdle)); err == nil {
		r.movedAt = now
	} else {
		r.sendIdle = 0
	}
}

// clearSendDeadline takes the deadline off the connection before its next
// request, which may come much later on a keep-alive connection.
func (r *recorder) clearSendDeadline() {
	if !r.movedAt.IsZero() {
		http.NewResponseController(r.ResponseWriter).SetWriteDeadline(time.Time{})
	}
}

// ReadFrom keeps the connection's own ReadFrom (sendfile or splice) for
// bodies copied through it; blob downloads come through Write instead, in
// 4 MiB pieces (see blob.Copy).
func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	if !r.settle() {
		return 0, errAuditFailed
	}
	if r.status == 0 {
		r.status = http.StatusOK
	}
	var n int64
	var err error
	rf, ok := r.ResponseWriter.(io.ReaderFrom)
	if !ok {
		rf = readerFrom{r.ResponseWriter}
	}
	if r.sendIdle <= 0 {
		n, err = rf.ReadFrom(src)
		r.n += n
		return n, err
	}
	// In parts, so that the deadline moves with progress.
	for {
		r.moveSendDeadline()
		var m int64
		m, err = rf.ReadFrom(io.LimitReader(src, sendChunk))
		n += m
		if err != nil || m < sendChunk {
			break
		}
	}
	r.n += n
	return n, err
}

// readerFrom copies into a writer that has no ReadFrom of its own.
type readerFrom struct{ w io.Writer }

func (f readerFrom) ReadFrom(src io.Reader) (int64, error) {
	return io.Copy(struct{ io.Writer }{f.w}, src)
}

func (r *recorder) Flush() {
	if !r.settle() {
		return
	}
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if !r.settle() {
		return nil, nil, errAuditFailed
	}
	if h, ok := r.ResponseWriter.(http.Hijacker); ok {
		return h.Hijack()
	}
	return nil, nil, errors.New("hijack not supported")
}

// Unwrap lets http.ResponseController reach the connection (deadlines).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

type countingBody struct {
	io.ReadCloser
	n int64
}

func (c *countingBody) Read(b []byte) (int, error) {
	n, err := c.ReadCloser.Read(b)
	c.n += int64(n)
	return n, err
}
