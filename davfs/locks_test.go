package davfs_test

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"
	"golang.org/x/net/webdav"

	"github.com/filegate/filegate/davfs"
	"github.com/filegate/filegate/model/dbtest"
)

const lockBody = `<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:%s/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner><D:href>mailto:alice@example.com</D:href></D:owner></D:lockinfo>`

var timeoutRE = regexp.MustCompile(`<D:timeout>Second-([0-9]+)</D:timeout>`)

// lock takes a lock and returns the status, the token and the granted
// timeout in seconds.
func (e *env) lock(a auth, p, scope string, hdr map[string]string) (int, string, string) {
	e.t.Helper()
	code, h, body := e.do(a, "LOCK", p, strings.NewReader(strings.Replace(lockBody, "%s", scope, 1)), hdr)
	tok := strings.Trim(h.Get("Lock-Token"), "<>")
	var secs string
	if m := timeoutRE.FindStringSubmatch(body); m != nil {
		secs = m[1]
	}
	return code, tok, secs
}

// wantTimeout checks that lock tok was granted timeout want, and that
// secs, the Second-N of the answer to a request sent at before and
// answered by after, is the time the lock had left when the answer was
// written. The server counts the timeout from when it starts taking the
// lock, before it writes the row (which waits for the database), so on a
// loaded machine N may be short of want: N is checked against the stored
// expiry and the time the request took, never against the wall clock
// alone.
func (e *env) wantTimeout(what, tok, secs string, before, after time.Time, want time.Duration) {
	e.t.Helper()
	l, err := e.fs.Locks().Get(context.Background(), tok)
	if err != nil || l.Timeout != want {
		e.t.Fatalf("%s: stored lock %+v, %v; want timeout %v", what, l, err, want)
	}
	// The expiry is stored in milliseconds, and the lock was taken
	// between before and after.
	if l.Expires.Before(before.Add(want).Truncate(time.Millisecond)) || l.Expires.After(after.Add(want)) {
		e.t.Fatalf("%s: lock expires at %v, want %v after a moment between %v and %v", what, l.Expires, want, before, after)
	}
	n, err := strconv.Atoi(secs)
	left := time.Duration(n) * time.Second
	// The answer was written after the lock was taken (so at most want
	// was left) and before after (so at least the stored expiry minus
	// after, rounded as the server rounds).
	if err != nil || left > want || left < l.Expires.Sub(after).Round(time.Second) {
		e.t.Fatalf("%s: answer says Second-%s for a lock of %v expiring at %v, answered by %v", what, secs, want, l.Expires, after)
	}
}

func TestLocks(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db)
		alice := e.admin("alice")
		bob := e.admin("bob")
		e.file(e.root, "doc.txt", "v1")
		e.folder(e.root, "coll")

		// Exclusive: a second lock fails, writes without the token fail,
		// writes by another principal holding the token fail.
		before := time.Now()
		code, tok, secs := e.lock(alice, "/doc.txt", "exclusive", map[string]string{"Timeout": "Second-99999999"})
		if code != 200 || !strings.HasPrefix(tok, "opaquelocktoken:") {
			t.Fatalf("LOCK: %d %q timeout %s", code, tok, secs)
		}
		e.wantTimeout("LOCK", tok, secs, before, time.Now(), davfs.MaxLockTimeout)
		if code, _, _ := e.lock(bob, "/doc.txt", "shared", nil); code != 423 {
			t.Fatalf("second lock on exclusive: %d", code)
		}
		ifTok := map[string]string{"If": "(<" + tok + ">)"}
		checks := []struct {
			who    auth
			method string
			hdr    map[string]string
			want   int
		}{
			{alice, "PUT", nil, 423},
			{bob, "PUT", ifTok, 423}, // a token is bound to its owner
			{alice, "PUT", map[string]string{"If": `(["wrong-etag"])`}, 412},
			{alice, "PUT", ifTok, 204},
			{alice, "PROPPATCH", nil, 423},
			{alice, "DELETE", nil, 423},
		}
		for _, c := range checks {
			var body io.Reader = strings.NewReader("v2")
			if c.method == "PROPPATCH" {
				body = strings.NewReader(`<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><x xmlns="y:">1</x></D:prop></D:set></D:propertyupdate>`)
			}
			if code, _, _ := e.do(c.who, c.method, "/doc.txt", body, c.hdr); code != c.want {
				t.Errorf("%s %s %v: %d, want %d", c.who.user, c.method, c.hdr, code, c.want)
			}
		}
		// Refresh keeps the token and caps the timeout; Infinite is capped too.
		before = time.Now()
		code, h, body := e.do(alice, "LOCK", "/doc.txt", nil, map[string]string{"If": "(<" + tok + ">)", "Timeout": "Infinite"})
		m := timeoutRE.FindStringSubmatch(body)
		if code != 200 || !strings.Contains(body, tok) || m == nil || h.Get("Lock-Token") != "" {
			t.Fatalf("refresh: %d %s", code, body)
		}
		e.wantTimeout("refresh", tok, m[1], before, time.Now(), davfs.MaxLockTimeout)
		// Unlock by another principal is refused; by the owner it works.
		if code, _, _ := e.do(bob, "UNLOCK", "/doc.txt", nil, map[string]string{"Lock-Token": "<" + tok + ">"}); code != 403 {
			t.Fatalf("UNLOCK by another: %d", code)
		}
		if code, _, _ := e.do(alice, "UNLOCK", "/doc.txt", nil, map[string]string{"Lock-Token": "<" + tok + ">"}); code != 204 {
			t.Fatalf("UNLOCK: %d", code)
		}

		// Shared: two holders, each may write with its own token.
		c1, t1, _ := e.lock(alice, "/doc.txt", "shared", nil)
		c2, t2, _ := e.lock(bob, "/doc.txt", "shared", nil)
		if c1 != 200 || c2 != 200 || t1 == t2 {
			t.Fatalf("shared locks: %d %d", c1, c2)
		}
		if code, _, _ := e.lock(alice, "/doc.txt", "exclusive", nil); code != 423 {
			t.Fatalf("exclusive over shared: %d", code)
		}
		if code, _, _ := e.do(bob, "PUT", "/doc.txt", strings.NewReader("v3"), map[string]string{"If": "(<" + t2 + ">)"}); code != 204 {
			t.Fatalf("PUT with a shared token: %d", code)
		}
		// PROPFIND shows both in lockdiscovery.
		_, _, body = e.do(alice, "PROPFIND", "/doc.txt", strings.NewReader(`<D:propfind xmlns:D="DAV:"><D:prop><D:lockdiscovery/></D:prop></D:propfind>`), map[string]string{"Depth": "0"})
		if !strings.Contains(body, t1) || !strings.Contains(body, t2) || !strings.Contains(body, "mailto:alice@example.com") {
			t.Fatalf("lockdiscovery: %s", body)
		}
		// DELETE by a holder releases every lock on the resource.
		if code, _, _ := e.do(alice, "DELETE", "/doc.txt", nil, map[string]string{"If": "(<" + t1 + ">)"}); code != 204 {
			t.Fatalf("DELETE with token: %d", code)
		}
		if locks, _ := e.fs.Locks().Covering(context.Background(), "/doc.txt"); len(locks) != 0 {
			t.Fatalf("DELETE left locks: %v", locks)
		}

		// A depth-infinity lock on a folder covers new members; MOVE out
		// of it needs the token and releases the locks of what moved.
		code, ctok, _ := e.lock(alice, "/coll", "exclusive", nil)
		if code != 200 {
			t.Fatalf("collection LOCK: %d", code)
		}
		if code, _, _ := e.do(alice, "PUT", "/coll/new.txt", strings.NewReader("x"), nil); code != 423 {
			t.Fatalf("PUT into locked folder: %d", code)
		}
		if code, _, _ := e.do(alice, "PUT", "/coll/new.txt", strings.NewReader("x"), map[string]string{"If": "(<" + ctok + ">)"}); code != 201 {
			t.Fatalf("PUT into locked folder with token: %d", code)
		}
		if code, _, _ := e.lock(bob, "/coll/new.txt", "exclusive", nil); code != 423 {
			t.Fatalf("lock under a depth-infinity lock: %d", code)
		}
		if code, _, _ := e.do(alice, "MOVE", "/coll", nil, map[string]string{"Destination": "/dav/moved", "If": "(<" + ctok + ">)"}); code != 201 {
			t.Fatalf("MOVE of locked folder: %d", code)
		}
		for _, p := range []string{"/coll", "/moved", "/moved/new.txt"} {
			if locks, _ := e.fs.Locks().Covering(context.Background(), p); len(locks) != 0 {
				t.Fatalf("locks left at %s after MOVE: %v", p, locks)
			}
		}
		// Locking an unmapped name creates an empty file.
		if code, _, _ := e.lock(alice, "/fresh.txt", "exclusive", nil); code != 201 {
			t.Fatalf("LOCK unmapped: %d", code)
		}
		if n := e.live("/fresh.txt"); n.Size != 0 || n.IsDir {
			t.Fatalf("lock-created node: %+v", n)
		}
	})
}

// TestLocksSharedAcrossInstances runs two handlers on one database, as two
// filegate instances would: a lock taken through one binds the other.
func TestLocksSharedAcrossInstances(t *testing.T) {
	db := dbtest.Open(t, dbtest.Postgres)
	one, two := newEnv(t, db), newEnv(t, db)
	a := one.admin("alice")
	one.file(one.root, "shared.txt", "x")
	if err := two.authz.Reload(context.Background()); err != nil { // Run would poll this in
		t.Fatal(err)
	}
	code, tok, _ := one.lock(a, "/shared.txt", "exclusive", nil)
	if code != 200 {
		t.Fatalf("LOCK on one: %d", code)
	}
	if code, _, _ := two.do(a, "PUT", "/shared.txt", strings.NewReader("y"), nil); code != 423 {
		t.Fatalf("PUT on two without token: %d", code)
	}
	if code, _, _ := two.lock(a, "/shared.txt", "shared", nil); code != 423 {
		t.Fatalf("LOCK on two: %d", code)
	}
	if code, _, _ := two.do(a, "UNLOCK", "/shared.txt", nil, map[string]string{"Lock-Token": "<" + tok + ">"}); code != 204 {
		t.Fatalf("UNLOCK on two: %d", code)
	}
	if code, _, _ := one.do(a, "PUT", "/shared.txt", strings.NewReader("z"), nil); code != 204 {
		t.Fatalf("PUT on one after unlock on two: %d", code)
	}
}

// TestStockHandlerOverFS checks that FS and LockSystem satisfy
// x/net/webdav's interfaces well enough for its own handler, including
// that a PUT whose body fails midway commits nothing.
func TestStockHandlerOverFS(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db)
		h := &webdav.Handler{Prefix: "/x", FileSystem: e.fs, LockSystem: e.fs.Locks()}
		do := func(method, p string, body io.Reader, hdr map[string]string) (int, string) {
			req, _ := http.NewRequest(method, "http://h/x"+p, body)
			for k, v := range hdr {
				req.Header.Set(k, v)
			}
			rec := &recorder{header: http.Header{}}
			h.ServeHTTP(rec, req.WithContext(davfs.WithActor(req.Context(), davfs.Actor{Subject: "user:x", ID: "x"})))
			return rec.code, rec.body.String()
		}
		steps := []struct {
			method, path, body string
			hdr                map[string]string
			want               int
		}{
			{"MKCOL", "/d", "", nil, 201},
			{"PUT", "/d/f.txt", "hello", nil, 201},
			{"GET", "/d/f.txt", "", nil, 200},
			{"PROPFIND", "/d/", "", map[string]string{"Depth": "1"}, 207},
			{"MOVE", "/d/f.txt", "", map[string]string{"Destination": "http://h/x/d/g.txt"}, 201},
			{"DELETE", "/d/g.txt", "", nil, 204},
		}
		for _, s := range steps {
			if code, body := do(s.method, s.path, strings.NewReader(s.body), s.hdr); code != s.want {
				t.Fatalf("%s %s: %d, want %d: %s", s.method, s.path, code, s.want, body)
			}
		}
		e.file(e.live("/d"), "keep.txt", "old")
		code, _ := do("PUT", "/d/keep.txt", io.MultiReader(strings.NewReader("partial"), failingReader{}), nil)
		if code < 400 {
			t.Fatalf("PUT with failing body: %d", code)
		}
		if got := e.content(e.live("/d/keep.txt")); got != "old" {
			t.Fatalf("failing body through x/net committed: %q", got)
		}
	})
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

type recorder struct {
	header http.Header
	code   int
	body   strings.Builder
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(c int) {
	if r.code == 0 {
		r.code = c
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = 200
	}
	return r.body.Write(b)
}

// TestLocksFollowOtherDoors moves, archives and purges locked nodes
// through the repository, as the files API does, and checks that the
// database released their locks (and only theirs).
func TestLocksFollowOtherDoors(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db)
		a := e.admin("alice")
		ctx := context.Background()
		d := e.folder(e.root, "d")
		moved := e.file(d, "moved.txt", "x")
		archived := e.file(d, "archived.txt", "x")
		purged := e.file(d, "purged.txt", "x")
		e.file(d, "kept.txt", "x")
		e.folder(e.root, "elsewhere")
		for _, p := range []string{"/d/moved.txt", "/d/archived.txt", "/d/purged.txt", "/d/kept.txt"} {
			if code, _, _ := e.lock(a, p, "exclusive", nil); code != 200 {
				t.Fatalf("LOCK %s: %d", p, code)
			}
		}
		if _, _, err := e.repo.Move(ctx, moved, e.live("/elsewhere"), "moved.txt", false); err != nil {
			t.Fatal(err)
		}
		if _, err := e.repo.Archive(ctx, archived.ID); err != nil {
			t.Fatal(err)
		}
		if err := e.store.Purge(ctx, purged.ID); err != nil {
			t.Fatal(err)
		}
		for p, want := range map[string]int{"/d/moved.txt": 0, "/elsewhere/moved.txt": 0, "/d/archived.txt": 0, "/d/purged.txt": 0, "/d/kept.txt": 1} {
			if locks, _ := e.fs.Locks().Covering(ctx, p); len(locks) != want {
				t.Errorf("%s: %d locks, want %d", p, len(locks), want)
			}
		}
		// A folder moved away takes the locks below it along... away.
		if code, _, _ := e.lock(a, "/d", "exclusive", nil); code != 423 {
			t.Fatalf("kept.txt's lock should still block a depth-infinity lock on /d: %d", code)
		}
		if _, _, err := e.repo.Move(ctx, d, e.live("/elsewhere"), "d", false); err != nil {
			t.Fatal(err)
		}
		if locks, _ := e.fs.Locks().Within(ctx, "/"); len(locks) != 0 {
			t.Fatalf("locks left after moving the folder: %v", locks)
		}
	})
}
