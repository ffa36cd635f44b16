package davfs_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/dbtest"
)

func TestPutGetConditional(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db)
		a := e.admin("alice")
		code, hdr, _ := e.do(a, "PUT", "/report.txt", strings.NewReader("hello world"), nil)
		if code != http.StatusCreated || hdr.Get("ETag") == "" {
			t.Fatalf("PUT new: %d etag %q", code, hdr.Get("ETag"))
		}
		etag := hdr.Get("ETag")
		n := e.live("/report.txt")
		if n.ETag != etag || n.Size != 11 || n.CreatorID == "" {
			t.Fatalf("node after PUT: %+v", n)
		}
		tests := []struct {
			name   string
			method string
			hdr    map[string]string
			status int
			body   string
		}{
			{"plain GET", "GET", nil, 200, "hello world"},
			{"range", "GET", map[string]string{"Range": "bytes=6-10"}, 206, "world"},
			{"if-none-match hit", "GET", map[string]string{"If-None-Match": etag}, 304, ""},
			{"if-none-match miss", "GET", map[string]string{"If-None-Match": `"other"`}, 200, "hello world"},
			{"if-match miss", "GET", map[string]string{"If-Match": `"other"`}, 412, ""},
			{"if-modified-since later", "GET", map[string]string{"If-Modified-Since": time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)}, 304, ""},
			{"head", "HEAD", nil, 200, ""},
		}
		for _, tt := range tests {
			code, hdr, body := e.do(a, tt.method, "/report.txt", nil, tt.hdr)
			if code != tt.status || body != tt.body {
				t.Errorf("%s: %d %q, want %d %q", tt.name, code, body, tt.status, tt.body)
			}
			if code == 200 && (hdr.Get("ETag") != etag || hdr.Get("Last-Modified") == "") {
				t.Errorf("%s: validators missing: %v", tt.name, hdr)
			}
		}
		// Replacing keeps the node (and so its grants) and answers 204.
		code, hdr, _ = e.do(a, "PUT", "/report.txt", strings.NewReader("second"), map[string]string{"If-Match": etag})
		if code != http.StatusNoContent || hdr.Get("ETag") == etag {
			t.Fatalf("PUT replace: %d %v", code, hdr)
		}
		if m := e.live("/report.txt"); m.ID != n.ID || e.content(m) != "second" {
			t.Fatalf("replace changed the id or lost the content: %+v", m)
		}
		// A stale If-Match and If-None-Match: * on an existing file change nothing.
		for _, h := range []map[string]string{{"If-Match": etag}, {"If-None-Match": "*"}} {
			if code, _, _ := e.do(a, "PUT", "/report.txt", strings.NewReader("third"), h); code != 412 {
				t.Fatalf("PUT with %v: %d, want 412", h, code)
			}
		}
		if got := e.content(e.live("/report.txt")); got != "second" {
			t.Fatalf("content after refused PUTs = %q", got)
		}
		// X-OC-Mtime sets the modification time.
		code, hdr, _ = e.do(a, "PUT", "/mtime.bin", strings.NewReader("x"), map[string]string{"X-OC-Mtime": "1500000000"})
		if code != 201 || hdr.Get("X-OC-MTime") != "accepted" {
			t.Fatalf("PUT with X-OC-Mtime: %d %v", code, hdr)
		}
		if got := e.live("/mtime.bin").ModTime.Unix(); got != 1500000000 {
			t.Fatalf("mod time = %d", got)
		}
		// PUT onto a folder, into a missing folder, and under a file.
		e.do(a, "MKCOL", "/dir", nil, nil)
		for p, want := range map[string]int{"/dir": 405, "/missing/x.txt": 409, "/mtime.bin/x.txt": 409} {
			if code, _, _ := e.do(a, "PUT", p, strings.NewReader("x"), nil); code != want {
				t.Errorf("PUT %s: %d, want %d", p, code, want)
			}
		}
	})
}

// sendRaw writes a raw request on a new connection and returns the
// status code of the answer (0 when the server closed without one).
func sendRaw(t *testing.T, e *env, req string) int {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(e.ts.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// The answer is read while the request is still being written: a
	// server may refuse a large body early and close the connection, and
	// the client must not lose that answer to the reset of its writes.
	sent := make(chan error, 1)
	go func() {
		_, err := io.WriteString(c, req)
		sent <- err
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		if werr := <-sent; werr != nil {
			t.Fatalf("request not sent (%v) and no answer (%v)", werr, err)
		}
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func basicHeader(a auth) string {
	r, _ := http.NewRequest("GET", "/", nil)
	r.SetBasicAuth(a.user, a.pass)
	return "Authorization: " + r.Header.Get("Authorization") + "\r\n"
}

// TestAbortedPutKeepsOldContent cuts PUT bodies off midway (fixed length
// and chunked) and cancels one; the old content must still be served and
// the node unchanged.
func TestAbortedPutKeepsOldContent(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db)
		a := e.admin("alice")
		old := e.file(e.root, "scan.dcm", "original bytes")
		partial := strings.Repeat("n", 100<<10)
		cases := map[string]string{
			"content-length": "PUT /dav/scan.dcm HTTP/1.1\r\nHost: x\r\n" + basicHeader(a) +
				"Content-Length: 1048576\r\n\r\n" + partial,
			"chunked": "PUT /dav/scan.dcm HTTP/1.1\r\nHost: x\r\n" + basicHeader(a) +
				"Transfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x\r\n%s\r\n", len(partial), partial),
		}
		for name, req := range cases {
			c, err := net.Dial("tcp", strings.TrimPrefix(e.ts.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			before := e.finished.Load()
			io.WriteString(c, req)
			c.Close()
			e.waitFinished(before + 1) // the handler has seen the cut and returned
			if n := e.live("/scan.dcm"); n.Version != old.Version || n.BlobKey != old.BlobKey {
				t.Fatalf("%s: an aborted PUT changed the file: %+v", name, n)
			}
			code, _, body := e.do(a, "GET", "/scan.dcm", nil, nil)
			if code != 200 || body != "original bytes" {
				t.Fatalf("%s: after aborted PUT GET = %d %q", name, code, body)
			}
		}
		// A request cancelled by the client midway.
		ctx, cancel := context.WithCancel(context.Background())
		pr, pw := io.Pipe()
		req, _ := http.NewRequestWithContext(ctx, "PUT", e.url("/scan.dcm"), pr)
		req.SetBasicAuth(a.user, a.pass)
		req.ContentLength = 1 << 20
		before := e.finished.Load()
		done := make(chan error, 1)
		go func() {
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		pw.Write([]byte(partial))
		cancel()
		pw.CloseWithError(context.Canceled)
		<-done
		e.waitFinished(before + 1)
		if n := e.live("/scan.dcm"); n.BlobKey != old.BlobKey || e.content(n) != "original bytes" {
			t.Fatalf("cancelled PUT changed the file: %+v", n)
		}
	})
}

func TestMkcolDeleteMoveCopy(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db)
		a := e.admin("alice")
		steps := []struct {
			method, path string
			hdr          map[string]string
			body         string
			want         int
		}{
			{"MKCOL", "/a", nil, "", 201},
			{"MKCOL", "/a", nil, "", 405},
			{"MKCOL", "/x/y", nil, "", 409},
			{"MKCOL", "/b", nil, "<x/>", 415},
			{"PUT", "/a/one.txt", nil, "one", 201},
			{"MKCOL", "/a/one.txt/sub", nil, "", 409},
			{"COPY", "/a/one.txt", map[string]string{"Destination": "/dav/a/two.txt"}, "", 201},
			{"COPY", "/a/one.txt", map[string]string{"Destination": "/dav/a/two.txt", "Overwrite": "F"}, "", 412},
			{"COPY", "/a/one.txt", map[string]string{"Destination": "/dav/a/two.txt"}, "", 204},
			{"COPY", "/a", map[string]string{"Destination": "/dav/shallow", "Depth": "0"}, "", 201},
			{"COPY", "/a", map[string]string{"Destination": "/dav/deep"}, "", 201},
			{"COPY", "/a", map[string]string{"Destination": "/dav/a/inside"}, "", 403},
			{"COPY", "/a/one.txt", map[string]string{"Destination": "/dav/nowhere/x"}, "", 409},
			{"MOVE", "/a/two.txt", map[string]string{"Destination": "/dav/moved.txt"}, "", 201},
			{"MOVE", "/moved.txt", map[string]string{"Destination": "/dav/a/one.txt", "Overwrite": "F"}, "", 412},
			{"MOVE", "/a", map[string]string{"Destination": "/dav/a/inside"}, "", 403},
			{"MOVE", "/a", map[string]string{"Destination": "/dav/a", "Depth": "0"}, "", 400},
			{"DELETE", "/deep", nil, "", 204},
			{"DELETE", "/deep", nil, "", 404},
			{"DELETE", "/", nil, "", 403},
		}
		for _, s := range steps {
			var body io.Reader
			if s.body != "" {
				body = strings.NewReader(s.body)
			}
			if code, _, resp := e.do(a, s.method, s.path, body, s.hdr); code != s.want {
				t.Fatalf("%s %s %v: %d, want %d (%s)", s.method, s.path, s.hdr, code, s.want, resp)
			}
		}
		if kids, _ := e.repo.Children(context.Background(), e.live("/shallow").ID, model.ListOptions{}); len(kids) != 0 {
			t.Fatalf("Depth 0 COPY copied members: %d", len(kids))
		}
		// MOVE changes metadata only: same node, same blob.
		src := e.live("/moved.txt")
		if code, _, _ := e.do(a, "MOVE", "/moved.txt", nil, map[string]string{"Destination": e.url("/a/renamed.txt")}); code != 201 {
			t.Fatalf("MOVE with absolute Destination: %d", code)
		}
		dst := e.live("/a/renamed.txt")
		if dst.ID != src.ID || dst.BlobKey != src.BlobKey {
			t.Fatalf("MOVE copied: %+v -> %+v", src, dst)
		}
		// DELETE archives: the node is restorable.
		gone := e.live("/a")
		if code, _, _ := e.do(a, "DELETE", "/a", nil, nil); code != 204 {
			t.Fatal("DELETE /a")
		}
		if n, err := e.repo.NodeByID(context.Background(), gone.ID); err != nil || !n.Archived() {
			t.Fatalf("DELETE did not archive: %v %+v", err, n)
		}
		if code, _, _ := e.do(a, "PROPFIND", "/a/renamed.txt", nil, map[string]string{"Depth": "0"}); code != 404 {
			t.Fatalf("archived file still visible: %d", code)
		}
		if _, err := e.repo.Restore(context.Background(), gone.ID); err != nil {
			t.Fatal(err)
		}
		if code, _, body := e.do(a, "GET", "/a/renamed.txt", nil, nil); code != 200 || body != "one" {
			t.Fatalf("restored file: %d %q", code, body)
		}
	})
}

func TestPropertiesAndModTime(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db)
		a := e.admin("alice")
		e.file(e.root, "f.txt", "x")
		patch := `<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:schemas-microsoft-com:" xmlns:e="http://example.com/ns">
<D:set><D:prop><e:color xml:lang="en">blue &amp; <e:b>bold</e:b></e:color>
<D:getlastmodified>Wed, 01 Jan 2020 10:00:00 GMT</D:getlastmodified></D:prop></D:set></D:propertyupdate>`
		code, _, body := e.do(a, "PROPPATCH", "/f.txt", strings.NewReader(patch), nil)
		if code != 207 || strings.Count(body, "200 OK") != 1 {
			t.Fatalf("PROPPATCH: %d %s", code, body)
		}
		if got := e.live("/f.txt").ModTime; !got.Equal(time.Date(2020, 1, 1, 10, 0, 0, 0, time.UTC)) {
			t.Fatalf("getlastmodified not applied: %v", got)
		}
		find := `<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><color xmlns="http://example.com/ns"/><D:getlastmodified/><nope xmlns="x:"/></D:prop></D:propfind>`
		code, _, body = e.do(a, "PROPFIND", "/f.txt", strings.NewReader(find), map[string]string{"Depth": "0"})
		for _, want := range []string{`<color xmlns="http://example.com/ns" xml:lang="en">blue &amp; <b xmlns="http://example.com/ns">bold</b></color>`,
			"Wed, 01 Jan 2020 10:00:00 GMT", `<nope xmlns="x:"/>`, "404 Not Found"} {
			if code != 207 || !strings.Contains(body, want) {
				t.Fatalf("PROPFIND lacks %q: %d %s", want, code, body)
			}
		}
		// Win32LastModifiedTime (Windows) sets the time too; protected
		// properties fail the whole request.
		win := `<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:schemas-microsoft-com:"><D:set><D:prop>
<Z:Win32LastModifiedTime>Thu, 02 Jan 2020 10:00:00 GMT</Z:Win32LastModifiedTime></D:prop></D:set></D:propertyupdate>`
		if code, _, _ := e.do(a, "PROPPATCH", "/f.txt", strings.NewReader(win), nil); code != 207 {
			t.Fatal("Win32 PROPPATCH")
		}
		if got := e.live("/f.txt").ModTime; got.Day() != 2 {
			t.Fatalf("Win32LastModifiedTime not applied: %v", got)
		}
		bad := `<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><D:getetag>x</D:getetag><x xmlns="y:">1</x></D:prop></D:set></D:propertyupdate>`
		code, _, body = e.do(a, "PROPPATCH", "/f.txt", strings.NewReader(bad), nil)
		if code != 207 || !strings.Contains(body, "403 Forbidden") || !strings.Contains(body, "424 Failed Dependency") {
			t.Fatalf("protected PROPPATCH: %d %s", code, body)
		}
		_, _, body = e.do(a, "PROPFIND", "/f.txt", strings.NewReader(`<D:propfind xmlns:D="DAV:"><D:prop><x xmlns="y:"/></D:prop></D:propfind>`), map[string]string{"Depth": "0"})
		if !strings.Contains(body, "404 Not Found") {
			t.Fatalf("a failed PROPPATCH stored a property: %s", body)
		}
		// Properties follow a MOVE (same node) and a COPY (copied), and a
		// Depth 1 listing shows them for the children.
		e.do(a, "MKCOL", "/d", nil, nil)
		e.do(a, "MOVE", "/f.txt", nil, map[string]string{"Destination": "/dav/d/f.txt"})
		e.do(a, "COPY", "/d", nil, map[string]string{"Destination": "/dav/d2"})
		for _, p := range []string{"/d/", "/d2/"} {
			_, _, body = e.do(a, "PROPFIND", p, nil, map[string]string{"Depth": "1"})
			if !strings.Contains(body, ">blue &amp; ") {
				t.Fatalf("allprop listing of %s lacks the dead property: %s", p, body)
			}
		}
	})
}

func TestAppleFilesHiddenFromOtherClients(t *testing.T) {
	e := newEnv(t, dbtest.Open(t, dbtest.SQLite))
	a := e.admin("alice")
	for _, name := range []string{"._photo.jpg", ".DS_Store", "photo.jpg"} {
		if code, _, _ := e.do(a, "PUT", "/"+name, strings.NewReader("x"), nil); code != 201 {
			t.Fatalf("PUT %s: %d", name, code)
		}
	}
	_, _, body := e.do(a, "PROPFIND", "/", nil, map[string]string{"Depth": "1"})
	if !strings.Contains(body, "photo.jpg") || strings.Contains(body, "DS_Store") || strings.Contains(body, "._photo") {
		t.Fatalf("generic client listing: %s", body)
	}
	_, _, body = e.do(a, "PROPFIND", "/", nil, map[string]string{"Depth": "1", "User-Agent": "WebDAVFS/3.0.0 (03008000) Darwin/21.6.0 (x86_64)"})
	if !strings.Contains(body, "DS_Store") || !strings.Contains(body, "._photo.jpg") {
		t.Fatalf("Finder listing lacks its files: %s", body)
	}
	if code, _, body := e.do(a, "GET", "/._photo.jpg", nil, nil); code != 200 || body != "x" {
		t.Fatalf("GET of AppleDouble file: %d", code)
	}
}

func TestQuotaProperties(t *testing.T) {
	e := newEnv(t, dbtest.Open(t, dbtest.SQLite))
	a := e.admin("alice")
	d := e.folder(e.root, "q")
	e.file(d, "a", "12345")
	e.file(e.folder(d, "sub"), "b", "123")
	find := `<D:propfind xmlns:D="DAV:"><D:prop><D:quota-used-bytes/><D:quota-available-bytes/></D:prop></D:propfind>`
	_, _, body := e.do(a, "PROPFIND", "/q/", strings.NewReader(find), map[string]string{"Depth": "0"})
	if !strings.Contains(body, "<D:quota-used-bytes>8</D:quota-used-bytes>") || !strings.Contains(body, "<D:quota-available-bytes/>") {
		t.Fatalf("quota: %s", body)
	}
}

// TestListingMatchesNode checks that a Depth 1 listing (read through the
// narrow listing query) reports what the node holds.
func TestListingMatchesNode(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db)
		a := e.admin("alice")
		e.do(a, "MKCOL", "/l", nil, nil)
		e.do(a, "MKCOL", "/l/sub", nil, nil)
		e.do(a, "PUT", "/l/page.html", strings.NewReader("<html>hi</html>"), map[string]string{"X-OC-Mtime": "1500000000"})
		n := e.live("/l/page.html")
		_, _, body := e.do(a, "PROPFIND", "/l/", nil, map[string]string{"Depth": "1"})
		for _, want := range []string{
			"<D:href>/dav/l/page.html</D:href>",
			"<D:getlastmodified>Fri, 14 Jul 2017 02:40:00 GMT</D:getlastmodified>",
			"<D:getcontentlength>15</D:getcontentlength>",
			"<D:getcontenttype>text/html</D:getcontenttype>",
			"<D:getetag>" + n.ETag + "</D:getetag>",
			"<D:creationdate>" + n.CreatedAt.UTC().Format("2006-01-02T15:04:05Z") + "</D:creationdate>",
			"<D:href>/dav/l/sub/</D:href>",
			"<D:resourcetype><D:collection/></D:resourcetype>",
		} {
			if !strings.Contains(body, want) {
				t.Errorf("listing lacks %s:\n%s", want, body)
			}
		}
	})
}
