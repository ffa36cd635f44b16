package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/filegate/filegate/cmd/filegate/proctest"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/blob/s3test"
	"github.com/filegate/filegate/model/dbtest"
)

// adminPass is the password proctest gives the bootstrap admin.
const adminPass = "secret-admin"

// cluster is several real `filegate serve` processes on one PostgreSQL
// database and one S3 bucket, as a scaled-out deployment runs them.
type cluster struct {
	dbURL   string
	blobURL string
	nodes   []*proctest.Instance
}

// startCluster starts n instances at the same moment on a fresh
// database (they race to migrate it and to create the admin) with the
// given upload lock lease and extra serve flags.
func startCluster(t *testing.T, n int, lease time.Duration, args ...string) *cluster {
	t.Helper()
	s3 := s3test.Shared(t)
	c := &cluster{dbURL: dbtest.URL(t, dbtest.Postgres), blobURL: s3.URL(s3.NewBucket(t), "filegate")}
	proctest.Binary(t)
	c.nodes = make([]*proctest.Instance, n)
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done() // also when Start fails t and ends this goroutine
			c.nodes[i] = proctest.Start(t, proctest.Options{
				DatabaseURL: c.dbURL, BlobURL: c.blobURL, Env: s3test.Env(),
				Args: append([]string{"--upload-lock-lease", lease.String(), "--log-level", "warn"}, args...),
			})
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return c
}

func (c *cluster) bases() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.URL)
	}
	return out
}

// reply is one answer, read whole, with the backend that served it.
type reply struct {
	status  int
	header  http.Header
	body    []byte
	backend string // host:port of the filegate instance
}

// rrClient spreads requests over bases round robin, with no affinity of
// any kind, as a load balancer without sticky sessions does. Behind a
// proxy (one base) the backend comes from the proxy's X-Upstream header.
type rrClient struct {
	t          *testing.T
	bases      []string
	user, pass string
	mu         sync.Mutex
	next       int
}

func newRR(t *testing.T, user, pass string, bases ...string) *rrClient {
	return &rrClient{t: t, bases: bases, user: user, pass: pass}
}

// as returns a client for another user on the same bases and rotation.
func (c *rrClient) as(user, pass string) *rrClient {
	return &rrClient{t: c.t, bases: c.bases, user: user, pass: pass}
}

// on sends one request to base.
func (c *rrClient) on(base, method, p string, hdr map[string]string, body []byte) reply {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, base+p, r)
	if err != nil {
		c.t.Fatal(err)
	}
	req.SetBasicAuth(c.user, c.pass)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s%s: %v", method, base, p, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s%s: reading the answer: %v", method, base, p, err)
	}
	backend := resp.Header.Get("X-Upstream")
	if backend == "" {
		backend = strings.TrimPrefix(base, "http://")
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b, backend: backend}
}

// do sends one request to the next base in the rotation.
func (c *rrClient) do(method, p string, hdr map[string]string, body []byte) reply {
	c.t.Helper()
	c.mu.Lock()
	base := c.bases[c.next%len(c.bases)]
	c.next++
	c.mu.Unlock()
	return c.on(base, method, p, hdr, body)
}

func want(t *testing.T, what string, r reply, codes ...int) {
	t.Helper()
	for _, c := range codes {
		if r.status == c {
			return
		}
	}
	t.Fatalf("%s on %s: %d, want %v: %.300s", what, r.backend, r.status, codes, r.body)
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(b)
	return b
}

func distinct(rs ...reply) int {
	seen := map[string]bool{}
	for _, r := range rs {
		seen[r.backend] = true
	}
	return len(seen)
}

// checkPutGet writes a file with WebDAV on one backend and reads it back
// from the next: same bytes.
func checkPutGet(t *testing.T, c *rrClient, dir string, size int) {
	want(t, "MKCOL", c.do("MKCOL", "/dav/"+dir, nil, nil), 201, 405)
	body := randomBytes(size, uint64(size))
	put := c.do("PUT", "/dav/"+dir+"/scan.bin", nil, body)
	want(t, "PUT", put, 201, 204)
	get := c.do("GET", "/dav/"+dir+"/scan.bin", nil, nil)
	want(t, "GET", get, 200)
	if put.backend == get.backend {
		t.Fatalf("PUT and GET both went to %s", put.backend)
	}
	if sum(get.body) != sum(body) {
		t.Fatalf("GET on %s: %d bytes, sha256 %s; PUT on %s sent %d bytes, sha256 %s",
			get.backend, len(get.body), sum(get.body), put.backend, len(body), sum(body))
	}
}

const lockBody = `<?xml version="1.0" encoding="utf-8"?>
<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>multi-instance test</D:owner></D:lockinfo>`

// checkLock takes a WebDAV lock on one backend; the two others refuse a
// PUT without its token, the next accepts one with it, and a third
// releases it. With three backends in rotation the requests land there
// in this order; the test checks that they did.
func checkLock(t *testing.T, c *rrClient, dir string) {
	p := "/dav/" + dir + "/locked.txt"
	want(t, "PUT before the lock", c.do("PUT", p, nil, []byte("v1")), 201, 204)
	lock := c.do("LOCK", p, map[string]string{"Timeout": "Second-600", "Depth": "0", "Content-Type": "application/xml"}, []byte(lockBody))
	want(t, "LOCK", lock, 200)
	token := lock.header.Get("Lock-Token")
	if !strings.HasPrefix(token, "<") {
		t.Fatalf("LOCK on %s: Lock-Token %q", lock.backend, token)
	}
	refused := []reply{c.do("PUT", p, nil, []byte("intruder")), c.do("PUT", p, nil, []byte("intruder"))}
	for _, r := range refused {
		want(t, "PUT without the lock token", r, 423)
	}
	if distinct(lock, refused[0], refused[1]) != 3 {
		t.Fatalf("LOCK on %s, refused PUTs on %s and %s: want three backends", lock.backend, refused[0].backend, refused[1].backend)
	}
	find := c.do("PROPFIND", p, map[string]string{"Depth": "0"}, nil)
	want(t, "PROPFIND of the locked file", find, 207)
	if !strings.Contains(string(find.body), strings.Trim(token, "<>")) {
		t.Fatalf("PROPFIND on %s does not show the lock:\n%s", find.backend, find.body)
	}
	ok := c.do("PUT", p, map[string]string{"If": "(" + token + ")"}, []byte("v2 by the lock holder"))
	want(t, "PUT with the lock token", ok, 201, 204)
	unlock := c.do("UNLOCK", p, map[string]string{"Lock-Token": token}, nil)
	want(t, "UNLOCK", unlock, 204)
	if distinct(lock, ok, unlock) != 3 {
		t.Fatalf("LOCK on %s, PUT with the token on %s, UNLOCK on %s: want three backends", lock.backend, ok.backend, unlock.backend)
	}
	want(t, "PUT after UNLOCK", c.do("PUT", p, nil, []byte("v3")), 201, 204)
	get := c.do("GET", p, nil, nil)
	want(t, "GET", get, 200)
	if string(get.body) != "v3" {
		t.Fatalf("GET after the lock: %q", get.body)
	}
	t.Logf("LOCK on %s, refused on %s and %s, PUT with the token on %s, UNLOCK on %s",
		lock.backend, refused[0].backend, refused[1].backend, ok.backend, unlock.backend)
}

// tusCreate starts an upload of size bytes into dir and returns its path.
func tusCreate(t *testing.T, c *rrClient, dir, name string, size int) string {
	t.Helper()
	meta := "filename " + b64(name) + ",folder " + b64("/"+dir)
	r := c.do("POST", "/uploads/", map[string]string{"Tus-Resumable": "1.0.0",
		"Upload-Length": strconv.Itoa(size), "Upload-Metadata": meta}, nil)
	want(t, "tus create", r, 201)
	return "/uploads/" + path.Base(r.header.Get("Location"))
}

func tusPatch(c *rrClient, loc string, off int, chunk []byte) reply {
	c.t.Helper()
	return c.do("PATCH", loc, map[string]string{"Tus-Resumable": "1.0.0", "Upload-Offset": strconv.Itoa(off),
		"Content-Type": "application/offset+octet-stream"}, chunk)
}

func tusHead(c *rrClient, loc string) (reply, int) {
	c.t.Helper()
	r := c.do("HEAD", loc, map[string]string{"Tus-Resumable": "1.0.0"}, nil)
	off, _ := strconv.Atoi(r.header.Get("Upload-Offset"))
	return r, off
}

// checkTus uploads size bytes in chunks PATCHes, each preceded by a HEAD,
// and requires every PATCH to land on a different backend than the one
// before and the file to arrive whole.
func checkTus(t *testing.T, c *rrClient, dir string, size, chunks int) {
	body := randomBytes(size, 7)
	loc := tusCreate(t, c, dir, "resumed.bin", size)
	step := (size + chunks - 1) / chunks
	var patches []reply
	for off := 0; off < size; off += step {
		head, got := tusHead(c, loc)
		want(t, "tus HEAD", head, 200)
		if got != off {
			t.Fatalf("HEAD on %s: offset %d, want %d", head.backend, got, off)
		}
		r := tusPatch(c, loc, off, body[off:min(off+step, size)])
		want(t, "tus PATCH", r, 204)
		if n := len(patches); n > 0 && patches[n-1].backend == r.backend {
			t.Fatalf("PATCHes %d and %d both went to %s", n, n+1, r.backend)
		}
		patches = append(patches, r)
	}
	get := c.do("GET", "/dav/"+dir+"/resumed.bin", nil, nil)
	want(t, "GET of the upload", get, 200)
	if sum(get.body) != sum(body) {
		t.Fatalf("upload arrived as %d bytes, sha256 %s, want %s", len(get.body), sum(get.body), sum(body))
	}
	var on []string
	for _, p := range patches {
		on = append(on, p.backend)
	}
	t.Logf("%d PATCHes on %v", len(patches), on)
}

// TestMultiInstance runs three `filegate serve` processes on one
// PostgreSQL database and one S3 bucket behind a round-robin client:
// files, WebDAV locks, tus uploads and policy changes made on one
// instance hold on the others, and an upload whose instance is SIGKILLed
// mid-PATCH is finished on another once its lock lease runs out.
func TestMultiInstance(t *testing.T) {
	start := time.Now()
	const lease = 2 * time.Second
	const pool = 4
	cl := startCluster(t, 3, lease, "--db-max-conns", strconv.Itoa(pool))
	c := newRR(t, "admin", adminPass, cl.bases()...)
	t.Logf("three instances up after %v", time.Since(start).Round(time.Millisecond))

	t.Run("dav put get", func(t *testing.T) { c.t = t; checkPutGet(t, c, "multi", 9<<20+123) })
	t.Run("lock", func(t *testing.T) { c.t = t; checkLock(t, c, "multi") })
	t.Run("tus resume", func(t *testing.T) { c.t = t; checkTus(t, c, "multi", 11<<20+5, 3) })
	t.Run("policy", func(t *testing.T) { c.t = t; checkPolicy(t, c, cl) })
	t.Run("pool", func(t *testing.T) { c.t = t; checkPool(t, c, cl, pool) })
	t.Run("tus kill", func(t *testing.T) { c.t = t; checkKilledUpload(t, c, cl, lease) })
	t.Logf("whole test %v", time.Since(start).Round(time.Millisecond))
}

// checkPolicy grants alice read on a folder through one instance's admin
// API and waits until each other instance lets her read, then revokes it
// and waits until each refuses again.
func checkPolicy(t *testing.T, c *rrClient, cl *cluster) {
	admin := cl.nodes[0].URL
	want(t, "create alice", c.on(admin, "POST", "/api/v1/users", map[string]string{"Content-Type": "application/json"},
		[]byte(`{"name":"alice","password":"alice-password"}`)), 201, 200)
	want(t, "MKCOL", c.on(admin, "MKCOL", "/dav/shared", nil, nil), 201)
	want(t, "PUT", c.on(admin, "PUT", "/dav/shared/report.pdf", nil, []byte("%PDF-1.7 report")), 201)
	alice := c.as("alice", "alice-password")
	for _, n := range cl.nodes[1:] {
		if r := alice.on(n.URL, "GET", "/dav/shared/report.pdf", nil, nil); r.status == 200 {
			t.Fatalf("alice reads on %s before the grant", r.backend)
		}
	}
	grant := `["g2", "user:alice", "level:read", "/shared"]`
	for _, step := range []struct {
		op     string
		reads  bool
		change string
	}{
		{"grant", true, `{"add":[` + grant + `]}`},
		{"revoke", false, `{"remove":[` + grant + `]}`},
	} {
		want(t, step.op, c.on(admin, "POST", "/api/v1/policies", map[string]string{"Content-Type": "application/json"},
			[]byte(step.change)), 200)
		changed := time.Now()
		for _, n := range cl.nodes[1:] {
			for {
				r := alice.on(n.URL, "GET", "/dav/shared/report.pdf", nil, nil)
				if (r.status == 200) == step.reads {
					t.Logf("the %s reached %s after %v", step.op, r.backend, time.Since(changed).Round(time.Millisecond))
					break
				}
				if time.Since(changed) > 15*time.Second {
					t.Fatalf("%s: GET on %s is still %d after 15s", step.op, r.backend, r.status)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
}

// checkKilledUpload kills the instance in the middle of a PATCH and
// finishes the upload on the others: HEAD waits out the dead holder's
// lease, the offset keeps what the first, acknowledged PATCH sent, and the
// file arrives whole.
func checkKilledUpload(t *testing.T, c *rrClient, cl *cluster, lease time.Duration) {
	const size, first, stalled = 16 << 20, 6 << 20, 3 << 20
	body := randomBytes(size, 99)
	victim := cl.nodes[0]
	loc := tusCreate(t, c, "multi", "killed.bin", size)
	hdr := func(off int) map[string]string {
		return map[string]string{"Tus-Resumable": "1.0.0", "Upload-Offset": strconv.Itoa(off),
			"Content-Type": "application/offset+octet-stream"}
	}
	want(t, "first PATCH", c.on(victim.URL, "PATCH", loc, hdr(0), body[:first]), 204)

	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("PATCH", victim.URL+loc, pr)
		req.SetBasicAuth("admin", adminPass)
		for k, v := range hdr(first) {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			err = fmt.Errorf("the killed instance answered %s", resp.Status)
		}
		done <- err
	}()
	if _, err := pw.Write(body[first : first+stalled]); err != nil {
		t.Fatal(err)
	}
	waitLockRow(t, cl.dbURL, path.Base(loc))
	victim.Kill()
	killed := time.Now()
	pw.Close()
	if err := <-done; err == nil {
		t.Fatal("the stalled PATCH got no error")
	}

	rest := c.as("admin", adminPass)
	rest.bases = []string{cl.nodes[1].URL, cl.nodes[2].URL}
	head, off := tusHead(rest, loc)
	want(t, "HEAD after the kill", head, 200)
	takeover := time.Since(killed)
	if off < first || off > first+stalled {
		t.Fatalf("HEAD on %s: offset %d, want between %d and %d", head.backend, off, first, first+stalled)
	}
	r := tusPatch(rest, loc, off, body[off:])
	want(t, "PATCH finishing the upload", r, 204)
	if r.backend == head.backend {
		t.Fatalf("HEAD and PATCH both on %s", r.backend)
	}
	get := rest.do("GET", "/dav/multi/killed.bin", nil, nil)
	want(t, "GET", get, 200)
	if sum(get.body) != sum(body) {
		t.Fatalf("after the kill the file has %d bytes, sha256 %s, want %s", len(get.body), sum(get.body), sum(body))
	}
	t.Logf("lease %v: HEAD on %s answered %v after the SIGKILL, at offset %d (%d acknowledged before, %d sent to the victim)",
		lease, head.backend, takeover.Round(time.Millisecond), off, first, stalled)
}

// waitLockRow waits until an instance holds the lease row of upload id.
func waitLockRow(t *testing.T, dbURL, id string) {
	t.Helper()
	ctx := context.Background()
	db, err := model.OpenDB(ctx, model.DBOptions{URL: dbURL, MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		if err := db.NewRaw("SELECT COUNT(*) FROM upload_locks WHERE id = ?", id).Scan(ctx, &n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no instance took the upload's lock row within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkPool sends many requests at once to every instance and then counts
// the connections to the database: each instance keeps at most
// --db-max-conns in its pool, plus the one that listens for policy
// changes.
func checkPool(t *testing.T, c *rrClient, cl *cluster, pool int) {
	const perInstance = 4 * 4
	var wg sync.WaitGroup
	errs := make(chan string, perInstance*len(cl.nodes))
	for range perInstance * len(cl.nodes) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				if r := c.do("PROPFIND", "/dav/multi/", map[string]string{"Depth": "1"}, nil); r.status != 207 {
					errs <- fmt.Sprintf("PROPFIND on %s: %d", r.backend, r.status)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	ctx := context.Background()
	db, err := model.OpenDB(ctx, model.DBOptions{URL: cl.dbURL, MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.NewRaw("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()").
		Scan(ctx, &n); err != nil {
		t.Fatal(err)
	}
	if limit := len(cl.nodes) * (pool + 1); n > limit {
		t.Fatalf("%d connections to the database, more than %d instances × (--db-max-conns %d + 1)", n, len(cl.nodes), pool)
	}
	t.Logf("%d concurrent clients; %d connections to the database (limit %d)", perInstance*len(cl.nodes), n, len(cl.nodes)*(pool+1))
}
