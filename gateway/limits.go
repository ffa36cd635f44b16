package gateway

import (
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// Defaults for the limits in Config. They bound what one slow or hostile
// client can hold: a connection, a handler goroutine, header memory, or
// the CPU of a multi-range answer.
const (
	// DefaultReadHeaderTimeout closes a connection whose request headers
	// have not all arrived in time (slowloris).
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultIdleTimeout closes a keep-alive connection with no request.
	DefaultIdleTimeout = 2 * time.Minute
	// DefaultMaxHeaderBytes caps request headers; net/http answers 431
	// past it (plus its own 4 KiB slack for the request line).
	DefaultMaxHeaderBytes = 64 << 10
	// DefaultBodyIdleTimeout ends a request whose body makes no progress
	// for this long (a 1-byte-a-minute upload), whatever the door.
	DefaultBodyIdleTimeout = 60 * time.Second
	// DefaultMaxRanges is the most byte ranges one GET may ask for.
	DefaultMaxRanges = 16
	// DefaultMaxConcurrentStreams bounds the handlers one HTTP/2
	// connection may run at once.
	DefaultMaxConcurrentStreams = 100
)

// http2Config bounds HTTP/2 connections (used when the listener offers h2
// over TLS). Go's net/http carries the fixes for rapid reset
// (CVE-2023-44487: handlers of reset streams still count against
// MaxConcurrentStreams, and a client that keeps resetting is sent GOAWAY)
// and CONTINUATION floods (CVE-2023-45288: header frames past
// MaxHeaderBytes end the connection); these settings make the bounds
// explicit rather than defaults.
func (s *Server) http2Config() *http.HTTP2Config {
	stall := max(s.cfg.BodyIdleTimeout, 0)
	return &http.HTTP2Config{
		MaxConcurrentStreams:      s.cfg.MaxConcurrentStreams,
		MaxReadFrameSize:          1 << 20,
		MaxDecoderHeaderTableSize: 4 << 10,
		MaxEncoderHeaderTableSize: 4 << 10,
		// A peer that stops reading its answers holds the connection no
		// longer than a stalled body would.
		WriteByteTimeout: stall,
		PingTimeout:      15 * time.Second,
	}
}

// limits applies the per-request limits every door shares: it drops a
// Range header with too many ranges, and ends bodies that stall.
func (s *Server) limits(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if vs := r.Header.Values("Range"); len(vs) > 0 {
			if n := countRanges(vs); n > s.cfg.MaxRanges {
				// RFC 9110 section 14.2 lets a server ignore Range, and
				// names many small ranges as a denial-of-service sign;
				// the answer is then the whole representation (200),
				// which costs no more than a plain GET. 416 would claim
				// the ranges are unsatisfiable, which they are not.
				r = r.Clone(r.Context())
				r.Header.Del("Range")
				r.Header.Del("If-Range")
				setLogAttr(r.Context(), "ranges_ignored", n)
			}
		}
		// ContentLength, not Body: observe has wrapped every Body. A
		// request without one must get no deadline, or net/http's
		// background read (which watches for a client hanging up) would
		// time out and cancel the connection's context.
		var ib *idleBody
		if s.cfg.BodyIdleTimeout > 0 && r.ContentLength != 0 && r.Body != nil {
			// On a copy, like observe: net/http checks its own request's
			// Body for an unanswered Expect: 100-continue.
			r = r.WithContext(r.Context())
			rc := http.NewResponseController(w)
			ib = &idleBody{ReadCloser: r.Body, rc: rc, idle: s.cfg.BodyIdleTimeout}
			r.Body = ib
			// A handler that answers without reading (a refusal, a
			// 404) leaves net/http to drain up to 256 KiB of the body
			// before it replies; this bounds that drain. Reads through
			// idleBody move the deadline, so a handler that is slow to
			// start reading is not cut. One case stays: a handler that
			// ignores a body net/http then drains whole, and goes on
			// streaming its answer for longer than the timeout, has its
			// context cancelled when the deadline fires (a GET sent with
			// a body it does not need).
			rc.SetReadDeadline(time.Now().Add(s.cfg.BodyIdleTimeout))
		}
		next.ServeHTTP(w, r)
		// The timeout also cancels the request's context (net/http does
		// on any read error), and a door that sees the cancellation
		// first returns without answering, which net/http would send as
		// 200. The client may still be listening: tell it.
		if ib != nil && ib.stalled {
			if rec, ok := w.(*recorder); ok && rec.status == 0 {
				writeJSONError(w, http.StatusRequestTimeout, "body_timeout", "The request body stopped arriving.")
			}
		}
	})
}

// countRanges counts the range specs of Range header values
// ("bytes=0-1,5-9" is two). Empty list elements do not count.
func countRanges(vs []string) int {
	n := 0
	for _, v := range vs {
		for part := range strings.SplitSeq(v, ",") {
			if strings.TrimSpace(part) != "" {
				n++
			}
		}
	}
	return n
}

// idleBody ends a request body that makes no progress: before every read
// it moves the connection's read deadline idle ahead, so a client that
// sends at 1 byte a minute is cut off after idle, while a slow but moving
// upload of any size goes on. What a door stored before the cut stays
// (a tus upload keeps its offset and can resume).
type idleBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
	done bool
	// stalled is set when a read hit the deadline.
	stalled bool
}

func (b *idleBody) Read(p []byte) (int, error) {
	if b.done {
		return b.ReadCloser.Read(p)
	}
	// Writers without deadlines (ErrNotSupported) leave the body as it
	// was: nothing to extend, nothing to break.
	b.rc.SetReadDeadline(time.Now().Add(b.idle))
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		// At the end of the body net/http starts a background read to
		// notice a client hanging up; a deadline left behind would fire
		// there and cancel a handler still working on the request. After
		// a timeout the deadline stays, so net/http's own drain of the
		// unread rest fails at once and the connection closes.
		b.rc.SetReadDeadline(time.Time{})
		b.done = true
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		b.stalled = true
	}
	return n, err
}
