package soak

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// attempt is one HTTP request a client sent, for the audit accounting.
type attempt struct {
	id      string // X-Request-Id, unique per attempt
	kind    string // e.g. "dav PUT", "tus PATCH", "api GET content"
	door    string // "dav", "tus", "api"
	subject string // the audit subject the request acts as
	status  int    // 0 when no answer came (the instance was killed)
}

// counters are the run's totals.
type counters struct {
	requests    atomic.Int64 // attempts sent
	answered    atomic.Int64 // attempts that got a status
	connErrors  atomic.Int64 // attempts the killed instance dropped
	retries     atomic.Int64 // attempts repeated after a drop, 503 or 423
	unavail     atomic.Int64 // 503 answers
	locked      atomic.Int64 // 423 answers (tus upload still locked by a dead holder)
	status5xx   atomic.Int64 // other 5xx answers: always a failure
	mismatches  atomic.Int64 // reads whose SHA-256 differed from what was written
	ops         atomic.Int64 // logical operations completed
	bytesUp     atomic.Int64
	bytesDown   atomic.Int64
	tusResumed  atomic.Int64 // tus uploads resumed after a drop
	tusStuck    atomic.Int64 // tus uploads complete by HEAD whose file never appeared
	stale403    atomic.Int64 // 403s to a file token minted moments before on the other instance
	spurious401 atomic.Int64 // 401s to valid credentials
	spurious499 atomic.Int64 // 499s (cancelled) to requests the client did not cancel
	interrupted atomic.Int64 // tus PATCHes interrupted though no other request touched the upload
}

// harness is what every client shares.
type harness struct {
	t    *testing.T
	cl   *cluster
	http *http.Client
	sec  *secrets
	n    counters

	mu       sync.Mutex
	attempts []attempt
	failures []string // request ids of failed operations
}

// known records an occurrence of a known server issue: a failure under
// FILEGATE_SOAK_STRICT=1, a logged finding otherwise.
func (h *harness) known(what, id string) {
	if os.Getenv("FILEGATE_SOAK_STRICT") == "1" {
		h.t.Errorf("known issue: %s (request %s)", what, id)
	} else {
		h.t.Logf("KNOWN ISSUE: %s (request %s)", what, id)
	}
	h.failed(id)
}

func (h *harness) failed(id string) {
	h.mu.Lock()
	h.failures = append(h.failures, id)
	h.mu.Unlock()
}

// failureLogs returns the instances' log lines about failed requests.
func (h *harness) failureLogs() []string {
	h.mu.Lock()
	ids := slices.Clone(h.failures)
	h.mu.Unlock()
	var out []string
	for i, in := range h.cl.inst {
		for _, line := range strings.Split(in.Logs(), "\n") {
			for _, id := range ids {
				if strings.Contains(line, strings.TrimSuffix(id[:strings.LastIndexByte(id, '-')], "-")) {
					out = append(out, fmt.Sprintf("%c: %s", 'A'+i, line))
					break
				}
			}
		}
	}
	return out
}

func (h *harness) record(a attempt) {
	h.mu.Lock()
	h.attempts = append(h.attempts, a)
	h.mu.Unlock()
}

// errRetry marks a failure the client retries: the answer was cut off.
var errRetry = errors.New("answer cut off")

// errAgain asks for the request to be sent again after a pause, the
// answer being a known transient refusal (see client.apiDownload).
var errAgain = errors.New("send again")

// giveUpAfter bounds how long one logical operation retries.
const giveUpAfter = 2 * time.Minute

// client is one soak client: a user, its credentials and folder, and
// what it believes its folder holds.
type client struct {
	h       *harness
	id      int
	acct    *account
	auth    string // Authorization header value for this client's user
	subject string
	rnd     *rand.Rand
	seq     int
	files   map[string]*file
	prefer  int
}

// file is what a client wrote under a name.
type file struct {
	sha   string
	size  int64
	id    string // node id, when the client learned it
	token string // a full file token (fgt_…), when the client holds one
	// minted is when the token was minted.
	minted time.Time
}

// req is one logical request: how to build it on a base URL, and how to
// take its answer.
type req struct {
	kind, door string
	// auth overrides the client's Authorization; "-" sends none.
	auth, subject string
	build         func(base string) (*http.Request, error)
	// retry423 retries 423 Locked answers (tus PATCH and HEAD).
	retry423 bool
	// handle takes the answer; it returns an error wrapping errRetry to
	// send the request again. ambiguous says an earlier attempt may have
	// reached the server and done its work.
	handle func(resp *http.Response, ambiguous bool) error
}

// do sends r until it gets an answer, moving to the other instance after
// a dropped connection, and passes the answer to r.handle.
func (c *client) do(r req) error {
	c.seq++
	start := time.Now()
	ambiguous := false
	for try := 1; ; try++ {
		if time.Since(start) > giveUpAfter {
			return fmt.Errorf("%s: no answer after %v", r.kind, giveUpAfter)
		}
		if try > 1 {
			c.h.n.retries.Add(1)
		}
		i := c.prefer
		hr, err := r.build(c.h.cl.base(i))
		if err != nil {
			return err
		}
		id := fmt.Sprintf("soak%02d-%06d-%d", c.id, c.seq, try)
		hr.Header.Set("X-Request-Id", id)
		auth, sub := c.auth, c.subject
		if r.auth != "" {
			auth, sub = r.auth, r.subject
		}
		if auth != "-" {
			hr.Header.Set("Authorization", auth)
		}
		c.h.n.requests.Add(1)
		resp, err := c.h.http.Do(hr)
		if err != nil {
			c.h.record(attempt{id: id, kind: r.kind, door: r.door, subject: sub})
			c.h.n.connErrors.Add(1)
			ambiguous = true
			c.prefer = 1 - i
			time.Sleep(time.Duration(20+c.rnd.IntN(80)) * time.Millisecond)
			continue
		}
		c.h.n.answered.Add(1)
		c.h.record(attempt{id: id, kind: r.kind, door: r.door, subject: sub, status: resp.StatusCode})
		switch {
		case resp.StatusCode == http.StatusServiceUnavailable:
			c.h.n.unavail.Add(1)
			drain(resp)
			c.prefer = 1 - i
			time.Sleep(100 * time.Millisecond)
			continue
		case resp.StatusCode == http.StatusUnauthorized && auth != "-":
			// Every credential the soak sends is valid, so a 401 is the
			// server's fault. Known issue (see RELIABILITY.md): counted,
			// reported, and sent again on the other instance.
			c.h.n.spurious401.Add(1)
			c.h.known("401 to valid credentials", id)
			drain(resp)
			c.prefer = 1 - i
			time.Sleep(50 * time.Millisecond)
			continue
		case resp.StatusCode == 499:
			// The client cancelled nothing: the server's own context for
			// the connection was cancelled. Same known issue as the 401s.
			c.h.n.spurious499.Add(1)
			c.h.known("499 to a request the client did not cancel", id)
			drain(resp)
			c.prefer = 1 - i
			time.Sleep(50 * time.Millisecond)
			continue
		case resp.StatusCode == http.StatusLocked && r.retry423:
			c.h.n.locked.Add(1)
			drain(resp)
			time.Sleep(250 * time.Millisecond)
			continue
		case resp.StatusCode >= 500:
			c.h.n.status5xx.Add(1)
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			drain(resp)
			c.h.failed(id)
			return fmt.Errorf("request %s on instance %c: %s: %s: %s", id, 'A'+i, r.kind, resp.Status, b)
		}
		err = r.handle(resp, ambiguous)
		drain(resp)
		if errors.Is(err, errAgain) {
			time.Sleep(250 * time.Millisecond)
			continue
		}
		if errors.Is(err, errRetry) {
			c.h.n.connErrors.Add(1)
			ambiguous = true
			c.prefer = 1 - i
			continue
		}
		// Spread the next request over both instances.
		c.prefer = c.rnd.IntN(2)
		if err != nil {
			c.h.failed(id)
			return fmt.Errorf("request %s on instance %c: %w", id, 'A'+i, err)
		}
		return nil
	}
}

func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
}

// want checks that the answer is one of the statuses.
func want(resp *http.Response, kind string, codes ...int) error {
	for _, c := range codes {
		if resp.StatusCode == c {
			return nil
		}
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return fmt.Errorf("%s: got %s, want %v: %s", kind, resp.Status, codes, strings.TrimSpace(string(b)))
}

// newHTTPClient is the transport all clients share: keep-alive
// connections to both instances, and a generous per-request timeout so a
// hung request fails the run instead of hanging it.
func newHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	tr.ResponseHeaderTimeout = 90 * time.Second
	return &http.Client{Transport: tr, Timeout: 3 * time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
