package gateway_test

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model/dbtest"
)

const davLockBody = `<?xml version="1.0" encoding="utf-8"?>
<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype>
<D:owner>editor</D:owner></D:lockinfo>`

// TestAPIHonoursWebDAVLocks locks a document over WebDAV, as an editor
// opening it does, and checks that the files API can then neither replace,
// delete nor move it, nor add a file to a locked folder (423, code
// "locked"), and that all of it works again once the lock is released.
func TestAPIHonoursWebDAVLocks(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newAPIEnv(t, db)
		dirs := e.folders("/w", "/w/inbox", "/elsewhere")
		e.grant(as("admin"), dirs["/w"], map[string]any{"user": "alice", "level": "full"})
		e.grant(as("admin"), dirs["/elsewhere"], map[string]any{"user": "alice", "level": "full"})
		m, _ := e.upload(as("alice"), "report.pdf", "v1", "folder", "/w")

		lock := func(path, depth string) string {
			t.Helper()
			r := e.do(as("alice"), "LOCK", "/dav"+path, strings.NewReader(davLockBody), "Depth", depth, "Content-Type", "application/xml")
			e.want(r, http.StatusOK)
			return r.header.Get("Lock-Token")
		}
		unlock := func(path, tok string) {
			t.Helper()
			e.want(e.do(as("alice"), "UNLOCK", "/dav"+path, nil, "Lock-Token", tok), http.StatusNoContent)
		}
		locked := func(r result) {
			t.Helper()
			e.want(r, http.StatusLocked)
			if code := errorCode(r.body); code != "locked" {
				t.Fatalf("code %q, want locked: %s", code, r.body)
			}
		}
		file := "/api/v1/files/" + m.ID

		tok := lock("/w/report.pdf", "0")
		locked(e.do(as("alice"), http.MethodPut, file+"/content", strings.NewReader("v2")))
		locked(e.do(as("alice"), http.MethodDelete, file, nil))
		locked(e.doJSON(as("alice"), http.MethodPatch, file, map[string]any{"name": "renamed.pdf"}))
		locked(e.doJSON(as("alice"), http.MethodPatch, file, map[string]any{"folder": "/elsewhere"}))
		// Metadata that is not the file's place or bytes stays editable.
		e.want(e.doJSON(as("alice"), http.MethodPatch, file, map[string]any{"title": "Q3"}), http.StatusOK)
		if got := e.do(as("alice"), http.MethodGet, file+"/content", nil); string(got.body) != "v1" {
			t.Fatalf("the locked file changed: %q", got.body)
		}
		unlock("/w/report.pdf", tok)
		e.want(e.do(as("alice"), http.MethodPut, file+"/content", strings.NewReader("v2")), http.StatusOK)

		// A depth-infinity lock on a folder protects what is below it, and
		// a lock on a folder its membership.
		tok = lock("/w/inbox", "infinity")
		locked(e.uploadRaw(as("alice"), "new.pdf", "x", "folder", "/w/inbox"))
		locked(e.do(as("alice"), http.MethodDelete, "/api/v1/files/"+dirs["/w"], nil))
		unlock("/w/inbox", tok)
		e.upload(as("alice"), "new.pdf", "x", "folder", "/w/inbox")
		e.want(e.do(as("alice"), http.MethodDelete, file, nil), http.StatusNoContent)
	})
}

// TestAPIReplaceStopsForALockTakenMidBody starts a content replacement
// through the files API whose body is slow, lets bob LOCK the file over
// WebDAV once the server is streaming the body, then finishes the body.
// The lock was granted before the new content was complete, so the
// replacement must not land: 423 locked, and the old bytes stay, as for a
// WebDAV PUT (davfs's TestLockTakenDuringUpload).
func TestAPIReplaceStopsForALockTakenMidBody(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newAPIEnv(t, db)
		dirs := e.folders("/m")
		for _, u := range []string{"alice", "bob"} {
			e.grant(as("admin"), dirs["/m"], map[string]any{"user": u, "level": "full"})
		}
		m, _ := e.upload(as("alice"), "scan.dcm", "v1", "folder", "/m")
		pr, pw := io.Pipe()
		t.Cleanup(func() { pw.CloseWithError(io.ErrUnexpectedEOF) })
		got := make(chan result, 1)
		go func() {
			req, _ := http.NewRequest(http.MethodPut, e.ts.URL+"/api/v1/files/"+m.ID+"/content", pr)
			as("alice")(req)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				got <- result{status: -1}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got <- result{status: resp.StatusCode, body: b}
		}()
		if _, err := pw.Write(bytes.Repeat([]byte("n"), 64<<10)); err != nil {
			t.Fatal(err)
		}
		// The server opens its temporary blob once the request passed its
		// checks and is streaming.
		tmp := filepath.Join(e.blobDir, "tmp")
		deadline := time.Now().Add(30 * time.Second)
		for {
			if ents, _ := os.ReadDir(tmp); len(ents) > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the server never started writing the body")
			}
			time.Sleep(5 * time.Millisecond)
		}
		e.want(e.do(as("bob"), "LOCK", "/dav/m/scan.dcm", strings.NewReader(davLockBody), "Depth", "0", "Content-Type", "application/xml"), http.StatusOK)
		pw.Write(bytes.Repeat([]byte("n"), 64<<10))
		pw.Close()
		r := <-got
		if r.status != http.StatusLocked || errorCode(r.body) != "locked" {
			t.Fatalf("replacement after a lock: %d %s, want 423 locked", r.status, r.body)
		}
		if cur := e.do(as("alice"), http.MethodGet, "/api/v1/files/"+m.ID+"/content", nil); string(cur.body) != "v1" {
			t.Fatalf("the locked file changed: %.20q", cur.body)
		}
	})
}
