package faults

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/filegate/filegate/cmd/filegate/proctest"
	"github.com/filegate/filegate/model/dbtest"
)

// call is one request of the load, for the accounting.
type call struct {
	kind       string
	start, end time.Time
	status     int
	retryAfter string
	err        error
}

// davFile is what a load worker knows of one of its files: the content
// last acknowledged, and what it sent since without an acknowledgement
// (any of which the server may have committed before failing).
type davFile struct {
	acked   string
	pending []string
}

func (f *davFile) allowed(s string) bool {
	if s == f.acked {
		return true
	}
	for _, p := range f.pending {
		if s == p {
			return true
		}
	}
	return false
}

// tusUpload is one upload of a load worker.
type tusUpload struct {
	loc, path string
	data      []byte
}

// loadRun is the mixed load of the outage tests: WebDAV PUT, GET and
// PROPFIND, tus POST, HEAD and PATCH, files API and /readyz.
type loadRun struct {
	c    *client
	stop chan struct{}
	wg   sync.WaitGroup

	mu         sync.Mutex
	calls      []call
	files      map[string]*davFile // dav path → state
	uploads    []*tusUpload
	mismatches []string
}

func (l *loadRun) record(kind string, start time.Time, a answer) answer {
	l.mu.Lock()
	l.calls = append(l.calls, call{kind: kind, start: start, end: time.Now(), status: a.status, retryAfter: a.retryAfter, err: a.err})
	l.mu.Unlock()
	return a
}

func (l *loadRun) stopped() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

// pause waits between requests, longer after a failure so that an outage
// does not turn into a busy loop.
func (l *loadRun) pause(a answer) {
	d := 10 * time.Millisecond
	if a.err != nil || a.status >= 500 {
		d = 100 * time.Millisecond
	}
	select {
	case <-l.stop:
	case <-time.After(d):
	}
}

func (l *loadRun) davWorker(w int) {
	defer l.wg.Done()
	dir := fmt.Sprintf("/load/w%d", w)
	for !l.stopped() {
		s := time.Now()
		a := l.record("dav MKCOL", s, l.c.mkcol(dir))
		if a.status == http.StatusCreated || a.status == http.StatusMethodNotAllowed {
			break
		}
		l.pause(a)
	}
	for i := 0; !l.stopped(); i++ {
		p := fmt.Sprintf("%s/f%d.bin", dir, i%4)
		data := randomBytes(uint64(w*1_000_000+i), 32<<10+i%7*32<<10)
		s := sum(data)
		l.mu.Lock()
		f := l.files[p]
		if f == nil {
			f = &davFile{}
			l.files[p] = f
		}
		f.pending = append(f.pending, s)
		l.mu.Unlock()
		a := l.record("dav PUT", time.Now(), l.c.put(p, data))
		if a.status == http.StatusCreated || a.status == http.StatusNoContent {
			l.mu.Lock()
			f.acked, f.pending = s, nil
			l.mu.Unlock()
		}
		l.pause(a)
		g := l.record("dav GET", time.Now(), l.c.get(p))
		l.mu.Lock()
		switch {
		case g.status == http.StatusOK && !f.allowed(g.sum):
			l.mismatches = append(l.mismatches, fmt.Sprintf("GET %s: %d bytes that were never sent", p, g.size))
		case g.status == http.StatusNotFound && f.acked != "":
			// A row whose blob is gone (or a lost row) reads as 404.
			l.mismatches = append(l.mismatches, fmt.Sprintf("GET %s: 404 for an acknowledged file", p))
		}
		l.mu.Unlock()
		l.pause(g)
		_, pa := l.c.list(dir)
		l.pause(l.record("dav PROPFIND", time.Now(), pa))
	}
}

func (l *loadRun) tusWorker(w int) {
	defer l.wg.Done()
	const size, chunk = 768 << 10, 128 << 10
	for i := 0; !l.stopped(); i++ {
		name := fmt.Sprintf("t%d-%d.bin", w, i)
		data := randomBytes(uint64(w*1_000_000+i+500_000), size)
		var loc string
		for loc == "" && !l.stopped() {
			s := time.Now()
			var a answer
			loc, a = l.c.tusCreate("/load", name, size)
			l.pause(l.record("tus POST", s, a))
		}
		if loc == "" {
			return
		}
		u := &tusUpload{loc: loc, path: "/load/" + name, data: data}
		l.mu.Lock()
		l.uploads = append(l.uploads, u)
		l.mu.Unlock()
		off := int64(0)
		for off < size && !l.stopped() {
			s := time.Now()
			n, a := l.c.tusPatch(loc, off, data[off:min(off+chunk, size)])
			l.record("tus PATCH", s, a)
			if a.err == nil && a.status == http.StatusNoContent {
				off = n
				continue
			}
			l.pause(a)
			for !l.stopped() {
				s := time.Now()
				n, a := l.c.tusHead(loc)
				l.record("tus HEAD", s, a)
				if a.err == nil && a.status == http.StatusOK {
					off = n
					break
				}
				l.pause(a)
			}
		}
	}
}

func (l *loadRun) apiWorker() {
	defer l.wg.Done()
	for !l.stopped() {
		l.pause(l.record("api GET", time.Now(), l.c.do(http.MethodGet, "/api/v1/files", nil, 0, nil, true)))
		l.pause(l.record("readyz", time.Now(), l.c.do(http.MethodGet, "/readyz", nil, 0, nil, true)))
	}
}

// TestFaultPostgresOutage runs a mixed load against an instance on a
// PostgreSQL of its own and takes the database away under it: stopped,
// refusing connections, and silently dropping packets. Every request
// affected must get 503 with Retry-After, never another 5xx; /readyz says
// 503; once the database is back the same process serves again, and every
// file it shows has exactly the bytes a client sent, with no blob lacking
// a row or row lacking a blob.
func TestFaultPostgresOutage(t *testing.T) {
	modes := []string{"stop", "blackhole"}
	if long() {
		modes = []string{"stop", "refuse", "blackhole"}
	}
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) { testOutage(t, mode) })
	}
}

func startCluster(t *testing.T) *dbtest.Cluster {
	t.Helper()
	cl, err := dbtest.StartCluster()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL: %v", err)
		}
		t.Skipf("PostgreSQL: %v", err)
	}
	t.Cleanup(cl.Remove)
	return cl
}

func testOutage(t *testing.T, mode string) {
	warm, outage, after := 2*time.Second, 4*time.Second, 3*time.Second
	cycles := 1
	if mode == "blackhole" {
		outage = 8 * time.Second // past the driver's 5 s read timeout
	}
	if long() {
		outage, after, cycles = 3*outage, 10*time.Second, 3
	}
	cl := startCluster(t)
	dbURL := cl.URL("postgres")
	var px *proxy
	if mode != "stop" {
		px = startProxy(t, "127.0.0.1:"+strconv.Itoa(cl.Port))
		dbURL = strings.Replace(dbURL, "127.0.0.1:"+strconv.Itoa(cl.Port), px.addr(), 1)
	}
	data := t.TempDir()
	in, c := start(t, proctest.Options{Data: data, DatabaseURL: dbURL}, "/load")
	l := &loadRun{c: c, stop: make(chan struct{}), files: map[string]*davFile{}}
	for w := range 2 {
		l.wg.Add(2)
		go l.davWorker(w)
		go l.tusWorker(w)
	}
	l.wg.Add(1)
	go l.apiWorker()

	type window struct{ down, up time.Time }
	var windows []window
	var recoveries []time.Duration
	time.Sleep(warm)
	for range cycles {
		switch mode {
		case "stop":
			cl.Stop()
		default:
			px.set(mode)
		}
		down := time.Now()
		time.Sleep(outage)
		up := time.Now()
		switch mode {
		case "stop":
			if err := cl.Start(); err != nil {
				t.Fatalf("restart PostgreSQL: %v", err)
			}
		default:
			px.set("up")
		}
		windows = append(windows, window{down, up})
		back := time.Now()
		for {
			a := c.do(http.MethodGet, "/readyz", nil, 0, nil, true)
			if a.status == http.StatusOK {
				break
			}
			if time.Since(back) > time.Minute {
				close(l.stop)
				t.Fatalf("not ready a minute after PostgreSQL came back: %v\n%s", a, in.Logs())
			}
			time.Sleep(20 * time.Millisecond)
		}
		recoveries = append(recoveries, time.Since(back))
		time.Sleep(after)
	}
	close(l.stop)
	l.wg.Wait()

	// The accounting.
	// A request is affected when it was under way while the database
	// was away; in a blackhole many end only after it is back.
	inOutage := func(c call) bool {
		for _, w := range windows {
			if c.start.Before(w.up) && c.end.After(w.down) {
				return true
			}
		}
		return false
	}
	// The first write through a door after the database is back.
	var firstWrite time.Duration = -1
	for _, c := range l.calls {
		w := windows[len(windows)-1]
		if c.kind == "dav PUT" && c.start.After(w.up) && c.status/100 == 2 {
			if d := c.end.Sub(w.up); firstWrite < 0 || d < firstWrite {
				firstWrite = d
			}
		}
	}
	var during, n503, n2xx, n5xx, noRetry, connErr int
	var slowest time.Duration
	byKind := map[string]map[int]int{}
	var bad []string
	for _, c := range l.calls {
		if byKind[c.kind] == nil {
			byKind[c.kind] = map[int]int{}
		}
		byKind[c.kind][c.status]++
		switch {
		case c.err != nil:
			connErr++
			bad = append(bad, fmt.Sprintf("%s: %v", c.kind, c.err))
		case c.status >= 500 && c.status != http.StatusServiceUnavailable:
			n5xx++
			bad = append(bad, fmt.Sprintf("%s: %d", c.kind, c.status))
		case c.status == http.StatusServiceUnavailable && c.retryAfter == "":
			noRetry++
			bad = append(bad, c.kind+": 503 without Retry-After")
		}
		if !inOutage(c) {
			continue
		}
		during++
		slowest = max(slowest, c.end.Sub(c.start))
		if testing.Verbose() && c.end.Sub(c.start) > time.Second {
			t.Logf("slow: %s %d %v (started %v after the cut)", c.kind, c.status, c.end.Sub(c.start).Round(time.Millisecond), c.start.Sub(windows[0].down).Round(time.Millisecond))
		}
		switch {
		case c.status == http.StatusServiceUnavailable:
			n503++
		case c.status >= 200 && c.status < 300:
			n2xx++
		case c.err == nil:
			bad = append(bad, fmt.Sprintf("%s during the outage: %d", c.kind, c.status))
		}
	}
	t.Logf("answers by kind: %v", byKind)
	if len(bad) > 0 {
		sort.Strings(bad)
		t.Errorf("%d bad answers, e.g. %v", len(bad), bad[:min(len(bad), 20)])
	}
	if during == 0 {
		t.Fatalf("no request fell inside the outage")
	}
	for _, c := range l.calls {
		if c.kind == "readyz" && inOutage(c) && c.start.After(windows[len(windows)-1].down) && c.end.Before(windows[len(windows)-1].up) && c.status != http.StatusServiceUnavailable {
			t.Errorf("/readyz during the outage answered %d", c.status)
		}
	}

	// Every upload finishes after the outage, with its bytes.
	rel := reliability{suite: "pg-" + mode, faults: cycles}
	deadline := time.Now().Add(2 * time.Minute)
	for _, u := range l.uploads {
		if _, err := c.tusFinish(u.loc, u.data, 256<<10, deadline); err != nil {
			t.Errorf("after the outage: %v", err)
			continue
		}
		if g := c.get(u.path); g.status != http.StatusOK || g.sum != sum(u.data) {
			rel.bytesLost += int64(len(u.data))
			t.Errorf("upload %s: GET %d, %d bytes, same bytes=%v", u.path, g.status, g.size, g.sum == sum(u.data))
		}
	}
	// Every file shown has bytes a client sent; every acknowledged file
	// is there.
	for _, m := range l.mismatches {
		t.Error(m)
	}
	for p, f := range l.files {
		ls, a := c.list(filepath.Dir(p))
		if ls == nil {
			t.Fatalf("PROPFIND %s: %v", filepath.Dir(p), a)
		}
		e, shown := ls[filepath.Base(p)]
		g := c.get(p)
		switch {
		case !shown && f.acked != "":
			rel.bytesLost += 1
			t.Errorf("%s was acknowledged but is not listed", p)
		case !shown:
		case g.status != http.StatusOK || !f.allowed(g.sum) || g.size != e.size:
			rel.bytesLost += e.size
			t.Errorf("%s: listed with %d bytes, GET %d with %d bytes, bytes sent=%v", p, e.size, g.status, g.size, f.allowed(g.sum))
		}
	}
	// A write whose commit may or may not have happened when the
	// database went away keeps its blob for the sweep; after the sweep
	// no blob lacks a row, and no live file ever lacks its blob.
	led := checkLedger(t, cl.URL("postgres"), filepath.Join(data, "blobs"))
	if len(led.missing) > 0 {
		t.Errorf("ledger: %d live files without their bytes %v", len(led.missing), led.missing)
	}
	left := len(led.orphans)
	swept := sweepNow(t, cl.URL("postgres"), filepath.Join(data, "blobs"))
	led = checkLedger(t, cl.URL("postgres"), filepath.Join(data, "blobs"))
	if len(led.orphans) > 0 || len(led.missing) > 0 || swept != left {
		t.Errorf("ledger after the sweep: %d blobs without a row %v, %d live files without their bytes %v; swept %d of %d",
			len(led.orphans), led.orphans, len(led.missing), led.missing, swept, left)
	}
	noInternalErrors(t, in)
	if !t.Failed() {
		rel.survived = cycles
	}
	var worst time.Duration
	for _, r := range recoveries {
		worst = max(worst, r)
	}
	share := float64(n503) / float64(during)
	t.Logf("PGOUTAGE mode=%s cycles=%d requests=%d status503=%d share503=%.3f status2xx=%d status500=%d no_retry_after=%d conn_errors=%d recovery_ms=%d first_put_ms=%d slowest_ms=%d rows=%d blobs=%d left_for_sweep=%d orphans=%d",
		mode, cycles, during, n503, share, n2xx, n5xx, noRetry, connErr, worst.Milliseconds(), firstWrite.Milliseconds(), slowest.Milliseconds(), led.rows, led.blobs, left, len(led.orphans))
	rel.extra = append(rel.extra, fmt.Sprintf("requests=%d share503=%.3f status500=%d recovery_ms=%d", during, share, n5xx, worst.Milliseconds()))
	rel.log(t)
}
