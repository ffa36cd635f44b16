package tus_test

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"path"
	"strconv"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/tus"
)

func sha1b64(b []byte) string {
	s := sha1.Sum(b)
	return "sha1 " + base64.StdEncoding.EncodeToString(s[:])
}

func sha256b64(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256 " + base64.StdEncoding.EncodeToString(s[:])
}

func TestChecksum(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db, "", tus.Config{})
		body := data(100, 4)
		loc := e.create("alice", "/", "sum.bin", 100)
		for _, tc := range []struct {
			what   string
			off    int
			chunk  []byte
			sum    string
			status int
			after  int64
		}{
			{"sha1 mismatch", 0, body[:50], sha1b64(body[1:51]), 460, 0},
			{"sha256 mismatch", 0, body[:50], sha256b64(body[:49]), 460, 0},
			{"unknown algorithm", 0, body[:50], "crc32 AAAAAA==", 400, 0},
			{"sha256 ok", 0, body[:50], sha256b64(body[:50]), 204, 50},
			{"sha1 mismatch later", 50, body[50:], sha1b64(body[:50]), 460, 50},
			{"sha1 ok", 50, body[50:], sha1b64(body[50:]), 204, 100},
		} {
			resp := e.patch("alice", loc, int64(tc.off), tc.chunk, map[string]string{"Upload-Checksum": tc.sum})
			wantStatus(t, tc.what, resp, tc.status)
			if off := e.offset("alice", loc); off != tc.after {
				t.Fatalf("%s: offset %d, want %d", tc.what, off, tc.after)
			}
		}
		_, got := e.file("/sum.bin")
		if !bytes.Equal(got, body) {
			t.Fatal("content differs")
		}
		// A creation-with-upload whose checksum fails leaves an empty
		// upload to retry.
		resp := e.req("alice", "POST", e.url(), map[string]string{"Upload-Length": "100",
			"Upload-Metadata": meta("filename", "sum2.bin"), "Content-Type": "application/offset+octet-stream",
			"Upload-Checksum": sha1b64(body[:99])}, bytes.NewReader(body))
		wantStatus(t, "creation checksum", resp, 460)
		loc = resp.Header.Get("Location")
		if off := e.offset("alice", loc); off != 0 {
			t.Fatalf("after failed creation checksum: offset %d", off)
		}
		e.absent("/sum2.bin")
		wantStatus(t, "retry", e.patch("alice", loc, 0, body, map[string]string{"Upload-Checksum": sha1b64(body)}), 204)
		e.file("/sum2.bin")
	})
}

func TestStaleOffsetAndOverlongBody(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db, "", tus.Config{})
		body := data(1000, 5)
		loc := e.create("alice", "/", "off.bin", 1000)
		wantStatus(t, "first", e.patch("alice", loc, 0, body[:400], nil), 204)
		wantStatus(t, "stale", e.patch("alice", loc, 0, data(400, 6), nil), 409)
		wantStatus(t, "ahead", e.patch("alice", loc, 500, body[500:], nil), 409)
		if off := e.offset("alice", loc); off != 400 {
			t.Fatalf("offset %d after refused PATCHes", off)
		}
		// Longer than the upload: refused with a length, and without one
		// (chunked) after reading, keeping nothing either way.
		wantStatus(t, "too long", e.patch("alice", loc, 400, append(body[400:], 1, 2, 3), nil), 413)
		resp := e.req("alice", "PATCH", loc, map[string]string{"Upload-Offset": "400",
			"Content-Type": "application/offset+octet-stream"}, io.MultiReader(bytes.NewReader(body[400:]), strings.NewReader("xyz")))
		wantStatus(t, "too long, chunked", resp, 413)
		if off := e.offset("alice", loc); off != 400 {
			t.Fatalf("offset %d after overlong PATCHes", off)
		}
		e.absent("/off.bin")
		wantStatus(t, "rest", e.patch("alice", loc, 400, body[400:], nil), 204)
		if _, got := e.file("/off.bin"); !bytes.Equal(got, body) {
			t.Fatal("content differs")
		}
		resp = e.req("alice", "POST", e.url(), map[string]string{"Upload-Length": "10",
			"Upload-Metadata": meta("filename", "long.bin"), "Content-Type": "application/offset+octet-stream"},
			bytes.NewReader(data(11, 1)))
		wantStatus(t, "creation too long", resp, 413)
		e.absent("/long.bin")
	})
}

func TestConcurrentPatches(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db, "", tus.Config{})
		body := data(2<<20, 7)
		loc := e.create("alice", "/", "race.bin", int64(len(body)))
		id := path.Base(loc)
		pr, pw := io.Pipe()
		first := make(chan *http.Response, 1)
		go func() {
			r, _ := http.NewRequest("PATCH", loc, pr)
			r.SetBasicAuth("alice", "x")
			r.Header.Set("Tus-Resumable", "1.0.0")
			r.Header.Set("Upload-Offset", "0")
			r.Header.Set("Content-Type", "application/offset+octet-stream")
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Error(err)
				first <- nil
				return
			}
			resp.Body.Close()
			first <- resp
		}()
		pw.Write(body[:64<<10])
		waitFor(t, "the first PATCH to hold the lock", func() bool { return tus.LockHeld(e.door, id) })
		other := data(len(body), 8)
		wantStatus(t, "second PATCH", e.patch("alice", loc, 0, other, nil), 423, 409)
		pw.Write(body[64<<10:])
		pw.Close()
		resp := <-first
		if resp == nil {
			t.FailNow()
		}
		wantStatus(t, "first PATCH", resp, 204)
		if _, got := e.file("/race.bin"); !bytes.Equal(got, body) {
			t.Fatal("content corrupted by the concurrent PATCH")
		}
	})
}

func TestConcatenation(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db, "", tus.Config{})
		e.mkdir("/c")
		a, b := data(3000, 1), data(5000, 2)
		partial := func(user string, body []byte) string {
			resp := e.req(user, "POST", e.url(), map[string]string{"Upload-Concat": "partial",
				"Upload-Length": strconv.Itoa(len(body))}, nil)
			wantStatus(t, "partial", resp, 201)
			loc := resp.Header.Get("Location")
			wantStatus(t, "partial bytes", e.patch(user, loc, 0, body, nil), 204)
			return loc
		}
		pa, pb := partial("alice", a), partial("alice", b)
		final := func(user, list, name string) *http.Response {
			return e.req(user, "POST", e.url(), map[string]string{"Upload-Concat": "final;" + list,
				"Upload-Metadata": meta("filename", name, "folder", "/c")}, nil)
		}
		// Someone else's parts are not found, whether listed by URL or path.
		wantStatus(t, "bob uses alice's parts", final("bob", pa+" "+pb, "x"), 404)
		wantStatus(t, "bob uses alice's part by path", final("bob", "/uploads/"+path.Base(pa), "x"), 404)
		normal := e.create("alice", "/", "normal", 10)
		wantStatus(t, "non-partial", final("alice", pa+" "+normal, "x"), 400)
		unfinished := e.req("alice", "POST", e.url(), map[string]string{"Upload-Concat": "partial", "Upload-Length": "10"}, nil)
		wantStatus(t, "unfinished part", final("alice", pa+" "+unfinished.Header.Get("Location"), "x"), 400)
		e.absent("/c/x")

		resp := final("alice", pa+" "+pb, "ab.bin")
		wantStatus(t, "final", resp, 201)
		n, got := e.file("/c/ab.bin")
		if !bytes.Equal(got, append(append([]byte{}, a...), b...)) {
			t.Fatal("concatenation differs")
		}
		again := final("alice", pa+" "+pb, "ab.bin")
		wantStatus(t, "retried final", again, 201)
		if again.Header.Get("Location") != resp.Header.Get("Location") {
			t.Fatalf("retry made a second upload: %s vs %s", again.Header.Get("Location"), resp.Header.Get("Location"))
		}
		if n2, _ := e.file("/c/ab.bin"); n2.ID != n.ID || n2.Version != 1 {
			t.Fatalf("retry rewrote the file: version %d", n2.Version)
		}
		head := e.req("alice", "HEAD", resp.Header.Get("Location"), nil, nil)
		if !strings.HasPrefix(head.Header.Get("Upload-Concat"), "final;") || head.Header.Get("Upload-Offset") != "8000" {
			t.Fatalf("HEAD of final: concat %q offset %q", head.Header.Get("Upload-Concat"), head.Header.Get("Upload-Offset"))
		}
		// The parts are used up.
		wantStatus(t, "reuse parts", final("alice", pb+" "+pa, "ba.bin"), 400)
		wantStatus(t, "PATCH final", e.patch("alice", resp.Header.Get("Location"), 8000, []byte{1}, nil), 403)
	})
}

func TestIDOR(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db, "", tus.Config{})
		body := data(100, 1)
		loc := e.create("alice", "/", "mine", 100)
		wantStatus(t, "alice", e.patch("alice", loc, 0, body[:30], nil), 204)
		for _, m := range []string{"HEAD", "PATCH", "DELETE", "GET"} {
			resp := e.req("bob", m, loc, map[string]string{"Upload-Offset": "30", "Content-Type": "application/offset+octet-stream"},
				bytes.NewReader(body[30:]))
			wantStatus(t, "bob "+m, resp, 404)
		}
		wantStatus(t, "anonymous", e.req("", "HEAD", loc, nil, nil), 401)
		for _, bad := range []string{"../../etc/passwd", "0123", strings.Repeat("g", 32), path.Base(loc) + "/x"} {
			wantStatus(t, "id "+bad, e.req("alice", "HEAD", e.url()+bad, nil, nil), 404)
		}
		if off := e.offset("alice", loc); off != 30 {
			t.Fatalf("alice's offset %d after bob's attempts", off)
		}
		wantStatus(t, "alice finishes", e.patch("alice", loc, 30, body[30:], nil), 204)
		if _, got := e.file("/mine"); !bytes.Equal(got, body) {
			t.Fatal("content differs")
		}
	})
}

func TestRevokedAccessStopsNextPatch(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db, "", tus.Config{})
		loc := e.create("alice", "/", "r", 100)
		wantStatus(t, "before", e.patch("alice", loc, 0, data(50, 1), nil), 204)
		e.authz.revoke("user:alice")
		wantStatus(t, "after revoke", e.patch("alice", loc, 50, data(50, 1), nil), 403)
		wantStatus(t, "create after revoke", e.req("alice", "POST", e.url(), map[string]string{
			"Upload-Length": "1", "Upload-Metadata": meta("filename", "r2")}, nil), 403)
		if off := e.offset("alice", loc); off != 50 {
			t.Fatalf("offset %d", off)
		}
		e.absent("/r")
	})
}

func TestLimits(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db, "", tus.Config{MaxSize: 1000})
		opt := e.req("", "OPTIONS", e.url(), nil, nil)
		if opt.Header.Get("Tus-Max-Size") != "1000" || !strings.Contains(opt.Header.Get("Tus-Extension"), "checksum") ||
			!strings.Contains(opt.Header.Get("Tus-Extension"), "expiration") || !strings.Contains(opt.Header.Get("Tus-Checksum-Algorithm"), "sha256") {
			t.Fatalf("OPTIONS: %v", opt.Header)
		}
		wantStatus(t, "over max", e.req("alice", "POST", e.url(), map[string]string{"Upload-Length": "1001",
			"Upload-Metadata": meta("filename", "big")}, nil), 413)
		e.create("alice", "/", "max", 1000)

		e.quotas["carol"] = 1000
		first := e.create("carol", "/", "q1", 600)
		wantStatus(t, "pending counts", e.req("carol", "POST", e.url(), map[string]string{"Upload-Length": "500",
			"Upload-Metadata": meta("filename", "q2")}, nil), 413)
		wantStatus(t, "finish q1", e.patch("carol", first, 0, data(600, 1), nil), 204)
		e.create("carol", "/", "q3", 400)
		wantStatus(t, "files count", e.req("carol", "POST", e.url(), map[string]string{"Upload-Length": "1",
			"Upload-Metadata": meta("filename", "q4")}, nil), 413)
	})
}

func TestMalformedHeaders(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db, "", tus.Config{})
		loc := e.create("alice", "/", "m", 100)
		e.mkdir("/sub")
		wantStatus(t, "file f", e.req("alice", "POST", e.url(), map[string]string{"Upload-Length": "1",
			"Upload-Metadata": meta("filename", "f"), "Content-Type": "application/offset+octet-stream"}, bytes.NewReader([]byte{1})), 201)
		post := func(h map[string]string) (string, string, map[string]string) {
			if _, ok := h["Upload-Length"]; !ok {
				h["Upload-Length"] = "10"
			}
			return "POST", e.url(), h
		}
		patch := func(h map[string]string) (string, string, map[string]string) {
			h["Content-Type"] = "application/offset+octet-stream"
			return "PATCH", loc, h
		}
		big := strings.Repeat("x", 7000)
		for _, tc := range []struct {
			what   string
			req    func(map[string]string) (string, string, map[string]string)
			hdr    map[string]string
			status int
		}{
			{"negative offset", patch, map[string]string{"Upload-Offset": "-1"}, 400},
			{"non-numeric offset", patch, map[string]string{"Upload-Offset": "12abc"}, 400},
			{"offset 2^63", patch, map[string]string{"Upload-Offset": "9223372036854775808"}, 400},
			{"missing offset", patch, map[string]string{}, 400},
			{"missing Tus-Resumable on PATCH", patch, map[string]string{"Upload-Offset": "0", "Tus-Resumable": ""}, 412},
			{"missing Tus-Resumable on POST", post, map[string]string{"Tus-Resumable": "", "Upload-Metadata": meta("filename", "a")}, 412},
			{"bad base64", post, map[string]string{"Upload-Metadata": "filename !!!not-base64"}, 400},
			{"metadata over 8 KiB", post, map[string]string{"Upload-Metadata": meta("filename", "a", "description", big)}, 400},
			{"filename with CR LF", post, map[string]string{"Upload-Metadata": meta("filename", "a\r\nSet-Cookie: x")}, 400},
			{"filename with slash", post, map[string]string{"Upload-Metadata": meta("filename", "a/b")}, 400},
			{"no filename", post, map[string]string{"Upload-Metadata": meta("folder", "/")}, 400},
			{"duplicate key", post, map[string]string{"Upload-Metadata": meta("filename", "a", "filename", "b")}, 400},
			{"traversal folder", post, map[string]string{"Upload-Metadata": meta("filename", "a", "folder", "/../etc")}, 400},
			{"missing folder", post, map[string]string{"Upload-Metadata": meta("filename", "a", "folder", "/nope")}, 409},
			{"name taken by a folder", post, map[string]string{"Upload-Metadata": meta("filename", "sub")}, 409},
			{"folder is a file", post, map[string]string{"Upload-Metadata": meta("filename", "a", "folder", "/f")}, 409},
			{"folder and parentId", post, map[string]string{"Upload-Metadata": meta("filename", "a", "folder", "/", "parentId", "root")}, 400},
			{"bad phi", post, map[string]string{"Upload-Metadata": meta("filename", "a", "phi", "maybe")}, 400},
			{"negative length", post, map[string]string{"Upload-Length": "-5", "Upload-Metadata": meta("filename", "a")}, 400},
			{"non-numeric length", post, map[string]string{"Upload-Length": "ten", "Upload-Metadata": meta("filename", "a")}, 400},
			{"bad checksum digest", patch, map[string]string{"Upload-Offset": "0", "Upload-Checksum": "sha1 notbase64!"}, 400},
			{"wrong content type", func(h map[string]string) (string, string, map[string]string) { return "PATCH", loc, h },
				map[string]string{"Upload-Offset": "0", "Content-Type": "text/plain"}, 400},
		} {
			m, u, h := tc.req(tc.hdr)
			r, _ := http.NewRequest(m, u, bytes.NewReader([]byte("0123456789")))
			r.SetBasicAuth("alice", "x")
			r.Header.Set("Tus-Resumable", "1.0.0")
			for k, v := range h {
				if v == "" {
					r.Header.Del(k)
				} else {
					r.Header.Set(k, v)
				}
			}
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || len(bytes.TrimSpace(msg)) == 0 {
				t.Errorf("%s: %s %q, want %d with a message", tc.what, resp.Status, msg, tc.status)
			}
		}
		if off := e.offset("alice", loc); off != 0 {
			t.Fatalf("offset %d after malformed requests", off)
		}
	})
}

func TestIETFDraft(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db, "", tus.Config{})
		body := data(5000, 3)
		resp := e.req("alice", "POST", e.url(), map[string]string{"Upload-Draft-Interop-Version": "6",
			"Upload-Complete": "?1", "Content-Disposition": `attachment; filename="ietf.bin"`, "Tus-Resumable": ""},
			bytes.NewReader(body))
		wantStatus(t, "IETF creation", resp, 201)
		if _, got := e.file("/ietf.bin"); !bytes.Equal(got, body) {
			t.Fatal("content differs")
		}
		resp = e.req("alice", "POST", e.url(), map[string]string{"Upload-Draft-Interop-Version": "6",
			"Upload-Complete": "?0", "Upload-Metadata": meta("filename", "ietf2.bin"), "Tus-Resumable": ""},
			bytes.NewReader(body[:2000]))
		wantStatus(t, "IETF incomplete creation", resp, 201)
		loc := resp.Header.Get("Location")
		resp = e.req("alice", "HEAD", loc, map[string]string{"Upload-Draft-Interop-Version": "6", "Tus-Resumable": ""}, nil)
		wantStatus(t, "IETF HEAD", resp, 204)
		if resp.Header.Get("Upload-Offset") != "2000" || resp.Header.Get("Upload-Complete") != "?0" {
			t.Fatalf("IETF HEAD: offset %q complete %q", resp.Header.Get("Upload-Offset"), resp.Header.Get("Upload-Complete"))
		}
		resp = e.req("alice", "PATCH", loc, map[string]string{"Upload-Draft-Interop-Version": "6", "Tus-Resumable": "",
			"Upload-Offset": "2000", "Upload-Complete": "?1", "Content-Type": "application/partial-upload"},
			bytes.NewReader(body[2000:]))
		wantStatus(t, "IETF append", resp, 204)
		if _, got := e.file("/ietf2.bin"); !bytes.Equal(got, body) {
			t.Fatal("content differs")
		}
	})
}
